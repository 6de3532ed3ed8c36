//! A live connection to one sandbox's agent over the container's attached
//! stdio: frames out through a writer task, frames in through a reader task
//! that routes them to the job or file request they belong to.

use super::SandboxError;
use crate::sync::Lock;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use replbox_protocol::{
    codec::encode_frame, ExitStatus, FileError, FileOp, FileReply, FrameCodec, FromAgent, JobId,
    JobSpec, RequestId, Stream as OutStream, ToAgent, PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Events of one job, in order; the last is `Exit` or `SpawnFailed`.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    Started {
        pid: i32,
    },
    Output {
        stream: OutStream,
        data: Bytes,
    },
    Exit(ExitStatus),
    SpawnFailed(String),
    /// A kernel job answers.
    KernelReady {
        language: String,
    },
    /// A Jupyter message from a kernel job: its channel and its JSON.
    KernelMessage {
        channel: String,
        message: String,
    },
}

const JOB_EVENTS: usize = 64;
const OUTBOX: usize = 256;
const HELLO_EVERY: Duration = Duration::from_millis(300);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const FILE_TIMEOUT: Duration = Duration::from_secs(60);

type FileWaiter = oneshot::Sender<Result<FileReply, FileError>>;
/// The nonce of the hello we wait for, and who waits (for version, agent).
type HelloWaiter = (u64, oneshot::Sender<(u32, String)>);

#[derive(Default)]
struct Routes {
    jobs: Mutex<HashMap<JobId, mpsc::Sender<JobEvent>>>,
    files: Mutex<HashMap<RequestId, FileWaiter>>,
    hello: Mutex<Option<HelloWaiter>>,
    running: Mutex<Option<oneshot::Sender<Vec<JobId>>>>,
    specs: Mutex<HashMap<RequestId, oneshot::Sender<Vec<replbox_protocol::KernelSpecInfo>>>>,
}

struct Conn {
    container_id: String,
    tx: mpsc::Sender<ToAgent>,
    routes: Arc<Routes>,
    next_id: AtomicU64,
    alive: watch::Receiver<bool>,
    cancel: CancellationToken,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A handle on one sandbox's agent; cheap to clone. When the last clone is
/// dropped the connection's tasks end and the container keeps running.
#[derive(Clone)]
pub struct SandboxHandle {
    conn: Arc<Conn>,
}

impl std::fmt::Debug for SandboxHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxHandle")
            .field("container", &self.conn.container_id)
            .finish()
    }
}

pub(super) type AgentOutput = Pin<
    Box<dyn Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>> + Send>,
>;

