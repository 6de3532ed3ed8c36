//! The two tasks of a connection: the writer batches frames to the agent;
//! the reader decodes the agent's frames and routes each to its job (by
//! job id) or to the request that waits for it (by request id). Both start
//! on the attach stream and move to the direct socket at the hand-over:
//! the writer when it is given the socket (nothing is queued meanwhile),
//! the reader at the agent's `Direct` answer, its last frame on stdout.

use super::job::JobEvent;
use super::pending::{Reply, LIST_JOBS};
use super::{AgentOutput, Routes};
use crate::sync::Lock;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use replbox_protocol::{
    codec::encode_frame, FrameCodec, FromAgent, JobId, Stream as OutStream, ToAgent,
};
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Writes frames to the agent: on the attach stream, and on the socket
/// once its write half arrives on `direct` (the attach stream then stays
/// open, unused, as the next server's way in).
pub(super) async fn write_frames(
    mut attach: Pin<Box<dyn AsyncWrite + Send>>,
    mut rx: mpsc::Receiver<ToAgent>,
    direct: oneshot::Receiver<OwnedWriteHalf>,
    cancel: CancellationToken,
) {
    let mut direct = Some(direct);
    let mut socket: Option<OwnedWriteHalf> = None;
    let mut buf = BytesMut::new();
    loop {
        let frame = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            half = async { direct.as_mut().expect("guarded").await }, if direct.is_some() => {
                direct = None;
                socket = half.ok();
                continue;
            }
            f = rx.recv() => match f { Some(f) => f, None => break },
        };
        buf.clear();
        if let Err(e) = encode_frame(&frame, &mut buf) {
            warn!(error = %e, "cannot encode a frame for the agent");
            continue;
        }
        // Batch what is already queued into one write (nothing is queued
        // while the socket is handed over: the handle is not out yet).
        while buf.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(f) => {
                    let _ = encode_frame(&f, &mut buf);
                }
                Err(_) => break,
            }
        }
        let sink: &mut (dyn AsyncWrite + Send + Unpin) = match &mut socket {
            Some(socket) => socket,
            None => &mut attach,
        };
        if sink.write_all(&buf).await.is_err() || sink.flush().await.is_err() {
            break;
        }
        if buf.capacity() > 1 << 20 {
            buf = BytesMut::new();
        }
    }
    if let Some(mut socket) = socket {
        let _ = socket.shutdown().await;
    }
    let _ = attach.shutdown().await;
}

/// Where the agent's frames come from: the attach stream, then the socket.
enum Source {
    Attach(AgentOutput),
    Socket(OwnedReadHalf, ReadRoom),
}

impl Source {
    /// Adds the next bytes of frames to `buf`; false at the end.
    async fn fill(&mut self, buf: &mut BytesMut, stderr: &mut Diagnostics) -> bool {
        match self {
            Source::Attach(output) => loop {
                match output.next().await {
                    Some(Ok(bollard::container::LogOutput::StdOut { message })) => {
                        buf.extend_from_slice(&message);
                        return true;
                    }
                    Some(Ok(bollard::container::LogOutput::StdErr { message })) => {
                        stderr.add(&message)
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        debug!(container = %stderr.container, error = %e, "agent stream ended with an error");
                        return false;
                    }
                    None => return false,
                }
            },
            Source::Socket(socket, room) => {
                if buf.capacity() - buf.len() < room.size / 2 {
                    buf.reserve(room.size);
                }
                let spare = buf.capacity() - buf.len();
                match socket.read_buf(buf).await {
                    Ok(n) if n > 0 => {
                        room.after_read(n, spare);
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// Once every frame in `buf` is routed: a quiet sandbox gives its read
    /// buffer back (a thousand idle sandboxes would otherwise each keep the
    /// room their last burst of output grew).
    fn settle(&mut self, buf: &mut BytesMut) {
        if let Source::Socket(_, room) = self {
            if buf.is_empty() && buf.capacity() > READ_ROOM_MIN && room.quiet {
                *buf = BytesMut::new();
                // And the next read asks for little: a slice of a big room
                // kept by a job's replay would keep all of it alive.
                room.size = READ_ROOM_MIN;
            }
        }
    }
}

/// How much room the next read from the socket asks for: small while the
/// agent is quiet, doubling while reads fill it (a stream's reads grow to
/// `READ_ROOM_MAX`), halving again once they come back small.
struct ReadRoom {
    size: usize,
    /// The last read was small: the burst, if any, is over.
    quiet: bool,
}

const READ_ROOM_MIN: usize = 4 * 1024;
const READ_ROOM_MAX: usize = 256 * 1024;

impl ReadRoom {
    fn new() -> Self {
        ReadRoom {
            size: READ_ROOM_MIN,
            quiet: true,
        }
    }

    fn after_read(&mut self, n: usize, spare: usize) {
        self.quiet = n < READ_ROOM_MIN;
        if n >= spare / 2 {
            self.size = (self.size * 2).min(READ_ROOM_MAX);
        } else if n < self.size / 8 {
            self.size = (self.size / 2).max(READ_ROOM_MIN);
        }
    }
}

/// The agent's own diagnostics (its stderr): to the log, a line at a time.
struct Diagnostics {
    container: String,
    line: Vec<u8>,
}

impl Diagnostics {
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                debug!(container = %self.container, "agent: {}", String::from_utf8_lossy(&self.line));
                self.line.clear();
            } else if self.line.len() < 4096 {
                self.line.push(b);
            }
        }
    }
}

/// Once on the socket, the attach stream carries only the agent's
/// diagnostics; its end (an engine restart) is not the agent's.
async fn drain_attach(mut output: AgentOutput, mut stderr: Diagnostics, cancel: CancellationToken) {
    loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => return,
            item = output.next() => item,
        };
        match item {
            Some(Ok(bollard::container::LogOutput::StdErr { message })) => stderr.add(&message),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                debug!(container = %stderr.container, "the attach stream ended; the agent stays on its socket");
                return;
            }
        }
    }
}

