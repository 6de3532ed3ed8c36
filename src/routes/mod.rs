//! HTTP routes: each module exposes `router()`; this one assembles them with
//! the shared state and the layers (cookie sessions, tracing).

pub mod api;
mod api_rules;
pub mod assets;
mod browser_session;
pub mod classroom;
mod classroom_pages;
pub mod client_addr;
pub mod cross_site;
pub mod extract;
pub mod forward;
pub mod frames;
pub mod health;
pub mod jupyter;
pub mod mcp;
pub mod outbox;
mod pages;
pub mod token_auth;
pub mod ws;

use crate::config::Config;
use crate::db::CookieStore;
use crate::metrics::Metrics;
use crate::services::Services;
use axum::Router;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// What the routes ask of replbox: sessions, runs, files, classes.
    pub services: Services,
    pub metrics: Metrics,
    /// Fires on shutdown: sockets close with 1001.
    pub shutdown: CancellationToken,
    /// New browser sessions per client address.
    pub new_sessions: Arc<NewSessionLimiter>,
    /// Open sockets and background starts, so shutdown can wait for them
    /// (hyper forgets upgraded connections).
    pub sockets: tokio_util::task::TaskTracker,
    /// The secret in API token fingerprints.
    pub token_key: Arc<[u8; 32]>,
    /// The engine's last answer to `/healthz`, shared for a moment.
    pub health: Arc<health::Cached>,
    /// The kernels started through the Jupyter gateway (`/jupyter`).
    pub jupyter: Arc<jupyter::Gateway>,
}

pub type NewSessionLimiter = governor::DefaultKeyedRateLimiter<std::net::IpAddr>;

/// A limiter of `per_minute` new sessions per address (bursts allowed).
pub fn new_session_limiter(per_minute: u32) -> Arc<NewSessionLimiter> {
    let n = std::num::NonZeroU32::new(per_minute.max(1)).expect("non-zero");
    Arc::new(governor::RateLimiter::keyed(governor::Quota::per_minute(n)))
}

pub fn router(state: AppState, session_store: CookieStore) -> Router {
    let sessions = SessionManagerLayer::new(session_store)
        .with_name("replbox_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.secure_cookies)
        .with_expiry(Expiry::OnInactivity(time::Duration::days(30)));
    let browser = Router::new()
        .merge(pages::router())
        .merge(ws::router())
        .merge(classroom::router())
        .merge(classroom_pages::router())
        // Innermost: after the cookie session is loaded and the request
        // passed the cross-site guard.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            forward::browser,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cross_site::guard,
        ))
        .layer(sessions);
    Router::new()
        .merge(browser)
        .merge(api::router().layer(axum::middleware::from_fn_with_state(
            state.clone(),
            forward::api,
        )))
        .merge(mcp::router(state.clone()))
        .merge(jupyter::router())
        .merge(health::router())
        .merge(assets::router().layer(tower_http::compression::CompressionLayer::new()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}
