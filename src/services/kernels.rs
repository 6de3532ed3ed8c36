//! Jupyter kernels of an owner's sandbox: start one, list the image's
//! kernelspecs, send a running kernel a request.

use super::ServiceError;
use crate::sessions::{JobKind, JobRecord, Session};
use replbox_protocol::{JobId, KernelRequest, KernelSpecInfo};
use std::sync::Arc;

/// Starts a kernel (a kernelspec's name) as a job of the session.
pub async fn start(
    sandbox: &Arc<Session>,
    name: &str,
    reference: Option<serde_json::Value>,
) -> Result<Arc<JobRecord>, ServiceError> {
    Ok(sandbox.start_kernel(name, reference).await?)
}

/// Starts a kernel working in `cwd` (relative to /workspace): the Jupyter
/// gateway's kernels.
pub async fn start_in(
    sandbox: &Arc<Session>,
    name: &str,
    cwd: &str,
) -> Result<Arc<JobRecord>, ServiceError> {
    Ok(sandbox.start_kernel_in(name, cwd, None).await?)
}

/// The kernels the sandbox's image offers.
pub async fn specs(sandbox: &Arc<Session>) -> Result<Vec<KernelSpecInfo>, ServiceError> {
    Ok(sandbox.ensure().await?.kernel_specs().await?)
}

/// Sends a request to a running kernel; an execute counts as activity.
pub async fn request(
    sandbox: &Arc<Session>,
    kernel: JobId,
    request: KernelRequest,
) -> Result<(), ServiceError> {
    let Some(job) = sandbox
        .job(kernel)
        .filter(|j| j.kind == JobKind::Kernel && j.is_running())
    else {
        return Err(ServiceError::UnknownKernel(kernel));
    };
    let executes = matches!(request, KernelRequest::Execute { .. });
    let sent = job.control.kernel(request).await;
    if executes {
        sandbox.touch().await;
    }
    Ok(sent?)
}
