//! The gateway's kernels: each is a kernel job of an API sandbox, known by
//! a Jupyter kernel id that outlives restarts (a restart swaps the job).
//! A monitor task per kernel reads the sandbox's events, keeps the kernel's
//! execution state, keeps a busy kernel's sandbox alive, and fans the
//! kernel's messages out to the kernel's sockets in Jupyter's wire shape.

use crate::error::{AppError, ErrorCode};
use crate::sessions::{AbortOnDrop, JobRecord, Session, SessionEvent};
use axum::http::StatusCode;
use replbox_protocol::{JobId, KernelRequest, KernelSpecInfo};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tracing::{info_span, Instrument};

/// Messages a kernel's sockets may fall behind by before they miss some
/// (the ring holds at most this many messages, each at most MAX_MESSAGE).
const FANOUT: usize = 64;
/// The largest kernel message the gateway relays, as the agent's JSON; a
/// larger one reaches the client as a short stream message saying so (the
/// page's own socket has its frame limit for the same reason).
const MAX_MESSAGE: usize = 2 << 20;
/// How long a kernel may take to answer its first kernel_info.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a busy kernel counts as activity of its sandbox.
const BUSY_TOUCH: Duration = Duration::from_secs(5);
/// Kernelspecs kept per caller and image at most.
const MAX_SPECS: usize = 64;
/// Kernels one token may have at once (starting ones included).
pub const MAX_KERNELS_PER_CALLER: usize = 8;

/// A message from the kernel, as the sockets send it on.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub channel: Arc<str>,
    /// `parent_header.session`: whose request this answers.
    pub parent_session: Option<String>,
    /// The whole message: header, parent_header, metadata, content,
    /// buffers, channel, msg_id, msg_type.
    pub message: Arc<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelModel {
    pub id: String,
    pub name: String,
    pub last_activity: String,
    pub execution_state: String,
    pub connections: usize,
}

struct Live {
    job: Arc<JobRecord>,
    /// Between a restart's shutdown and its new process's answer.
    restarting: bool,
    execution_state: String,
    last_activity: chrono::DateTime<chrono::Utc>,
}

pub struct Kernel {
    pub id: String,
    pub name: String,
    /// The fingerprint of the token that started it.
    pub caller: String,
    pub session: Arc<Session>,
    cwd: String,
    live: Mutex<Live>,
    connections: AtomicUsize,
    tx: broadcast::Sender<Outgoing>,
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
            connections: self.connections.load(Ordering::Relaxed),
        }
    }

    fn job(&self) -> Arc<JobRecord> {
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

    pub fn subscribe(&self) -> broadcast::Receiver<Outgoing> {
        self.tx.subscribe()
    }

    /// A socket's number, for [`Kernel::claim`] and [`Kernel::is_for`];
    /// counted in the model's `connections` until [`Kernel::disconnect`].
    pub fn connect(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.next_socket.fetch_add(1, Ordering::Relaxed)
    }

    pub fn disconnect(&self, socket: u64) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        self.claims.lock().unwrap().retain(|_, s| *s != socket);
    }

    /// Whether a message for `parent_session` goes to `socket`: iopub goes
    /// to every socket; a reply to the socket whose client asked, or to
    /// every socket when no socket claims that client.
    pub fn is_for(&self, socket: u64, out: &Outgoing) -> bool {
        if &*out.channel == "iopub" {
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
                format!("There is no channel {channel:?}: use shell, control or stdin."),
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
}

impl Gateway {
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

    fn forget(&self, id: &str) {
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
            connections: AtomicUsize::new(0),
            tx: broadcast::channel(FANOUT).0,
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

/// A header whose `date` is an ISO 8601 string, as the protocol says:
/// jupyter_server's gateway kernel client sends a Unix timestamp instead.
fn with_iso_date(mut header: Value) -> Value {
    if let Some(h) = header.as_object_mut().filter(|h| !h.is_empty()) {
        if !h.get("date").is_some_and(Value::is_string) {
            let date = h
                .get("date")
                .and_then(Value::as_f64)
                .and_then(|t| chrono::DateTime::from_timestamp_micros((t * 1e6) as i64))
                .unwrap_or_else(chrono::Utc::now);
            h.insert(
                "date".into(),
                date.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    .into(),
            );
        }
    }
    header
}

fn no_kernel(id: &str) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownKernel,
        format!("There is no kernel {id:?}."),
    )
}

/// Starts a kernel job and waits for its first answer.
async fn start_job(
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
                        format!("The kernel {name:?} exited as it started."),
                    ))
                }
                Ok(SessionEvent::Expired) => {
                    return Err(AppError::not_found("The sandbox expired."))
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    // Missed events: the record says whether it still runs.
                    if !job.is_running() {
                        return Err(AppError::bad_request(
                            ErrorCode::SpawnFailed,
                            format!("The kernel {name:?} did not start."),
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
                format!("The kernel {name:?} did not answer within {READY_TIMEOUT:?}."),
            ))
        }
    }
}

