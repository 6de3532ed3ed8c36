//! The browser's cookie session names its owner key; the key names its
//! sandbox. Every tab of a browser shares both.
//!
//! "Session" alone means `sessions::Session` (an owner's sandbox over
//! time); the cookie's is a [`BrowserSession`].

use super::AppState;
use crate::error::{AppError, ErrorCode};
use crate::sessions::{NewSession, OwnerKind, Session};
use axum::http::StatusCode;
use std::sync::Arc;

/// The browser's cookie session (tower-sessions).
pub type BrowserSession = tower_sessions::Session;

const OWNER_KEY: &str = "owner";
/// The signed-in teacher's id, when a teacher signed in on this browser.
const TEACHER_KEY: &str = "teacher";

fn session_error(e: tower_sessions::session::Error) -> AppError {
    tracing::error!(error = %e, "session store");
    AppError::internal()
}

/// The owner key of this browser, made on its first visit (at most
/// `REPLBOX_NEW_SESSIONS_PER_MINUTE` new ones per client address).
pub async fn owner(
    state: &AppState,
    session: &BrowserSession,
    client: std::net::IpAddr,
) -> Result<String, AppError> {
    if let Some(owner) = session
        .get::<String>(OWNER_KEY)
        .await
        .map_err(session_error)?
    {
        return Ok(owner);
    }
    if state
        .new_sessions
        .check_key(&super::client_addr::limit_key(client))
        .is_err()
    {
        return Err(AppError {
            retry_after: Some(60),
            ..AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManySessions,
                "Too many new sessions from your address: wait a minute and reload.",
            )
        });
    }
    let owner = format!("b-{}", uuid::Uuid::new_v4().simple());
    session
        .insert(OWNER_KEY, owner.clone())
        .await
        .map_err(session_error)?;
    Ok(owner)
}

/// The owner key this browser has, if any (nothing is made or written).
pub async fn known_owner(session: &BrowserSession) -> Option<String> {
    session.get::<String>(OWNER_KEY).await.ok().flatten()
}

/// The owner key of a browser that has visited the page before.
pub async fn existing_owner(session: &BrowserSession) -> Result<String, AppError> {
    session
        .get::<String>(OWNER_KEY)
        .await
        .map_err(session_error)?
        .ok_or_else(|| {
            AppError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::NoSession,
                "Open the page first: this socket needs the session cookie it sets.",
            )
        })
}

/// This browser takes another owner key (a student's, by recovery code),
/// with a new session id.
pub async fn become_owner(session: &BrowserSession, owner: &str) -> Result<(), AppError> {
    session.cycle_id().await.map_err(session_error)?;
    session
        .insert(OWNER_KEY, owner.to_string())
        .await
        .map_err(session_error)
}

/// This browser becomes the student a recovery code names (within the
/// limit on wrong codes per client address).
pub async fn recover_student(
    state: &AppState,
    client: std::net::IpAddr,
    session: &BrowserSession,
    code: &str,
) -> Result<crate::classroom::Student, AppError> {
    let owner = existing_owner(session).await?;
    let student = state
        .services
        .recover_limited(&super::client_addr::guess_key(client), code, &owner)
        .await?;
    become_owner(session, &student.owner).await?;
    Ok(student)
}

/// A recovery code to show once, on the next list page.
const RECOVERY_KEY: &str = "recovery_code";

pub async fn show_recovery_code_once(
    session: &BrowserSession,
    code: String,
) -> Result<(), AppError> {
    session
        .insert(RECOVERY_KEY, code)
        .await
        .map_err(session_error)
}

/// The recovery code to show now, forgotten as it is read.
pub async fn take_recovery_code(session: &BrowserSession) -> Result<Option<String>, AppError> {
    session
        .remove::<String>(RECOVERY_KEY)
        .await
        .map_err(session_error)
}

/// The browser's sandbox session (created without a container when new).
pub async fn sandbox(state: &AppState, owner: &str) -> Result<Arc<Session>, AppError> {
    Ok(state
        .services
        .registry
        .get_or_create(owner, OwnerKind::Browser, NewSession::default())
        .await?)
}

/// The teacher signed in on this browser, if any.
pub async fn teacher_id(session: &BrowserSession) -> Result<Option<String>, AppError> {
    session
        .get::<String>(TEACHER_KEY)
        .await
        .map_err(session_error)
}

/// Signs a teacher in, with a new session id (privileges change).
pub async fn sign_in_teacher(session: &BrowserSession, id: String) -> Result<(), AppError> {
    session.cycle_id().await.map_err(session_error)?;
    session.insert(TEACHER_KEY, id).await.map_err(session_error)
}

pub async fn sign_out_teacher(session: &BrowserSession) -> Result<(), AppError> {
    session
        .remove::<String>(TEACHER_KEY)
        .await
        .map(|_| ())
        .map_err(session_error)
}
