//! Leases: several replicas share one store, and each sandbox has one
//! replica acting on it at a time (its container, its agent connection,
//! its jobs, its expiry): the one holding its lease in the store. The
//! holder renews all its leases every `lease_renew_secs`; one it stops
//! renewing lapses after `lease_secs` and the next replica that needs the
//! sandbox takes it (re-attaching to the running container: the agent
//! answers a new server's hello). A holder that finds at a renewal that it
//! lost a lease (it could not renew in time) drops its connection and jobs
//! and closes its tabs with a reason; they reconnect and are forwarded.
//!
//! A replica's in-memory session is the truth only while it holds the
//! lease: taking a lease it did not hold reloads the session from the store.

use super::*;
use crate::sessions::store::Lease;
use std::collections::HashSet;
use tokio_util::sync::CancellationToken;

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Who acts on a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// This replica (its lease is taken, its session current).
    Here,
    /// Another replica, serving at `addr`, whose lease lasts until `until_ms`.
    Elsewhere { addr: String, until_ms: i64 },
}

impl Shared {
    /// This replica's id and advertised address.
    pub(super) fn replica(&self) -> (&str, &str) {
        let addr = self.config.advertise_addr.as_deref().unwrap_or_default();
        (self.config.replica_id.as_deref().unwrap_or(addr), addr)
    }

    fn lease_ms(&self) -> i64 {
        (self.config.lease_secs.max(1) * 1000) as i64
    }

    /// How long before its lease ends (by our clock, from the moment its
    /// last take or renewal began) a replica stops acting on a sandbox it
    /// could not renew: the others may take it at the end.
    fn lease_margin_ms(&self) -> i64 {
        (self.lease_ms() / 4).min(2_000)
    }

    fn renew_ms(&self) -> i64 {
        (self.config.lease_renew_secs.max(1) * 1000) as i64
    }

    /// Takes `owner`'s lease when it is free, lapsed or ours.
    async fn take_lease(&self, owner: &str) -> Result<Holder, sqlx::Error> {
        let (id, addr) = self.replica();
        let t = now_ms();
        let Lease {
            replica,
            addr: at,
            expires_at,
        } = self
            .store
            .take_lease(owner, id, addr, t, t + self.lease_ms())
            .await?;
        Ok(if replica == id {
            Holder::Here
        } else {
            Holder::Elsewhere {
                addr: at,
                until_ms: expires_at,
            }
        })
    }

    /// Gives `owner`'s lease back (its container is gone: nothing to guard).
    pub(super) async fn release_lease(&self, owner: &str) {
        let (id, _) = self.replica();
        if let Err(e) = self.store.release_lease(owner, id).await {
            warn!(%owner, error = %e, "cannot give a lease back; it lapses by itself");
        }
    }
}

impl Session {
    /// Whether this replica holds the lease: taken or renewed recently
    /// enough that nobody else can have taken it since. A replica whose
    /// renewals fail (a store outage) stops acting before its leases end.
    pub(super) fn leased(&self) -> bool {
        let at = self.lock().leased_at;
        let shared = &self.shared;
        at.is_some_and(|at| now_ms() < at + shared.lease_ms() - shared.lease_margin_ms())
    }

    /// Held, and renewed within one renewal interval (and the margin): the
    /// renewals run, so a loss would be heard of at the next one.
    fn renewed_in_time(&self) -> bool {
        let at = self.lock().leased_at;
        let shared = &self.shared;
        // Also within `leased`'s bound (a lease shorter than a renewal
        // interval and two margins).
        let fresh = (shared.renew_ms() + shared.lease_margin_ms())
            .min(shared.lease_ms() - shared.lease_margin_ms());
        at.is_some_and(|at| now_ms() < at + fresh)
    }

    /// Reloads what the store says (another replica acted on it meanwhile).
    fn reload(&self, row: &SandboxRow) {
        let mut state = self.lock();
        state.handle = None;
        state.jobs.clear();
        state.pumps.clear();
        state.shell = None;
        state.container_id = row.container_id.clone();
        state.container_at = row.container_at;
        state.last_active = row.last_active;
        state.persisted_active = row.last_active;
        state.expired_at = row.expired_at;
        state.workspace_volume = row.workspace_volume.clone();
        drop(state);
        let status = if row.expired_at.is_some() && row.container_id.is_none() {
            Status::Expired
        } else {
            Status::Idle
        };
        self.set_status(status);
    }

