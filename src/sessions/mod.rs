//! Sessions: who owns which sandbox, their activity and their clock.
//!
//! An owner is a browser (its cookie session), an API sandbox (a taskId under
//! a token) or a one-shot run. Each has one [`Session`]: the container it has
//! now (if any), the workspace volume it keeps, its jobs with their replay
//! buffers, and a hub that fans its events out to every socket watching it.

mod capacity;
mod error;
mod jobs;
pub mod pool;
pub mod reaper;
pub mod store;

pub use error::SessionError;
pub use jobs::{Chunk, JobKind, JobRecord, Replay};
pub use store::{SandboxRow, Store};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::sandbox::{CreateSpec, SandboxError, SandboxHandle, Sandboxes};
use crate::sync::Lock;
use bytes::Bytes;
use replbox_protocol::{ExitStatus, JobId, JobSpec, Stream};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};
use tracing::{info, info_span, warn, Instrument};

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
    fn as_str(self) -> &'static str {
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
}

/// A one-shot session older than this without a container is a leftover.
const ONE_SHOT_LEFTOVER_SECS: i64 = 300;

const HUB_CAPACITY: usize = 512;
const HUB_HIGH_WATER: usize = 192;
/// How long output waits for the slowest socket before that socket is left
/// to catch up from the replay buffer.
const HUB_MAX_WAIT: Duration = Duration::from_secs(2);

/// Fans a session's events out to its sockets. Output slows down to the pace
/// of the slowest socket, up to a bound; past it that socket lags and
/// replays from the job's buffer.
pub struct SessionHub {
    tx: broadcast::Sender<SessionEvent>,
    drained: Notify,
}

impl Default for SessionHub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(HUB_CAPACITY).0,
            drained: Notify::new(),
        }
    }
}

impl SessionHub {
    pub async fn send(&self, ev: SessionEvent) {
        let deadline = tokio::time::Instant::now() + HUB_MAX_WAIT;
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.tx.len() < HUB_HIGH_WATER {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let _ = self.tx.send(ev);
    }

    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            hub: self.clone(),
        }
    }
}

pub struct Subscription {
    rx: broadcast::Receiver<SessionEvent>,
    hub: Arc<SessionHub>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<SessionEvent, broadcast::error::RecvError> {
        let r = self.rx.recv().await;
        self.hub.drained.notify_waiters();
        r
    }
}

struct Shared {
    sandboxes: Sandboxes,
    store: Store,
    metrics: Metrics,
    config: Arc<Config>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    pool: Arc<pool::WarmPool>,
    capacity: capacity::Capacity,
    /// Owners whose removal is in progress: their name cannot be taken
    /// again until their volume is gone (it would be the same volume).
    removing: Mutex<std::collections::HashSet<String>>,
}

impl Shared {
    fn all(&self) -> Vec<Arc<Session>> {
        self.sessions.locked().values().cloned().collect()
    }

