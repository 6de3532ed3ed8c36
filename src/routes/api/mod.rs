//! The REST API for programs (an LLM's `run_code` tool, an autograder):
//! bearer-token auth, sandboxes by taskId, exec, files, a socket, and a
//! stateless one-shot run. Described by `/api/v1/openapi.json`.

use super::api_rules::{self, ApiQuery};
use super::extract::{JsonBody, RawBody, API_BODY_LIMIT};
use super::frames::{entries, rfc3339};
use super::ws::{self, SocketParams};
use super::AppState;

mod auth;
mod files;

use crate::error::{AppError, ErrorCode};
use crate::sandbox::Collected;
use crate::services::files as file_service;
use crate::services::runs::{self, RunRequest};
use crate::sessions::{NewSession, OwnerKind, Session, Status};
pub use auth::{load_token_key, token_fingerprint, ApiCaller};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{FromRequestParts, Path, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub(crate) use files::file;
use files::{delete_file, list_root, read_file, write_file};
use replbox_protocol::{FileOp, FileReply};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

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

fn valid_task_id(id: &str) -> Result<(), AppError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(
            ErrorCode::BadTaskId,
            "A taskId is 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit.",
        ))
    }
}

fn owner_of(task_id: &str) -> String {
    format!("t-{task_id}")
}

