//! A session's last activity, written to the store off the request path.
//! A run, a file write or a keystroke never waits for the store, whose one
//! writer may be busy (lease renewals rewrite every held lease; SQLite
//! checkpoints its log with an fsync): `touch` hands the time to one
//! writer task through a bounded queue, and a full queue drops it (the
//! next touch offers again). The write only moves the time forward, so
//! writes that land out of order lose nothing.

use super::{now, AbortOnDrop, Registry, Session, SessionEvent};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{warn, Instrument};

/// Times waiting to be written, at most (one per active session per five
/// seconds: a thousand sessions each running all the time fill a tenth).
const QUEUE: usize = 4096;

/// Written at most this many at once (one statement each).
const BATCH: usize = 256;

pub(super) struct Activity {
    tx: mpsc::Sender<(String, i64)>,
    rx: Mutex<Option<mpsc::Receiver<(String, i64)>>>,
}

impl Activity {
    pub(super) fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Activity {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Queues `owner`'s activity at `at` (unix seconds) for the store;
    /// false when the queue is full (or no writer runs).
    pub(super) fn offer(&self, owner: &str, at: i64) -> bool {
        self.tx.try_send((owner.to_string(), at)).is_ok()
    }
}

impl Session {
    /// Records user input: a run, stdin, a file write, an API call. The
    /// store hears of it at most every five seconds, through the writer
    /// below, never on this path.
    pub async fn touch(&self) {
        let (expiry, changed) = {
            let mut state = self.lock();
            state.last_active = now();
            let expiry = self.expiry_of(&state);
            let changed = expiry != state.last_expiry_sent;
            state.last_expiry_sent = expiry;
            // Not held here: another replica's record is the truth.
            if state.last_active - state.persisted_active >= 5
                && !state.removed
                && state.leased_at.is_some()
                && self.shared.activity.offer(&self.owner, state.last_active)
            {
                state.persisted_active = state.last_active;
            }
            (expiry, changed)
        };
        if changed {
            self.hub
                .send(SessionEvent::Expiry { expires_at: expiry })
                .await;
        }
    }
}

impl Registry {
    /// Writes queued activity until `cancel`, then what is still queued.
    pub fn spawn_activity(&self, cancel: CancellationToken) -> AbortOnDrop {
        let registry = self.clone();
        let rx = self.shared.activity.rx.lock().unwrap().take();
        AbortOnDrop(tokio::spawn(
            async move {
                let Some(mut rx) = rx else { return };
                let mut batch = Vec::with_capacity(BATCH);
                loop {
                    let got = tokio::select! {
                        _ = cancel.cancelled() => {
                            rx.close();
                            rx.recv_many(&mut batch, QUEUE).await
                        }
                        n = rx.recv_many(&mut batch, BATCH) => n,
                    };
                    if got == 0 {
                        break;
                    }
                    registry.write_activity(&mut batch).await;
                }
            }
            .instrument(tracing::info_span!("activity")),
        ))
    }

    async fn write_activity(&self, batch: &mut Vec<(String, i64)>) {
        // The latest time per owner, once.
        let mut latest: HashMap<String, i64> = HashMap::new();
        for (owner, at) in batch.drain(..) {
            let t = latest.entry(owner).or_insert(at);
            *t = (*t).max(at);
        }
        for (owner, at) in latest {
            if let Err(e) = self.shared.store.touch(&owner, at).await {
                warn!(%owner, error = %e, "cannot record a sandbox's activity");
            }
        }
    }
}
