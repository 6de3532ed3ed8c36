//! The REST API for programs (an LLM's `run_code` tool, an autograder):
//! bearer-token auth, sandboxes by taskId, exec, files, a socket, and a
//! stateless one-shot run. Described by `/api/v1/openapi.json`.

use super::api_rules::{self, ApiQuery};
use super::extract::{JsonBody, RawBody, API_BODY_LIMIT};
use super::frames::entries;
use super::token_auth::ApiCaller;
use super::ws::{self, SocketParams};
use super::AppState;

mod files;

use crate::error::AppError;
use crate::services::files as file_service;
use crate::services::runs::RunRequest;
use crate::services::tasks::{info, CreateRequest, ExecResult, OneShotRequest, SandboxInfo};
use crate::sessions::Session;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use files::{delete_file, list_root, read_file, write_file};
use replbox_protocol::{FileOp, FileReply};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(api_rules::openapi))
        .route("/api/v1/run", post(run_once))
        .route("/api/v1/sandboxes", post(create))
        .route("/api/v1/sandboxes/{task_id}", get(status).delete(remove))
        .route("/api/v1/sandboxes/{task_id}/exec", post(exec))
        .route("/api/v1/sandboxes/{task_id}/files", get(list_root))
        .route(
            "/api/v1/sandboxes/{task_id}/files/{*path}",
            get(read_file)
                .put(write_file)
                .delete(delete_file)
                // RawBody enforces its own limit, draining what is past it.
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/v1/sandboxes/{task_id}/ws", get(socket))
        // Our JSON errors for a wrong method (with Allow) and for an
        // unknown route, not the framework's empty answers.
        .method_not_allowed_fallback(api_rules::wrong_method)
        .route("/api/{*rest}", axum::routing::any(api_rules::no_route))
        .layer(axum::extract::DefaultBodyLimit::max(API_BODY_LIMIT))
}

/// The caller's sandbox `task_id`; another token's is "not found".
fn find(state: &AppState, caller: &ApiCaller, task_id: &str) -> Result<Arc<Session>, AppError> {
    Ok(state.services.find_task(&caller.0, task_id)?)
}

async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<Response, AppError> {
    let info = state.services.create_task(&caller.0, req).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait: Option<f64>,
}

async fn status(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(task_id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> Result<Json<SandboxInfo>, AppError> {
    let wait = api_rules::wait_secs(q.wait)?;
    let session = find(&state, &caller, &task_id)?;
    if let Some(wait) = wait.filter(|w| *w > 0.0) {
        session
            .wait_ready(Duration::from_secs_f64(wait.min(120.0)))
            .await;
    }
    Ok(Json(info(&task_id, &session)))
}

async fn remove(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(task_id): Path<String>,
) -> Result<StatusCode, AppError> {
    state.services.remove_task(&caller.0, &task_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExecRequest {
    command: Option<String>,
    argv: Option<Vec<String>>,
    stdin: Option<String>,
    cwd: Option<String>,
    env: Option<BTreeMap<String, String>>,
    timeout_ms: Option<u64>,
}

async fn exec(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(task_id): Path<String>,
    JsonBody(req): JsonBody<ExecRequest>,
) -> Result<Json<ExecResult>, AppError> {
    let run = RunRequest {
        command: req.command,
        argv: req.argv,
        cwd: req.cwd,
        env: req.env,
        timeout_ms: req.timeout_ms,
        ..Default::default()
    };
    Ok(Json(
        state
            .services
            .exec_task(&caller.0, &task_id, run, req.stdin)
            .await?,
    ))
}

async fn socket(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(task_id): Path<String>,
    ApiQuery(params): ApiQuery<SocketParams>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let session = find(&state, &caller, &task_id)?;
    let ws = ws.map_err(ws::upgrade_required)?;
    Ok(ws::upgrade(state, session, params, ws, None))
}

/// A throwaway sandbox created, run and removed around one program.
async fn run_once(
    State(state): State<AppState>,
    caller: ApiCaller,
    JsonBody(req): JsonBody<OneShotRequest>,
) -> Result<Json<ExecResult>, AppError> {
    Ok(Json(state.services.run_one_shot(&caller.0, req).await?))
}
