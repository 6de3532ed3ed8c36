//! `/healthz` (does the engine answer?) and `/metrics` (Prometheus text).

use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::time::{Duration, Instant};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// How long one answer of the engine serves every `/healthz`.
const FRESH: Duration = Duration::from_secs(1);

/// The engine's last answer, and when it came: `/healthz` asks the engine
/// at most once per `FRESH` whatever the request rate (the lock makes
/// concurrent requests wait for the one ping in flight).
#[derive(Default)]
pub struct Cached(tokio::sync::Mutex<Option<(Instant, Result<(), &'static str>)>>);

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let verdict = {
        let mut last = state.health.0.lock().await;
        match *last {
            Some((at, v)) if at.elapsed() < FRESH => v,
            _ => {
                let ping = tokio::time::timeout(
                    Duration::from_secs(2),
                    state.services.registry.sandboxes().ping(),
                )
                .await;
                let v = match ping {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err("the container engine is not reachable"),
                    Err(_) => Err("the container engine does not answer in time"),
                };
                *last = Some((Instant::now(), v));
                v
            }
        }
    };
    match verdict {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": reason})),
        ),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
