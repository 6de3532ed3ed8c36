//! The page's WebSocket (`/ws`, by session cookie) and the socket loop the
//! API's `/api/v1/sandboxes/{taskId}/ws` shares.

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
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
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
/// The sandbox expired (files kept).
pub const CLOSE_EXPIRED: u16 = 4000;

async fn page_socket(
    State(state): State<AppState>,
    session: tower_sessions::Session,
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

async fn run_socket(socket: WebSocket, state: AppState, sandbox: Arc<Session>, mode: OutputMode) {
    let _open = state.sockets.token();
    state.metrics.websocket_connections.inc();
    let (mut sink, mut stream) = socket.split();
    let mut events = sandbox.hub.subscribe();
    let (out_tx, mut out_rx, budget) = Outbox::new(state.config.socket_queue_bytes);
    let send_timeout = std::time::Duration::from_secs(state.config.socket_send_timeout_secs.max(1));
    let shutdown = state.shutdown.clone();
    let mut conn = Conn {
        state: state.clone(),
        sandbox: sandbox.clone(),
        mode,
        seen: HashMap::new(),
        ended: HashSet::new(),
        out: out_tx,
        tasks: JoinSet::new(),
        inflight: Arc::new(tokio::sync::Semaphore::new(SOCKET_REQUESTS_IN_FLIGHT)),
    };

    // Writer: one task owns the sink. A client that takes nothing for the
    // send timeout is disconnected; its frames' budget is then given back.
    let writer_gone = CancellationToken::new();
    let gone = writer_gone.clone();
    let writer = tokio::spawn(async move {
        while let Some(queued) = out_rx.recv().await {
            let closing = matches!(queued.msg, Message::Close(_));
            match tokio::time::timeout(send_timeout, sink.send(queued.msg)).await {
                Ok(Ok(())) if !closing => {}
                Ok(_) => break,
                Err(_) => {
                    debug!("the client reads nothing: closing its socket");
                    budget.close();
                    gone.cancel();
                    return;
                }
            }
        }
        budget.close();
        gone.cancel();
        let _ = sink.close().await;
    });
    let mut writer = crate::sessions::AbortOnDrop(writer);

    conn.send(hello(&state, &sandbox, mode)).await;
    if sandbox.status() == Status::Idle {
        let s = sandbox.clone();
        let out = conn.out.clone();
        conn.tasks.spawn(async move {
            if let Err(e) = s.ensure().await {
                let _ = out.send(error_message(e, None)).await;
            }
        });
    }

    let max = state.config.max_frame_bytes;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                conn.close(CLOSE_GOING_AWAY, "server shutting down").await;
                break;
            }
            _ = writer_gone.cancelled() => break,
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if text.len() > max {
                        conn.close(CLOSE_TOO_BIG, "frame too large").await;
                        break;
                    }
                    match serde_json::from_str::<ClientFrame>(&text) {
                        Ok(frame) => conn.handle(frame).await,
                        Err(e) => conn.refuse(ErrorCode::BadFrame, format!("That frame is not valid: {e}.")).await,
                    }
                }
                Some(Ok(Message::Binary(data))) => {
                    if data.len() > max {
                        conn.close(CLOSE_TOO_BIG, "frame too large").await;
                        break;
                    }
                    match decode_stdin(&data) {
                        Some((job, bytes)) => conn.stdin(job, bytes.to_vec()).await,
                        None => conn.refuse(ErrorCode::BadFrame, "A binary frame must be 0x02, a job id (8 bytes) and the input.").await,
                    }
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    debug!(error = %e, "socket read failed");
                    if frame_too_large(e) {
                        conn.close(CLOSE_TOO_BIG, "frame too large").await;
                    }
                    break;
                }
            },
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if conn.event(ev).await {
                        break;
                    }
                }
                Err(RecvError::Lagged(_)) => conn.catch_up().await,
                Err(RecvError::Closed) => break,
            },
            Some(_) = conn.tasks.join_next(), if !conn.tasks.is_empty() => {}
        }
    }
    conn.tasks.abort_all();
    drop(conn);
    // Let the writer send what is queued (a close frame, say), briefly.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut writer.0).await;
    state.metrics.websocket_connections.dec();
}

