//! The pages a browser opens. Visiting one gives the browser its session.

use super::{browser_session, AppState};
use crate::error::AppError;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index))
}

async fn index(session: tower_sessions::Session) -> Result<impl IntoResponse, AppError> {
    browser_session::owner(&session).await?;
    Ok(Html(include_str!("../../templates/index.html")))
}
