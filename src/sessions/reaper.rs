//! The idle reaper: expires sandboxes past their TTL and drops workspaces
//! past their retention, every `reap_interval_ms`.

use super::Registry;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

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
