//! Talking to a running job of an owner's sandbox: its stdin, its end of
//! input, its terminal's size, signals. Input and signals count as
//! activity.

use super::ServiceError;
use crate::sessions::Session;
use replbox_protocol::JobId;
use std::sync::Arc;

/// Writes to a running job's stdin.
pub async fn stdin(sandbox: &Session, job: JobId, data: Vec<u8>) -> Result<(), ServiceError> {
    let record = sandbox
        .job(job)
        .filter(|j| j.is_running())
        .ok_or(ServiceError::UnknownJob(job))?;
    let sent = record.control.stdin(data).await;
    sandbox.touch().await;
    Ok(sent?)
}

/// Closes a job's stdin (nothing when there is no such job).
pub async fn close_stdin(sandbox: &Session, job: JobId) {
    if let Some(r) = sandbox.job(job) {
        let _ = r.control.close_stdin().await;
    }
}

/// Resizes a job's terminal, within sane bounds (nothing when there is no
/// such job).
pub async fn resize(sandbox: &Session, job: JobId, rows: u16, cols: u16) {
    if let Some(r) = sandbox.job(job) {
        let _ = r
            .control
            .resize(rows.clamp(1, 500), cols.clamp(1, 1000))
            .await;
    }
}

/// Sends a signal to a job's process group.
pub async fn signal(sandbox: &Arc<Session>, job: JobId, signal: i32) -> Result<(), ServiceError> {
    let record = sandbox.job(job).ok_or(ServiceError::NoSuchJob(job))?;
    let _ = record.control.signal(signal).await;
    sandbox.touch().await;
    Ok(())
}
