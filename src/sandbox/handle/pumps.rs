//! The two tasks of a connection: the writer batches frames to the agent;
//! the reader decodes the agent's frames and routes each to its job (by
//! job id) or to the request that waits for it (by request id).

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
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub(super) async fn write_frames(
    mut input: Pin<Box<dyn AsyncWrite + Send>>,
    mut rx: mpsc::Receiver<ToAgent>,
    cancel: CancellationToken,
) {
    let mut buf = BytesMut::new();
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => break,
            f = rx.recv() => match f { Some(f) => f, None => break },
        };
        buf.clear();
        if let Err(e) = encode_frame(&frame, &mut buf) {
            warn!(error = %e, "cannot encode a frame for the agent");
            continue;
        }
        // Batch what is already queued into one write.
        while buf.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(f) => {
                    let _ = encode_frame(&f, &mut buf);
                }
                Err(_) => break,
            }
        }
        if input.write_all(&buf).await.is_err() || input.flush().await.is_err() {
            break;
        }
    }
    let _ = input.shutdown().await;
}

pub(super) async fn read_frames(
    mut output: AgentOutput,
    routes: Arc<Routes>,
    alive: watch::Sender<bool>,
    cancel: CancellationToken,
    container: String,
) {
    let mut codec = FrameCodec::<FromAgent>::new();
    let mut buf = BytesMut::new();
    let mut stderr_line = Vec::new();
    'outer: loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => break,
            item = output.next() => item,
        };
        let bytes = match item {
            Some(Ok(bollard::container::LogOutput::StdOut { message })) => message,
            Some(Ok(bollard::container::LogOutput::StdErr { message })) => {
                // The agent's own diagnostics: to the log, a line at a time.
                for &b in message.iter() {
                    if b == b'\n' {
                        debug!(%container, "agent: {}", String::from_utf8_lossy(&stderr_line));
                        stderr_line.clear();
                    } else if stderr_line.len() < 4096 {
                        stderr_line.push(b);
                    }
                }
                continue;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                debug!(%container, error = %e, "agent stream ended with an error");
                break;
            }
            None => break,
        };
        buf.extend_from_slice(&bytes);
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
            if !route(&routes, frame).await {
                break 'outer;
            }
        }
    }
    let _ = alive.send(false);
    // Dropping the senders tells every waiting job and request.
    routes.jobs.locked().clear();
    routes.pending.clear();
}

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
