//! A socket's outgoing queue, bounded in bytes. Every frame for the client
//! (output, file replies, errors) waits here for the one writer task; a
//! frame takes as many permits as it has bytes (capped at the whole
//! budget), given back once the transport took it. A client that does not
//! read fills the budget, after which senders wait: the socket's loop stops
//! reading the client's frames (its requests in flight are bounded too) and
//! its sandbox's output is left in the replay buffer (`gap` on catch-up).
//! A write that makes no progress for the send timeout closes the socket.

use axum::extract::ws::Message;
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// A frame and its share of the budget.
pub struct Queued {
    pub msg: Message,
    _permit: OwnedSemaphorePermit,
}

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Queued>,
    bytes: Arc<Semaphore>,
    budget: usize,
}

/// The socket is gone (its writer stopped).
#[derive(Debug)]
pub struct Closed;

/// Frames queued at most, whatever their size.
const FRAMES: usize = 256;

impl Outbox {
    /// An outbox of `budget` bytes, the receiver for the writer, and the
    /// semaphore to close when the writer stops.
    pub fn new(budget: usize) -> (Self, mpsc::Receiver<Queued>, Arc<Semaphore>) {
        let budget = budget.clamp(1, Semaphore::MAX_PERMITS);
        let (tx, rx) = mpsc::channel(FRAMES);
        let bytes = Arc::new(Semaphore::new(budget));
        (
            Self {
                tx,
                bytes: bytes.clone(),
                budget,
            },
            rx,
            bytes,
        )
    }

    /// Queues a frame, waiting while the budget is spent.
    pub async fn send(&self, msg: Message) -> Result<(), Closed> {
        let size = match &msg {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 16,
        };
        let n = size.clamp(1, self.budget) as u32;
        let permit = self
            .bytes
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| Closed)?;
        self.tx
            .send(Queued {
                msg,
                _permit: permit,
            })
            .await
            .map_err(|_| Closed)
    }

    /// Bytes queued now (for tests of the bound).
    pub fn queued_bytes(&self) -> usize {
        self.budget - self.bytes.available_permits()
    }
}
