//! The pages of classes: a student's list of exercises (and the form to
//! join), an exercise's page (the IDE with the prompt and Check), and the
//! teacher's sign-in, classes, dashboard and read-only view of a check.
//! Forms post urlencoded; SameSite=Lax cookies keep other sites' forms out.
//!
//! `student.rs`: the list, joining, recovery, an exercise's page;
//! `teacher.rs`: sign-in, the classes and the forms that change them;
//! `reports.rs`: the dashboard and a check.

mod reports;
mod student;
mod teacher;

use super::browser_session::BrowserSession;
use super::{assets, browser_session, AppState};
use crate::error::{AppError, ErrorCode};
use axum::response::{Redirect, Response};
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(student::router())
        .merge(teacher::router())
        .merge(reports::router())
}

fn css() -> String {
    format!("/assets/ide.css?v={}", assets::version("ide.css"))
}

/// A page that says what went wrong, with the error's status (and its
/// Retry-After).
fn failed(mut page: Response, e: &AppError) -> Response {
    *page.status_mut() = e.status;
    if let Some(secs) = e.retry_after {
        page.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs.into());
    }
    page
}

/// A form posted without the cookie this page sets (from another site, or
/// a browser that lost it): refused, never answered with a new session
/// that would replace the student's.
fn no_cookie() -> AppError {
    AppError::new(
        axum::http::StatusCode::FORBIDDEN,
        ErrorCode::NoSession,
        "Your browser did not send its session: reload the page and try again.",
    )
}

/// The signed-in teacher's class, or what to answer instead.
async fn own_class(
    state: &AppState,
    session: &BrowserSession,
    class: &str,
) -> Result<Result<crate::classroom::Class, Response>, AppError> {
    let Some(t) = browser_session::teacher_id(session).await? else {
        return Ok(Err(axum::response::IntoResponse::into_response(
            Redirect::to("/teacher/sign-in"),
        )));
    };
    Ok(state.services.class_of(&t, class).await.map(Ok)?)
}
