//! One job of a sandbox: its events, its controls, and gathering its
//! output to the end.

use super::SandboxHandle;
use crate::sandbox::SandboxError;
use bytes::Bytes;
use replbox_protocol::{ExitStatus, JobId, Stream as OutStream, ToAgent};
use tokio::sync::mpsc;

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

/// Controls one job: stdin, resize, signals. Cheap to clone.
#[derive(Clone, Debug)]
pub struct JobControl {
    pub(super) id: JobId,
    pub(super) handle: SandboxHandle,
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
