//! One gateway kernel: a kernel job of an API sandbox, known by a Jupyter
//! kernel id that outlives restarts (a restart swaps the job). It fans the
//! kernel's messages out to its sockets in Jupyter's wire shape: into each
//! socket's outbox, bounded in bytes, never waiting for one; a socket whose
//! client does not read past its budget is closed. The gateway that keeps
//! them is in `gateway.rs`; the monitor that reads a kernel's events in
//! `monitor.rs`.

use crate::error::{echo, AppError, ErrorCode};
use crate::routes::outbox::Outbox;
use crate::sessions::{AbortOnDrop, JobRecord, Session};
use bytes::Bytes;
use replbox_protocol::KernelRequest;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

use super::messages::{with_iso_date, Outgoing};
use super::sockets::SocketTx;

#[derive(Debug, Clone, Serialize)]
pub struct KernelModel {
    pub id: String,
    pub name: String,
    pub last_activity: String,
    pub execution_state: String,
    pub connections: usize,
}

pub(super) struct Live {
    pub(super) job: Arc<JobRecord>,
    /// Between a restart's shutdown and its new process's answer.
    pub(super) restarting: bool,
    pub(super) execution_state: String,
    pub(super) last_activity: chrono::DateTime<chrono::Utc>,
}

pub struct Kernel {
    pub id: String,
    pub name: String,
    /// The fingerprint of the token that started it.
    pub caller: String,
    pub session: Arc<Session>,
    pub(super) cwd: String,
    pub(super) live: Mutex<Live>,
    /// Its channels sockets' queues, by socket number.
    sockets: Mutex<HashMap<u64, SocketTx>>,
    /// Client sessions (`header.session`) by the socket that sent them, so
    /// replies go back to the socket that asked.
    claims: Mutex<HashMap<String, u64>>,
    next_socket: AtomicU64,
    monitor: Mutex<Option<AbortOnDrop>>,
}

impl Kernel {
    /// A kernel for `job`, idle, with no socket and no monitor yet.
    pub(super) fn new(
        name: &str,
        caller: &str,
        session: Arc<Session>,
        cwd: &str,
        job: Arc<JobRecord>,
    ) -> Self {
        Kernel {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            caller: caller.to_string(),
            session,
            cwd: cwd.to_string(),
            live: Mutex::new(Live {
                job,
                restarting: false,
                execution_state: "idle".into(),
                last_activity: chrono::Utc::now(),
            }),
            sockets: Mutex::default(),
            claims: Mutex::default(),
            next_socket: AtomicU64::new(1),
            monitor: Mutex::new(None),
        }
    }

    /// Keeps its monitor task, aborted by [`Kernel::stop_monitor`] or when
    /// the kernel is dropped.
    pub(super) fn set_monitor(&self, task: AbortOnDrop) {
        *self.monitor.lock().unwrap() = Some(task);
    }

    pub(super) fn stop_monitor(&self) {
        self.monitor.lock().unwrap().take();
    }

    pub fn model(&self) -> KernelModel {
        let live = self.live.lock().unwrap();
        KernelModel {
            id: self.id.clone(),
            name: self.name.clone(),
            last_activity: live
                .last_activity
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            execution_state: live.execution_state.clone(),
            connections: self.sockets.lock().unwrap().len(),
        }
    }

    pub(super) fn job(&self) -> Arc<JobRecord> {
        self.live.lock().unwrap().job.clone()
    }

    /// Whether its process still runs in a live sandbox (an expired
    /// sandbox's jobs are gone from its session).
    pub fn alive(&self) -> bool {
        if self.live.lock().unwrap().restarting {
            return true;
        }
        let job = self.job();
        self.session
            .job(job.id)
            .is_some_and(|j| j.is_running() && Arc::ptr_eq(&j, &job))
    }

    /// A socket whose kernel messages go to `outbox` (in the v1 framing
    /// when `v1`); `overflow` is cancelled when its client falls a whole
    /// budget behind. Its number, for [`Kernel::is_for`]; counted in the
    /// model's `connections` until [`Kernel::disconnect`].
    pub fn connect(&self, outbox: Outbox, v1: bool, overflow: CancellationToken) -> u64 {
        let id = self.next_socket.fetch_add(1, Ordering::Relaxed);
        let tx = SocketTx {
            outbox,
            v1,
            overflow,
            dropped: None,
        };
        self.sockets.lock().unwrap().insert(id, tx);
        id
    }

    pub fn disconnect(&self, socket: u64) {
        self.sockets.lock().unwrap().remove(&socket);
        self.claims.lock().unwrap().retain(|_, s| *s != socket);
    }

    /// Queues a kernel message for every socket it is for, never waiting
    /// for one (see [`SocketTx::queue`]).
    pub(super) fn fan_out(&self, out: &Outgoing) {
        let mut sockets = self.sockets.lock().unwrap();
        let mut v1: Option<Bytes> = None;
        for (id, socket) in sockets.iter_mut() {
            if self.is_for(*id, out) && !socket.overflow.is_cancelled() {
                socket.queue(out, &mut v1);
            }
        }
    }

    /// Whether a message for `parent_session` goes to `socket`: iopub goes
    /// to every socket; a reply to the socket whose client asked, or to
    /// every socket when no socket claims that client.
    pub fn is_for(&self, socket: u64, out: &Outgoing) -> bool {
        if out.channel == "iopub" {
            return true;
        }
        match &out.parent_session {
            Some(s) => match self.claims.lock().unwrap().get(s) {
                Some(owner) => *owner == socket,
                None => true,
            },
            None => true,
        }
    }

    /// Sends a client's message on `channel` to the kernel.
    pub async fn send(&self, socket: u64, channel: &str, message: &Value) -> Result<(), AppError> {
        if !matches!(channel, "shell" | "control" | "stdin") {
            return Err(AppError::bad_request(
                ErrorCode::BadFrame,
                format!(
                    "There is no channel {}: use shell, control or stdin.",
                    echo(channel)
                ),
            ));
        }
        let session = message["header"]["session"]
            .as_str()
            .ok_or_else(|| {
                AppError::bad_request(
                    ErrorCode::BadFrame,
                    "A Jupyter message needs a header with msg_id, msg_type and session.",
                )
            })?
            .to_string();
        {
            let mut claims = self.claims.lock().unwrap();
            if claims.len() < 256 || claims.contains_key(&session) {
                claims.insert(session, socket);
            }
        }
        let job = {
            let mut live = self.live.lock().unwrap();
            live.last_activity = chrono::Utc::now();
            live.job.clone()
        };
        let text = serde_json::to_string(&serde_json::json!({
            "header": with_iso_date(message["header"].clone()),
            "parent_header": message.get("parent_header").cloned().map(with_iso_date).unwrap_or(Value::Null),
            "metadata": message.get("metadata").cloned().unwrap_or(Value::Null),
            "content": message.get("content").cloned().unwrap_or(Value::Null),
        }))
        .unwrap_or_default();
        self.session.touch().await;
        job.control
            .kernel(KernelRequest::Message {
                channel: channel.to_string(),
                message: text,
            })
            .await
            .map_err(AppError::from)
    }

    pub async fn interrupt(&self) -> Result<(), AppError> {
        self.session.touch().await;
        self.job()
            .control
            .kernel(KernelRequest::Interrupt)
            .await
            .map_err(AppError::from)
    }

    pub(super) async fn shutdown_job(&self) {
        let _ = self.job().control.kernel(KernelRequest::Shutdown).await;
    }
}
