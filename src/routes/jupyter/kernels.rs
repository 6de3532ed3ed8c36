//! The gateway's kernels: each is a kernel job of an API sandbox, known by
//! a Jupyter kernel id that outlives restarts (a restart swaps the job).
//! A monitor task per kernel reads the sandbox's events, keeps the kernel's
//! execution state, keeps a busy kernel's sandbox alive, and fans the
//! kernel's messages out to the kernel's sockets in Jupyter's wire shape:
//! into each socket's outbox, bounded in bytes, never waiting for one; a
//! socket whose client does not read past its budget is closed.

use crate::error::{echo, AppError, ErrorCode};
use crate::routes::outbox::Outbox;
use crate::sessions::{AbortOnDrop, JobRecord, Session};
use axum::http::StatusCode;
use bytes::Bytes;
use replbox_protocol::{KernelRequest, KernelSpecInfo};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use super::messages::{with_iso_date, Outgoing};
use super::monitor::{monitor, start_job};
pub use super::sockets::SocketSlot;
use super::sockets::SocketTx;

/// Kernelspecs kept per caller and image at most.
const MAX_SPECS: usize = 64;
/// Kernels one token may have at once (starting ones included).
pub const MAX_KERNELS_PER_CALLER: usize = 8;

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
    cwd: String,
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

    async fn shutdown_job(&self) {
        let _ = self.job().control.kernel(KernelRequest::Shutdown).await;
    }
}

/// Every kernel the gateway started, by id.
/// A caller's fingerprint and an image (`None`: the server's default).
type SpecsKey = (String, Option<String>);

#[derive(Default)]
pub struct Gateway {
    kernels: Mutex<HashMap<String, Arc<Kernel>>>,
    /// Kernels being started, by caller: counted against the cap before
    /// the (slow) start, so simultaneous starts cannot pass it.
    starting: Mutex<HashMap<String, usize>>,
    /// Kernelspecs by caller and image (`None`: the server's default
    /// image). Per caller: the specs come from a sandbox whose user can
    /// write kernelspecs of their own under $HOME, so one token's answer
    /// is never shown to another.
    specs: Mutex<HashMap<SpecsKey, Vec<KernelSpecInfo>>>,
    /// Channels sockets open, by caller.
    sockets: Arc<Mutex<HashMap<String, usize>>>,
}