pub(super) async fn read_frames(
    output: AgentOutput,
    routes: Arc<Routes>,
    alive: watch::Sender<bool>,
    cancel: CancellationToken,
    container: String,
    direct: oneshot::Receiver<OwnedReadHalf>,
) {
    let mut codec = FrameCodec::<FromAgent>::new();
    let mut buf = BytesMut::new();
    let mut stderr = Diagnostics {
        container: container.clone(),
        line: Vec::new(),
    };
    let mut source = Source::Attach(output);
    let mut direct = Some(direct);
    'outer: loop {
        let filled = tokio::select! {
            _ = cancel.cancelled() => break,
            filled = source.fill(&mut buf, &mut stderr) => filled,
        };
        if !filled {
            break;
        }
        while let Some(payload) = codec.decode_raw(&mut buf) {
            // Output, the bulk of all traffic, is sliced out without a copy.
            let frame = match replbox_protocol::split_output(payload.freeze()) {
                Ok((id, stream, data)) => Routed::Output { id, stream, data },
                Err(payload) => match postcard::from_bytes::<FromAgent>(&payload) {
                    Ok(frame) => Routed::Frame(frame),
                    Err(e) => {
                        warn!(%container, error = %e, "undecodable frame from agent");
                        continue;
                    }
                },
            };
            if let Routed::Frame(FromAgent::Direct { nonce, error }) = frame {
                if let Some(message) = error {
                    routes.pending.resolve(nonce, Reply::Direct(Err(message)));
                    continue;
                }
                // The agent's last frame on stdout: the rest come on the
                // socket, whose read half the hand-over sends us.
                let Some(half) = direct.take() else {
                    warn!(%container, "the agent moved to a socket nobody offered");
                    break 'outer;
                };
                let half = match tokio::time::timeout(SWITCH_TIMEOUT, half).await {
                    Ok(Ok(half)) => half,
                    _ => break 'outer,
                };
                let socket = Source::Socket(half, ReadRoom::new());
                let Source::Attach(output) = std::mem::replace(&mut source, socket) else {
                    break 'outer;
                };
                tokio::spawn(drain_attach(
                    output,
                    Diagnostics {
                        container: container.clone(),
                        line: std::mem::take(&mut stderr.line),
                    },
                    cancel.clone(),
                ));
                buf.clear();
                routes.pending.resolve(nonce, Reply::Direct(Ok(())));
                continue 'outer;
            }
            if !route(&routes, frame).await {
                break 'outer;
            }
        }
        source.settle(&mut buf);
    }
    let _ = alive.send(false);
    // Dropping the senders tells every waiting job and request.
    routes.jobs.locked().clear();
    routes.pending.clear();
}

/// How long the reader waits for the socket the agent says it moved to.
const SWITCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A frame from the agent, its output data already sliced out.
enum Routed {
    Frame(FromAgent),
    Output {
        id: JobId,
        stream: OutStream,
        data: Bytes,
    },
}

/// Delivers one frame; false when the connection should end.
async fn route(routes: &Routes, frame: Routed) -> bool {
    let frame = match frame {
        Routed::Output { id, stream, data } => {
            return deliver(routes, id, JobEvent::Output { stream, data }, false).await;
        }
        Routed::Frame(frame) => frame,
    };
    let (id, event, last) = match frame {
        FromAgent::Hello {
            version,
            nonce,
            agent,
        } => {
            routes
                .pending
                .resolve(nonce, Reply::Hello { version, agent });
            return true;
        }
        FromAgent::Started { id, pid } => (id, JobEvent::Started { pid }, false),
        FromAgent::Output { id, stream, data } => (
            id,
            JobEvent::Output {
                stream,
                data: Bytes::from(data),
            },
            false,
        ),
        FromAgent::Exit { id, exit } => (id, JobEvent::Exit(exit), true),
        FromAgent::SpawnFailed { id, message } => (id, JobEvent::SpawnFailed(message), true),
        FromAgent::File { req, result } => {
            routes.pending.resolve(req, Reply::File(result));
            return true;
        }
        FromAgent::Jobs { running } => {
            routes.pending.resolve(LIST_JOBS, Reply::Jobs(running));
            return true;
        }
        FromAgent::Error { message } => {
            warn!("agent refused a frame: {message}");
            return true;
        }
        FromAgent::KernelSpecs { req, specs } => {
            routes.pending.resolve(req, Reply::KernelSpecs(specs));
            return true;
        }
        FromAgent::KernelReady { id, language } => (id, JobEvent::KernelReady { language }, false),
        FromAgent::KernelMessage {
            id,
            channel,
            message,
        } => (id, JobEvent::KernelMessage { channel, message }, false),
        // Taken by `read_frames` before it routes anything.
        FromAgent::Direct { .. } => return true,
    };
    deliver(routes, id, event, last).await
}

/// Hands an event to its job; `last` ends the job's route.
async fn deliver(routes: &Routes, id: JobId, event: JobEvent, last: bool) -> bool {
    let tx = {
        let jobs = routes.jobs.locked();
        jobs.get(&id).cloned()
    };
    if let Some(tx) = tx {
        // Waiting here slows the agent down when a reader is slow: output
        // is never buffered without bound.
        if tx.send(event).await.is_err() || last {
            routes.jobs.locked().remove(&id);
        }
    }
    true
}

#[cfg(test)]
mod tests;
