//! The interactive terminal of an owner's sandbox: one login shell on a
//! pty, re-attached by every tab unless a new one is asked for.

use super::ServiceError;
use crate::sessions::{JobKind, JobRecord, Session};
use replbox_protocol::{JobSpec, PtySize};
use std::sync::Arc;

/// What opening the terminal did.
pub enum Opened {
    /// A new shell started: the session's sockets hear `started`.
    Started(Arc<JobRecord>),
    /// The running shell, resized to the asking tab, which is told its job
    /// and asks for a replay of its scrollback.
    Reattached(Arc<JobRecord>),
}

/// Re-attaches to the running shell (unless `new`) or starts one.
pub async fn open(
    sandbox: &Arc<Session>,
    size: PtySize,
    new: bool,
    reference: Option<serde_json::Value>,
) -> Result<Opened, ServiceError> {
    if !new {
        if let Some(shell) = sandbox.shell() {
            let _ = shell.control.resize(size.rows, size.cols).await;
            return Ok(Opened::Reattached(shell));
        }
    }
    let mut spec = JobSpec::argv(["/bin/bash", "-l"]);
    spec.pty = Some(size);
    Ok(Opened::Started(
        sandbox.run(spec, JobKind::Shell, reference).await?,
    ))
}
