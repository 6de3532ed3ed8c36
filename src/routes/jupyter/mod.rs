//! A Jupyter kernel gateway at `/jupyter`: the Jupyter Server kernel REST
//! API and channels socket, as Jupyter Kernel/Enterprise Gateway serve
//! them, so a stock `jupyter server --gateway-url=.../jupyter` (and
//! JupyterLab, VS Code, nbclient through it) runs its kernels in replbox
//! sandboxes. Kernels run in API sandboxes: the one named by the kernel's
//! `env.KERNEL_USERNAME`, else one per token. See docs/jupyter.md.

mod kernels;
mod wire;

pub use kernels::Gateway;

use super::extract::JsonBody;
use super::token_auth::tenant_of;
use super::AppState;
use crate::error::{AppError, ErrorCode};
use crate::services::tasks::Tenant;
use crate::services::ServiceError;
use crate::sessions::Session;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use kernels::Kernel;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tracing::{info_span, Instrument};

/// The binary framing of Jupyter Server's kernel websocket protocol v1.
const V1_PROTOCOL: &str = "v1.kernel.websocket.jupyter.org";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jupyter/api", get(version))
        .route("/jupyter/api/", get(version))
        .route("/jupyter/api/kernelspecs", get(kernelspecs))
        .route("/jupyter/api/kernelspecs/{name}", get(kernelspec))
        .route("/jupyter/kernelspecs/{name}/{*resource}", get(resource))
        .route("/jupyter/api/kernels", get(list).post(start))
        .route("/jupyter/api/kernels/{id}", get(model).delete(delete))
        .route("/jupyter/api/kernels/{id}/interrupt", post(interrupt))
        .route("/jupyter/api/kernels/{id}/restart", post(restart))
        .route("/jupyter/api/kernels/{id}/channels", get(channels))
        // Our JSON errors for a wrong method (with Allow) and an unknown
        // route, not the framework's empty answers.
        .method_not_allowed_fallback(super::api_rules::wrong_method)
        .route("/jupyter/{*rest}", axum::routing::any(no_route))
}

/// Any path under /jupyter/ that names no route of the gateway.
async fn no_route() -> AppError {
    AppError::not_found(
        "There is no such route in the Jupyter kernel gateway: see docs/jupyter.md.",
    )
}

/// An API token sent as Jupyter sends one (`Authorization: token <t>`) or
/// as a bearer token; the value is the token's fingerprint.
pub struct GatewayCaller(String);

impl FromRequestParts<AppState> for GatewayCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let unauthorized = || {
            AppError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "A valid API token is required: send `Authorization: token <token>` \
                 (Jupyter's `--GatewayClient.auth_token`) or `Authorization: Bearer <token>`.",
            )
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let token = given
            .strip_prefix("token ")
            .or_else(|| given.strip_prefix("Token "))
            .or_else(|| given.strip_prefix("Bearer "))
            .ok_or_else(unauthorized)?
            .trim()
            .to_string();
        // The API's own check, on the same token.
        let Tenant(fingerprint) = tenant_of(state, &token).ok_or_else(unauthorized)?;
        Ok(GatewayCaller(fingerprint))
    }
}

async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION"), "gateway": "replbox" }))
}

/// The token's own sandbox, for kernels started without KERNEL_USERNAME
/// (and for listing kernelspecs): taskId `jupyter-<fingerprint>`.
fn default_task_id(caller: &GatewayCaller) -> String {
    format!("jupyter-{}", &caller.0[..caller.0.len().min(16)])
}

/// The caller's sandbox `task_id`, created when absent.
async fn sandbox(
    state: &AppState,
    caller: &GatewayCaller,
    task_id: &str,
) -> Result<Arc<Session>, AppError> {
    let tenant = Tenant(caller.0.clone());
    state
        .services
        .find_or_create_task(&tenant, task_id)
        .await
        .map_err(|e| match e {
            ServiceError::BadTaskId => AppError::bad_request(
                ErrorCode::BadTaskId,
                format!(
                    "KERNEL_USERNAME {task_id:?} cannot name a sandbox: a taskId is 1 to 63 \
                     letters, digits, '-', '_' or '.', starting with a letter or digit."
                ),
            ),
            e => e.into(),
        })
}

