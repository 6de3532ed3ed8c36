//! Sessions: who owns which sandbox, their activity and their clock.
//!
//! An owner is a browser (its cookie session), an API sandbox (a taskId under
//! a token) or a one-shot run. Each has one [`Session`]: the container it has
//! now (if any), the workspace volume it keeps, its jobs with their replay
//! buffers, and a hub that fans its events out to every socket watching it.

mod activity;
mod capacity;
mod error;
#[cfg(test)]
mod fake_tests;
mod hub;
mod jobs;
pub mod lease;
mod lifecycle;
pub mod pool;
pub mod reaper;
mod recovery;
mod registry;
pub mod store;
mod tracking;

pub use error::SessionError;
pub use hub::{SessionHub, Subscription};
pub use jobs::{Chunk, JobKind, JobRecord, Replay};
pub use lease::Holder;
pub use store::{SandboxRow, Store};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::sandbox::{Backend, SandboxError, SandboxHandle};
use crate::sync::Lock;
use bytes::Bytes;
use replbox_protocol::{ExitStatus, JobId, Stream};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn, Instrument};

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnerKind {
    Browser,
    Api,
    OneShot,
}

impl OwnerKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OwnerKind::Browser => "browser",
            OwnerKind::Api => "api",
            OwnerKind::OneShot => "oneshot",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "api" => OwnerKind::Api,
            "oneshot" => OwnerKind::OneShot,
            _ => OwnerKind::Browser,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No container now (never started, or stopped); the next use makes one.
    Idle,
    Starting,
    Ready,
    /// Expired by TTL: the container is gone, the files are kept.
    Expired,
}

/// What the sockets of a session hear.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    Started {
        job: JobId,
        kind: JobKind,
        pid: i32,
    },
    Output {
        job: JobId,
        seq: u64,
        stream: Stream,
        data: Bytes,
    },
    Exit {
        job: JobId,
        exit: ExitStatus,
    },
    Failed {
        job: JobId,
        message: String,
    },
    Expiry {
        expires_at: i64,
    },
    Status(Status),
    KernelReady {
        job: JobId,
        language: String,
    },
    KernelMessage {
        job: JobId,
        channel: String,
        message: Arc<str>,
    },
    /// Waiting for capacity: this many sessions are ahead.
    Queued {
        position: usize,
    },
    Expired,
    /// Another replica took this sandbox's lease: this one no longer acts
    /// on it (its tabs reconnect and reach the new holder).
    Moved,
}

struct Shared {
    sandboxes: Arc<dyn Backend>,
    store: Store,
    metrics: Metrics,
    config: Arc<Config>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    pool: Arc<pool::WarmPool>,
    capacity: capacity::Capacity,
    /// Sessions whose removal is in progress, by owner: their name cannot
    /// be taken again until their volume is gone (it would be the same
    /// volume), and their container counts against the cap until the
    /// engine has removed it (a one-shot run answers before that).
    removing: Mutex<HashMap<String, Arc<Session>>>,
    /// Last activity on its way to the store (activity.rs).
    activity: activity::Activity,
}

impl Shared {
    fn all(&self) -> Vec<Arc<Session>> {
        self.sessions.locked().values().cloned().collect()
    }

    /// Containers in use: sessions', those being removed, and the pool's.
    fn live(&self) -> usize {
        // Both maps read under their locks at once (the order `remove`
        // takes them in), so a session moving from one to the other is
        // counted once; each session's own lock is taken after.
        let counted: Vec<Arc<Session>> = {
            let sessions = self.sessions.locked();
            let removing = self.removing.locked();
            sessions
                .values()
                .chain(removing.values())
                .cloned()
                .collect()
        };
        // Only what this replica holds: another's sandboxes count there.
        counted
            .iter()
            .filter(|s| s.has_container() && s.leased())
            .count()
            + self.pool.size()
    }
}

#[derive(Default)]
struct State {
    handle: Option<SandboxHandle>,
    container_id: Option<String>,
    container_at: i64,
    last_active: i64,
    persisted_active: i64,
    expired_at: Option<i64>,
    jobs: BTreeMap<JobId, Arc<JobRecord>>,
    pumps: HashMap<JobId, AbortOnDrop>,
    shell: Option<JobId>,
    last_expiry_sent: i64,
    removed: bool,
    /// When this replica last took the sandbox's lease (unix ms); `None`:
    /// not held here, so this state may be stale.
    leased_at: Option<i64>,
    /// The session's workspace volume, once it has one.
    workspace_volume: Option<String>,
}

/// Options of a new session.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub token_hash: Option<String>,
    pub idle_ttl_secs: Option<u64>,
    pub image: Option<String>,
    pub env: Vec<(String, String)>,
}