impl SandboxHandle {
    /// Wraps an attached container's stdio and performs the handshake.
    pub(super) async fn connect(
        container_id: String,
        output: AgentOutput,
        input: Pin<Box<dyn AsyncWrite + Send>>,
    ) -> Result<Self, SandboxError> {
        let routes = Arc::new(Routes::default());
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel(OUTBOX);
        let (alive_tx, alive) = watch::channel(true);
        let short = container_id.chars().take(12).collect::<String>();

        tokio::spawn(write_frames(input, rx, cancel.clone()));
        tokio::spawn(read_frames(
            output,
            routes.clone(),
            alive_tx,
            cancel.clone(),
            short,
        ));

        let handle = SandboxHandle {
            conn: Arc::new(Conn {
                container_id,
                tx,
                routes,
                // Unique across re-attaches (the agent may still run jobs
                // of an earlier connection) and exact as a JavaScript number.
                next_id: AtomicU64::new(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_micros() as u64)
                        .unwrap_or(1),
                ),
                alive,
                cancel,
            }),
        };
        handle.handshake().await?;
        Ok(handle)
    }

    async fn handshake(&self) -> Result<(), SandboxError> {
        let nonce: u64 = rand::random();
        let (hello_tx, mut hello_rx) = oneshot::channel();
        *self.conn.routes.hello.locked() = Some((nonce, hello_tx));
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        // Repeat the hello: a previous server may have left a partial frame
        // in the agent's buffer, which it drops after a short stall.
        loop {
            self.send(ToAgent::Hello {
                version: PROTOCOL_VERSION,
                nonce,
            })
            .await?;
            tokio::select! {
                reply = &mut hello_rx => {
                    let (version, agent) = reply.map_err(|_| SandboxError::AgentGone)?;
                    if version != PROTOCOL_VERSION {
                        return Err(SandboxError::AgentVersion { server: PROTOCOL_VERSION, agent: version });
                    }
                    debug!(%agent, "agent handshake done");
                    return Ok(());
                }
                _ = tokio::time::sleep(HELLO_EVERY) => {}
            }
            if tokio::time::Instant::now() > deadline {
                return Err(SandboxError::AgentUnresponsive);
            }
        }
    }

    pub fn container_id(&self) -> &str {
        &self.conn.container_id
    }

    /// False once the connection to the agent is lost (container gone).
    pub fn is_alive(&self) -> bool {
        *self.conn.alive.borrow()
    }

    /// Resolves when the connection to the agent is lost.
    pub async fn closed(&self) {
        let mut alive = self.conn.alive.clone();
        let _ = alive.wait_for(|a| !*a).await;
    }

    async fn send(&self, frame: ToAgent) -> Result<(), SandboxError> {
        if !self.is_alive() {
            return Err(SandboxError::AgentGone);
        }
        self.conn
            .tx
            .send(frame)
            .await
            .map_err(|_| SandboxError::AgentGone)
    }

    /// Starts a job; its events arrive on the returned [`Job`].
    pub async fn spawn(&self, spec: JobSpec) -> Result<Job, SandboxError> {
        self.start_job(|id| ToAgent::Spawn { id, spec }).await
    }

    /// Starts a Jupyter kernel (by kernelspec name) as a job; its events
    /// are `KernelReady`, then `KernelMessage`s, and its exit. `cwd` is
    /// relative to /workspace (empty: /workspace).
    pub async fn kernel_start(&self, name: &str, cwd: &str) -> Result<Job, SandboxError> {
        let (name, cwd) = (name.to_string(), cwd.to_string());
        self.start_job(|id| ToAgent::KernelStart { id, name, cwd })
            .await
    }

    /// Routes a new job id's events to a [`Job`], then sends the frame that
    /// starts it; the route is dropped again if the frame cannot be sent.
    async fn start_job(&self, start: impl FnOnce(JobId) -> ToAgent) -> Result<Job, SandboxError> {
        let id = self.conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (events_tx, events) = mpsc::channel(JOB_EVENTS);
        self.conn.routes.jobs.locked().insert(id, events_tx);
        if let Err(e) = self.send(start(id)).await {
            self.conn.routes.jobs.locked().remove(&id);
            return Err(e);
        }
        Ok(Job {
            id,
            events,
            control: JobControl {
                id,
                handle: self.clone(),
            },
        })
    }

    /// A file operation under /workspace.
    pub async fn file(&self, op: FileOp) -> Result<FileReply, SandboxError> {
        let req = self.conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.conn.routes.files.locked().insert(req, tx);
        self.send(ToAgent::File { req, op }).await?;
        match tokio::time::timeout(FILE_TIMEOUT, rx).await {
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(e))) => Err(SandboxError::File(e)),
            Ok(Err(_)) => Err(SandboxError::AgentGone),
            Err(_) => {
                self.conn.routes.files.locked().remove(&req);
                Err(SandboxError::AgentUnresponsive)
            }
        }
    }

    /// Writes a file whatever is there (parents made as needed).
    pub async fn write_file(&self, path: String, data: Vec<u8>) -> Result<(), SandboxError> {
        self.file(FileOp::Write {
            path,
            data,
            parents: true,
            if_version: None,
        })
        .await
        .map(drop)
    }

    /// A file's bytes, without its version.
    pub async fn read_file(&self, path: String) -> Result<Vec<u8>, SandboxError> {
        match self.file(FileOp::Read { path }).await? {
            FileReply::Data { data, .. } => Ok(data),
            _ => Err(SandboxError::AgentUnresponsive),
        }
    }

    /// The Jupyter kernelspecs the image has.
    pub async fn kernel_specs(
        &self,
    ) -> Result<Vec<replbox_protocol::KernelSpecInfo>, SandboxError> {
        let req = self.conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.conn.routes.specs.locked().insert(req, tx);
        self.send(ToAgent::KernelSpecs { req }).await?;
        tokio::time::timeout(FILE_TIMEOUT, rx)
            .await
            .map_err(|_| SandboxError::AgentUnresponsive)?
            .map_err(|_| SandboxError::AgentGone)
    }

    /// The ids of jobs the agent is still running.
    pub async fn running_jobs(&self) -> Result<Vec<JobId>, SandboxError> {
        let (tx, rx) = oneshot::channel();
        *self.conn.routes.running.locked() = Some(tx);
        self.send(ToAgent::ListJobs).await?;
        tokio::time::timeout(FILE_TIMEOUT, rx)
            .await
            .map_err(|_| SandboxError::AgentUnresponsive)?
            .map_err(|_| SandboxError::AgentGone)
    }
}

/// Controls one job: stdin, resize, signals. Cheap to clone.
#[derive(Clone, Debug)]
pub struct JobControl {
    id: JobId,
    handle: SandboxHandle,
}

impl JobControl {
    pub fn id(&self) -> JobId {
        self.id
    }

    pub async fn stdin(&self, data: impl Into<Vec<u8>>) -> Result<(), SandboxError> {
        // Large input goes in pieces, so no frame nears the size limit.
        let data = data.into();
        for chunk in data.chunks(64 * 1024) {
            self.handle
                .send(ToAgent::Stdin {
                    id: self.id,
                    data: chunk.to_vec(),
                })
                .await?;
        }
        Ok(())
    }

    pub async fn close_stdin(&self) -> Result<(), SandboxError> {
        self.handle.send(ToAgent::CloseStdin { id: self.id }).await
    }

