//! Classes: teachers (passwords hashed with argon2), their classes and
//! codes, students who joined with a code and a display name (their identity
//! rides on their browser session), and every check with its files.
//!
//! `mod.rs` holds the types and the store handle; `teachers.rs` sign-in
//! (argon2 on blocking threads, bounded); `classes.rs` classes, their codes
//! and exercises; `students.rs` joining, recovery and the teacher's edits;
//! `checks.rs` checks, standings and the CSV; `codes.rs` class and
//! recovery codes.

mod checks;
mod classes;
mod codes;
mod students;
mod teachers;

use crate::db::Db;
pub use checks::{standings_csv, CHECK_FILES_KEPT, CHECK_STORED_BYTES};
pub use codes::CLASS_CODE_LEN;
use serde::Serialize;
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
    db: Db,
    /// Password hashes computed at once at most (each on a blocking
    /// thread, never on the async workers).
    hashers: std::sync::Arc<tokio::sync::Semaphore>,
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

/// A student who just joined, and the recovery code to show them once.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    #[serde(flatten)]
    pub student: Student,
    /// `None` when the browser had joined before (the code was shown then).
    pub recovery_code: Option<String>,
}

impl Classroom {
    /// With one password hash at a time.
    pub fn new(db: Db) -> Self {
        Self::with_hashers(db, 1)
    }

    /// With at most `hashers` password hashes at once.
    pub fn with_hashers(db: Db, hashers: usize) -> Self {
        Self {
            db,
            hashers: std::sync::Arc::new(tokio::sync::Semaphore::new(hashers.max(1))),
        }
    }
}
