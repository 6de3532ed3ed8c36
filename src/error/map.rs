//! The one place where the layers' errors become what a client sees: a
//! code, a sentence and a status.

use super::{echo, AppError, ErrorCode};
use crate::classroom::ClassroomError;
use crate::sandbox::SandboxError;
use crate::services::ServiceError;
use crate::sessions::{owner_display, SessionError};
use axum::http::StatusCode;
use replbox_protocol::FileError;

impl From<SandboxError> for AppError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::EngineUnavailable => Self::engine_unavailable(),
            SandboxError::ImageMissing(image) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ImageMissing,
                format!("The sandbox image {image} is not installed on the server."),
            ),
            SandboxError::NotFound => Self::not_found("The sandbox does not exist."),
            SandboxError::Conflict => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                "The sandbox is changing state; try again.",
            ),
            SandboxError::AgentGone => Self {
                retry_after: Some(1),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::SandboxStopped,
                    "The sandbox stopped. Your files are kept; run again to start a new one.",
                )
            },
            SandboxError::AgentUnresponsive => Self {
                retry_after: Some(2),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::SandboxUnresponsive,
                    "The sandbox does not answer. Try again in a moment.",
                )
            },
            SandboxError::AgentVersion { .. } => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::AgentVersion,
                "The sandbox agent does not match this server's version; the administrator must rebuild it.",
            ),
            SandboxError::File(f) => f.into(),
            SandboxError::DiskFull => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::DiskFull,
                "The server has no room for a new workspace right now (its disk budget is used up); tell your teacher or the administrator.",
            ),
            SandboxError::WorkspaceUnclaimed(why) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::EngineError,
                format!(
                    "The new sandbox's workspace could not be given to the sandbox user, so the sandbox was removed ({why}). Try again, or tell the administrator."
                ),
            ),
            SandboxError::Engine | SandboxError::Config(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::EngineError,
                "The sandbox engine refused the request. Try again; your files are safe.",
            ),
        }
    }
}

impl From<FileError> for AppError {
    fn from(e: FileError) -> Self {
        let status = match e {
            FileError::NotFound(_) => StatusCode::NOT_FOUND,
            FileError::AlreadyExists(_) => StatusCode::CONFLICT,
            FileError::Changed(_) => StatusCode::PRECONDITION_FAILED,
            FileError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            FileError::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
            FileError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            FileError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let message = match &e {
            FileError::OutsideWorkspace(_) => {
                format!("{e}: paths are relative to /workspace and may not use `..`.")
            }
            FileError::NoSpace => "The workspace is full: delete some files and try again.".into(),
            _ => e.to_string(),
        };
        let code = match e {
            FileError::OutsideWorkspace(_) => ErrorCode::PathOutsideWorkspace,
            FileError::InvalidPath(_) => ErrorCode::InvalidPath,
            FileError::NotFound(_) => ErrorCode::NotFound,
            FileError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            FileError::IsADirectory(_) => ErrorCode::IsADirectory,
            FileError::NotADirectory(_) => ErrorCode::NotADirectory,
            FileError::TooLarge { .. } => ErrorCode::FileTooLarge,
            FileError::NoSpace => ErrorCode::WorkspaceFull,
            FileError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            FileError::NotEmpty(_) => ErrorCode::DirectoryNotEmpty,
            FileError::Changed(_) => ErrorCode::FileChanged,
            FileError::Io(_) => ErrorCode::FileError,
        };
        Self::new(status, code, message)
    }
}

impl From<crate::limits::Limited> for AppError {
    fn from(e: crate::limits::Limited) -> Self {
        use crate::limits::Attempt;
        let (code, message) = match e.what {
            Attempt::SignIn => (
                ErrorCode::TooManyAttempts,
                "Too many wrong sign-ins: wait a little and try again.",
            ),
            Attempt::ClassCode => (
                ErrorCode::TooManyAttempts,
                "Too many wrong class codes: wait a little and try again.",
            ),
            Attempt::RecoveryCode => (
                ErrorCode::TooManyAttempts,
                "Too many wrong recovery codes: wait a little and try again.",
            ),
            Attempt::Check => (
                ErrorCode::TooManyChecks,
                "You checked many times just now: wait a little and check again.",
            ),
            Attempt::CheckInFlight => (
                ErrorCode::CheckInProgress,
                "Your last Check is still being graded: wait for its result.",
            ),
            Attempt::Socket => (
                ErrorCode::TooManySockets,
                "This browser has too many tabs of replbox open: close some and reload.",
            ),
        };
        Self {
            retry_after: Some(e.retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }
}

impl From<ClassroomError> for AppError {
    fn from(e: ClassroomError) -> Self {
        match e {
            ClassroomError::TeacherExists(_) => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::AlreadyExists,
                e.to_string(),
            ),
            ClassroomError::BadLogin => {
                Self::new(StatusCode::UNAUTHORIZED, ErrorCode::BadLogin, e.to_string())
            }
            ClassroomError::NoSuchClass => {
                Self::new(StatusCode::NOT_FOUND, ErrorCode::NoSuchClass, e.to_string())
            }
            ClassroomError::NameTaken(_) => {
                Self::new(StatusCode::CONFLICT, ErrorCode::NameTaken, e.to_string())
            }
            ClassroomError::Invalid(_) => Self::bad_request(ErrorCode::Invalid, e.to_string()),
            ClassroomError::BadRecoveryCode => Self::new(
                StatusCode::NOT_FOUND,
                ErrorCode::BadRecoveryCode,
                e.to_string(),
            ),
            ClassroomError::AlreadyJoined => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::AlreadyJoined,
                e.to_string(),
            ),
            ClassroomError::NoSuchStudent => Self::not_found(e.to_string()),
            ClassroomError::Busy => AppError {
                retry_after: Some(5),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Busy,
                    e.to_string(),
                )
            },
            ClassroomError::Store(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error");
        Self::internal()
    }
}

impl AppError {
    /// Another replica holds the sandbox and this one cannot reach it (or
    /// will not act on it): retry once its lease may have lapsed.
    pub fn sandbox_moving(until_ms: i64) -> Self {
        let left = (until_ms - chrono::Utc::now().timestamp_millis()).max(0) as u64;
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::SandboxMoving,
            "Another server holds this sandbox and cannot be reached right now; it moves here within a few seconds: try again.",
        )
        .retry_after(left.div_ceil(1000).clamp(1, 60))
    }
}

impl From<SessionError> for AppError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Deleted => Self::not_found("The sandbox was deleted."),
            SessionError::NoSuchSandbox => Self::not_found("No such sandbox."),
            SessionError::AlreadyExists(owner) => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::AlreadyExists,
                format!(
                    "A sandbox named {} already exists.",
                    echo(owner_display(&owner))
                ),
            ),
            SessionError::BeingRemoved(owner) => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::BeingRemoved,
                format!(
                    "The sandbox {} is being removed; try again in a moment.",
                    echo(owner_display(&owner))
                ),
            )
            .retry_after(1),
            SessionError::CapacityFull => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::CapacityFull,
                "Every sandbox is in use right now; try again in a few seconds.",
            )
            .retry_after(10),
            SessionError::Elsewhere { until_ms, .. } => Self::sandbox_moving(until_ms),
            SessionError::Sandbox(e) => e.into(),
            SessionError::Store(e) => e.into(),
        }
    }
}

