//! The one error type clients see: a stable code, a sentence a student can
//! act on, and an HTTP status. Rendered as `{"error": {"code", "message"}}`
//! over HTTP and as an `error` frame on a socket.

use crate::sandbox::SandboxError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use replbox_protocol::FileError;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds after which a retry may succeed (503s).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "A valid API token is required: send `Authorization: Bearer <token>`.",
        )
    }

    pub fn engine_unavailable() -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "engine_unavailable",
                "The sandbox engine is not reachable right now. Your files are safe; try again in a few seconds.",
            )
        }
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on the server. Try again; if it keeps happening, tell your teacher.",
        )
    }
}

impl From<SandboxError> for AppError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::EngineUnavailable => Self::engine_unavailable(),
            SandboxError::ImageMissing(image) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "image_missing",
                format!("The sandbox image {image} is not installed on the server."),
            ),
            SandboxError::NotFound => Self::not_found("The sandbox does not exist."),
            SandboxError::Conflict => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "The sandbox is changing state; try again.",
            ),
            SandboxError::AgentGone => Self {
                retry_after: Some(1),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "sandbox_stopped",
                    "The sandbox stopped. Your files are kept; run again to start a new one.",
                )
            },
            SandboxError::AgentUnresponsive => Self {
                retry_after: Some(2),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "sandbox_unresponsive",
                    "The sandbox does not answer. Try again in a moment.",
                )
            },
            SandboxError::AgentVersion { .. } => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "agent_version",
                "The sandbox agent does not match this server's version; the administrator must rebuild it.",
            ),
            SandboxError::File(f) => f.into(),
            SandboxError::DiskFull => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                "The server has no room for a new workspace right now (its disk budget is used up); tell your teacher or the administrator.",
            ),
            SandboxError::Engine | SandboxError::Config(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "engine_error",
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
        Self::new(status, e.code(), message)
    }
}

impl From<crate::limits::Limited> for AppError {
    fn from(e: crate::limits::Limited) -> Self {
        use crate::limits::Attempt;
        let (code, message) = match e.what {
            Attempt::SignIn => (
                "too_many_attempts",
                "Too many wrong sign-ins: wait a little and try again.",
            ),
            Attempt::ClassCode => (
                "too_many_attempts",
                "Too many wrong class codes: wait a little and try again.",
            ),
            Attempt::RecoveryCode => (
                "too_many_attempts",
                "Too many wrong recovery codes: wait a little and try again.",
            ),
            Attempt::Check => (
                "too_many_checks",
                "You checked many times just now: wait a little and check again.",
            ),
            Attempt::CheckInFlight => (
                "check_in_progress",
                "Your last Check is still being graded: wait for its result.",
            ),
            Attempt::Socket => (
                "too_many_sockets",
                "This browser has too many tabs of replbox open: close some and reload.",
            ),
        };
        Self {
            retry_after: Some(e.retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }
}

impl From<crate::classroom::ClassroomError> for AppError {
    fn from(e: crate::classroom::ClassroomError) -> Self {
        match e {
            crate::classroom::ClassroomError::TeacherExists(_) => {
                AppError::new(StatusCode::CONFLICT, "already_exists", e.to_string())
            }
            crate::classroom::ClassroomError::BadLogin => {
                AppError::new(StatusCode::UNAUTHORIZED, "bad_login", e.to_string())
            }
            crate::classroom::ClassroomError::NoSuchClass => {
                AppError::new(StatusCode::NOT_FOUND, "no_such_class", e.to_string())
            }
            crate::classroom::ClassroomError::NameTaken(_) => {
                AppError::new(StatusCode::CONFLICT, "name_taken", e.to_string())
            }
            crate::classroom::ClassroomError::Invalid(_) => {
                AppError::bad_request("invalid", e.to_string())
            }
            crate::classroom::ClassroomError::BadRecoveryCode => {
                AppError::new(StatusCode::NOT_FOUND, "bad_recovery_code", e.to_string())
            }
            crate::classroom::ClassroomError::AlreadyJoined => {
                AppError::new(StatusCode::CONFLICT, "already_joined", e.to_string())
            }
            crate::classroom::ClassroomError::NoSuchStudent => AppError::not_found(e.to_string()),
            crate::classroom::ClassroomError::Busy => AppError {
                retry_after: Some(5),
                ..AppError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
            },
            crate::classroom::ClassroomError::Store(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error");
        Self::internal()
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        })
        .unwrap_or_default();
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
