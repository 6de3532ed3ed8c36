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

/// Why [`Outbox::try_send`] did not queue a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum TryError {
    /// The budget (or the frame count) is spent: the client is not reading.
    Full,
    /// The socket is gone.
    Closed,
}

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
        let n = Self::size(&msg).clamp(1, self.budget) as u32;
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

    /// Queues a frame if the budget has room for it now, without waiting:
    /// for a sender that must not be held up by one slow client (a
    /// kernel's fan-out to its Jupyter sockets), which then closes that
    /// client's socket instead.
    pub fn try_send(&self, msg: Message) -> Result<(), TryError> {
        let n = Self::size(&msg).clamp(1, self.budget) as u32;
        let permit = match self.bytes.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits) => return Err(TryError::Full),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(TryError::Closed),
        };
        self.tx
            .try_send(Queued {
                msg,
                _permit: permit,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => TryError::Full,
                mpsc::error::TrySendError::Closed(_) => TryError::Closed,
            })
    }

    fn size(msg: &Message) -> usize {
        match msg {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 16,
        }
    }

    /// The budget in bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Frames queued now, and the most that may be.
    pub fn queued_frames(&self) -> (usize, usize) {
        (
            self.tx.max_capacity() - self.tx.capacity(),
            self.tx.max_capacity(),
        )
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.budget - self.bytes.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_send_refuses_past_the_budget_and_after_close() {
        let (out, mut rx, bytes) = Outbox::new(10);
        assert_eq!(out.try_send(Message::Text("123456".into())), Ok(()));
        assert_eq!(
            out.try_send(Message::Text("123456".into())),
            Err(TryError::Full)
        );
        assert_eq!(out.queued_bytes(), 6);
        assert_eq!(out.queued_frames(), (1, FRAMES));
        drop(rx.try_recv().unwrap());
        assert_eq!(out.try_send(Message::Text("123456".into())), Ok(()));
        bytes.close();
        assert_eq!(
            out.try_send(Message::Text("1".into())),
            Err(TryError::Closed)
        );
    }
}
