//! The warm pool: containers started (and their agents greeted) ahead of
//! need, each with a fresh workspace volume of its own. A new session claims
//! one and the volume becomes its workspace, so nothing is copied and the
//! first job can start at once. Refilled in the background; labelled like
//! any sandbox, so after a restart the unclaimed ones are removed, never
//! claimed twice.

use crate::sandbox::{Backend, CreateSpec, SandboxHandle};
use crate::sync::Lock;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, warn, Instrument};

/// A started container waiting for a session.
pub struct Warm {
    pub handle: SandboxHandle,
    pub volume: String,
}

pub struct WarmPool {
    target: usize,
    /// The wait after a claim before a replacement is started, while the
    /// pool still has a ready container for the next arrival.
    refill_delay: Duration,
    /// When the last claim that left a ready container behind was made.
    quiet_since: Mutex<Option<Instant>>,
    ready: Mutex<VecDeque<Warm>>,
    wake: Notify,
    /// Containers of the pool, ready or being started (they use capacity).
    size: AtomicUsize,
}

impl WarmPool {
    pub fn new(target: usize, refill_delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            target,
            refill_delay,
            quiet_since: Mutex::new(None),
            ready: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            size: AtomicUsize::new(0),
        })
    }

    /// Containers the pool holds or is starting.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// Containers started and waiting for a session.
    pub fn ready(&self) -> usize {
        self.ready.locked().len()
    }

    /// A warm container, if one is ready.
    pub fn claim(&self) -> Option<Warm> {
        let mut ready = self.ready.locked();
        while let Some(w) = ready.pop_front() {
            self.size.fetch_sub(1, Ordering::Relaxed);
            if w.handle.is_alive() {
                // Its student goes first, unless nobody would be left a
                // warm container by waiting (then the refill starts now).
                let left = ready.iter().any(|w| w.handle.is_alive());
                *self.quiet_since.locked() = left.then(Instant::now);
                drop(ready);
                self.wake.notify_one();
                return Some(w);
            }
        }
        drop(ready);
        *self.quiet_since.locked() = None;
        self.wake.notify_one();
        None
    }

    /// How long the refill should still wait before its next start: what
    /// is left of the delay after the last claim, while a ready container
    /// remains for the next arrival; nothing otherwise.
    fn wait_before_start(&self) -> Duration {
        let since = *self.quiet_since.locked();
        match since {
            Some(t) if !self.ready.locked().is_empty() => {
                (t + self.refill_delay).saturating_duration_since(Instant::now())
            }
            _ => Duration::ZERO,
        }
    }

    /// Takes every ready container out of the pool (at shutdown).
    pub fn drain(&self) -> Vec<Warm> {
        let drained: Vec<Warm> = self.ready.locked().drain(..).collect();
        self.size.fetch_sub(drained.len(), Ordering::Relaxed);
        drained
    }

    /// Keeps the pool full while `room()` says there is capacity for one
    /// more container; runs until `cancel`.
    pub fn spawn_refill(
        self: &Arc<Self>,
        sandboxes: Arc<dyn Backend>,
        room: impl Fn() -> bool + Send + Sync + 'static,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let pool = self.clone();
        tokio::spawn(
            async move {
                if pool.target == 0 {
                    return;
                }
                loop {
                    // Drop containers that died while waiting.
                    pool.ready.locked().retain(|w| {
                        let alive = w.handle.is_alive();
                        if !alive {
                            pool.size.fetch_sub(1, Ordering::Relaxed);
                        }
                        alive
                    });
                    let mut failed = false;
                    while pool.size() < pool.target && room() && !cancel.is_cancelled() {
                        let wait = pool.wait_before_start();
                        if !wait.is_zero() {
                            tokio::select! {
                                _ = cancel.cancelled() => break,
                                _ = tokio::time::sleep(wait) => {}
                            }
                            continue;
                        }
                        pool.size.fetch_add(1, Ordering::Relaxed);
                        match start_one(sandboxes.as_ref()).await {
                            Ok(w) => pool.ready.locked().push_back(w),
                            Err(e) => {
                                pool.size.fetch_sub(1, Ordering::Relaxed);
                                warn!(error = %e, "cannot start a warm container");
                                failed = true;
                                break;
                            }
                        }
                    }
                    let wait = if failed {
                        Duration::from_secs(5)
                    } else {
                        Duration::from_secs(10)
                    };
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = pool.wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
            .instrument(info_span!("warm_pool")),
        )
    }
}

async fn start_one(sandboxes: &dyn Backend) -> Result<Warm, crate::sandbox::SandboxError> {
    let id = format!("pool-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let volume = sandboxes.volume_name(&id);
    let handle = sandboxes
        .create(&CreateSpec {
            session: id,
            expires_at: 0,
            volume: Some(volume.clone()),
            ..Default::default()
        })
        .await?;
    Ok(Warm { handle, volume })
}
