//! The page's WebSocket (`/ws`, by session cookie) and the socket loop the
//! API's `/api/v1/sandboxes/{taskId}/ws` shares: the upgrade here, the loop
//! in `socket.rs` (generic over any Sink/Stream of messages), following
//! jobs (replay, gaps) in `follow.rs`, a client frame's handling in
//! `dispatch.rs`.

mod dispatch;
mod follow;
mod socket;

use socket::{error_message, frame_message, run_socket};

use super::browser_session::BrowserSession;
use super::frames::{
    decode_stdin, encode_output, entries, rfc3339, ClientFrame, Encoding, ExitFrame, JobInfo,
    LanguageInfo, OutputMode, ServerFrame,
};
use super::outbox::Outbox;
use super::{browser_session, AppState};
use crate::error::{AppError, ErrorCode};
use crate::services::{files, jobs, kernels, runs, shells};
use crate::sessions::{JobKind, JobRecord, Session, SessionEvent, Status};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use replbox_protocol::{FileOp, FileReply, JobId, KernelRequest, PtySize};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, Instrument};

pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(page_socket))
}

#[derive(Debug, Deserialize, Default)]
pub struct SocketParams {
    #[serde(default)]
    pub output: OutputMode,
    /// The student's workspace of this exercise instead of the main one.
    pub exercise: Option<String>,
}

/// Close codes.
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_TOO_BIG: u16 = 1009;
/// Another server replica took the sandbox over: reconnect.
pub const CLOSE_SERVICE_RESTART: u16 = 1012;
/// The sandbox expired (files kept).
pub const CLOSE_EXPIRED: u16 = 4000;

async fn page_socket(
    State(state): State<AppState>,
    session: BrowserSession,
    headers: HeaderMap,
    Query(params): Query<SocketParams>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let ws = ws.map_err(upgrade_required)?;
    check_origin(&state, &headers)?;
    let owner = browser_session::existing_owner(&session).await?;
    // At most REPLBOX_SOCKETS_PER_SESSION sockets per browser.
    let turn = state.services.limits.open_socket(&owner)?;
    let sandbox = match &params.exercise {
        None => browser_session::sandbox(&state, &owner).await?,
        Some(id) => {
            let student = state.services.joined(&owner).await?;
            let x = state.services.student_exercise(&student, id).await?;
            state.services.exercise_session(&owner, &x).await?
        }
    };
    Ok(upgrade(state, sandbox, params, ws, Some(turn)))
}

/// A plain request to a socket endpoint.
pub fn upgrade_required(_: WebSocketUpgradeRejection) -> AppError {
    AppError::new(
        axum::http::StatusCode::UPGRADE_REQUIRED,
        ErrorCode::UpgradeRequired,
        "This address is a WebSocket: connect with a WebSocket client.",
    )
}

/// Refuses a browser whose page came from another origin.
fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    if super::cross_site::origin_allowed(&state.config, headers) {
        Ok(())
    } else {
        Err(AppError::new(
            axum::http::StatusCode::FORBIDDEN,
            ErrorCode::OriginRefused,
            "This socket only accepts pages served by this server.",
        ))
    }
}

/// Upgrades to the socket loop for one session.
pub fn upgrade(
    state: AppState,
    sandbox: Arc<Session>,
    params: SocketParams,
    ws: WebSocketUpgrade,
    held: Option<crate::limits::Turn>,
) -> Response {
    // Frames above the limit are refused by us with 1009; the transport's
    // own cap sits higher so that we see them and can say so.
    let transport_cap = state
        .config
        .max_frame_bytes
        .saturating_mul(4)
        .max(64 * 1024);
    // Small buffers: a school keeps hundreds of tabs open, mostly idle.
    ws.max_message_size(transport_cap)
        .max_frame_size(transport_cap)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(64 * 1024)
        .on_upgrade(move |socket| {
            let span = info_span!("socket", owner = %sandbox.owner);
            async move {
                run_socket(socket, state, sandbox, params.output).await;
                drop(held);
            }
            .instrument(span)
        })
        .into_response()
}

struct Conn {
    state: AppState,
    sandbox: Arc<Session>,
    mode: OutputMode,
    /// Highest sequence number sent per job.
    seen: HashMap<JobId, u64>,
    /// Jobs whose end was sent.
    ended: HashSet<JobId>,
    out: Outbox,
    tasks: JoinSet<()>,
    /// Requests being handled in the background (file operations, starts).
    inflight: Arc<tokio::sync::Semaphore>,
}

/// Requests of one socket handled at once; past it the socket reads no
/// more frames until one ends.
pub const SOCKET_REQUESTS_IN_FLIGHT: usize = 8;
