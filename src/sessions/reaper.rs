//! The idle reaper: expires sandboxes past their TTL and drops workspaces
//! past their retention, every `reap_interval_ms`.

use super::{now, OwnerKind, Registry};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, Instrument};

pub struct IdleReaper;

impl IdleReaper {
    /// Runs until `cancel` fires.
    pub fn spawn(
        registry: Registry,
        interval: Duration,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => registry.reap_once().await,
                    }
                }
            }
            .instrument(info_span!("reaper")),
        )
    }
}

/// A one-shot session older than this without a container is a leftover.
pub(super) const ONE_SHOT_LEFTOVER_SECS: i64 = 300;

impl Registry {
    /// One pass of the reaper: expire idle sandboxes, drop workspaces past
    /// their retention.
    pub async fn reap_once(&self) {
        let t = now();
        let retention = self.shared.config.retention_secs as i64;
        // What no live replica holds and is due is taken here first; then
        // only what this replica holds is acted on (each thing once).
        self.adopt_unleased(false).await;
        for session in self.all().into_iter().filter(|s| s.leased()) {
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
}
