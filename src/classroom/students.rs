//! Students: joining with a code, recovering with a recovery code, the
//! teacher renaming or removing one.

use super::codes::{new_recovery_code, normalize_code, recovery_hash};
use super::{new_id, now, Classroom, ClassroomError, Joined, Student};
use crate::on_db;
fn valid_display_name(name: &str) -> Result<&str, ClassroomError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 60 || name.chars().any(char::is_control) {
        return Err(ClassroomError::Invalid(
            "a display name is 1 to 60 characters".into(),
        ));
    }
    Ok(name)
}

impl Classroom {
    /// A browser joins a class; a browser that joined before gets its
    /// student back.
    pub async fn join(
        &self,
        code: &str,
        display_name: &str,
        owner: &str,
    ) -> Result<Joined, ClassroomError> {
        if let Some(s) = self.student_by_owner(owner).await? {
            return Ok(Joined {
                student: s,
                recovery_code: None,
            });
        }
        let name = valid_display_name(display_name)?;
        let class: Option<(String,)> = on_db!(&self.db, p => {
            sqlx::query_as("SELECT id FROM classes WHERE code = $1")
                .bind(normalize_code(code))
                .fetch_optional(p)
                .await
        })?;
        let (class_id,) = class.ok_or(ClassroomError::NoSuchClass)?;
        let student = Student {
            id: new_id(),
            class_id,
            display_name: name.to_string(),
            owner: owner.to_string(),
        };
        let recovery_code = new_recovery_code();
        let r = on_db!(&self.db, p => {
            sqlx::query("INSERT INTO students (id, class_id, display_name, owner, created_at, recovery_hash) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&student.id)
                .bind(&student.class_id)
                .bind(&student.display_name)
                .bind(&student.owner)
                .bind(now())
                .bind(recovery_hash(&recovery_code))
                .execute(p)
                .await
                .map(|_| ())
        });
        match r {
            Ok(_) => Ok(Joined {
                student,
                recovery_code: Some(recovery_code),
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(ClassroomError::NameTaken(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The student a recovery code belongs to (whose owner key the
    /// browser then takes); refused when the browser is a student already.
    pub async fn recover(&self, code: &str, owner: &str) -> Result<Student, ClassroomError> {
        if self.student_by_owner(owner).await?.is_some() {
            return Err(ClassroomError::AlreadyJoined);
        }
        on_db!(&self.db, p => {
            sqlx::query_as(
                "SELECT id, class_id, display_name, owner FROM students WHERE recovery_hash = $1",
            )
            .bind(recovery_hash(code))
            .fetch_optional(p)
            .await
        })?
        .ok_or(ClassroomError::BadRecoveryCode)
    }

    /// The teacher renames a student of `class_id`.
    pub async fn rename_student(
        &self,
        class_id: &str,
        student_id: &str,
        name: &str,
    ) -> Result<Student, ClassroomError> {
        let name = valid_display_name(name)?;
        let r = on_db!(&self.db, p => {
            sqlx::query("UPDATE students SET display_name = $1 WHERE id = $2 AND class_id = $3")
                .bind(name)
                .bind(student_id)
                .bind(class_id)
                .execute(p)
                .await
                .map(|done| done.rows_affected())
        });
        match r {
            Ok(0) => Err(ClassroomError::NoSuchStudent),
            Ok(_) => self
                .student(student_id)
                .await?
                .ok_or(ClassroomError::NoSuchStudent),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(ClassroomError::NameTaken(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The teacher removes a student of `class_id` and their checks; the
    /// browser is then one that has not joined. Returns the student's owner
    /// key (whose exercise workspaces the caller may remove).
    pub async fn remove_student(
        &self,
        class_id: &str,
        student_id: &str,
    ) -> Result<Student, ClassroomError> {
        let student = self
            .student(student_id)
            .await?
            .filter(|s| s.class_id == class_id)
            .ok_or(ClassroomError::NoSuchStudent)?;
        on_db!(&self.db, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM checks WHERE student_id = $1")
                .bind(student_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM students WHERE id = $1")
                .bind(student_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(student)
    }

    pub async fn student_by_owner(&self, owner: &str) -> Result<Option<Student>, ClassroomError> {
        Ok(on_db!(&self.db, p => {
            sqlx::query_as("SELECT id, class_id, display_name, owner FROM students WHERE owner = $1")
                .bind(owner)
                .fetch_optional(p)
                .await
        })?)
    }

    pub async fn student(&self, id: &str) -> Result<Option<Student>, ClassroomError> {
        Ok(on_db!(&self.db, p => {
            sqlx::query_as("SELECT id, class_id, display_name, owner FROM students WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await
        })?)
    }
}