fn spec_json(spec: &replbox_protocol::KernelSpecInfo) -> Value {
    json!({
        "name": spec.name,
        "spec": {
            "argv": [],
            "display_name": spec.display_name,
            "language": spec.language,
            "interrupt_mode": "signal",
            "env": {},
            "metadata": {},
        },
        "resources": {},
    })
}

/// `?user=`: Jupyter Server sends its KERNEL_USERNAME when listing specs.
#[derive(Debug, Default, Deserialize)]
struct SpecsQuery {
    user: Option<String>,
}

async fn specs_of(
    state: &AppState,
    caller: &GatewayCaller,
    user: Option<String>,
) -> Result<Vec<replbox_protocol::KernelSpecInfo>, AppError> {
    // Every kernel of a caller without an image of its own runs the
    // server's image, whose specs are asked once per caller.
    if let Some(specs) = state.jupyter.cached_specs(&caller.0, &None) {
        return Ok(specs);
    }
    let task_id = user
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| default_task_id(caller));
    let session = sandbox(state, caller, &task_id).await?;
    let specs = crate::services::kernels::specs(&session).await?;
    state
        .jupyter
        .cache_specs(&caller.0, session.image.clone(), specs.clone());
    Ok(specs)
}

async fn kernelspecs(
    State(state): State<AppState>,
    caller: GatewayCaller,
    Query(q): Query<SpecsQuery>,
) -> Result<Json<Value>, AppError> {
    let specs = specs_of(&state, &caller, q.user).await?;
    let default = specs
        .iter()
        .find(|s| s.name == "python3")
        .or(specs.first())
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let all: serde_json::Map<String, Value> = specs
        .iter()
        .map(|s| (s.name.clone(), spec_json(s)))
        .collect();
    Ok(Json(json!({ "default": default, "kernelspecs": all })))
}

async fn kernelspec(
    State(state): State<AppState>,
    caller: GatewayCaller,
    Path(name): Path<String>,
    Query(q): Query<SpecsQuery>,
) -> Result<Json<Value>, AppError> {
    let specs = specs_of(&state, &caller, q.user).await?;
    specs
        .iter()
        .find(|s| s.name == name)
        .map(|s| Json(spec_json(s)))
        .ok_or_else(|| AppError::not_found(format!("There is no kernelspec {name:?}.")))
}

async fn resource(
    _caller: GatewayCaller,
    Path((name, resource)): Path<(String, String)>,
) -> AppError {
    AppError::not_found(format!(
        "The kernelspec {name:?} has no resource {resource:?} here."
    ))
}

#[derive(Debug, Default, Deserialize)]
struct StartRequest {
    name: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, Value>,
}

/// KERNEL_WORKING_DIR relative to /workspace when it is inside it; `None`
/// for anything else (a path on the Jupyter Server's own machine).
fn working_dir(dir: &str) -> Option<String> {
    let rest = match dir.strip_prefix("/workspace") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        Some(_) => return None,
        None if dir.starts_with('/') => return None,
        None => dir,
    };
    replbox_protocol::path::normalize(rest).ok()
}

async fn start(
    State(state): State<AppState>,
    caller: GatewayCaller,
    JsonBody(req): JsonBody<StartRequest>,
) -> Result<Response, AppError> {
    let env_str = |k: &str| req.env.get(k).and_then(|v| v.as_str()).map(str::trim);
    let task_id = match env_str("KERNEL_USERNAME").filter(|u| !u.is_empty()) {
        Some(user) => user.to_string(),
        None => default_task_id(&caller),
    };
    let cwd = env_str("KERNEL_WORKING_DIR")
        .and_then(working_dir)
        .unwrap_or_default();
    let session = sandbox(&state, &caller, &task_id).await?;
    let name = match req.name.filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => "python3".to_string(),
    };
    let kernel = state.jupyter.start(&caller.0, session, &name, &cwd).await?;
    let location = format!("/jupyter/api/kernels/{}", kernel.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(kernel.model()),
    )
        .into_response())
}

async fn list(
    State(state): State<AppState>,
    caller: GatewayCaller,
) -> Json<Vec<kernels::KernelModel>> {
    Json(
        state
            .jupyter
            .list(&caller.0)
            .iter()
            .map(|k| k.model())
            .collect(),
    )
}

