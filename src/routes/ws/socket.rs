//! The socket loop: one writer task owns the sink; the loop reads client
//! frames, session events and finished requests. Generic over the
//! transport (any `Sink`/`Stream` of messages), so it is tested without a
//! server or an engine.

use super::*;
use crate::error::{clip, REASON_CHARS};
use futures::{Sink, Stream};

pub(super) async fn run_socket<S>(
    socket: S,
    state: AppState,
    sandbox: Arc<Session>,
    mode: OutputMode,
) where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Send + 'static,
{
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
            msg = stream.next() => match incoming(msg, max) {
                Incoming::Frame(frame) => conn.handle(frame).await,
                Incoming::Stdin(job, bytes) => conn.stdin(job, bytes).await,
                Incoming::Refuse(message) => conn.refuse(ErrorCode::BadFrame, message).await,
                Incoming::Ignore => {}
                Incoming::TooBig => {
                    conn.close(CLOSE_TOO_BIG, "frame too large").await;
                    break;
                }
                Incoming::End => break,
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

/// What a message from the client asks for.
#[derive(Debug)]
pub(super) enum Incoming {
    Frame(ClientFrame),
    Stdin(JobId, Vec<u8>),
    /// A frame that is not valid: `bad_frame` with this sentence.
    Refuse(String),
    /// Past `max_frame_bytes` (or the transport's cap): close with 1009.
    TooBig,
    /// Pings and pongs.
    Ignore,
    /// The client closed, or the transport failed.
    End,
}

/// Reads one message from the client (`None`: the stream ended).
pub(super) fn incoming(msg: Option<Result<Message, axum::Error>>, max: usize) -> Incoming {
    match msg {
        Some(Ok(Message::Text(text))) => {
            if text.len() > max {
                return Incoming::TooBig;
            }
            match serde_json::from_str::<ClientFrame>(&text) {
                Ok(frame) => Incoming::Frame(frame),
                Err(e) => Incoming::Refuse(format!(
                    "That frame is not valid: {}.",
                    clip(&e.to_string(), REASON_CHARS)
                )),
            }
        }
        Some(Ok(Message::Binary(data))) => {
            if data.len() > max {
                return Incoming::TooBig;
            }
            match decode_stdin(&data) {
                Some((job, bytes)) => Incoming::Stdin(job, bytes.to_vec()),
                None => Incoming::Refuse(
                    "A binary frame must be 0x02, a job id (8 bytes) and the input.".into(),
                ),
            }
        }
        Some(Ok(Message::Close(_))) | None => Incoming::End,
        Some(Ok(_)) => Incoming::Ignore,
        Some(Err(e)) => {
            debug!(error = %e, "socket read failed");
            if frame_too_large(e) {
                Incoming::TooBig
            } else {
                Incoming::End
            }
        }
    }
}

/// Whether a read failed on a frame past the transport's cap.
pub(super) fn frame_too_large(e: axum::Error) -> bool {
    matches!(
        e.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

pub(super) fn hello(state: &AppState, sandbox: &Session, mode: OutputMode) -> ServerFrame {
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

pub(super) fn error_message(
    e: impl Into<AppError>,
    reference: Option<serde_json::Value>,
) -> Message {
    let e = e.into();
    frame_message(&ServerFrame::Error {
        code: e.code,
        message: e.message,
        reference,
    })
}

pub(super) fn frame_message(frame: &ServerFrame) -> Message {
    Message::Text(serde_json::to_string(frame).unwrap_or_default().into())
}

impl Conn {
    /// Handles a request in the background, at most
    /// `SOCKET_REQUESTS_IN_FLIGHT` at once (waiting for a turn slows the
    /// client down: its next frames are not read meanwhile).
    pub(super) async fn spawn(
        &mut self,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let Ok(turn) = self.inflight.clone().acquire_owned().await else {
            return;
        };
        self.tasks.spawn(async move {
            task.await;
            drop(turn);
        });
    }

    pub(super) async fn send(&self, frame: ServerFrame) {
        let _ = self.out.send(frame_message(&frame)).await;
    }

    pub(super) async fn close(&self, code: u16, reason: &str) {
        let _ = self
            .out
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.to_string().into(),
            })))
            .await;
    }

    /// An error frame about a client's frame that refers to no request.
    pub(super) async fn refuse(&self, code: ErrorCode, message: impl Into<String>) {
        self.send(ServerFrame::Error {
            code,
            message: message.into(),
            reference: None,
        })
        .await
    }

    pub(super) async fn reply_error(
        &self,
        e: impl Into<AppError>,
        reference: Option<serde_json::Value>,
    ) {
        let _ = self.out.send(error_message(e, reference)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Option<Result<Message, axum::Error>> {
        Some(Ok(Message::Text(s.to_string().into())))
    }

    #[test]
    fn client_messages_are_read_or_refused_clearly() {
        assert!(matches!(
            incoming(text(r#"{"type":"ping","ref":1}"#), 1024),
            Incoming::Frame(ClientFrame::Ping { .. })
        ));
        match incoming(text(r#"{"type":"nope"}"#), 1024) {
            Incoming::Refuse(m) => assert!(m.starts_with("That frame is not valid"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            incoming(text(&"x".repeat(2000)), 1024),
            Incoming::TooBig
        ));
        let mut stdin = vec![0x02];
        stdin.extend_from_slice(&5u64.to_be_bytes());
        stdin.extend_from_slice(b"hi");
        assert!(matches!(
            incoming(Some(Ok(Message::Binary(stdin.into()))), 1024),
            Incoming::Stdin(5, ref b) if b == b"hi"
        ));
        assert!(matches!(
            incoming(Some(Ok(Message::Binary(vec![9u8; 3].into()))), 1024),
            Incoming::Refuse(_)
        ));
        assert!(matches!(
            incoming(Some(Ok(Message::Binary(vec![2u8; 2000].into()))), 1024),
            Incoming::TooBig
        ));
        assert!(matches!(
            incoming(Some(Ok(Message::Ping(Default::default()))), 1024),
            Incoming::Ignore
        ));
        assert!(matches!(
            incoming(Some(Ok(Message::Close(None))), 1024),
            Incoming::End
        ));
        assert!(matches!(incoming(None, 1024), Incoming::End));
        assert!(matches!(
            incoming(
                Some(Err(axum::Error::new(std::io::Error::other("reset")))),
                1024
            ),
            Incoming::End
        ));
        assert!(matches!(
            incoming(
                Some(Err(axum::Error::new(tungstenite::Error::Capacity(
                    tungstenite::error::CapacityError::MessageTooLong {
                        size: 9,
                        max_size: 1
                    }
                )))),
                1024
            ),
            Incoming::TooBig
        ));
    }
}
