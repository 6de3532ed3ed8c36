//! Classes: making one, its code, the exercises it sees.

use super::codes::{new_code, CLASS_CODE_LEN};
use super::{new_id, now, Assigned, Class, Classroom, ClassroomError};

impl Classroom {
    /// Gives every class whose code is shorter than `CLASS_CODE_LEN` (made
    /// before codes grew from 6 characters) a new code of full length; its
    /// teacher sees it on the dashboard, and students already in the class
    /// stay in it. Returns how many codes changed.
    pub async fn lengthen_short_codes(&self) -> Result<usize, ClassroomError> {
        let short: Vec<(String,)> = sqlx::query_as("SELECT id FROM classes WHERE length(code) < ?")
            .bind(CLASS_CODE_LEN as i64)
            .fetch_all(&self.pool)
            .await?;
        for (id,) in &short {
            // A clash with another code (60 bits) is left for the next start.
            let _ = sqlx::query("UPDATE classes SET code = ? WHERE id = ?")
                .bind(new_code())
                .bind(id)
                .execute(&self.pool)
                .await;
        }
        Ok(short.len())
    }

    /// Gives the class a new code (the old one, leaked or given to someone
    /// since removed, lets nobody in any more); its students stay in it.
    pub async fn new_class_code(&self, class_id: &str) -> Result<String, ClassroomError> {
        // A clash with another class's code (60 bits) is tried again.
        for _ in 0..5 {
            let code = new_code();
            let r = sqlx::query("UPDATE classes SET code = ? WHERE id = ?")
                .bind(&code)
                .bind(class_id)
                .execute(&self.pool)
                .await;
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
            let r = sqlx::query("INSERT INTO classes (id, teacher_id, name, code, created_at) VALUES (?, ?, ?, ?, ?)")
                .bind(&class.id)
                .bind(&class.teacher_id)
                .bind(&class.name)
                .bind(&class.code)
                .bind(now())
                .execute(&self.pool)
                .await;
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
        Ok(sqlx::query_as("SELECT id, teacher_id, name, code FROM classes WHERE teacher_id = ? ORDER BY created_at")
            .bind(teacher_id)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn class(&self, id: &str) -> Result<Option<Class>, ClassroomError> {
        Ok(
            sqlx::query_as("SELECT id, teacher_id, name, code FROM classes WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The exercises the class sees.
    pub async fn assigned(&self, class_id: &str) -> Result<Assigned, ClassroomError> {
        let chosen: Option<(i64,)> =
            sqlx::query_as("SELECT exercises_chosen FROM classes WHERE id = ?")
                .bind(class_id)
                .fetch_optional(&self.pool)
                .await?;
        if chosen.is_none_or(|(c,)| c == 0) {
            return Ok(Assigned::All);
        }
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT exercise FROM class_exercises WHERE class_id = ?")
                .bind(class_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(Assigned::Only(rows.into_iter().map(|(x,)| x).collect()))
    }

    /// Sets the exercises the class sees (none at all is a choice too).
    pub async fn assign(&self, class_id: &str, exercises: &[String]) -> Result<(), ClassroomError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE classes SET exercises_chosen = 1 WHERE id = ?")
            .bind(class_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM class_exercises WHERE class_id = ?")
            .bind(class_id)
            .execute(&mut *tx)
            .await?;
        for x in exercises {
            sqlx::query("INSERT OR IGNORE INTO class_exercises (class_id, exercise) VALUES (?, ?)")
                .bind(class_id)
                .bind(x)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
