//! Kernelspecs: the sandbox image's, asked of an agent once per caller and
//! image, in Jupyter's shape.

use super::{default_task_id, sandbox, GatewayCaller};
use crate::error::{echo, AppError};
use crate::routes::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

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
pub(super) struct SpecsQuery {
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

pub(super) async fn kernelspecs(
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

pub(super) async fn kernelspec(
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
        .ok_or_else(|| AppError::not_found(format!("There is no kernelspec {}.", echo(&name))))
}

pub(super) async fn resource(
    _caller: GatewayCaller,
    Path((name, resource)): Path<(String, String)>,
) -> AppError {
    AppError::not_found(format!(
        "The kernelspec {} has no resource {} here.",
        echo(&name),
        echo(&resource)
    ))
}
