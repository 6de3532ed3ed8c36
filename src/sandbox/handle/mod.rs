//! A live connection to one sandbox's agent: over the container's attached
//! stdio, and then (with the socket transport, `direct.rs`) over the
//! server's own unix socket, the attach stream kept for the agent's
//! diagnostics only. Frames go out through a writer task and come in
//! through a reader task (`pumps.rs`) that routes them to the job
//! (`job.rs`) or the request (`pending.rs`) they belong to. Nothing above
//! this module knows which transport runs.

mod job;
mod pending;
mod pumps;

pub use job::{Collected, Job, JobControl, JobEvent};

use super::direct::{self, DirectDir};
use super::SandboxError;
use crate::sync::Lock;
use futures::Stream;
use pending::{Pending, Reply, LIST_JOBS};
use replbox_protocol::{FileOp, FileReply, JobId, JobSpec, ToAgent, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

const JOB_EVENTS: usize = 64;
const OUTBOX: usize = 256;
const HELLO_EVERY: Duration = Duration::from_millis(300);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long any request waits for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the agent's frames go: a job's events by job id, a reply by
/// request id.
#[derive(Default)]
struct Routes {
    jobs: Mutex<HashMap<JobId, mpsc::Sender<JobEvent>>>,
    pending: Pending,
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

/// A handle that does not keep its connection open.
#[derive(Clone)]
pub(super) struct WeakHandle(std::sync::Weak<Conn>);

impl WeakHandle {
    pub(super) fn upgrade(&self) -> Option<SandboxHandle> {
        self.0
            .upgrade()
            .map(|conn| SandboxHandle { conn })
            .filter(|h| h.is_alive())
    }
}

impl SandboxHandle {
    pub(super) fn downgrade(&self) -> WeakHandle {
        WeakHandle(Arc::downgrade(&self.conn))
    }

    /// Wraps an attached container's stdio and performs the handshake;
    /// with `direct`, then hands the conversation over to a socket there.
    pub(super) async fn connect(
        container_id: String,
        output: AgentOutput,
        input: Pin<Box<dyn AsyncWrite + Send>>,
        direct: Option<DirectDir>,
    ) -> Result<Self, SandboxError> {
        let routes = Arc::new(Routes::default());
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel(OUTBOX);
        let (alive_tx, alive) = watch::channel(true);
        let short = container_id.chars().take(12).collect::<String>();

        let (read_tx, read_rx) = oneshot::channel();
        let (write_tx, write_rx) = oneshot::channel();
        tokio::spawn(pumps::write_frames(input, rx, write_rx, cancel.clone()));
        tokio::spawn(pumps::read_frames(
            output,
            routes.clone(),
            alive_tx,
            cancel.clone(),
            short,
            read_rx,
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
        if let Some(dir) = direct {
            handle.go_direct(&dir, read_tx, write_tx).await?;
        }
        Ok(handle)
    }

    /// Moves the conversation to a socket in `dir`: listens there, hands
    /// the agent a one-time secret on the attach stream, accepts the one
    /// connection that proves it, and gives its halves to the pumps, which
    /// switch where the agent's answer says (docs/protocol.md). An agent
    /// that cannot connect leaves the conversation on the attach stream.
    async fn go_direct(
        &self,
        dir: &DirectDir,
        read_tx: oneshot::Sender<tokio::net::unix::OwnedReadHalf>,
        write_tx: oneshot::Sender<tokio::net::unix::OwnedWriteHalf>,
    ) -> Result<(), SandboxError> {
        let secret = direct::Secret::new().map_err(|e| {
            warn!(error = %e, "no random secret for the agent's socket");
            SandboxError::Engine
        })?;
        let proof = secret.bytes().to_vec();
        let listening = direct::listen(dir).map_err(|e| {
            warn!(dir = %dir.host.display(), error = %e, "cannot listen for the agent");
            SandboxError::Engine
        })?;
        let mut accept = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
            direct::accept_one(listening, secret),
        ));
        let nonce: u64 = rand::random();
        let mut reply = self.conn.routes.pending.register(nonce);
        self.send(ToAgent::Direct {
            nonce,
            path: dir.container_socket(),
            secret: proof,
        })
        .await?;
        let stream = tokio::select! {
            accepted = &mut accept => match accepted {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    warn!(error = %e, "the agent's socket saw no connection with the secret");
                    return Err(SandboxError::AgentUnresponsive);
                }
                Err(_) => return Err(SandboxError::AgentUnresponsive),
            },
            // Only a refusal can come before the connection is accepted.
            answer = reply.poll_for(HANDSHAKE_TIMEOUT) => return match answer {
                Some(Ok(Reply::Direct(Err(message)))) => {
                    warn!(%message, "the agent cannot reach its socket: staying on the attach stream");
                    Ok(())
                }
                Some(Err(e)) => Err(e),
                _ => Err(SandboxError::AgentUnresponsive),
            },
        };
        let (read, write) = stream.into_split();
        let _ = read_tx.send(read);
        let _ = write_tx.send(write);
        match reply.poll_for(HANDSHAKE_TIMEOUT).await {
            Some(Ok(Reply::Direct(Ok(())))) => {
                debug!("agent on the direct socket");
                Ok(())
            }
            Some(Err(e)) => Err(e),
            _ => Err(SandboxError::AgentUnresponsive),
        }
    }

    async fn handshake(&self) -> Result<(), SandboxError> {
        let nonce: u64 = rand::random();
        let mut reply = self.conn.routes.pending.register(nonce);
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        // Repeat the hello: a previous server may have left a partial frame
        // in the agent's buffer, which it drops after a short stall.
        loop {
            self.send(ToAgent::Hello {
                version: PROTOCOL_VERSION,
                nonce,
            })
            .await?;
            match reply.poll_for(HELLO_EVERY).await {
                Some(Ok(Reply::Hello { version, agent })) => {
                    if version != PROTOCOL_VERSION {
                        return Err(SandboxError::AgentVersion {
                            server: PROTOCOL_VERSION,
                            agent: version,
                        });
                    }
                    debug!(%agent, "agent handshake done");
                    return Ok(());
                }
                Some(Ok(_)) => return Err(SandboxError::AgentUnresponsive),
                Some(Err(e)) => return Err(e),
                None => {}
            }
            if tokio::time::Instant::now() > deadline {
                return Err(SandboxError::AgentUnresponsive);
            }
        }
    }

    /// Sends a request and waits for its reply (one timeout, and the
    /// request leaves the table however the wait ends).
    async fn request(&self, id: u64, frame: ToAgent) -> Result<Reply, SandboxError> {
        let reply = self.conn.routes.pending.register(id);
        self.send(frame).await?;
        reply.wait(REPLY_TIMEOUT).await
    }

    fn next_id(&self) -> u64 {
        self.conn.next_id.fetch_add(1, Ordering::Relaxed)
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

    pub(super) async fn send(&self, frame: ToAgent) -> Result<(), SandboxError> {
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
    /// are `KernelReady`, then `KernelMessage`s, and its exit.
    /// `cwd` is relative to /workspace (empty: /workspace).
    pub async fn kernel_start(&self, name: &str, cwd: &str) -> Result<Job, SandboxError> {
        let (name, cwd) = (name.to_string(), cwd.to_string());
        self.start_job(|id| ToAgent::KernelStart { id, name, cwd })
            .await
    }

    /// Routes a new job id's events to a [`Job`], then sends the frame that
    /// starts it; the route is dropped again if the frame cannot be sent.
    async fn start_job(&self, start: impl FnOnce(JobId) -> ToAgent) -> Result<Job, SandboxError> {
        let id = self.next_id();
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
        let req = self.next_id();
        match self.request(req, ToAgent::File { req, op }).await? {
            Reply::File(result) => Ok(result?),
            _ => Err(SandboxError::AgentUnresponsive),
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
        let req = self.next_id();
        match self.request(req, ToAgent::KernelSpecs { req }).await? {
            Reply::KernelSpecs(specs) => Ok(specs),
            _ => Err(SandboxError::AgentUnresponsive),
        }
    }

    /// The ids of jobs the agent is still running.
    pub async fn running_jobs(&self) -> Result<Vec<JobId>, SandboxError> {
        match self.request(LIST_JOBS, ToAgent::ListJobs).await? {
            Reply::Jobs(running) => Ok(running),
            _ => Err(SandboxError::AgentUnresponsive),
        }
    }
}

#[cfg(test)]
mod tests;
