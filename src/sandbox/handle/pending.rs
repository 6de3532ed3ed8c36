//! The agent's answers to requests, routed by request id: one table for
//! every kind of reply (file operations, kernelspecs, the list of running
//! jobs, the handshake), with one timeout and one cleanup path.

use crate::sandbox::SandboxError;
use crate::sync::Lock;
use replbox_protocol::{FileError, FileReply, JobId, KernelSpecInfo, RequestId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

/// An answer from the agent to one request.
#[derive(Debug)]
pub enum Reply {
    File(Result<FileReply, FileError>),
    KernelSpecs(Vec<KernelSpecInfo>),
    Jobs(Vec<JobId>),
    Hello {
        version: u32,
        agent: String,
    },
    /// The agent moved to the socket, or could not (why).
    Direct(Result<(), String>),
}

/// The key of the one `ListJobs` request in flight: the protocol gives
/// that request no id. Request ids start at the clock's microseconds, so
/// this one is never another request's.
pub const LIST_JOBS: RequestId = 0;

/// Requests waiting for their reply.
#[derive(Default)]
pub struct Pending {
    /// Each entry with the registration it belongs to.
    waiting: Mutex<HashMap<RequestId, (u64, oneshot::Sender<Reply>)>>,
    registrations: AtomicU64,
}

/// One request's wait; leaves the table when dropped, whatever happened.
pub struct Waiter<'a> {
    pending: &'a Pending,
    id: RequestId,
    registration: u64,
    rx: oneshot::Receiver<Reply>,
}

impl Pending {
    /// Waits for the reply to `id` (a second request with the same id
    /// replaces the first, which then hears that the agent is gone).
    pub fn register(&self, id: RequestId) -> Waiter<'_> {
        let (tx, rx) = oneshot::channel();
        let registration = self.registrations.fetch_add(1, Ordering::Relaxed);
        self.waiting.locked().insert(id, (registration, tx));
        Waiter {
            pending: self,
            id,
            registration,
            rx,
        }
    }

    /// Hands a reply to whoever waits for it (nobody: dropped).
    pub fn resolve(&self, id: RequestId, reply: Reply) {
        if let Some((_, tx)) = self.waiting.locked().remove(&id) {
            let _ = tx.send(reply);
        }
    }

    /// The connection ended: every waiter hears `AgentGone`.
    pub fn clear(&self) {
        self.waiting.locked().clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.locked().len()
    }
}

impl Waiter<'_> {
    /// The reply, `AgentUnresponsive` past `timeout`, `AgentGone` when the
    /// connection ends first.
    pub async fn wait(mut self, timeout: Duration) -> Result<Reply, SandboxError> {
        match tokio::time::timeout(timeout, &mut self.rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(SandboxError::AgentGone),
            Err(_) => Err(SandboxError::AgentUnresponsive),
        }
    }

    /// The reply if it came within `timeout`; `None` to try again (the
    /// request stays registered).
    pub async fn poll_for(&mut self, timeout: Duration) -> Option<Result<Reply, SandboxError>> {
        match tokio::time::timeout(timeout, &mut self.rx).await {
            Ok(Ok(reply)) => Some(Ok(reply)),
            Ok(Err(_)) => Some(Err(SandboxError::AgentGone)),
            Err(_) => None,
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut waiting = self.pending.waiting.locked();
        // Only our own entry: a later request may have reused the id.
        if waiting
            .get(&self.id)
            .is_some_and(|(r, _)| *r == self.registration)
        {
            waiting.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reply_reaches_its_waiter_and_leaves_nothing_behind() {
        let pending = Pending::default();
        let waiter = pending.register(7);
        pending.resolve(7, Reply::Jobs(vec![1, 2]));
        let reply = waiter.wait(Duration::from_secs(5)).await.unwrap();
        assert!(matches!(reply, Reply::Jobs(j) if j == [1, 2]));
        assert_eq!(pending.len(), 0);
    }

    #[tokio::test]
    async fn a_timeout_and_a_lost_connection_clean_up_the_same_way() {
        let pending = Pending::default();
        let waiter = pending.register(1);
        let err = waiter.wait(Duration::from_millis(10)).await.unwrap_err();
        assert!(matches!(err, SandboxError::AgentUnresponsive));
        assert_eq!(pending.len(), 0, "a timed-out request leaves the table");
        let waiter = pending.register(2);
        pending.clear();
        let err = waiter.wait(Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, SandboxError::AgentGone));
        // A reply to nobody is dropped.
        pending.resolve(3, Reply::Jobs(vec![]));
        assert_eq!(pending.len(), 0);
    }
}
