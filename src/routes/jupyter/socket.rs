//! The channels socket (`/jupyter/api/kernels/{id}/channels`): one client's
//! socket relayed to its kernel, in either framing.

use super::kernels::Kernel;
use super::{wire, GatewayCaller};
use crate::error::{AppError, ErrorCode};
use crate::routes::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
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
    Ok(ws
        .max_message_size(cap)
        .max_frame_size(cap)
        .on_upgrade(move |socket| {
            tracker.track_future(
                async move {
                    let me = kernel.connect();
                    relay(socket, &kernel, me, v1, shutdown).await;
                    kernel.disconnect(me);
                }
                .instrument(span),
            )
        }))
}

/// How long a socket may take to accept one message before it is closed.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Moves messages between one client socket and its kernel.
pub(super) async fn relay(
    socket: WebSocket,
    kernel: &Arc<Kernel>,
    me: u64,
    v1: bool,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let (mut sink, mut stream) = socket.split();
    let mut from_kernel = kernel.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code: 1001, reason: "the server is shutting down".into() }))).await;
                break;
            }
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
            out = from_kernel.recv() => {
                let out = match out {
                    Ok(out) => out,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a slow Jupyter client missed kernel messages");
                        continue;
                    }
                    Err(RecvError::Closed) => break,
                };
                if !kernel.is_for(me, &out) {
                    continue;
                }
                let frame = if v1 {
                    Message::Binary(wire::to_v1(&out).into())
                } else {
                    Message::Text(out.message.to_string().into())
                };
                match tokio::time::timeout(SEND_TIMEOUT, sink.send(frame)).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
        }
    }
}
