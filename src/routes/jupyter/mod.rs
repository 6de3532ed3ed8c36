//! A Jupyter kernel gateway at `/jupyter`: the Jupyter Server kernel REST
//! API and channels socket, as Jupyter Kernel/Enterprise Gateway serve
//! them, so a stock `jupyter server --gateway-url=.../jupyter` (and
//! JupyterLab, VS Code, nbclient through it) runs its kernels in replbox
//! sandboxes. Kernels run in API sandboxes: the one named by the kernel's
//! `env.KERNEL_USERNAME`, else one per token. See docs/jupyter.md.

mod gateway;
mod kernel;
mod messages;
mod monitor;
mod socket;
mod sockets;
mod specs;
mod wire;

pub use gateway::Gateway;

use super::extract::JsonBody;
use super::token_auth::tenant_of;
use super::AppState;
use crate::error::{echo, AppError, ErrorCode};
use crate::services::tasks::Tenant;
use crate::services::ServiceError;
use crate::sessions::Session;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jupyter/api", get(version))
        .route("/jupyter/api/", get(version))
        .route("/jupyter/api/kernelspecs", get(specs::kernelspecs))
        .route("/jupyter/api/kernelspecs/{name}", get(specs::kernelspec))
        .route(
            "/jupyter/kernelspecs/{name}/{*resource}",
            get(specs::resource),
        )
        .route("/jupyter/api/kernels", get(list).post(start))
        .route("/jupyter/api/kernels/{id}", get(model).delete(delete))
        .route("/jupyter/api/kernels/{id}/interrupt", post(interrupt))
        .route("/jupyter/api/kernels/{id}/restart", post(restart))
        .route("/jupyter/api/kernels/{id}/channels", get(socket::channels))
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
                    "KERNEL_USERNAME {} cannot name a sandbox: a taskId is 1 to 63 \
                     letters, digits, '-', '_' or '.', starting with a letter or digit.",
                    echo(task_id)
                ),
            ),
            e => e.into(),
        })
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
) -> Json<Vec<kernel::KernelModel>> {
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
) -> Result<Json<kernel::KernelModel>, AppError> {
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
) -> Result<Json<kernel::KernelModel>, AppError> {
    let kernel = state.jupyter.get(&caller.0, &id)?;
    state.jupyter.restart(&kernel).await?;
    Ok(Json(kernel.model()))
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