impl From<ServiceError> for AppError {
    fn from(e: ServiceError) -> Self {
        use ServiceError as E;
        match e {
            E::Session(e) => e.into(),
            E::Sandbox(e) => e.into(),
            E::Classroom(e) => e.into(),
            E::Limited(e) => e.into(),
            E::UnknownLanguage { name, known } => Self::bad_request(
                ErrorCode::UnknownLanguage,
                format!(
                    "There is no language {} here; try one of: {}.",
                    echo(&name),
                    known.join(", ")
                ),
            ),
            E::MissingEntry(sentence) => Self::bad_request(ErrorCode::MissingEntry, sentence),
            E::BadRun => Self::bad_request(
                ErrorCode::BadRun,
                "Give exactly one of `language`, `command` or a non-empty `argv`.",
            ),
            E::UnknownJob(job) => Self::bad_request(
                ErrorCode::UnknownJob,
                format!("Job {job} is not running."),
            ),
            E::NoSuchJob(job) => Self::not_found(format!("There is no job {job}.")),
            E::UnknownKernel(kernel) => Self::bad_request(
                ErrorCode::UnknownKernel,
                format!("Kernel {kernel} is not running: start one."),
            ),
            E::SpawnFailed(message) => Self::bad_request(ErrorCode::SpawnFailed, message),
            E::NotJoined => Self::new(
                StatusCode::FORBIDDEN,
                ErrorCode::NotJoined,
                "Join a class first, with the code your teacher gave you.",
            ),
            E::NotAssigned(title) => Self::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotAssigned,
                format!("{} is not one of your class's exercises.", echo(&title)),
            ),
            E::NoSuchExercise(id) => Self::not_found(format!("There is no exercise {}.", echo(&id))),
            E::UnknownExercise(id) => Self::bad_request(
                ErrorCode::UnknownExercise,
                format!("There is no exercise {}.", echo(&id)),
            ),
            E::NotYourClass => Self::not_found("There is no such class of yours."),
            E::WorkspaceTooLarge(purpose) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::WorkspaceTooLarge,
                match purpose {
                    crate::services::error::Purpose::Check => {
                        "The workspace is too large to check."
                    }
                    crate::services::error::Purpose::Zip => {
                        "The workspace is too large to download as one zip; use the terminal to pack part of it."
                    }
                },
            ),
            E::FileTooLarge { path, limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::FileTooLarge,
                format!(
                    "{path} is larger than {} MiB, too large to zip or check: make it smaller or delete it, then try again.",
                    limit >> 20
                ),
            ),
            E::BadTaskId => Self::bad_request(
                ErrorCode::BadTaskId,
                "A taskId is 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit.",
            ),
            E::BadTtl => Self::bad_request(ErrorCode::BadTtl, "ttlSeconds must be between 60 and 86400."),
            E::BadTimeout => Self::bad_request(
                ErrorCode::BadTimeout,
                format!(
                    "`timeoutMs` is a number of milliseconds from 1 to {}.",
                    crate::services::tasks::MAX_TIMEOUT_MS
                ),
            ),
            E::BadEnv => Self::bad_request(
                ErrorCode::BadEnv,
                "Environment variable names may not be empty, hold '=' or NUL, or start with REPLBOX_ (the agent's own), nor values hold NUL.",
            ),
            E::ImageNotAllowed(image) => Self::bad_request(
                ErrorCode::ImageNotAllowed,
                format!("The image {} is not offered by this server.", echo(&image)),
            ),
            E::NoSuchTask(task_id) => Self::not_found(format!("There is no sandbox {}.", echo(&task_id))),
            E::TaskExists(task_id) => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::AlreadyExists,
                format!("A sandbox named {} already exists.", echo(&task_id)),
            ),
            E::Internal(what) => {
                tracing::error!(what, "internal error");
                Self::internal()
            }
        }
    }
}
