//! A session's container over time: made, claimed from the warm pool or
//! re-attached on first use; noticed when it dies; removed at expiry with
//! the workspace kept.

use super::{Registry, SandboxError, Session, SessionError, SessionEvent, Status};
use crate::sandbox::{CreateSpec, SandboxHandle};
use crate::sessions::now;
use std::sync::Arc;
use tracing::{info, warn};

impl Session {
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
        if !self.leased() {
            // Not held here (loaded at start-up, or lost): take it, which
            // reloads this state from the store, or say who holds it.
            Registry {
                shared: self.shared.clone(),
            }
            .hold_here(&self.owner)
            .await?;
            if self.lock().removed {
                return Err(SessionError::Deleted);
            }
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
    pub(super) async fn container_running(&self) -> bool {
        let id = self.lock().container_id.clone();
        match id {
            Some(id) => self.shared.sandboxes.is_running(&id).await.unwrap_or(false),
            None => false,
        }
    }

    pub(super) fn live_handle(&self) -> Option<SandboxHandle> {
        self.lock().handle.clone().filter(|h| h.is_alive())
    }

    /// Re-attaches to the container on record when `running` (the caller
    /// just asked the engine), or makes a new one.
    pub(super) async fn start_container(
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
    pub(super) fn claim_warm(&self) -> Option<SandboxHandle> {
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

    pub(super) async fn create_container(&self) -> Result<SandboxHandle, SandboxError> {
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
                // A container of this name outlived its record: replace it,
                // unless another deployment made it (a copy of its store).
                let name = sandboxes.container_name(&self.owner);
                let foreign = sandboxes.list().await?.into_iter().any(|c| {
                    c.name.trim_start_matches('/') == name
                        && matches!(
                            crate::sandbox::Ownership::of(
                                sandboxes.deployment(),
                                c.deployment.as_deref()
                            ),
                            crate::sandbox::Ownership::Other
                        )
                });
                if foreign {
                    return Err(SandboxError::Conflict);
                }
                sandboxes.remove(&name).await?;
                sandboxes.create(&spec).await
            }
            other => other,
        }
    }

    /// Notices a container that died under us.
    pub(super) fn watch_container(self: &Arc<Self>, handle: SandboxHandle) {
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

    /// Removes the container (keeping the workspace volume) because the
    /// session expired. Sockets hear `Expired`.
    pub async fn expire(&self) {
        let _guard = self.start.lock().await;
        if !self.leased() {
            // Another replica's (or nobody's until taken): not ours to end.
            return;
        }
        let id = {
            let mut state = self.lock();
            state.handle = None;
            state.expired_at = Some(now());
            state.jobs.clear();
            state.pumps.clear();
            state.shell = None;
            // Kept on record until the engine has removed it: it still
            // counts against the cap meanwhile.
            state.container_id.clone()
        };
        if let Some(id) = id {
            if let Err(e) = self.shared.sandboxes.remove(&id).await {
                // Still on record: tried again on the next pass.
                warn!(owner = %self.owner, error = %e, "cannot remove an expired container");
                return;
            }
            self.lock().container_id = None;
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
        // No container left to guard: any replica may act on it next.
        self.lock().leased_at = None;
        self.shared.release_lease(&self.owner).await;
        info!(owner = %self.owner, "sandbox expired; workspace kept");
        self.hub.send(SessionEvent::Expired).await;
    }
}
