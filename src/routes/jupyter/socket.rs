//! The channels socket (`/jupyter/api/kernels/{id}/channels`): one client's
//! socket relayed to its kernel, in either framing.

use super::kernel::Kernel;
use super::sockets::SocketSlot;
use super::{wire, GatewayCaller};
use crate::error::{AppError, ErrorCode};
use crate::routes::outbox::{Outbox, Queued};
use crate::routes::AppState;
use crate::sessions::AbortOnDrop;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

/// The binary framing of Jupyter Server's kernel websocket protocol v1.
const V1_PROTOCOL: &str = "v1.kernel.websocket.jupyter.org";

pub(super) async fn channels(
    State(state): State<AppState>,
    caller: GatewayCaller,
    Path(id): Path<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let kernel = state.jupyter.get(&caller.0, &id)?;
    let slot = state
        .jupyter
        .socket_slot(&caller.0, state.config.jupyter_sockets_per_token)?;
    let ws = ws.map_err(|_| {
        AppError::new(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::UpgradeRequired,
            "The channels endpoint speaks WebSocket only.",
        )
    })?;
    let ws = ws.protocols([V1_PROTOCOL]);
    let v1 = ws.selected_protocol().is_some();
    let shutdown = state.shutdown.clone();
    let tracker = state.sockets.clone();
    let span = info_span!("jupyter_socket", owner = %kernel.session.owner, kernel = %kernel.id);
    // A client's message at most what the agent takes in one frame.
    let cap = state.config.max_frame_bytes.max(64 * 1024);
    let limits = Limits {
        queue_bytes: state.config.socket_queue_bytes,
        send_timeout: Duration::from_secs(state.config.socket_send_timeout_secs.max(1)),
    };
    Ok(ws
        .max_message_size(cap)
        .max_frame_size(cap)
        .on_upgrade(move |socket| {
            tracker.track_future(
                async move {
                    relay(socket, &kernel, v1, slot, limits, shutdown).await;
                }
                .instrument(span),
            )
        }))
}

/// What bounds one socket: the bytes queued for its client, and the time
/// its client may take to accept one message.
#[derive(Clone, Copy)]
struct Limits {
    queue_bytes: usize,
    send_timeout: Duration,
}

/// The close a client that fell a whole queue behind gets (1008: policy).
const CLOSE_BEHIND: u16 = 1008;
/// How long a close may wait to be queued, or the socket to be closed.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Moves messages between one client socket and its kernel: the kernel's
/// go through an outbox bounded in bytes to a writer task that owns the
/// sink; the client's are read here.
async fn relay(
    socket: WebSocket,
    kernel: &Arc<Kernel>,
    v1: bool,
    slot: SocketSlot,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let (sink, mut stream) = socket.split();
    let (outbox, out_rx, budget) = Outbox::new(limits.queue_bytes);
    let overflow = CancellationToken::new();
    let writer_gone = CancellationToken::new();
    let writer = tokio::spawn(write(
        sink,
        out_rx,
        budget,
        overflow.clone(),
        writer_gone.clone(),
        limits,
    ));
    let mut writer = AbortOnDrop(writer);
    let me = kernel.connect(outbox.clone(), v1, overflow.clone());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let bye = Message::Close(Some(CloseFrame { code: 1001, reason: "the server is shutting down".into() }));
                let _ = tokio::time::timeout(CLOSE_WAIT, outbox.send(bye)).await;
                break;
            }
            _ = overflow.cancelled() => break,
            _ = writer_gone.cancelled() => break,
            m = stream.next() => {
                let (channel, message) = match m {
                    Some(Ok(Message::Text(t))) => match wire::parse_text(t.as_str()) {
                        Ok(p) => p,
                        Err(e) => { tracing::debug!(error = %e, "a bad message from a client"); continue }
                    },
                    Some(Ok(Message::Binary(b))) => match wire::parse_binary(&b, v1) {
                        Ok(p) => p,
                        Err(e) => { tracing::debug!(error = %e, "a bad message from a client"); continue }
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                if let Err(e) = kernel.send(me, &channel, &message).await {
                    tracing::debug!(code = %e.code, "a client message was not sent");
                    if e.status != StatusCode::BAD_REQUEST {
                        break;
                    }
                }
            }
        }
    }
    // No longer a connection of the kernel's (nor fed by it); the writer
    // sends what is queued, or the close, while the client reads.
    kernel.disconnect(me);
    drop(outbox);
    let _ = tokio::time::timeout(2 * limits.send_timeout + CLOSE_WAIT, &mut writer.0).await;
    // The token's count goes down only now: a writer still holding its
    // queue (a client that stopped reading) still counts, so closing and
    // reopening sockets cannot pile up queues past the cap.
    drop(slot);
}

/// The writer: sends what is queued until the queue ends, a send takes
/// longer than the send timeout, or the client fell a whole queue behind,
/// which drops the queue and closes the socket with a reason.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut out_rx: mpsc::Receiver<Queued>,
    budget: Arc<Semaphore>,
    overflow: CancellationToken,
    gone: CancellationToken,
    limits: Limits,
) {
    let behind = loop {
        let queued = tokio::select! {
            biased;
            _ = overflow.cancelled() => break true,
            q = out_rx.recv() => match q {
                Some(q) => q,
                None => break false,
            },
        };
        let closing = matches!(queued.msg, Message::Close(_));
        tokio::select! {
            biased;
            _ = overflow.cancelled() => break true,
            r = tokio::time::timeout(limits.send_timeout, sink.send(queued.msg)) => match r {
                Ok(Ok(())) if !closing => {}
                _ => break false,
            },
        }
    };
    // What was queued is let go (and nothing more is taken).
    budget.close();
    drop(out_rx);
    gone.cancel();
    if behind {
        let reason = format!(
            "the client fell {} bytes behind the kernel's messages",
            limits.queue_bytes
        );
        let close = Message::Close(Some(CloseFrame {
            code: CLOSE_BEHIND,
            reason: reason.into(),
        }));
        // As long as any one message may take: the client gets what the
        // transport holds, then the reason, when it reads again.
        let _ = tokio::time::timeout(limits.send_timeout, sink.send(close)).await;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, sink.close()).await;
}