/// Whether a read failed on a frame past the transport's cap.
fn frame_too_large(e: axum::Error) -> bool {
    matches!(
        e.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

fn hello(state: &AppState, sandbox: &Session, mode: OutputMode) -> ServerFrame {
    let status = sandbox.status();
    let expires_at = (status != Status::Expired).then(|| rfc3339(sandbox.expires_at()));
    ServerFrame::Hello {
        session: crate::sessions::owner_display(&sandbox.owner).to_string(),
        status,
        expires_at,
        idle_ttl_secs: sandbox.idle_ttl_secs,
        jobs: sandbox
            .jobs()
            .iter()
            .map(|j| JobInfo {
                job: j.id,
                kind: j.kind,
                running: j.is_running(),
                last_seq: j.last_seq(),
            })
            .collect(),
        languages: state
            .services
            .languages
            .values()
            .map(|l| LanguageInfo {
                name: l.name.clone(),
                extension: l.extension.clone(),
            })
            .collect(),
        output: mode,
        max_frame_bytes: state.config.max_frame_bytes,
    }
}

fn error_message(e: impl Into<AppError>, reference: Option<serde_json::Value>) -> Message {
    let e = e.into();
    frame_message(&ServerFrame::Error {
        code: e.code,
        message: e.message,
        reference,
    })
}

fn frame_message(frame: &ServerFrame) -> Message {
    Message::Text(serde_json::to_string(frame).unwrap_or_default().into())
}

impl Conn {
    /// Handles a request in the background, at most
    /// `SOCKET_REQUESTS_IN_FLIGHT` at once (waiting for a turn slows the
    /// client down: its next frames are not read meanwhile).
    async fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let Ok(turn) = self.inflight.clone().acquire_owned().await else {
            return;
        };
        self.tasks.spawn(async move {
            task.await;
            drop(turn);
        });
    }

    async fn send(&self, frame: ServerFrame) {
        let _ = self.out.send(frame_message(&frame)).await;
    }

    async fn close(&self, code: u16, reason: &str) {
        let _ = self
            .out
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.to_string().into(),
            })))
            .await;
    }

    async fn output(
        &mut self,
        job: JobId,
        seq: u64,
        stream: replbox_protocol::Stream,
        data: &[u8],
    ) {
        let msg = match self.mode {
            OutputMode::Binary => Message::Binary(encode_output(job, seq, stream, data).into()),
            OutputMode::Json => frame_message(&ServerFrame::Output {
                job,
                seq,
                stream,
                data: String::from_utf8_lossy(data).into_owned(),
            }),
        };
        let _ = self.out.send(msg).await;
        let last = self.seen.entry(job).or_insert(0);
        *last = (*last).max(seq);
    }

    async fn end(&mut self, record: &JobRecord) {
        if !self.ended.insert(record.id) {
            return;
        }
        let replay = record.replay(u64::MAX);
        match (replay.exit, replay.failed) {
            (Some(exit), _) => {
                self.send(ServerFrame::Exit(ExitFrame::new(record.id, &exit)))
                    .await
            }
            (None, Some(message)) => {
                self.send(ServerFrame::Failed {
                    job: record.id,
                    reference: record.reference.clone(),
                    message,
                })
                .await
            }
            _ => {}
        }
    }

    /// Forwards one session event; true when the socket should close.
    async fn event(&mut self, ev: SessionEvent) -> bool {
        match ev {
            SessionEvent::Started { job, kind, pid } => {
                let reference = self.sandbox.job(job).and_then(|j| j.reference.clone());
                self.seen.entry(job).or_insert(0);
                self.send(ServerFrame::Started {
                    job,
                    reference,
                    kind,
                    pid,
                })
                .await;
            }
            SessionEvent::Output {
                job,
                seq,
                stream,
                data,
            } => {
                // Only jobs this socket follows: started while it watched,
                // or asked for by a replay.
                match self.seen.get(&job).copied() {
                    None => {}
                    Some(last) if seq <= last => {}
                    Some(last) if seq > last + 1 => self.replay(job, last).await,
                    _ => self.output(job, seq, stream, &data).await,
                }
            }
            SessionEvent::Exit { job, .. } | SessionEvent::Failed { job, .. } => {
                if let Some(record) = self.sandbox.job(job) {
                    if let Some(&last) = self.seen.get(&job) {
                        if last < record.last_seq() {
                            self.replay(job, last).await;
                        }
                    }
                    self.end(&record).await;
                }
            }
            SessionEvent::Expiry { expires_at } => {
                self.send(ServerFrame::Expiry {
                    expires_at: rfc3339(expires_at),
                    expires_in_secs: expires_at - crate::sessions::now(),
                })
                .await
            }
            SessionEvent::Status(status) => self.send(ServerFrame::Status { status }).await,
            SessionEvent::Queued { position } => self.send(ServerFrame::Queued { position }).await,
            SessionEvent::KernelReady { job, language } => {
                self.send(ServerFrame::KernelReady {
                    kernel: job,
                    language,
                })
                .await
            }
            SessionEvent::KernelMessage {
                job,
                channel,
                message,
            } => {
                let m: serde_json::Value = serde_json::from_str(&message).unwrap_or_default();
                self.send(ServerFrame::KernelMessage {
                    kernel: job,
                    channel,
                    msg_type: m["header"]["msg_type"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    parent_msg_id: m["parent_header"]["msg_id"].as_str().map(String::from),
                    content: m["content"].clone(),
                })
                .await
            }
            SessionEvent::Expired => {
                self.send(ServerFrame::Expired {
                    message: "Your sandbox stopped after a period of inactivity. Your files are kept: reconnect and restore to continue.".into(),
                })
                .await;
                self.close(CLOSE_EXPIRED, "sandbox expired").await;
                return true;
            }
        }
        false
    }

    /// Sends what the job's buffer holds after `after` (and its end).
    async fn replay(&mut self, job: JobId, after: u64) {
        let Some(record) = self.sandbox.job(job) else {
            self.refuse(
                ErrorCode::UnknownJob,
                format!("There is no job {job} to replay."),
            )
            .await;
            return;
        };
        let replay = record.replay(after);
        if replay.first_seq > after + 1 {
            self.send(ServerFrame::Gap {
                job,
                from: after + 1,
                to: replay.first_seq - 1,
            })
            .await;
        }
        for chunk in &replay.chunks {
            self.output(job, chunk.seq, chunk.stream, &chunk.data).await;
        }
        self.seen.entry(job).or_insert(after);
        if !record.is_running() {
            self.end(&record).await;
        }
    }

    /// After falling behind the hub: replays every job this socket follows.
    async fn catch_up(&mut self) {
        let followed: Vec<(JobId, u64)> = self.seen.iter().map(|(j, s)| (*j, *s)).collect();
        for (job, last) in followed {
            self.replay(job, last).await;
        }
    }

    /// An error frame about a client's frame that refers to no request.
    async fn refuse(&self, code: ErrorCode, message: impl Into<String>) {
        self.send(ServerFrame::Error {
            code,
            message: message.into(),
            reference: None,
        })
        .await
    }

    async fn reply_error(&self, e: impl Into<AppError>, reference: Option<serde_json::Value>) {
        let _ = self.out.send(error_message(e, reference)).await;
    }

    async fn stdin(&self, job: JobId, data: Vec<u8>) {
        if let Err(e) = jobs::stdin(&self.sandbox, job, data).await {
            self.reply_error(e, None).await;
        }
    }

    async fn handle(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Ping { reference } => self.send(ServerFrame::Pong { reference }).await,
            ClientFrame::Stdin { job, data } => self.stdin(job, data.into_bytes()).await,
            ClientFrame::Eof { job } => jobs::close_stdin(&self.sandbox, job).await,
            ClientFrame::Resize { job, rows, cols } => {
                jobs::resize(&self.sandbox, job, rows, cols).await
            }
            ClientFrame::Signal { job, signal } => {
                let Some(signal) = signal.number() else {
                    return self
                        .reply_error(
                            AppError::bad_request(
                                ErrorCode::BadSignal,
                                "Use interrupt, terminate, kill, hangup or a signal number.",
                            ),
                            None,
                        )
                        .await;
                };
                if let Err(e) = jobs::signal(&self.sandbox, job, signal).await {
                    self.reply_error(e, None).await;
                }
            }
            ClientFrame::Replay { job, after } => self.replay(job, after).await,
            ClientFrame::Restore => {
                let s = self.sandbox.clone();
                let out = self.out.clone();
                self.spawn(async move {
                    match s.ensure().await {
                        Ok(_) => s.touch().await,
                        Err(e) => {
                            let _ = out.send(error_message(e, None)).await;
                        }
                    }
                })
                .await;
            }
            ClientFrame::Run(req) => {
                let reference = req.reference.clone();
                let plan =
                    match runs::plan(&req, &self.state.services.languages, &self.state.config) {
                        Ok(p) => p,
                        Err(e) => return self.reply_error(e, reference).await,
                    };
                let s = self.sandbox.clone();
                let out = self.out.clone();
                self.spawn(async move {
                    if let Err(e) = runs::start_run(&s, plan, reference.clone()).await {
                        let _ = out.send(error_message(e, reference)).await;
                    }
                })
                .await;
            }
            ClientFrame::Shell {
                reference,
                rows,
                cols,
                new,
            } => {
                let s = self.sandbox.clone();
                let out = self.out.clone();
                let size = PtySize {
                    rows: rows.unwrap_or(24).clamp(1, 500),
                    cols: cols.unwrap_or(80).clamp(1, 1000),
                };
                self.spawn(async move {
                    match shells::open(&s, size, new, reference.clone()).await {
                        Ok(shells::Opened::Started(_)) => {}
                        Ok(shells::Opened::Reattached(shell)) => {
                            let frame = ServerFrame::Started {
                                job: shell.id,
                                reference,
                                kind: JobKind::Shell,
                                pid: 0,
                            };
                            let _ = out.send(frame_message(&frame)).await;
                        }
                        Err(e) => {
                            let _ = out.send(error_message(e, reference)).await;
                        }
                    }
                })
                .await;
            }
            ClientFrame::KernelStart { reference, name } => {
                let s = self.sandbox.clone();
                let out = self.out.clone();
                let name = name.unwrap_or_else(|| "python3".into());
                self.spawn(async move {
                    if let Err(e) = kernels::start(&s, &name, reference.clone()).await {
                        let _ = out.send(error_message(e, reference)).await;
                    }
                })
                .await;
            }
            ClientFrame::KernelSpecs { reference } => {
                let s = self.sandbox.clone();
                let out = self.out.clone();
                self.spawn(async move {
                    let msg = match kernels::specs(&s).await {
                        Ok(specs) => frame_message(&ServerFrame::KernelSpecs { reference, specs }),
                        Err(e) => error_message(e, reference),
                    };
                    let _ = out.send(msg).await;
                })
                .await;
            }
            ClientFrame::KernelExecute {
                kernel,
                msg_id,
                code,
            } => {
                self.kernel(kernel, KernelRequest::Execute { msg_id, code })
                    .await
            }
            ClientFrame::KernelComplete {
                kernel,
                msg_id,
                code,
                cursor_pos,
            } => {
                self.kernel(
                    kernel,
                    KernelRequest::Complete {
                        msg_id,
                        code,
                        cursor_pos,
                    },
                )
                .await
            }
            ClientFrame::KernelInspect {
                kernel,
                msg_id,
                code,
                cursor_pos,
            } => {
                self.kernel(
                    kernel,
                    KernelRequest::Inspect {
                        msg_id,
                        code,
                        cursor_pos,
                    },
                )
                .await
            }
            ClientFrame::KernelInterrupt { kernel } => {
                self.kernel(kernel, KernelRequest::Interrupt).await
            }
            ClientFrame::KernelShutdown { kernel } => {
                self.kernel(kernel, KernelRequest::Shutdown).await
            }
            ClientFrame::FileList { reference, path } => {
                self.file_op(reference, path.clone(), FileOp::List { path }, false)
                    .await
            }
            ClientFrame::FileRead { reference, path } => {
                self.file_op(reference, path.clone(), FileOp::Read { path }, false)
                    .await
            }
            ClientFrame::FileWrite {
                reference,
                path,
                data,
                encoding,
                if_version,
            } => {
                let bytes = match encoding {
                    Encoding::Utf8 => data.into_bytes(),
                    Encoding::Base64 => {
                        match base64::engine::general_purpose::STANDARD.decode(data) {
                            Ok(b) => b,
                            Err(_) => {
                                return self
                                    .reply_error(
                                        AppError::bad_request(
                                            ErrorCode::BadBase64,
                                            "The data is not valid base64.",
                                        ),
                                        reference,
                                    )
                                    .await
                            }
                        }
                    }
                };
                self.file_op(
                    reference,
                    path.clone(),
                    FileOp::Write {
                        path,
                        data: bytes,
                        parents: true,
                        if_version,
                    },
                    true,
                )
                .await
            }
            ClientFrame::FileMkdir { reference, path } => {
                self.file_op(reference, path.clone(), FileOp::Mkdir { path }, true)
                    .await
            }
            ClientFrame::FileRename {
                reference,
                from,
                to,
            } => {
                self.file_op(reference, to.clone(), FileOp::Rename { from, to }, true)
                    .await
            }
            ClientFrame::FileDelete { reference, path } => {
                self.file_op(reference, path.clone(), FileOp::Delete { path }, true)
                    .await
            }
        }
    }

    async fn kernel(&self, kernel: JobId, request: KernelRequest) {
        if let Err(e) = kernels::request(&self.sandbox, kernel, request).await {
            self.reply_error(e, None).await;
        }
    }

    async fn file_op(
        &mut self,
        reference: Option<serde_json::Value>,
        path: String,
        op: FileOp,
        writes: bool,
    ) {
        let s = self.sandbox.clone();
        let out = self.out.clone();
        self.spawn(async move {
            let frame = match files::file_op(&s, op, writes).await {
                Ok(reply) => file_frame(reference, path, reply),
                Err(e) => {
                    let e = AppError::from(e);
                    ServerFrame::Error {
                        code: e.code,
                        message: e.message,
                        reference,
                    }
                }
            };
            let _ = out.send(frame_message(&frame)).await;
        })
        .await;
    }
}

fn file_frame(reference: Option<serde_json::Value>, path: String, reply: FileReply) -> ServerFrame {
    let (data, encoding, entries, version) = match reply {
        FileReply::Data { data, version } => match String::from_utf8(data) {
            Ok(text) => (Some(text), Some(Encoding::Utf8), None, Some(version)),
            Err(e) => (
                Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
                Some(Encoding::Base64),
                None,
                Some(version),
            ),
        },
        FileReply::Listing(list) => (None, None, Some(entries(list)), None),
        FileReply::Written { version } => (None, None, None, Some(version)),
        FileReply::Done => (None, None, None, None),
    };
    ServerFrame::File {
        reference,
        path,
        data,
        encoding,
        entries,
        version,
    }
}
