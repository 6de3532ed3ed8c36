//! Classes: teachers (passwords hashed with argon2), their classes and
//! codes, students who joined with a code and a display name (their identity
//! rides on their browser session), and every check with its files.

use crate::exercises::grade::Report;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine as _;
use serde::Serialize;
use sqlx::SqlitePool;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ClassroomError {
    #[error("a teacher named {0:?} exists already")]
    TeacherExists(String),
    #[error("the name or the password is wrong")]
    BadLogin,
    #[error("there is no class with that code")]
    NoSuchClass,
    #[error("someone in this class already uses the name {0:?} (if that is you, use your recovery code)")]
    NameTaken(String),
    #[error("that recovery code is not right")]
    BadRecoveryCode,
    #[error("this browser has joined a class already")]
    AlreadyJoined,
    #[error("there is no such student in your class")]
    NoSuchStudent,
    #[error("{0}")]
    Invalid(String),
    #[error("the server is busy checking passwords; try again in a few seconds")]
    Busy,
    #[error("storage: {0}")]
    Store(#[from] sqlx::Error),
}

/// The exercises a class sees: every one until its teacher chooses.
pub enum Assigned {
    All,
    Only(std::collections::BTreeSet<String>),
}

impl Assigned {
    pub fn sees(&self, exercise: &str) -> bool {
        match self {
            Assigned::All => true,
            Assigned::Only(chosen) => chosen.contains(exercise),
        }
    }
}

#[derive(Clone)]
pub struct Classroom {
    pool: SqlitePool,
    /// Password hashes computed at once at most (each on a blocking
    /// thread, never on the async workers).
    hashers: std::sync::Arc<tokio::sync::Semaphore>,
}

/// How long a sign-in waits for a hasher before it is told to retry.
const HASHER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Student {
    pub id: String,
    pub class_id: String,
    pub display_name: String,
    #[serde(skip)]
    pub owner: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Class {
    pub id: String,
    pub teacher_id: String,
    pub name: String,
    pub code: String,
}

/// A row of a teacher's dashboard: one student on one exercise.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    pub student_id: String,
    pub display_name: String,
    pub best_score: Option<i64>,
    pub max_score: Option<i64>,
    pub attempts: i64,
    pub last_check: Option<i64>,
    pub last_check_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct CheckRow {
    pub id: String,
    pub student_id: String,
    pub exercise: String,
    pub score: i64,
    pub max_score: i64,
    pub report: String,
    pub files: String,
    pub created_at: i64,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Characters of a class code: 12 of 32 symbols is 60 bits. At the default
/// limit on wrong codes (10 a minute per address), one address guessing
/// for a year finds one of a thousand classes with odds of 5 in a billion,
/// a whole IPv6 /48 (65,536 limited /64s) with odds of 3 in 10,000.
pub const CLASS_CODE_LEN: usize = 12;

/// A class code: letters and digits without look-alikes.
fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..CLASS_CODE_LEN)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A recovery code: 16 of 32 symbols (80 bits), shown in groups of four.
fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let raw: Vec<char> = (0..16)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    raw.chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// A code as typed: case, spaces and dashes do not matter.
fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn recovery_hash(code: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(normalize_code(code).as_bytes()))
}

/// A student who just joined, and the recovery code to show them once.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    #[serde(flatten)]
    pub student: Student,
    /// `None` when the browser had joined before (the code was shown then).
    pub recovery_code: Option<String>,
}

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
    /// With one password hash at a time.
    pub fn new(pool: SqlitePool) -> Self {
        Self::with_hashers(pool, 1)
    }

    /// With at most `hashers` password hashes at once.
    pub fn with_hashers(pool: SqlitePool, hashers: usize) -> Self {
        Self {
            pool,
            hashers: std::sync::Arc::new(tokio::sync::Semaphore::new(hashers.max(1))),
        }
    }

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
        let r = sqlx::query(
            "INSERT INTO teachers (id, name, password_hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(name.trim())
        .bind(&hash)
        .bind(now())
        .execute(&self.pool)
        .await;
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
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT id, password_hash FROM teachers WHERE name = ?")
                .bind(name.trim())
                .fetch_optional(&self.pool)
                .await?;
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
        let class: Option<(String,)> = sqlx::query_as("SELECT id FROM classes WHERE code = ?")
            .bind(normalize_code(code))
            .fetch_optional(&self.pool)
            .await?;
        let (class_id,) = class.ok_or(ClassroomError::NoSuchClass)?;
        let student = Student {
            id: new_id(),
            class_id,
            display_name: name.to_string(),
            owner: owner.to_string(),
        };
        let recovery_code = new_recovery_code();
        let r = sqlx::query("INSERT INTO students (id, class_id, display_name, owner, created_at, recovery_hash) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&student.id)
            .bind(&student.class_id)
            .bind(&student.display_name)
            .bind(&student.owner)
            .bind(now())
            .bind(recovery_hash(&recovery_code))
            .execute(&self.pool)
            .await;
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
        sqlx::query_as(
            "SELECT id, class_id, display_name, owner FROM students WHERE recovery_hash = ?",
        )
        .bind(recovery_hash(code))
        .fetch_optional(&self.pool)
        .await?
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
        let r = sqlx::query("UPDATE students SET display_name = ? WHERE id = ? AND class_id = ?")
            .bind(name)
            .bind(student_id)
            .bind(class_id)
            .execute(&self.pool)
            .await;
        match r {
            Ok(done) if done.rows_affected() == 0 => Err(ClassroomError::NoSuchStudent),
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM checks WHERE student_id = ?")
            .bind(student_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM students WHERE id = ?")
            .bind(student_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(student)
    }

    pub async fn student_by_owner(&self, owner: &str) -> Result<Option<Student>, ClassroomError> {
        Ok(
            sqlx::query_as(
                "SELECT id, class_id, display_name, owner FROM students WHERE owner = ?",
            )
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    /// Stores a check with the files it graded.
    pub async fn record_check(
        &self,
        student_id: &str,
        exercise: &str,
        report: &Report,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<String, ClassroomError> {
        let id = new_id();
        let files = stored_files(files);
        sqlx::query("INSERT INTO checks (id, student_id, exercise, score, max_score, report, files, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(&id)
            .bind(student_id)
            .bind(exercise)
            .bind(i64::from(report.score))
            .bind(i64::from(report.max_score))
            .bind(serde_json::to_string(report).unwrap_or_default())
            .bind(serde_json::to_string(&files).unwrap_or_default())
            .bind(now())
            .execute(&self.pool)
            .await?;
        // Only the newest checks of a student on an exercise keep files.
        sqlx::query(
            "UPDATE checks SET files = '{}' WHERE student_id = ? AND exercise = ? AND files <> '{}'
             AND id NOT IN (SELECT id FROM checks WHERE student_id = ? AND exercise = ?
                            ORDER BY created_at DESC, rowid DESC LIMIT ?)",
        )
        .bind(student_id)
        .bind(exercise)
        .bind(student_id)
        .bind(exercise)
        .bind(CHECK_FILES_KEPT as i64)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Best score and attempts of one student per exercise.
    pub async fn progress(
        &self,
        student_id: &str,
    ) -> Result<BTreeMap<String, (i64, i64)>, ClassroomError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT exercise, MAX(score), COUNT(*) FROM checks WHERE student_id = ? GROUP BY exercise",
        )
        .bind(student_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(e, best, n)| (e, (best, n)))
            .collect())
    }

    /// A class's students on one exercise, best score first.
    pub async fn standings(
        &self,
        class_id: &str,
        exercise: &str,
    ) -> Result<Vec<Standing>, ClassroomError> {
        Ok(sqlx::query_as(
            "SELECT s.id AS student_id, s.display_name,
                    MAX(c.score) AS best_score, MAX(c.max_score) AS max_score,
                    COUNT(c.id) AS attempts, MAX(c.created_at) AS last_check,
                    (SELECT c2.id FROM checks c2 WHERE c2.student_id = s.id AND c2.exercise = ?
                     ORDER BY c2.created_at DESC, c2.rowid DESC LIMIT 1) AS last_check_id
             FROM students s LEFT JOIN checks c ON c.student_id = s.id AND c.exercise = ?
             WHERE s.class_id = ?
             GROUP BY s.id, s.display_name
             ORDER BY best_score IS NULL, best_score DESC, s.display_name",
        )
        .bind(exercise)
        .bind(exercise)
        .bind(class_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn check(&self, id: &str) -> Result<Option<CheckRow>, ClassroomError> {
        Ok(sqlx::query_as("SELECT * FROM checks WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A check and the student who made it.
    pub async fn check_with_student(
        &self,
        id: &str,
    ) -> Result<Option<(CheckRow, Student)>, ClassroomError> {
        let Some(check) = self.check(id).await? else {
            return Ok(None);
        };
        Ok(self.student(&check.student_id).await?.map(|s| (check, s)))
    }

    pub async fn student(&self, id: &str) -> Result<Option<Student>, ClassroomError> {
        Ok(
            sqlx::query_as("SELECT id, class_id, display_name, owner FROM students WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

impl CheckRow {
    /// The checked files as text (bytes that are not UTF-8 replaced).
    pub fn files_text(&self) -> BTreeMap<String, String> {
        let files: BTreeMap<String, String> = serde_json::from_str(&self.files).unwrap_or_default();
        files
            .into_iter()
            .map(|(k, v)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .unwrap_or_default();
                (k, String::from_utf8_lossy(&bytes).into_owned())
            })
            .collect()
    }
}

/// Checks per student and exercise whose files are kept; older ones keep
/// their score and report.
pub const CHECK_FILES_KEPT: usize = 5;
/// File bytes kept per check; files past it (in path order) are replaced by
/// a note.
pub const CHECK_STORED_BYTES: usize = 1024 * 1024;

/// A check's files as stored: base64, at most `CHECK_STORED_BYTES` of them.
fn stored_files(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<&String, String> {
    let mut budget = CHECK_STORED_BYTES;
    files
        .iter()
        .map(|(k, v)| {
            let kept: &[u8] = if v.len() <= budget {
                budget -= v.len();
                v
            } else {
                b"(not kept: a check keeps 1 MiB of files)"
            };
            (k, base64::engine::general_purpose::STANDARD.encode(kept))
        })
        .collect()
}

/// A CSV field: quoted when it must be, and text that a spreadsheet would
/// take for a formula (`=`, `+`, `-`, `@`, a tab or a return first) led by
/// a `'` so that it stays text.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The dashboard as CSV (the same rows, the same order).
pub fn standings_csv(rows: &[Standing]) -> String {
    let mut out = String::from("student,best_score,max_score,attempts,last_check\n");
    for r in rows {
        let last = r
            .last_check
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            csv_field(&r.display_name),
            r.best_score.map(|v| v.to_string()).unwrap_or_default(),
            r.max_score.map(|v| v.to_string()).unwrap_or_default(),
            r.attempts,
            last
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_never_start_a_formula() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("Ada"), "Ada");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }

    #[test]
    fn codes_are_read_as_typed() {
        assert_eq!(normalize_code(" abcd-efgh 2345 "), "ABCDEFGH2345");
        assert_eq!(new_code().len(), CLASS_CODE_LEN);
        assert_eq!(normalize_code(&new_recovery_code()).len(), 16);
    }
}