/// One owner's sandbox over time.
pub struct Session {
    pub owner: String,
    pub kind: OwnerKind,
    pub token_hash: Option<String>,
    pub idle_ttl_secs: u64,
    pub image: Option<String>,
    env: Vec<(String, String)>,
    created_at: i64,
    state: Mutex<State>,
    start: tokio::sync::Mutex<()>,
    pub hub: Arc<SessionHub>,
    status: watch::Sender<Status>,
    shared: Arc<Shared>,
}

impl Session {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.locked()
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Waits until the status is `Ready`, up to `wait`.
    /// Waits until the sandbox is ready, or its start failed (starting,
    /// then idle again), or it expired, for at most `wait`.
    pub async fn wait_ready(&self, wait: Duration) -> Status {
        let mut rx = self.status.subscribe();
        let mut started = false;
        let _ = tokio::time::timeout(
            wait,
            rx.wait_for(|s| {
                started |= *s == Status::Starting;
                matches!(s, Status::Ready | Status::Expired) || (started && *s == Status::Idle)
            }),
        )
        .await;
        self.status()
    }

    fn set_status(&self, status: Status) {
        self.status.send_replace(status);
    }

    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    pub fn container_id(&self) -> Option<String> {
        self.lock().container_id.clone()
    }

    /// When this sandbox expires unless something happens (unix seconds).
    pub fn expires_at(&self) -> i64 {
        let state = self.lock();
        self.expiry_of(&state)
    }

    fn expiry_of(&self, state: &State) -> i64 {
        let max = self.shared.config.max_lifetime_secs as i64;
        let lifetime_end = state.container_at.max(self.created_at) + max;
        let busy = state
            .jobs
            .values()
            .any(|j| j.kind == JobKind::Run && j.is_running());
        if busy {
            lifetime_end
        } else {
            (state.last_active + self.idle_ttl_secs as i64).min(lifetime_end)
        }
    }

    fn row(&self, state: &State) -> SandboxRow {
        SandboxRow {
            owner: self.owner.clone(),
            kind: self.kind.as_str().to_string(),
            token_hash: self.token_hash.clone(),
            container_id: state.container_id.clone(),
            created_at: self.created_at,
            container_at: state.container_at,
            last_active: state.last_active,
            idle_ttl_secs: self.idle_ttl_secs as i64,
            image: self.image.clone(),
            env: serde_json::to_string(&self.env).unwrap_or_else(|_| "[]".into()),
            expired_at: state.expired_at,
            workspace_volume: state.workspace_volume.clone(),
        }
    }

    /// The name of this session's workspace volume.
    pub fn volume(&self) -> String {
        self.lock()
            .workspace_volume
            .clone()
            .unwrap_or_else(|| self.shared.sandboxes.volume_name(&self.owner))
    }

    async fn persist(&self) {
        let row = {
            let mut state = self.lock();
            // Not held here: another replica's record is the truth.
            if state.removed || state.leased_at.is_none() {
                return;
            }
            state.persisted_active = state.last_active;
            self.row(&state)
        };
        if let Err(e) = self.shared.store.upsert(&row).await {
            warn!(owner = %self.owner, error = %e, "cannot persist the session");
        }
    }

    /// Whether the container has expired (files kept, none running).
    pub fn expired_at(&self) -> Option<i64> {
        self.lock().expired_at
    }

    fn has_container(&self) -> bool {
        self.lock().container_id.is_some()
    }

    /// Seconds since the last user input.
    fn idle_secs(&self) -> i64 {
        now() - self.lock().last_active
    }

    fn busy(&self) -> bool {
        self.lock()
            .jobs
            .values()
            .any(|j| j.kind == JobKind::Run && j.is_running())
    }
}

/// Every session this server knows, by owner.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

/// The name a client gave, without our owner prefix (and, for an API
/// sandbox, without its token's namespace: `t-<16 hex>-<taskId>`).
pub fn owner_display(owner: &str) -> &str {
    let rest = owner.split_once('-').map(|(_, rest)| rest).unwrap_or(owner);
    match (owner.starts_with("t-"), rest.split_once('-')) {
        (true, Some((ns, task))) if ns.len() == 16 && ns.bytes().all(|b| b.is_ascii_hexdigit()) => {
            task
        }
        _ => rest,
    }
}

/// An owner's removal in progress; its name is free again when dropped.
struct Removing {
    shared: Arc<Shared>,
    owner: String,
}

impl Drop for Removing {
    fn drop(&mut self) {
        self.shared.removing.locked().remove(&self.owner);
        self.shared.capacity.changed();
    }
}

/// Room held in the cap on live containers; given back when dropped.
pub struct Reserved {
    shared: Arc<Shared>,
    n: usize,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.shared.capacity.release(self.n);
    }
}

/// Aborts its task when dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