async fn model(
    State(state): State<AppState>,
    caller: GatewayCaller,
    Path(id): Path<String>,
) -> Result<Json<kernels::KernelModel>, AppError> {
    Ok(Json(state.jupyter.get(&caller.0, &id)?.model()))
}

async fn delete(
    State(state): State<AppState>,
    caller: GatewayCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let kernel = state.jupyter.get(&caller.0, &id)?;
    state.jupyter.delete(&kernel).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn interrupt(
    State(state): State<AppState>,
    caller: GatewayCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    state.jupyter.get(&caller.0, &id)?.interrupt().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restart(
    State(state): State<AppState>,
    caller: GatewayCaller,
    Path(id): Path<String>,
) -> Result<Json<kernels::KernelModel>, AppError> {
    let kernel = state.jupyter.get(&caller.0, &id)?;
    state.jupyter.restart(&kernel).await?;
    Ok(Json(kernel.model()))
}

async fn channels(
    State(state): State<AppState>,
    caller: GatewayCaller,
    Path(id): Path<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let kernel = state.jupyter.get(&caller.0, &id)?;
    let ws = ws.map_err(|_| {
        AppError::new(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::UpgradeRequired,
            "The channels endpoint speaks WebSocket only.",
        )
    })?;
    let ws = ws.protocols([V1_PROTOCOL]);
    let v1 = ws.selected_protocol().is_some();
    let shutdown = state.shutdown.clone();
    let tracker = state.sockets.clone();
    let span = info_span!("jupyter_socket", owner = %kernel.session.owner, kernel = %kernel.id);
    // A client's message at most what the agent takes in one frame.
    let cap = state.config.max_frame_bytes.max(64 * 1024);
    Ok(ws
        .max_message_size(cap)
        .max_frame_size(cap)
        .on_upgrade(move |socket| {
            tracker.track_future(
                async move {
                    let me = kernel.connect();
                    relay(socket, &kernel, me, v1, shutdown).await;
                    kernel.disconnect(me);
                }
                .instrument(span),
            )
        }))
}

/// How long a socket may take to accept one message before it is closed.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Moves messages between one client socket and its kernel.
async fn relay(
    socket: WebSocket,
    kernel: &Arc<Kernel>,
    me: u64,
    v1: bool,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let (mut sink, mut stream) = socket.split();
    let mut from_kernel = kernel.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code: 1001, reason: "the server is shutting down".into() }))).await;
                break;
            }
            m = stream.next() => {
                let (channel, message) = match m {
                    Some(Ok(Message::Text(t))) => match wire::parse_text(t.as_str()) {
                        Ok(p) => p,
                        Err(e) => { tracing::debug!(error = %e, "a bad message from a client"); continue }
                    },
                    Some(Ok(Message::Binary(b))) => match wire::parse_binary(&b, v1) {
                        Ok(p) => p,
                        Err(e) => { tracing::debug!(error = %e, "a bad message from a client"); continue }
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                if let Err(e) = kernel.send(me, &channel, &message).await {
                    tracing::debug!(code = %e.code, "a client message was not sent");
                    if e.status != StatusCode::BAD_REQUEST {
                        break;
                    }
                }
            }
            out = from_kernel.recv() => {
                let out = match out {
                    Ok(out) => out,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a slow Jupyter client missed kernel messages");
                        continue;
                    }
                    Err(RecvError::Closed) => break,
                };
                if !kernel.is_for(me, &out) {
                    continue;
                }
                let frame = if v1 {
                    Message::Binary(wire::to_v1(&out).into())
                } else {
                    Message::Text(out.message.to_string().into())
                };
                match tokio::time::timeout(SEND_TIMEOUT, sink.send(frame)).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::working_dir;

    #[test]
    fn working_dirs_inside_the_workspace_only() {
        assert_eq!(working_dir("/workspace").as_deref(), Some(""));
        assert_eq!(working_dir("/workspace/").as_deref(), Some(""));
        assert_eq!(working_dir("/workspace/a/b").as_deref(), Some("a/b"));
        assert_eq!(working_dir("a/./b").as_deref(), Some("a/b"));
        assert_eq!(working_dir("/workspaces/x"), None);
        assert_eq!(working_dir("/home/me/notebooks"), None);
        assert_eq!(working_dir("/workspace/../etc"), None);
        assert_eq!(working_dir("../x"), None);
    }
}