    pub async fn resize(&self, rows: u16, cols: u16) -> Result<(), SandboxError> {
        self.handle
            .send(ToAgent::Resize {
                id: self.id,
                rows,
                cols,
            })
            .await
    }

    /// A request to the kernel this job runs.
    pub async fn kernel(
        &self,
        request: replbox_protocol::KernelRequest,
    ) -> Result<(), SandboxError> {
        self.handle
            .send(ToAgent::Kernel {
                id: self.id,
                request,
            })
            .await
    }

    /// Delivers a signal to the job's whole process group.
    pub async fn signal(&self, signal: i32) -> Result<(), SandboxError> {
        self.handle
            .send(ToAgent::Signal {
                id: self.id,
                signal,
            })
            .await
    }
}

/// A running job: its events and its controls.
pub struct Job {
    pub id: JobId,
    pub events: mpsc::Receiver<JobEvent>,
    pub control: JobControl,
}

/// Everything a job printed, and how it ended.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Option<ExitStatus>,
    pub spawn_error: Option<String>,
}

impl Job {
    /// The next event; `None` when the sandbox went away before the job ended.
    pub async fn next(&mut self) -> Option<JobEvent> {
        self.events.recv().await
    }

    /// Writes `stdin` (when not empty), closes it, and waits for the job to
    /// end, gathering its output.
    pub async fn run_with_stdin(self, stdin: Vec<u8>) -> Result<Collected, SandboxError> {
        let control = self.control.clone();
        let feed = async move {
            if !stdin.is_empty() {
                control.stdin(stdin).await?;
            }
            control.close_stdin().await
        };
        let (collected, fed) = tokio::join!(self.collect(), feed);
        fed?;
        collected
    }

    /// Waits for the job to end, gathering its output.
    pub async fn collect(mut self) -> Result<Collected, SandboxError> {
        let mut out = Collected::default();
        while let Some(ev) = self.events.recv().await {
            match ev {
                JobEvent::Started { .. } => {}
                JobEvent::Output { stream, data } => match stream {
                    OutStream::Stderr => out.stderr.extend_from_slice(&data),
                    _ => out.stdout.extend_from_slice(&data),
                },
                JobEvent::Exit(exit) => {
                    out.exit = Some(exit);
                    return Ok(out);
                }
                JobEvent::SpawnFailed(msg) => {
                    out.spawn_error = Some(msg);
                    return Ok(out);
                }
                JobEvent::KernelReady { .. } | JobEvent::KernelMessage { .. } => {}
            }
        }
        Err(SandboxError::AgentGone)
    }
}

async fn write_frames(
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

async fn read_frames(
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
    routes.files.locked().clear();
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
            let mut hello = routes.hello.locked();
            if hello.as_ref().is_some_and(|(n, _)| *n == nonce) {
                if let Some((_, tx)) = hello.take() {
                    let _ = tx.send((version, agent));
                }
            }
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
            if let Some(tx) = routes.files.locked().remove(&req) {
                let _ = tx.send(result);
            }
            return true;
        }
        FromAgent::Jobs { running } => {
            if let Some(tx) = routes.running.locked().take() {
                let _ = tx.send(running);
            }
            return true;
        }
        FromAgent::Error { message } => {
            warn!("agent refused a frame: {message}");
            return true;
        }
        FromAgent::KernelSpecs { req, specs } => {
            if let Some(tx) = routes.specs.locked().remove(&req) {
                let _ = tx.send(specs);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio_util::codec::Decoder;

    /// A fake agent that answers the hello with another protocol version.
    #[tokio::test]
    async fn a_mismatched_agent_is_a_clear_error() {
        let (server_side, mut agent_side) = tokio::io::duplex(1 << 16);
        let (out_tx, out_rx) =
            mpsc::channel::<Result<bollard::container::LogOutput, bollard::errors::Error>>(4);
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let mut codec = FrameCodec::<ToAgent>::new();
            loop {
                let mut chunk = [0u8; 1024];
                let n = agent_side.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(Ok(ToAgent::Hello { nonce, .. })) = codec.decode(&mut buf).unwrap() {
                    let mut reply = BytesMut::new();
                    encode_frame(
                        &FromAgent::Hello {
                            version: PROTOCOL_VERSION + 1,
                            nonce,
                            agent: "future".into(),
                        },
                        &mut reply,
                    )
                    .unwrap();
                    let _ = out_tx
                        .send(Ok(bollard::container::LogOutput::StdOut {
                            message: reply.freeze(),
                        }))
                        .await;
                    std::future::pending::<()>().await;
                }
            }
        });
        let output: AgentOutput = Box::pin(tokio_stream_from(out_rx));
        let err = SandboxHandle::connect("fake".into(), output, Box::pin(server_side))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SandboxError::AgentVersion { agent, .. } if agent == PROTOCOL_VERSION + 1),
            "{err:?}"
        );
        assert!(err.to_string().contains("protocol"));
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: mpsc::Receiver<T>,
    ) -> impl Stream<Item = T> + Send {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