impl Gateway {
    /// Room for one more channels socket of `caller`, held until the slot
    /// is dropped; past `max` a JSON 429 `too_many_sockets`.
    pub fn socket_slot(&self, caller: &str, max: usize) -> Result<SocketSlot, AppError> {
        let mut open = self.sockets.lock().unwrap();
        let n = open.entry(caller.to_string()).or_default();
        if *n >= max.max(1) {
            return Err(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManySockets,
                format!(
                    "A token may hold at most {max} Jupyter channels sockets open: close one first."
                ),
            ));
        }
        *n += 1;
        Ok(SocketSlot {
            sockets: self.sockets.clone(),
            caller: caller.to_string(),
        })
    }

    pub fn cached_specs(
        &self,
        caller: &str,
        image: &Option<String>,
    ) -> Option<Vec<KernelSpecInfo>> {
        self.specs
            .lock()
            .unwrap()
            .get(&(caller.to_string(), image.clone()))
            .cloned()
    }

    /// Keeps at most MAX_SPECS specs, each name and display name cut to
    /// 200 characters: a sandbox's answer is the sandbox user's to shape.
    pub fn cache_specs(&self, caller: &str, image: Option<String>, mut specs: Vec<KernelSpecInfo>) {
        specs.truncate(MAX_SPECS);
        for s in &mut specs {
            for field in [&mut s.name, &mut s.display_name, &mut s.language] {
                if field.len() > 200 {
                    let mut end = 200;
                    while !field.is_char_boundary(end) {
                        end -= 1;
                    }
                    field.truncate(end);
                }
            }
        }
        if !specs.is_empty() {
            self.specs
                .lock()
                .unwrap()
                .insert((caller.to_string(), image), specs);
        }
    }

    /// The caller's kernel `id` while it lives; one that died or whose
    /// sandbox expired is forgotten.
    pub fn get(&self, caller: &str, id: &str) -> Result<Arc<Kernel>, AppError> {
        let kernel = self.kernels.lock().unwrap().get(id).cloned();
        match kernel {
            Some(k) if k.caller == caller && k.alive() => Ok(k),
            Some(k) if k.caller == caller => {
                self.forget(&k.id);
                Err(no_kernel(id))
            }
            _ => Err(no_kernel(id)),
        }
    }

    /// The caller's live kernels.
    pub fn list(&self, caller: &str) -> Vec<Arc<Kernel>> {
        let all: Vec<_> = self.kernels.lock().unwrap().values().cloned().collect();
        let mut mine = Vec::new();
        for k in all.into_iter().filter(|k| k.caller == caller) {
            if k.alive() {
                mine.push(k);
            } else {
                self.forget(&k.id);
            }
        }
        mine.sort_by(|a, b| a.id.cmp(&b.id));
        mine
    }

    pub(super) fn forget(&self, id: &str) {
        let k = self.kernels.lock().unwrap().remove(id);
        if let Some(k) = k {
            k.monitor.lock().unwrap().take();
        }
    }

    /// Starts kernel `name` in `session` (working directory `cwd`, relative
    /// to /workspace) and waits until it answers.
    pub async fn start(
        self: &Arc<Self>,
        caller: &str,
        session: Arc<Session>,
        name: &str,
        cwd: &str,
    ) -> Result<Arc<Kernel>, AppError> {
        let running = self.list(caller).len();
        let _slot = {
            let mut starting = self.starting.lock().unwrap();
            let n = starting.entry(caller.to_string()).or_default();
            if running + *n >= MAX_KERNELS_PER_CALLER {
                return Err(AppError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::CapacityFull,
                    format!(
                        "A token may run at most {MAX_KERNELS_PER_CALLER} kernels: delete one first."
                    ),
                ));
            }
            *n += 1;
            Starting {
                gateway: self.clone(),
                caller: caller.to_string(),
            }
        };
        let job = start_job(&session, name, cwd).await?;
        let kernel = Arc::new(Kernel {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            caller: caller.to_string(),
            session: session.clone(),
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
        });
        let monitor = tokio::spawn(
            monitor(Arc::downgrade(self), Arc::downgrade(&kernel))
                .instrument(info_span!("kernel", owner = %session.owner, kernel = %kernel.id)),
        );
        *kernel.monitor.lock().unwrap() = Some(AbortOnDrop(monitor));
        self.kernels
            .lock()
            .unwrap()
            .insert(kernel.id.clone(), kernel.clone());
        Ok(kernel)
    }

    /// A new kernel process under the same id: the old one is shut down,
    /// its state is gone.
    pub async fn restart(&self, kernel: &Arc<Kernel>) -> Result<(), AppError> {
        kernel.live.lock().unwrap().restarting = true;
        kernel.shutdown_job().await;
        let job = start_job(&kernel.session, &kernel.name, &kernel.cwd).await;
        let mut live = kernel.live.lock().unwrap();
        live.restarting = false;
        live.job = job?;
        live.execution_state = "idle".into();
        live.last_activity = chrono::Utc::now();
        Ok(())
    }

    pub async fn delete(&self, kernel: &Arc<Kernel>) {
        self.forget(&kernel.id);
        kernel.shutdown_job().await;
    }
}

fn no_kernel(id: &str) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownKernel,
        format!("There is no kernel {}.", echo(id)),
    )
}

/// A start in progress, counted against its caller's cap until dropped.
struct Starting {
    gateway: Arc<Gateway>,
    caller: String,
}

impl Drop for Starting {
    fn drop(&mut self) {
        let mut starting = self.gateway.starting.lock().unwrap();
        if let Some(n) = starting.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                starting.remove(&self.caller);
            }
        }
    }
}
