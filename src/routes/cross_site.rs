//! Requests from other sites. A cookie rides along with a form another
//! site posts (SameSite=Lax stops that only for some requests, and a
//! sibling subdomain is "same site"), so every state-changing request of
//! the browser routes must come from a page of this server: the browser's
//! `Sec-Fetch-Site` says so, or (older browsers) its `Origin` names this
//! server or one of `REPLBOX_ALLOWED_ORIGINS`. A request with neither
//! header is not a browser's and has no cookie to abuse unless its sender
//! holds it already. The page's socket applies the same `Origin` rule.

use super::AppState;
use crate::error::{AppError, ErrorCode};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Whether the `Origin` header, when there is one, names this server (by
/// its Host) or an allowed origin.
pub fn origin_allowed(config: &crate::config::Config, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"))
        || config
            .allowed_origins
            .iter()
            .any(|o| !o.is_empty() && o == origin)
}

/// Whether a state-changing request comes from this server's own pages.
pub fn same_origin(config: &crate::config::Config, headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        // Typed into the address bar, or a page of ours.
        Some("same-origin") | Some("none") => true,
        // Another page: only an allowed origin.
        Some(_) => headers.contains_key(header::ORIGIN) && origin_allowed(config, headers),
        None => origin_allowed(config, headers),
    }
}

pub fn refused() -> AppError {
    AppError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::CrossSite,
        "This request came from another site; replbox only accepts it from its own pages.",
    )
}

/// Refuses state-changing requests from other origins.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let safe = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if !safe && !same_origin(&state.config, req.headers()) {
        return refused().into_response();
    }
    next.run(req).await
}
