//! Fans a session's events out to its sockets.

use super::SessionEvent;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

/// Events in flight per session. Every slot is allocated (and written) when
/// the session is made, so this is paid by every idle session: 512 slots
/// were about 45 KB each, 128 are about 11 KB. Output waits for the slowest
/// socket past 16 (up to 256 KiB each: the socket's outbox, not the hub,
/// does the buffering); the wide margin above it is what keeps a socket
/// that stops reading for a moment from lagging (a lagging socket replays).
const HUB_CAPACITY: usize = 128;
const HUB_HIGH_WATER: usize = 16;
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