/// Reads the sandbox's events for one kernel until it is deleted.
async fn monitor(gateway: std::sync::Weak<Gateway>, kernel: std::sync::Weak<Kernel>) {
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
                if &*out.channel == "iopub" && out.message["msg_type"] == "status" {
                    if let Some(state) = out.message["content"]["execution_state"].as_str() {
                        let mut live = k.live.lock().unwrap();
                        live.execution_state = state.to_string();
                        live.last_activity = chrono::Utc::now();
                    }
                    if out.message["content"]["execution_state"] == "busy" {
                        k.session.touch().await;
                    }
                }
                let _ = k.tx.send(out);
            }
            Ok(SessionEvent::Exit { job, .. } | SessionEvent::Failed { job, .. })
                if job == current =>
            {
                k.live.lock().unwrap().execution_state = "dead".into();
            }
            Ok(SessionEvent::Expired) | Err(RecvError::Closed) => {
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

/// The agent's JSON of a kernel message in Jupyter's wire shape. One over
/// MAX_MESSAGE is replaced by a stream message on iopub that says so.
fn to_wire(channel: &str, message: &str) -> Option<Outgoing> {
    if message.len() > MAX_MESSAGE {
        return too_large(channel, message);
    }
    let m: Value = serde_json::from_str(message).ok()?;
    let header = m.get("header")?.clone();
    let parent = match m.get("parent_header") {
        Some(Value::Object(p)) => Value::Object(p.clone()),
        _ => Value::Object(Default::default()),
    };
    let parent_session = parent["session"].as_str().map(String::from);
    let wire = serde_json::json!({
        "channel": channel,
        "msg_id": header["msg_id"],
        "msg_type": header["msg_type"],
        "header": header,
        "parent_header": parent,
        "metadata": m.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
        "content": m.get("content").cloned().unwrap_or_else(|| serde_json::json!({})),
        "buffers": [],
    });
    Some(Outgoing {
        channel: channel.into(),
        parent_session,
        message: Arc::new(wire),
    })
}

/// What a client gets instead of a message too large to relay: a stream
/// message on iopub with the same parent, so its cell shows why.
fn too_large(channel: &str, message: &str) -> Option<Outgoing> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        parent_header: Value,
        #[serde(default)]
        header: Value,
    }
    // Only the two small headers are parsed; the content is skipped.
    let head: Head = serde_json::from_str(message).ok()?;
    let parent = match head.parent_header {
        Value::Object(p) => Value::Object(p),
        _ => Value::Object(Default::default()),
    };
    let parent_session = parent["session"].as_str().map(String::from);
    let text = format!(
        "[replbox: a {} message of {} bytes is larger than the gateway relays ({} bytes); it was not sent]\n",
        head.header["msg_type"].as_str().unwrap_or("kernel"),
        message.len(),
        MAX_MESSAGE
    );
    let msg_id = uuid::Uuid::new_v4().to_string();
    let header = serde_json::json!({
        "msg_id": msg_id, "msg_type": "stream", "username": "replbox",
        "session": head.header["session"], "date": chrono::Utc::now().to_rfc3339(),
        "version": "5.3",
    });
    let _ = channel;
    Some(Outgoing {
        channel: Arc::from("iopub"),
        parent_session,
        message: Arc::new(serde_json::json!({
            "channel": "iopub", "msg_id": msg_id, "msg_type": "stream",
            "header": header, "parent_header": parent, "metadata": {},
            "content": {"name": "stderr", "text": text}, "buffers": [],
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_become_iso_dates() {
        let h = with_iso_date(serde_json::json!({"msg_id": "a", "date": 1_700_000_000.5}));
        assert_eq!(h["date"], "2023-11-14T22:13:20.500000Z");
        let h = with_iso_date(serde_json::json!({"msg_id": "a", "date": "2026-01-01T00:00:00Z"}));
        assert_eq!(h["date"], "2026-01-01T00:00:00Z");
        assert!(with_iso_date(serde_json::json!({"msg_id": "a"}))["date"].is_string());
        // An empty parent header stays empty.
        assert_eq!(with_iso_date(serde_json::json!({})), serde_json::json!({}));
        assert_eq!(with_iso_date(Value::Null), Value::Null);
    }

    #[test]
    fn agent_json_becomes_wire_json() {
        let agent = r#"{"header":{"msg_id":"a","username":"u","session":"s1","date":"2026-01-01T00:00:00Z","msg_type":"execute_reply","version":"5.3"},"parent_header":{"msg_id":"p","username":"u","session":"client","date":"2026-01-01T00:00:00Z","msg_type":"execute_request","version":"5.3"},"metadata":{},"content":{"status":"ok","execution_count":1},"channel":null}"#;
        let out = to_wire("shell", agent).unwrap();
        assert_eq!(&*out.channel, "shell");
        assert_eq!(out.parent_session.as_deref(), Some("client"));
        assert_eq!(out.message["msg_type"], "execute_reply");
        assert_eq!(out.message["channel"], "shell");
        assert_eq!(out.message["content"]["execution_count"], 1);
        let orphan = r#"{"header":{"msg_id":"b","msg_type":"status"},"parent_header":null,"metadata":{},"content":{}}"#;
        let out = to_wire("iopub", orphan).unwrap();
        assert_eq!(out.message["parent_header"], serde_json::json!({}));
        assert!(out.parent_session.is_none());
    }
}
