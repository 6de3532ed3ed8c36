//! A session's last activity, written to the store off the request path.
//! A run, a file write or a keystroke never waits for the store, whose one
//! writer may be busy (lease renewals rewrite every held lease; SQLite
//! checkpoints its log with an fsync): `touch` hands the time to one
//! writer task through a bounded queue, and a full queue drops it (the
//! next touch offers again). The write only moves the time forward, so
//! writes that land out of order lose nothing.

use super::{AbortOnDrop, Registry};
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
