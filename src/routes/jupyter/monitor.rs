//! A kernel's start (until its first answer) and its monitor: the task that
//! reads the sandbox's events for it.

use super::gateway::Gateway;
use super::kernel::Kernel;
use super::messages::to_wire;
use crate::error::{echo, AppError, ErrorCode};
use crate::sessions::{JobRecord, Session, SessionEvent};
use axum::http::StatusCode;
use replbox_protocol::{JobId, KernelRequest};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How long a kernel may take to answer its first kernel_info.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a busy kernel counts as activity of its sandbox.
const BUSY_TOUCH: Duration = Duration::from_secs(5);

/// Starts a kernel job and waits for its first answer.
pub(super) async fn start_job(
    session: &Arc<Session>,
    name: &str,
    cwd: &str,
) -> Result<Arc<JobRecord>, AppError> {
    let mut events = session.hub.subscribe();
    let job = crate::services::kernels::start_in(session, name, cwd).await?;
    let ready = async {
        loop {
            match events.recv().await {
                Ok(SessionEvent::KernelReady { job: j, .. }) if j == job.id => return Ok(()),
                Ok(SessionEvent::Failed { job: j, message }) if j == job.id => {
                    return Err(AppError::bad_request(ErrorCode::SpawnFailed, message))
                }
                Ok(SessionEvent::Exit { job: j, .. }) if j == job.id => {
                    return Err(AppError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        ErrorCode::SpawnFailed,
                        format!("The kernel {} exited as it started.", echo(name)),
                    ))
                }
                Ok(SessionEvent::Expired) => {
                    return Err(AppError::not_found("The sandbox expired."))
                }
                Ok(SessionEvent::Moved) => return Err(AppError::sandbox_moving(0)),
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    // Missed events: the record says whether it still runs.
                    if !job.is_running() {
                        return Err(AppError::bad_request(
                            ErrorCode::SpawnFailed,
                            format!("The kernel {} did not start.", echo(name)),
                        ));
                    }
                }
                Err(RecvError::Closed) => return Err(AppError::not_found("The sandbox is gone.")),
            }
        }
    };
    match tokio::time::timeout(READY_TIMEOUT, ready).await {
        Ok(Ok(())) => Ok(job),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            let _ = job.control.kernel(KernelRequest::Shutdown).await;
            Err(AppError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::SandboxUnresponsive,
                format!(
                    "The kernel {} did not answer within {READY_TIMEOUT:?}.",
                    echo(name)
                ),
            ))
        }
    }
}

/// Reads the sandbox's events for one kernel until it is deleted.
pub(super) async fn monitor(gateway: std::sync::Weak<Gateway>, kernel: std::sync::Weak<Kernel>) {
    let Some(k) = kernel.upgrade() else { return };
    let mut events = k.session.hub.subscribe();
    drop(k);
    let mut every = tokio::time::interval(BUSY_TOUCH);
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = every.tick() => {
                let Some(k) = kernel.upgrade() else { return };
                // A kernel whose process or sandbox is gone (an `Expired`
                // this monitor missed while lagging included) leaves the
                // list, and touches nothing.
                if !k.alive() {
                    if let Some(g) = gateway.upgrade() {
                        let id = k.id.clone();
                        drop(k);
                        tokio::spawn(async move { g.forget(&id) });
                    }
                    return;
                }
                let busy = k.live.lock().unwrap().execution_state == "busy";
                if busy {
                    k.session.touch().await;
                }
                continue;
            }
        };
        let Some(k) = kernel.upgrade() else { return };
        let current: JobId = k.job().id;
        match ev {
            Ok(SessionEvent::KernelMessage {
                job,
                channel,
                message,
            }) if job == current => {
                let Some(out) = to_wire(&channel, &message) else {
                    continue;
                };
                if let Some(state) = &out.execution_state {
                    {
                        let mut live = k.live.lock().unwrap();
                        live.execution_state = state.clone();
                        live.last_activity = chrono::Utc::now();
                    }
                    if state == "busy" {
                        k.session.touch().await;
                    }
                }
                k.fan_out(&out);
            }
            Ok(SessionEvent::Exit { job, .. } | SessionEvent::Failed { job, .. })
                if job == current =>
            {
                k.live.lock().unwrap().execution_state = "dead".into();
            }
            Ok(SessionEvent::Expired | SessionEvent::Moved) | Err(RecvError::Closed) => {
                if let Some(g) = gateway.upgrade() {
                    let id = k.id.clone();
                    drop(k);
                    // Forgetting aborts this task: do it from another.
                    tokio::spawn(async move { g.forget(&id) });
                }
                return;
            }
            _ => {}
        }
    }
}
