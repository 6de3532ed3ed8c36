//! Classes: making one, its code, the exercises it sees.

use super::codes::{new_code, CLASS_CODE_LEN};
use super::{new_id, now, Assigned, Class, Classroom, ClassroomError};
use crate::on_db;

impl Classroom {
    /// Gives every class whose code is shorter than `CLASS_CODE_LEN` (made
    /// before codes grew from 6 characters) a new code of full length; its
    /// teacher sees it on the dashboard, and students already in the class
    /// stay in it. Returns how many codes changed.
    pub async fn lengthen_short_codes(&self) -> Result<usize, ClassroomError> {
        let short: Vec<(String,)> = on_db!(&self.db, p => {
            sqlx::query_as("SELECT id FROM classes WHERE length(code) < $1")
                .bind(CLASS_CODE_LEN as i64)
                .fetch_all(p)
                .await
        })?;
        for (id,) in &short {
            // A clash with another code (60 bits) is left for the next start.
            let _ = on_db!(&self.db, p => {
                sqlx::query("UPDATE classes SET code = $1 WHERE id = $2")
                    .bind(new_code())
                    .bind(id)
                    .execute(p)
                    .await
                    .map(|_| ())
            });
        }
        Ok(short.len())
    }

    /// Gives the class a new code (the old one, leaked or given to someone
    /// since removed, lets nobody in any more); its students stay in it.
    pub async fn new_class_code(&self, class_id: &str) -> Result<String, ClassroomError> {
        // A clash with another class's code (60 bits) is tried again.
        for _ in 0..5 {
            let code = new_code();
            let r = on_db!(&self.db, p => {
                sqlx::query("UPDATE classes SET code = $1 WHERE id = $2")
                    .bind(&code)
                    .bind(class_id)
                    .execute(p)
                    .await
                    .map(|_| ())
            });
            match r {
                Ok(_) => return Ok(code),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClassroomError::Store(sqlx::Error::PoolTimedOut))
    }

    pub async fn create_class(
        &self,
        teacher_id: &str,
        name: &str,
    ) -> Result<Class, ClassroomError> {
        if name.trim().is_empty() {
            return Err(ClassroomError::Invalid("a class needs a name".into()));
        }
        for _ in 0..5 {
            let class = Class {
                id: new_id(),
                teacher_id: teacher_id.to_string(),
                name: name.trim().to_string(),
                code: new_code(),
            };
            let r = on_db!(&self.db, p => {
                sqlx::query("INSERT INTO classes (id, teacher_id, name, code, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&class.id)
                    .bind(&class.teacher_id)
                    .bind(&class.name)
                    .bind(&class.code)
                    .bind(now())
                    .execute(p)
                    .await
                    .map(|_| ())
            });
            match r {
                Ok(_) => return Ok(class),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClassroomError::Invalid(
            "could not make a unique class code".into(),
        ))
    }

    pub async fn classes_of(&self, teacher_id: &str) -> Result<Vec<Class>, ClassroomError> {
        Ok(on_db!(&self.db, p => {
            sqlx::query_as("SELECT id, teacher_id, name, code FROM classes WHERE teacher_id = $1 ORDER BY created_at")
                .bind(teacher_id)
                .fetch_all(p)
                .await
        })?)
    }

    pub async fn class(&self, id: &str) -> Result<Option<Class>, ClassroomError> {
        Ok(on_db!(&self.db, p => {
            sqlx::query_as("SELECT id, teacher_id, name, code FROM classes WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await
        })?)
    }

    /// The exercises the class sees.
    pub async fn assigned(&self, class_id: &str) -> Result<Assigned, ClassroomError> {
        let chosen: Option<(i64,)> = on_db!(&self.db, p => {
            sqlx::query_as("SELECT exercises_chosen FROM classes WHERE id = $1")
                .bind(class_id)
                .fetch_optional(p)
                .await
        })?;
        if chosen.is_none_or(|(c,)| c == 0) {
            return Ok(Assigned::All);
        }
        let rows: Vec<(String,)> = on_db!(&self.db, p => {
            sqlx::query_as("SELECT exercise FROM class_exercises WHERE class_id = $1")
                .bind(class_id)
                .fetch_all(p)
                .await
        })?;
        Ok(Assigned::Only(rows.into_iter().map(|(x,)| x).collect()))
    }

    /// Sets the exercises the class sees (none at all is a choice too).
    pub async fn assign(&self, class_id: &str, exercises: &[String]) -> Result<(), ClassroomError> {
        on_db!(&self.db, p => {
            let mut tx = p.begin().await?;
            sqlx::query("UPDATE classes SET exercises_chosen = 1 WHERE id = $1")
                .bind(class_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM class_exercises WHERE class_id = $1")
                .bind(class_id)
                .execute(&mut *tx)
                .await?;
            for x in exercises {
                sqlx::query(
                    "INSERT INTO class_exercises (class_id, exercise) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                )
                .bind(class_id)
                .bind(x)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