/// The caller's sandbox; another token's (or a browser's) is "not found".
pub(crate) fn find(
    state: &AppState,
    caller: &ApiCaller,
    task_id: &str,
) -> Result<Arc<Session>, AppError> {
    valid_task_id(task_id)?;
    state
        .services
        .registry
        .get(&owner_of(task_id))
        .filter(|s| s.kind == OwnerKind::Api && s.token_hash.as_deref() == Some(caller.0.as_str()))
        .ok_or_else(|| AppError::not_found(format!("There is no sandbox {task_id:?}.")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateRequest {
    pub task_id: Option<String>,
    pub image_id: Option<String>,
    pub ttl_seconds: Option<u64>,
    pub env_vars: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SandboxInfo {
    pub task_id: String,
    status: Status,
    expires_at: String,
    created_at: String,
    ttl_seconds: u64,
}

fn info(task_id: &str, s: &Session) -> SandboxInfo {
    SandboxInfo {
        task_id: task_id.to_string(),
        status: s.status(),
        expires_at: rfc3339(s.expires_at()),
        created_at: rfc3339(s.created_at()),
        ttl_seconds: s.idle_ttl_secs,
    }
}

async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<Response, AppError> {
    let info = create_sandbox(&state, caller, req).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// Creates the caller's sandbox `taskId` (its container starts in the
/// background).
pub(crate) async fn create_sandbox(
    state: &AppState,
    caller: ApiCaller,
    req: CreateRequest,
) -> Result<SandboxInfo, AppError> {
    let task_id = req
        .task_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    valid_task_id(&task_id)?;
    let ttl = req.ttl_seconds.unwrap_or(3600);
    if !(60..=86400).contains(&ttl) {
        return Err(AppError::bad_request(
            ErrorCode::BadTtl,
            "ttlSeconds must be between 60 and 86400.",
        ));
    }
    let image = match req.image_id {
        None => None,
        Some(image) if image == state.config.sandbox.image => None,
        Some(image) if state.config.sandbox.allowed_images.contains(&image) => Some(image),
        Some(image) => {
            return Err(AppError::bad_request(
                ErrorCode::ImageNotAllowed,
                format!("The image {image:?} is not offered by this server."),
            ))
        }
    };
    let env = req.env_vars.unwrap_or_default();
    // The engine would take the sandbox but never start it.
    if env
        .iter()
        .any(|(k, v)| k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0'))
    {
        return Err(AppError::bad_request(
            ErrorCode::BadEnv,
            "Environment variable names may not be empty or hold '=' or NUL, nor values NUL.",
        ));
    }
    let session = state
        .services
        .registry
        .create(
            &owner_of(&task_id),
            OwnerKind::Api,
            NewSession {
                token_hash: Some(caller.0),
                idle_ttl_secs: Some(ttl),
                image,
                env: env.into_iter().collect(),
            },
        )
        .await?;
    // The container starts in the background; `GET ?wait=` waits for it.
    let s = session.clone();
    let shutdown = state.shutdown.clone();
    state.sockets.spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            r = s.ensure() => if let Err(e) = r {
                tracing::warn!(owner = %s.owner, error = %e, "sandbox did not start");
            }
        }
    });
    Ok(info(&task_id, &session))
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
    let session = find(&state, &caller, &task_id)?;
    state.services.registry.remove(&session.owner).await?;
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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecResult {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
    pub timed_out: bool,
    pub truncated: bool,
    pub reason: String,
}

pub(crate) fn exec_result(c: Collected) -> Result<ExecResult, AppError> {
    // A program that could not start (no such command, a cwd that is not a
    // directory) is answered as a shell would: exit 127, the reason on
    // stderr. The request itself was fine.
    if let Some(message) = c.spawn_error {
        return Ok(ExecResult {
            exit_code: Some(127),
            signal: None,
            stdout: String::new(),
            stderr: format!("{message}\n"),
            duration_ms: 0,
            timed_out: false,
            truncated: false,
            reason: "not started".into(),
        });
    }
    let exit = c.exit.ok_or_else(AppError::internal)?;
    Ok(ExecResult {
        exit_code: exit.code.or(exit.signal.map(|s| 128 + s)),
        signal: exit.signal,
        stdout: String::from_utf8_lossy(&c.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&c.stderr).into_owned(),
        duration_ms: exit.wall_ms,
        timed_out: exit.timed_out,
        truncated: exit.truncated,
        reason: runs::exit_reason(&exit),
    })
}

async fn exec(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(task_id): Path<String>,
    JsonBody(req): JsonBody<ExecRequest>,
) -> Result<Json<ExecResult>, AppError> {
    let session = find(&state, &caller, &task_id)?;
    let run = RunRequest {
        command: req.command,
        argv: req.argv,
        cwd: req.cwd,
        env: req.env,
        timeout_ms: api_rules::timeout_ms(req.timeout_ms)?,
        ..Default::default()
    };
    let plan = runs::plan(&run, &state.services.languages, &state.config)?;
    Ok(Json(exec_result(
        runs::run_to_end(&session, plan.spec, req.stdin).await?,
    )?))
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OneShotRequest {
    pub language: String,
    pub code: Option<String>,
    pub files: Option<BTreeMap<String, String>>,
    pub entry: Option<String>,
    pub stdin: Option<String>,
    pub timeout_ms: Option<u64>,
}

/// A throwaway sandbox created, run and removed around one program.
async fn run_once(
    State(state): State<AppState>,
    caller: ApiCaller,
    JsonBody(req): JsonBody<OneShotRequest>,
) -> Result<Json<ExecResult>, AppError> {
    Ok(Json(run_one_shot(&state, caller, req).await?))
}

/// Runs one program in a throwaway sandbox, removed after it.
pub(crate) async fn run_one_shot(
    state: &AppState,
    caller: ApiCaller,
    req: OneShotRequest,
) -> Result<ExecResult, AppError> {
    let run = RunRequest {
        language: Some(req.language),
        code: req.code,
        files: req.files,
        entry: req.entry,
        timeout_ms: api_rules::timeout_ms(req.timeout_ms)?,
        ..Default::default()
    };
    let plan = runs::plan(&run, &state.services.languages, &state.config)?;
    let owner = format!("r-{}", uuid::Uuid::new_v4().simple());
    let session = state
        .services
        .registry
        .create(
            &owner,
            OwnerKind::OneShot,
            NewSession {
                token_hash: Some(caller.0),
                ..Default::default()
            },
        )
        .await?;
    // In its own task, so a client that hangs up still gets it cleaned up.
    // The sandbox is a warm container from the pool when one is ready (a
    // fresh one otherwise), for this run only: its owner is a name no one
    // else is told, and once the run ends the session leaves the registry
    // and its container and volume are removed, right after the answer
    // (the pool refills on its own). The removal is tracked with the
    // sockets, so a stopping server waits for it.
    let registry = state.services.registry.clone();
    let removals = state.sockets.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let result = async {
            let handle = session.ensure().await?;
            runs::write_files(&handle, plan.files).await?;
            exec_result(runs::run_to_end(&session, plan.spec, req.stdin).await?)
        }
        .await;
        let _ = tx.send(result);
        removals.spawn(async move {
            if let Err(e) = registry.remove(&owner).await {
                tracing::warn!(%owner, error = %e, "a one-shot sandbox was not removed");
            }
        });
    });
    rx.await.map_err(|_| AppError::internal())?
}
