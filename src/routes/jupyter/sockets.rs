//! One channels socket as its kernel sees it: where its messages are
//! queued (bounded in bytes, never waited for), and its place in the
//! caller's count of open sockets.

use super::messages::{stream_note, Outgoing};
use super::wire;
use crate::routes::outbox::{Outbox, TryError};
use axum::extract::ws::Message;
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Where one channels socket's kernel messages go.
pub(super) struct SocketTx {
    pub(super) outbox: Outbox,
    pub(super) v1: bool,
    pub(super) overflow: CancellationToken,
    /// Output not sent to this client since it last had room: how many
    /// messages, how many bytes, and the parent header of the last one.
    pub(super) dropped: Option<(usize, usize, String)>,
}

impl SocketTx {
    /// Queues `out` within the socket's byte budget, without waiting.
    /// Output (iopub but status) may take half the budget (and half the
    /// queue's frames): past it, it is
    /// dropped for this client, which is told so (a stream message in the
    /// cell) as soon as there is room again. Status messages and replies,
    /// which clients wait for, may use the rest; a client that lets even
    /// those fill its budget is not reading, and its socket is closed.
    pub(super) fn queue(&mut self, out: &Outgoing, v1: &mut Option<Bytes>) {
        let output = out.channel == "iopub" && out.msg_type != "status";
        // Output may use half the bytes and half the frames, so replies
        // and status messages always have the other half.
        let room = |tx: &Self, len: usize| {
            let (frames, max_frames) = tx.outbox.queued_frames();
            !output
                || (tx.outbox.queued_bytes() + len <= tx.outbox.budget() / 2
                    && frames + 2 <= max_frames / 2)
        };
        if let Some((count, bytes, parent)) = &self.dropped {
            let text = format!(
                "[replbox: {count} output messages ({bytes} bytes) were not sent here: \
                 this client fell behind the kernel]\n"
            );
            let Some(note) = stream_note(parent, &Value::Null, &text) else {
                return;
            };
            if !room(self, note.text.len() + out.text.len()) {
                self.drop_one(out);
                return;
            }
            let frame = self.frame(&note, &mut None);
            if !self.send(frame) {
                return;
            }
            self.dropped = None;
        }
        if !room(self, out.text.len()) {
            self.drop_one(out);
            return;
        }
        let frame = self.frame(out, v1);
        self.send(frame);
    }

    fn frame(&self, out: &Outgoing, v1: &mut Option<Bytes>) -> Message {
        if self.v1 {
            Message::Binary(v1.get_or_insert_with(|| wire::to_v1(out).into()).clone())
        } else {
            Message::Text(out.text.clone())
        }
    }

    /// Whether the frame was queued; a full budget closes the socket.
    fn send(&self, frame: Message) -> bool {
        match self.outbox.try_send(frame) {
            Ok(()) => true,
            Err(TryError::Closed) => false,
            Err(TryError::Full) => {
                tracing::warn!("a Jupyter client fell a whole queue behind: closing its socket");
                self.overflow.cancel();
                false
            }
        }
    }

    fn drop_one(&mut self, out: &Outgoing) {
        let parent = String::from_utf8_lossy(out.part(1)).into_owned();
        let (count, bytes) = self.dropped.as_ref().map_or((0, 0), |d| (d.0, d.1));
        self.dropped = Some((count + 1, bytes + out.text.len(), parent));
    }
}

/// One open channels socket of a caller, counted until dropped.
pub struct SocketSlot {
    pub(super) sockets: Arc<Mutex<HashMap<String, usize>>>,
    pub(super) caller: String,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.sockets.lock().unwrap();
        if let Some(n) = open.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.caller);
            }
        }
    }
}