    /// The lease went to another replica: drop the connection and jobs,
    /// and tell the tabs (they reconnect and reach the new holder).
    async fn lose_lease(&self) {
        {
            let mut state = self.lock();
            state.leased_at = None;
            state.handle = None;
            state.jobs.clear();
            state.pumps.clear();
            state.shell = None;
        }
        warn!(owner = %self.owner, "lost the lease on this sandbox to another replica");
        if self.status() != Status::Expired {
            self.set_status(Status::Idle);
        }
        self.hub.send(SessionEvent::Moved).await;
    }
}

impl Registry {
    /// Who acts on `owner`'s sandbox: this replica (its lease taken now,
    /// its session reloaded from the store when it was not held here) or
    /// another live one.
    pub async fn hold(&self, owner: &str) -> Result<Holder, SessionError> {
        if self.get(owner).is_none() && self.shared.store.get(owner).await?.is_none() {
            // No sandbox yet: nothing to guard (making one takes the lease;
            // a lease row per name a caller makes up would be kept forever).
            return Ok(Holder::Here);
        }
        self.take(owner).await
    }

    /// Takes `owner`'s lease (or finds it held here): what acts on a
    /// sandbox, making one included, goes through this. A lease held here
    /// while the renewals run needs no statement: no request waits for the
    /// store's writer. Another replica takes it only once it lapsed (which
    /// `leased` rules out, with a margin) or when this replica's address
    /// refused it a connection (`take_from_gone`); the next renewal finds
    /// that, and a replica whose renewals stopped (a stop, a stall) asks
    /// the store again.
    async fn take(&self, owner: &str) -> Result<Holder, SessionError> {
        if self.get(owner).is_some_and(|s| s.renewed_in_time()) {
            return Ok(Holder::Here);
        }
        let began = now_ms();
        let holder = self.shared.take_lease(owner).await?;
        if holder != Holder::Here {
            return Ok(holder);
        }
        match self.get(owner) {
            Some(s) if s.leased() => s.lock().leased_at = Some(began),
            _ => self.reload(owner).await?,
        }
        Ok(Holder::Here)
    }

    /// The holder at `addr` (lease until `until_ms`) refused a connection:
    /// nothing listens at its address, so it is gone (a live replica always
    /// does) and its lease is taken now rather than after it lapses, unless
    /// it changed meanwhile. Whether this replica holds it now.
    pub async fn take_from_gone(
        &self,
        owner: &str,
        addr: &str,
        until_ms: i64,
    ) -> Result<bool, SessionError> {
        let (id, mine) = self.shared.replica();
        let until = now_ms() + self.shared.lease_ms();
        let taken = self
            .shared
            .store
            .take_lease_from(owner, (addr, until_ms), id, mine, until)
            .await?;
        if taken {
            warn!(%owner, gone = %addr, "took a sandbox over from a replica that no longer listens");
            self.reload(owner).await?;
        }
        Ok(taken)
    }