    /// Containers in use: sessions' and the pool's.
    fn live(&self) -> usize {
        self.all().iter().filter(|s| s.has_container()).count() + self.pool.size()
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
    pub async fn wait_ready(&self, wait: Duration) -> Status {
        let mut rx = self.status.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|s| *s == Status::Ready)).await;
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
            if state.removed {
                return;
            }
            state.persisted_active = state.last_active;
            self.row(&state)
        };
        if let Err(e) = self.shared.store.upsert(&row).await {
            warn!(owner = %self.owner, error = %e, "cannot persist the session");
        }
    }

    /// Records user input: a run, stdin, a file write, an API call.
    pub async fn touch(&self) {
        let (expiry, changed, persist) = {
            let mut state = self.lock();
            state.last_active = now();
            let expiry = self.expiry_of(&state);
            let changed = expiry != state.last_expiry_sent;
            state.last_expiry_sent = expiry;
            (
                expiry,
                changed,
                state.last_active - state.persisted_active >= 5,
            )
        };
        if changed {
            self.hub
                .send(SessionEvent::Expiry { expires_at: expiry })
                .await;
        }
        if persist {
            self.persist().await;
        }
    }

    /// The live sandbox, creating or re-attaching to a container as needed.
    pub async fn ensure(self: &Arc<Self>) -> Result<SandboxHandle, SessionError> {
        if let Some(h) = self.live_handle() {
            return Ok(h);
        }
        let _guard = self.start.lock().await;
        if let Some(h) = self.live_handle() {
            return Ok(h);
        }
        if self.lock().removed {
            return Err(SessionError::Deleted);
        }
        let running = self.container_running().await;
        let _slot = if !running {
            Some(self.shared.capacity.acquire(self).await?)
        } else {
            None
        };
        self.set_status(Status::Starting);
        self.hub.send(SessionEvent::Status(Status::Starting)).await;
        let result = self.start_container(running).await;
        match result {
            Ok(handle) => {
                self.set_status(Status::Ready);
                self.hub.send(SessionEvent::Status(Status::Ready)).await;
                let expiry = self.expires_at();
                self.hub
                    .send(SessionEvent::Expiry { expires_at: expiry })
                    .await;
                Ok(handle)
            }
            Err(e) => {
                self.set_status(Status::Idle);
                self.hub.send(SessionEvent::Status(Status::Idle)).await;
                Err(e.into())
            }
        }
    }

    /// Whether the container on record still runs (a re-attach, not a new one).
    async fn container_running(&self) -> bool {
        let id = self.lock().container_id.clone();
        match id {
            Some(id) => self.shared.sandboxes.is_running(&id).await.unwrap_or(false),
            None => false,
        }
    }

    fn live_handle(&self) -> Option<SandboxHandle> {
        self.lock().handle.clone().filter(|h| h.is_alive())
    }

    /// Re-attaches to the container on record when `running` (the caller
    /// just asked the engine), or makes a new one.
    async fn start_container(
        self: &Arc<Self>,
        running: bool,
    ) -> Result<SandboxHandle, SandboxError> {
        let sandboxes = &self.shared.sandboxes;
        let existing = self.lock().container_id.clone();
        let mut fresh = false;
        let handle = match existing {
            Some(id) if running => match sandboxes.attach(&id).await {
                Ok(h) => h,
                Err(e) => {
                    warn!(owner = %self.owner, error = %e, "re-attach failed; replacing the container");
                    sandboxes.remove(&id).await?;
                    fresh = true;
                    self.create_container().await?
                }
            },
            other => {
                if let Some(id) = other {
                    sandboxes.remove(&id).await?;
                }
                fresh = true;
                match self.claim_warm() {
                    Some(handle) => handle,
                    None => self.create_container().await?,
                }
            }
        };
        {
            let mut state = self.lock();
            if state.workspace_volume.is_none() {
                state.workspace_volume = Some(sandboxes.volume_name(&self.owner));
            }
            state.handle = Some(handle.clone());
            state.container_id = Some(handle.container_id().to_string());
            if fresh {
                state.container_at = now();
                state.last_active = now();
                state.expired_at = None;
            }
        }
        self.persist().await;
        self.watch_container(handle.clone());
        info!(owner = %self.owner, container = %&handle.container_id()[..12], fresh, "sandbox ready");
        Ok(handle)
    }

    /// A warm container, for a session that has no workspace yet and wants
    /// the default image: its fresh volume becomes the session's workspace.
    fn claim_warm(&self) -> Option<SandboxHandle> {
        if self.image.is_some() || !self.env.is_empty() || self.lock().workspace_volume.is_some() {
            return None;
        }
        let warm = self.shared.pool.claim()?;
        self.lock().workspace_volume = Some(warm.volume);
        // Its name says whose it is now; not awaited: the student waits for
        // nothing but the container.
        let sandboxes = self.shared.sandboxes.clone();
        let (id, name) = (
            warm.handle.container_id().to_string(),
            sandboxes.container_name(&self.owner),
        );
        tokio::spawn(async move {
            if let Err(e) = sandboxes.rename(&id, &name).await {
                tracing::debug!(error = %e, "cannot rename a claimed container");
            }
        });
        Some(warm.handle)
    }

    async fn create_container(&self) -> Result<SandboxHandle, SandboxError> {
        let spec = CreateSpec {
            session: self.owner.clone(),
            expires_at: now() + self.idle_ttl_secs as i64,
            image: self.image.clone(),
            env: self.env.clone(),
            volume: Some(self.volume()),
            ..Default::default()
        };
        let sandboxes = &self.shared.sandboxes;
        match sandboxes.create(&spec).await {
            Err(SandboxError::Conflict) => {
                // A container of this name outlived its record: replace it.
                sandboxes
                    .remove(&sandboxes.container_name(&self.owner))
                    .await?;
                sandboxes.create(&spec).await
            }
            other => other,
        }
    }

    /// Notices a container that died under us.
    fn watch_container(self: &Arc<Self>, handle: SandboxHandle) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            handle.closed().await;
            if let Some(session) = weak.upgrade() {
                let was_current = {
                    let mut state = session.lock();
                    let current = state
                        .handle
                        .as_ref()
                        .is_some_and(|h| h.container_id() == handle.container_id());
                    if current {
                        state.handle = None;
                    }
                    current
                };
                if was_current && session.status() == Status::Ready {
                    session.set_status(Status::Idle);
                    session.hub.send(SessionEvent::Status(Status::Idle)).await;
                }
            }
        });
    }

    /// Starts a job and its pump; counts as activity.
    pub async fn run(
        self: &Arc<Self>,
        spec: JobSpec,
        kind: JobKind,
        reference: Option<serde_json::Value>,
    ) -> Result<Arc<JobRecord>, SessionError> {
        let handle = self.ensure().await?;
        let job = handle.spawn(spec).await?;
        self.track(job, kind, reference).await
    }

    /// Starts a Jupyter kernel (a kernelspec's name) as a job of the session.
    pub async fn start_kernel(
        self: &Arc<Self>,
        name: &str,
        reference: Option<serde_json::Value>,
    ) -> Result<Arc<JobRecord>, SessionError> {
        self.start_kernel_in(name, "", reference).await
    }

    /// Starts a kernel with its working directory `cwd` (relative to
    /// /workspace).
    pub async fn start_kernel_in(
        self: &Arc<Self>,
        name: &str,
        cwd: &str,
        reference: Option<serde_json::Value>,
    ) -> Result<Arc<JobRecord>, SessionError> {
        let handle = self.ensure().await?;
        let job = handle.kernel_start(name, cwd).await?;
        self.track(job, JobKind::Kernel, reference).await
    }

    /// Records a job and starts its pump.
    async fn track(
        self: &Arc<Self>,
        job: crate::sandbox::Job,
        kind: JobKind,
        reference: Option<serde_json::Value>,
    ) -> Result<Arc<JobRecord>, SessionError> {
        let record = JobRecord::new(
            job.id,
            kind,
            reference,
            job.control.clone(),
            self.shared.config.replay_bytes,
        );
        let weak = Arc::downgrade(self);
        let on_end = move || {
            if let Some(s) = weak.upgrade() {
                tokio::spawn(async move { s.touch().await });
            }
        };
        let pump = tokio::spawn(
            jobs::pump(
                job,
                record.clone(),
                self.hub.clone(),
                self.shared.metrics.clone(),
                on_end,
            )
            .instrument(info_span!("job", owner = %self.owner, job = record.id)),
        );
        {
            let mut state = self.lock();
            state.jobs.insert(record.id, record.clone());
            state.pumps.insert(record.id, AbortOnDrop(pump));
            if kind == JobKind::Shell {
                state.shell = Some(record.id);
            }
            prune_finished(&mut state);
        }
        self.touch().await;
        Ok(record)
    }

    pub fn job(&self, id: JobId) -> Option<Arc<JobRecord>> {
        self.lock().jobs.get(&id).cloned()
    }

    pub fn jobs(&self) -> Vec<Arc<JobRecord>> {
        self.lock().jobs.values().cloned().collect()
    }

    /// The interactive shell, when one still runs.
    pub fn shell(&self) -> Option<Arc<JobRecord>> {
        let state = self.lock();
        state
            .shell
            .and_then(|id| state.jobs.get(&id).cloned())
            .filter(|j| j.is_running())
    }

    /// Removes the container (keeping the workspace volume) because the
    /// session expired. Sockets hear `Expired`.
    pub async fn expire(&self) {
        let _guard = self.start.lock().await;
        let id = {
            let mut state = self.lock();
            state.handle = None;
            state.expired_at = Some(now());
            state.jobs.clear();
            state.pumps.clear();
            state.shell = None;
            state.container_id.take()
        };
        if let Some(id) = id {
            if let Err(e) = self.shared.sandboxes.remove(&id).await {
                warn!(owner = %self.owner, error = %e, "cannot remove an expired container");
                // Try again on the next pass.
                self.lock().container_id = Some(id);
                return;
            }
        }
        // No container uses the workspace now: release its loop mount.
        self.shared
            .sandboxes
            .release_workspace(&self.volume())
            .await;
        self.shared.metrics.sandboxes_expired.inc();
        self.shared.capacity.changed();
        self.set_status(Status::Expired);
        self.persist().await;
        info!(owner = %self.owner, "sandbox expired; workspace kept");
        self.hub.send(SessionEvent::Expired).await;
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

/// Keeps the newest finished jobs for replay; drops older ones.
fn prune_finished(state: &mut State) {
    const KEEP_FINISHED: usize = 32;
    let finished: Vec<JobId> = state
        .jobs
        .values()
        .filter(|j| !j.is_running())
        .map(|j| j.id)
        .collect();
    if finished.len() > KEEP_FINISHED {
        for id in &finished[..finished.len() - KEEP_FINISHED] {
            state.jobs.remove(id);
            state.pumps.remove(id);
        }
    }
}

/// Every session this server knows, by owner.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

impl Registry {
    /// Loads the sessions the store remembers.
    pub async fn open(
        config: Arc<Config>,
        sandboxes: Sandboxes,
        store: Store,
        metrics: Metrics,
    ) -> Result<Self, sqlx::Error> {
        let max = config.max_sandboxes();
        let registry = Registry {
            shared: Arc::new(Shared {
                sandboxes,
                store: store.clone(),
                metrics,
                pool: pool::WarmPool::new(config.warm_pool),
                capacity: capacity::Capacity::new(max, config.evict_grace_secs),
                config,
                sessions: Mutex::default(),
                removing: Mutex::default(),
            }),
        };
        for row in store.all().await? {
            let session = registry.session_from_row(&row);
            registry
                .shared
                .sessions
                .lock()
                .unwrap()
                .insert(row.owner.clone(), session);
        }
        registry.update_gauges();
        Ok(registry)
    }

    pub fn sandboxes(&self) -> &Sandboxes {
        &self.shared.sandboxes
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    fn session_from_row(&self, row: &SandboxRow) -> Arc<Session> {
        let state = State {
            container_id: row.container_id.clone(),
            container_at: row.container_at,
            last_active: row.last_active,
            persisted_active: row.last_active,
            expired_at: row.expired_at,
            workspace_volume: row.workspace_volume.clone(),
            ..Default::default()
        };
        let status = if row.expired_at.is_some() && row.container_id.is_none() {
            Status::Expired
        } else {
            Status::Idle
        };
        Arc::new(Session {
            owner: row.owner.clone(),
            kind: OwnerKind::parse(&row.kind),
            token_hash: row.token_hash.clone(),
            idle_ttl_secs: row.idle_ttl_secs.max(1) as u64,
            image: row.image.clone(),
            env: serde_json::from_str(&row.env).unwrap_or_default(),
            created_at: row.created_at,
            state: Mutex::new(state),
            start: tokio::sync::Mutex::new(()),
            hub: Arc::default(),
            status: watch::channel(status).0,
            shared: self.shared.clone(),
        })
    }

    pub fn get(&self, owner: &str) -> Option<Arc<Session>> {
        self.shared.sessions.locked().get(owner).cloned()
    }

    /// The owner's session, made (without a container yet) when missing.
    pub async fn get_or_create(
        &self,
        owner: &str,
        kind: OwnerKind,
        opts: NewSession,
    ) -> Result<Arc<Session>, SessionError> {
        if let Some(s) = self.get(owner) {
            return Ok(s);
        }
        self.create(owner, kind, opts).await.or_else(|e| {
            self.get(owner).ok_or(e) // lost a race: use the winner's
        })
    }

    /// A new session; 409 when the owner has one.
    pub async fn create(
        &self,
        owner: &str,
        kind: OwnerKind,
        opts: NewSession,
    ) -> Result<Arc<Session>, SessionError> {
        let t = now();
        let row = SandboxRow {
            owner: owner.to_string(),
            kind: kind.as_str().to_string(),
            token_hash: opts.token_hash,
            container_id: None,
            created_at: t,
            container_at: t,
            last_active: t,
            idle_ttl_secs: opts
                .idle_ttl_secs
                .unwrap_or(self.shared.config.idle_ttl_secs) as i64,
            image: opts.image,
            env: serde_json::to_string(&opts.env).unwrap_or_else(|_| "[]".into()),
            expired_at: None,
            workspace_volume: None,
        };
        let session = {
            let mut sessions = self.shared.sessions.locked();
            if self.shared.removing.locked().contains(owner) {
                return Err(SessionError::BeingRemoved(owner.to_string()));
            }
            if sessions.contains_key(owner) {
                return Err(SessionError::AlreadyExists(owner.to_string()));
            }
            let s = self.session_from_row(&row);
            sessions.insert(owner.to_string(), s.clone());
            s
        };
        session.persist().await;
        self.update_gauges();
        Ok(session)
    }

    /// Deletes a session: its container, its volume and its record.
    pub async fn remove(&self, owner: &str) -> Result<(), SessionError> {
        let session = {
            let mut sessions = self.shared.sessions.locked();
            let Some(session) = sessions.remove(owner) else {
                return Err(SessionError::NoSuchSandbox);
            };
            self.shared
                .removing
                .lock()
                .unwrap()
                .insert(owner.to_string());
            session
        };
        let _removing = Removing {
            shared: self.shared.clone(),
            owner: owner.to_string(),
        };
        let id = {
            let _guard = session.start.lock().await;
            let mut state = session.lock();
            state.removed = true;
            state.handle = None;
            state.jobs.clear();
            state.pumps.clear();
            state.container_id.take()
        };
        if let Some(id) = id {
            self.shared.sandboxes.remove(&id).await?;
        }
        self.shared
            .sandboxes
            .remove_volume(&session.volume())
            .await?;
        self.shared.store.delete(owner).await?;
        self.shared.capacity.changed();
        session.hub.send(SessionEvent::Expired).await;
        self.update_gauges();
        Ok(())
    }

    fn all(&self) -> Vec<Arc<Session>> {
        self.shared.all()
    }

    /// Room for `n` short-lived containers (a Check's grader and student
    /// containers) within the same cap as sandboxes, expiring an idle
    /// sandbox past the grace period if that makes room; otherwise 503
    /// `capacity_full` with Retry-After. Held until dropped.
    pub async fn reserve(&self, n: usize) -> Result<Reserved, SessionError> {
        let capacity = &self.shared.capacity;
        if n > capacity.max() {
            return Err(SessionError::CapacityFull);
        }
        loop {
            if capacity.try_reserve(self.shared.live(), n) {
                return Ok(Reserved {
                    shared: self.shared.clone(),
                    n,
                });
            }
            if !capacity.evict_idle(self.all(), None).await {
                return Err(SessionError::CapacityFull);
            }
        }
    }

    /// Removes the warm pool's containers and their workspaces (at a
    /// graceful shutdown; after a crash, start-up removes them).
    pub async fn drain_pool(&self) {
        for warm in self.shared.pool.drain() {
            let id = warm.handle.container_id().to_string();
            drop(warm.handle);
            let _ = self.shared.sandboxes.remove(&id).await;
            let _ = self.shared.sandboxes.remove_volume(&warm.volume).await;
        }
    }

    /// Starts the warm pool's refill task; runs until `cancel`.
    pub fn start_pool(&self, cancel: tokio_util::sync::CancellationToken) -> AbortOnDrop {
        let shared = Arc::downgrade(&self.shared);
        let room = move || {
            shared
                .upgrade()
                .is_some_and(|s| s.live() + s.capacity.reserved() < s.capacity.max())
        };
        AbortOnDrop(
            self.shared
                .pool
                .spawn_refill(self.shared.sandboxes.clone(), room, cancel),
        )
    }

    fn update_gauges(&self) {
        let all = self.all();
        let m = &self.shared.metrics;
        m.sessions.set(all.len() as i64);
        m.live_sandboxes.set(self.shared.live() as i64);
    }

    /// One pass of the reaper: expire idle sandboxes, drop workspaces past
    /// their retention.
    pub async fn reap_once(&self) {
        let t = now();
        let retention = self.shared.config.retention_secs as i64;
        for session in self.all() {
            let (has_container, expiry, expired_at) = {
                let state = session.lock();
                (
                    state.container_id.is_some(),
                    session.expiry_of(&state),
                    state.expired_at,
                )
            };
            if has_container && t >= expiry {
                session.expire().await;
            } else if !has_container
                && session.kind == OwnerKind::OneShot
                && t - session.created_at > ONE_SHOT_LEFTOVER_SECS
            {
                // A one-shot run removes its own sandbox; this is what a
                // crash in the middle of one left.
                let _ = self.remove(&session.owner).await;
            } else if !has_container {
                let since = expired_at.unwrap_or(session.lock().last_active);
                if t >= since + retention {
                    info!(owner = %session.owner, "workspace past retention; removing it");
                    let _ = self.remove(&session.owner).await;
                }
            }
        }
        self.update_gauges();
    }

    /// At start-up: removes managed containers and volumes that no session
    /// owns, and forgets containers that no longer run.
    pub async fn recover(&self) -> Result<(), SandboxError> {
        let sandboxes = &self.shared.sandboxes;
        let all = self.all();
        for c in sandboxes.list().await? {
            let owner = all
                .iter()
                .find(|s| s.container_id().as_deref() == Some(c.id.as_str()));
            if owner.is_none() || !c.running {
                info!(container = %c.name, owned = owner.is_some(), "removing a container no live session owns");
                sandboxes.remove(&c.id).await?;
                if let Some(s) = owner {
                    s.lock().container_id = None;
                }
            }
        }
        let volumes: std::collections::HashSet<String> = all.iter().map(|s| s.volume()).collect();
        for v in sandboxes.list_volumes().await? {
            if !volumes.contains(&v.name) {
                info!(volume = %v.name, "removing a workspace volume no session owns");
                sandboxes.remove_volume(&v.name).await?;
            }
        }
        sandboxes.remove_orphan_workspaces(&volumes).await;
        // Workspaces of sandboxes without a container (expired before a
        // restart, or whose container was just removed) hold no mount.
        for s in self.all().iter().filter(|s| !s.has_container()) {
            sandboxes.release_workspace(&s.volume()).await;
        }
        self.update_gauges();
        Ok(())
    }
}

/// The name a client gave, without our owner prefix.
pub fn owner_display(owner: &str) -> &str {
    owner.split_once('-').map(|(_, rest)| rest).unwrap_or(owner)
}

/// An owner's removal in progress; its name is free again when dropped.
struct Removing {
    shared: Arc<Shared>,
    owner: String,
}

impl Drop for Removing {
    fn drop(&mut self) {
        self.shared.removing.locked().remove(&self.owner);
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
