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
    #[error("someone in this class already uses the name {0:?}")]
    NameTaken(String),
    #[error("{0}")]
    Invalid(String),
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
}

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

/// A class code: 6 letters and digits without look-alikes.
fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..6)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Classroom {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// `replbox teacher add NAME`.
    pub async fn add_teacher(&self, name: &str, password: &str) -> Result<String, ClassroomError> {
        if name.trim().is_empty() || password.len() < 8 {
            return Err(ClassroomError::Invalid(
                "a teacher needs a name and a password of at least 8 characters".into(),
            ));
        }
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| ClassroomError::Invalid(e.to_string()))?
            .to_string();
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
        let parsed = PasswordHash::new(&hash).map_err(|_| ClassroomError::BadLogin)?;
        match Argon2::default().verify_password(password.as_bytes(), &parsed) {
            Ok(()) if !id.is_empty() => Ok(id),
            _ => Err(ClassroomError::BadLogin),
        }
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
    ) -> Result<Student, ClassroomError> {
        if let Some(s) = self.student_by_owner(owner).await? {
            return Ok(s);
        }
        let name = display_name.trim();
        if name.is_empty() || name.chars().count() > 60 {
            return Err(ClassroomError::Invalid(
                "a display name is 1 to 60 characters".into(),
            ));
        }
        let class: Option<(String,)> = sqlx::query_as("SELECT id FROM classes WHERE code = ?")
            .bind(code.trim().to_ascii_uppercase())
            .fetch_optional(&self.pool)
            .await?;
        let (class_id,) = class.ok_or(ClassroomError::NoSuchClass)?;
        let student = Student {
            id: new_id(),
            class_id,
            display_name: name.to_string(),
            owner: owner.to_string(),
        };
        let r = sqlx::query("INSERT INTO students (id, class_id, display_name, owner, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&student.id)
            .bind(&student.class_id)
            .bind(&student.display_name)
            .bind(&student.owner)
            .bind(now())
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(student),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(ClassroomError::NameTaken(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
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
        let files: BTreeMap<&String, String> = files
            .iter()
            .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
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

/// The dashboard as CSV (the same rows, the same order).
pub fn standings_csv(rows: &[Standing]) -> String {
    let field = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = String::from("student,best_score,max_score,attempts,last_check\n");
    for r in rows {
        let last = r
            .last_check
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            field(&r.display_name),
            r.best_score.map(|v| v.to_string()).unwrap_or_default(),
            r.max_score.map(|v| v.to_string()).unwrap_or_default(),
            r.attempts,
            last
        ));
    }
    out
}