    /// After taking `owner`'s lease: the session as the store has it.
    async fn reload(&self, owner: &str) -> Result<(), SessionError> {
        let row = self.shared.store.get(owner).await?;
        let stamp = Some(now_ms());
        let mut sessions = self.shared.sessions.locked();
        let current = sessions.get(owner).cloned();
        match (row, current) {
            // Removed by another replica: forgotten here too.
            (None, Some(s)) => {
                sessions.remove(owner);
                s.lock().removed = true;
            }
            (Some(row), Some(s)) if s.created_at == row.created_at => {
                s.reload(&row);
                s.lock().leased_at = stamp;
            }
            (Some(row), current) => {
                if let Some(old) = current {
                    old.lock().removed = true;
                }
                let s = self.session_from_row(&row);
                s.lock().leased_at = stamp;
                sessions.insert(owner.to_string(), s);
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// Takes the lease (as making, starting or removing a sandbox must), as
    /// an error when another replica holds it.
    pub(super) async fn hold_here(&self, owner: &str) -> Result<(), SessionError> {
        match self.take(owner).await? {
            Holder::Here => Ok(()),
            Holder::Elsewhere { addr, until_ms } => Err(SessionError::Elsewhere { addr, until_ms }),
        }
    }

    /// Sessions no live replica holds that have something due (an expiry,
    /// a retention's end): their leases are taken here, so the reaper acts
    /// on each once. `adopt_running`: also those with a container (start-up).
    pub(super) async fn adopt_unleased(&self, adopt_running: bool) {
        let rows = match self.shared.store.unleased(now_ms()).await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %e, "cannot list unleased sandboxes");
                return;
            }
        };
        let t = now();
        let retention = self.shared.config.retention_secs as i64;
        let max = self.shared.config.max_lifetime_secs as i64;
        for row in rows {
            let due = match row.container_id {
                Some(_) => {
                    adopt_running
                        || t >= (row.last_active + row.idle_ttl_secs)
                            .min(row.container_at.max(row.created_at) + max)
                }
                None => {
                    (row.kind == OwnerKind::OneShot.as_str()
                        && t - row.created_at > super::reaper::ONE_SHOT_LEFTOVER_SECS)
                        || t >= row.expired_at.unwrap_or(row.last_active) + retention
                }
            };
            if due {
                if let Err(e) = self.hold(&row.owner).await {
                    warn!(owner = %row.owner, error = %e, "cannot take an unleased sandbox");
                }
            }
        }
    }

    /// Renews this replica's leases every `lease_renew_secs` until `cancel`;
    /// a session whose lease another replica took meanwhile is dropped here.
    /// At `cancel`, every lease is given back (a graceful stop: the others
    /// take the sandboxes at once).
    pub fn spawn_leases(&self, cancel: CancellationToken) -> AbortOnDrop {
        let registry = self.clone();
        let every = Duration::from_secs(self.shared.config.lease_renew_secs.max(1));
        AbortOnDrop(tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => registry.renew_once().await,
                    }
                }
            }
            .instrument(tracing::info_span!("leases")),
        ))
    }

    /// One renewal: this replica's heartbeat and leases.
    pub async fn renew_once(&self) {
        let started = now_ms();
        let (id, addr) = self.shared.replica();
        let until = started + self.shared.lease_ms();
        let ours: HashSet<String> = match self.shared.store.renew_leases(id, addr, until).await {
            Ok(owners) => owners.into_iter().collect(),
            Err(e) => {
                warn!(error = %e, "cannot renew leases; they lapse unless the next renewal works");
                // Past its end (less the margin) a lease may be another
                // replica's: stop acting on it before that can happen.
                for s in self.all() {
                    if s.lock().leased_at.is_some() && !s.leased() {
                        s.lose_lease().await;
                    }
                }
                return;
            }
        };
        for s in self.all() {
            let lost = {
                let mut state = s.lock();
                match state.leased_at {
                    // Renewed: good until `until`, as from `started`.
                    Some(at) if ours.contains(&s.owner) => {
                        state.leased_at = Some(at.max(started));
                        false
                    }
                    // Lost meanwhile (a lease taken after this renewal
                    // began is not in `ours`, and is not lost).
                    Some(at) => at < started,
                    None => false,
                }
            };
            if lost {
                s.lose_lease().await;
            }
        }
        self.update_gauges();
    }

    /// Gives back every lease of this replica (a graceful stop).
    pub async fn release_leases(&self) {
        let (id, _) = self.shared.replica();
        if let Err(e) = self.shared.store.release_replica(id).await {
            warn!(error = %e, "cannot give leases back; they lapse by themselves");
        }
    }

    /// Whether another replica's heartbeat is live (start-up's orphan
    /// sweep runs only when none is: an orphan may be a live one's).
    pub(super) async fn others_live(&self) -> Result<bool, sqlx::Error> {
        let (id, _) = self.shared.replica();
        Ok(!self
            .shared
            .store
            .other_live_replicas(id, now_ms())
            .await?
            .is_empty())
    }
}
