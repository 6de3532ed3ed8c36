//! Teachers: adding one, signing in; argon2 on blocking threads, a few at
//! once.

use super::{new_id, now, Classroom, ClassroomError};
use crate::on_db;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
/// How long a sign-in waits for a hasher before it is told to retry.
const HASHER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Classroom {
    /// Runs an argon2 computation on a blocking thread, at most `hashers`
    /// at once; waiting longer than `HASHER_WAIT` is `Busy`.
    async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ClassroomError> {
        let permit = tokio::time::timeout(HASHER_WAIT, self.hashers.clone().acquire_owned())
            .await
            .map_err(|_| ClassroomError::Busy)?
            .map_err(|_| ClassroomError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|_| ClassroomError::Busy)
    }

    /// `replbox teacher add NAME`.
    pub async fn add_teacher(&self, name: &str, password: &str) -> Result<String, ClassroomError> {
        if name.trim().is_empty() || password.len() < 8 {
            return Err(ClassroomError::Invalid(
                "a teacher needs a name and a password of at least 8 characters".into(),
            ));
        }
        let password = password.to_string();
        let hash = self
            .hashing(move || {
                let salt = SaltString::generate(&mut OsRng);
                Argon2::default()
                    .hash_password(password.as_bytes(), &salt)
                    .map(|h| h.to_string())
            })
            .await?
            .map_err(|e| ClassroomError::Invalid(e.to_string()))?;
        let id = new_id();
        let r = on_db!(&self.db, p => {
            sqlx::query(
                "INSERT INTO teachers (id, name, password_hash, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&id)
            .bind(name.trim())
            .bind(&hash)
            .bind(now())
            .execute(p)
            .await
            .map(|_| ())
        });
        match r {
            Ok(_) => Ok(id),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(ClassroomError::TeacherExists(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The teacher's id when the password is right.
    pub async fn login(&self, name: &str, password: &str) -> Result<String, ClassroomError> {
        let row: Option<(String, String)> = on_db!(&self.db, p => {
            sqlx::query_as("SELECT id, password_hash FROM teachers WHERE name = $1")
                .bind(name.trim())
                .fetch_optional(p)
                .await
        })?;
        // Hash something even for an unknown name, so timing says nothing.
        let (id, hash) = row.unwrap_or_else(|| {
            (
                String::new(),
                "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$8jbIqYdaG8nXT0m6pZKf3KRvwKJ2B+WT8JrMQUm3wK0".into(),
            )
        });
        let password = password.to_string();
        let verified = self
            .hashing(move || {
                PasswordHash::new(&hash).is_ok_and(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await?;
        match verified {
            true if !id.is_empty() => Ok(id),
            _ => Err(ClassroomError::BadLogin),
        }
    }
}
