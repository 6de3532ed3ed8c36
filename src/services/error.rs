//! What a service refuses or fails at. Services never choose an HTTP
//! status: `error.rs` maps each variant to a code, a sentence and a status.

use crate::classroom::ClassroomError;
use crate::limits::Limited;
use crate::sandbox::SandboxError;
use crate::sessions::SessionError;
use replbox_protocol::{FileError, JobId};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Classroom(#[from] ClassroomError),
    #[error(transparent)]
    Limited(#[from] Limited),
    /// A run names a language the server does not have.
    #[error("no language {name:?}")]
    UnknownLanguage { name: String, known: Vec<String> },
    /// A run does not say which file to run (the sentence says how).
    #[error("{0}")]
    MissingEntry(&'static str),
    /// A run gives none or several of language, command and argv.
    #[error("a run needs exactly one of language, command or argv")]
    BadRun,
    /// A job that is not running (or never was).
    #[error("job {0} is not running")]
    UnknownJob(JobId),
    #[error("there is no job {0}")]
    NoSuchJob(JobId),
    #[error("kernel {0} is not running")]
    UnknownKernel(JobId),
    /// The program could not be started (the agent's words).
    #[error("{0}")]
    SpawnFailed(String),
    /// The owner has not joined a class.
    #[error("not in a class")]
    NotJoined,
    /// An exercise (its title) the student's class was not given.
    #[error("{0:?} is not assigned")]
    NotAssigned(String),
    #[error("there is no exercise {0:?}")]
    NoSuchExercise(String),
    /// A teacher chose an exercise that does not exist.
    #[error("there is no exercise {0:?}")]
    UnknownExercise(String),
    /// A class that is not the teacher's (or none).
    #[error("no such class of yours")]
    NotYourClass,
    /// A workspace past the limits of what is read at once.
    #[error("the workspace is too large to {0}")]
    WorkspaceTooLarge(Purpose),
    /// One file too large for one read (its path and the limit).
    #[error("{path} is too large")]
    FileTooLarge { path: String, limit: u64 },
    /// A taskId that is not 1-63 letters, digits, `-`, `_`, `.`.
    #[error("not a taskId")]
    BadTaskId,
    /// `ttlSeconds` outside 60..86400.
    #[error("ttlSeconds out of range")]
    BadTtl,
    /// `timeoutMs` outside 1..900000.
    #[error("timeoutMs out of range")]
    BadTimeout,
    /// An environment variable the engine would not take.
    #[error("bad environment variable")]
    BadEnv,
    /// An `imageId` the server does not offer.
    #[error("image {0:?} not offered")]
    ImageNotAllowed(String),
    /// The caller has no sandbox of this taskId (another token's is none).
    #[error("no sandbox {0:?}")]
    NoSuchTask(String),
    /// The caller has a sandbox of this taskId already.
    #[error("sandbox {0:?} exists")]
    TaskExists(String),
    /// A bug or a task that died: logged, and said as `internal`.
    #[error("internal: {0}")]
    Internal(&'static str),
}

/// Why a whole workspace is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Check,
    Zip,
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Purpose::Check => "check",
            Purpose::Zip => "zip",
        })
    }
}

impl From<FileError> for ServiceError {
    fn from(e: FileError) -> Self {
        ServiceError::Sandbox(SandboxError::File(e))
    }
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        ServiceError::Session(SessionError::Store(e))
    }
}
