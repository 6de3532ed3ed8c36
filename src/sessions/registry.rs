//! Every session this server knows, by owner: made, found, removed; room
//! reserved for short-lived containers; the warm pool started and drained.

use super::*;

impl Registry {
    /// Loads the sessions the store remembers.
    pub async fn open(
        config: Arc<Config>,
        sandboxes: Arc<dyn Backend>,
        store: Store,
        metrics: Metrics,
    ) -> Result<Self, sqlx::Error> {
        let max = config.max_sandboxes();
        let registry = Registry {
            shared: Arc::new(Shared {
                sandboxes,
                store: store.clone(),
                metrics,
                pool: pool::WarmPool::new(
                    config.warm_pool,
                    Duration::from_millis(config.warm_pool_refill_delay_ms.min(10_000)),
                ),
                capacity: capacity::Capacity::new(max, config.evict_grace_secs),
                config,
                sessions: Mutex::default(),
                removing: Mutex::default(),
                activity: activity::Activity::new(),
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

    pub fn sandboxes(&self) -> &dyn Backend {
        self.shared.sandboxes.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub(super) fn session_from_row(&self, row: &SandboxRow) -> Arc<Session> {
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
        if self.get(owner).is_some() {
            return Err(SessionError::AlreadyExists(owner.to_string()));
        }
        // Another replica may be making it, or hold it since our start.
        if let Err(e) = self.hold_here(owner).await {
            if matches!(e, SessionError::Elsewhere { .. })
                && self.shared.store.get(owner).await?.is_some()
            {
                return Err(SessionError::AlreadyExists(owner.to_string()));
            }
            return Err(e);
        }
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
            if self.shared.removing.locked().contains_key(owner) {
                return Err(SessionError::BeingRemoved(owner.to_string()));
            }
            if sessions.contains_key(owner) {
                return Err(SessionError::AlreadyExists(owner.to_string()));
            }
            let s = self.session_from_row(&row);
            s.lock().leased_at = Some(lease::now_ms());
            sessions.insert(owner.to_string(), s.clone());
            s
        };
        session.persist().await;
        self.update_gauges();
        Ok(session)
    }

    /// Deletes a session: its container, its volume and its record.
    pub async fn remove(&self, owner: &str) -> Result<(), SessionError> {
        // Only the holder removes (it reloads a stale session first).
        self.hold_here(owner).await?;
        let session = {
            let mut sessions = self.shared.sessions.locked();
            let Some(session) = sessions.remove(owner) else {
                return Err(SessionError::NoSuchSandbox);
            };
            self.shared
                .removing
                .locked()
                .insert(owner.to_string(), session.clone());
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
            // Kept on record until the engine has removed it: it still
            // counts against the cap meanwhile.
            state.container_id.clone()
        };
        if let Some(id) = id {
            self.shared.sandboxes.remove(&id).await?;
            session.lock().container_id = None;
            self.shared.capacity.changed();
        }
        self.shared
            .sandboxes
            .remove_volume(&session.volume())
            .await?;
        self.shared.store.delete(owner).await?;
        self.shared.release_lease(owner).await;
        self.shared.capacity.changed();
        session.hub.send(SessionEvent::Expired).await;
        self.update_gauges();
        Ok(())
    }

    pub(super) fn all(&self) -> Vec<Arc<Session>> {
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

    pub(super) fn update_gauges(&self) {
        let all = self.all();
        let m = &self.shared.metrics;
        m.sessions.set(all.len() as i64);
        m.live_sandboxes.set(self.shared.live() as i64);
    }
}
