//! A job as the server keeps it: a bounded buffer of its latest output with a
//! sequence number per chunk (for tabs that reconnect), and how it ended.
//! A pump task moves the agent's events into the buffer and out to every
//! socket of the session.

use super::{SessionEvent, SessionHub};
use crate::metrics::Metrics;
use crate::sandbox::{Job, JobControl, JobEvent};
use crate::sync::Lock;
use bytes::Bytes;
use replbox_protocol::{ExitStatus, JobId, Stream};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// A program run by the page or the API.
    Run,
    /// The interactive terminal: its idling keeps nothing alive.
    Shell,
    /// A Jupyter kernel: idle between cells, so it keeps nothing alive.
    Kernel,
}

#[derive(Debug, Clone)]
pub struct Chunk {
    pub seq: u64,
    pub stream: Stream,
    pub data: Bytes,
}

#[derive(Debug, Default)]
struct Buffer {
    next_seq: u64,
    chunks: VecDeque<Chunk>,
    bytes: usize,
    exit: Option<ExitStatus>,
    failed: Option<String>,
    ended: bool,
}

/// What a reconnecting tab gets for a job.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The first sequence number the buffer still holds past `after`; a
    /// value above `after + 1` means output in between was dropped.
    pub first_seq: u64,
    pub chunks: Vec<Chunk>,
    pub exit: Option<ExitStatus>,
    pub failed: Option<String>,
}

pub struct JobRecord {
    pub id: JobId,
    pub kind: JobKind,
    /// The client's own reference for the request that started it.
    pub reference: Option<serde_json::Value>,
    pub control: JobControl,
    pub started: Instant,
    limit: usize,
    buf: Mutex<Buffer>,
}

impl JobRecord {
    pub fn new(
        id: JobId,
        kind: JobKind,
        reference: Option<serde_json::Value>,
        control: JobControl,
        replay_bytes: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            kind,
            reference,
            control,
            started: Instant::now(),
            limit: replay_bytes,
            buf: Mutex::new(Buffer {
                next_seq: 1,
                ..Default::default()
            }),
        })
    }

    pub fn is_running(&self) -> bool {
        !self.buf.locked().ended
    }

    pub fn last_seq(&self) -> u64 {
        self.buf.locked().next_seq - 1
    }

    pub fn exit(&self) -> Option<ExitStatus> {
        self.buf.locked().exit.clone()
    }

    fn push(&self, stream: Stream, data: Bytes) -> u64 {
        let mut b = self.buf.locked();
        let seq = b.next_seq;
        b.next_seq += 1;
        b.bytes += data.len();
        b.chunks.push_back(Chunk { seq, stream, data });
        // Keep at least the newest chunk, however large.
        while b.bytes > self.limit && b.chunks.len() > 1 {
            let old = b.chunks.pop_front().expect("non-empty");
            b.bytes -= old.data.len();
        }
        seq
    }

    fn end(&self, exit: Option<ExitStatus>, failed: Option<String>) {
        let mut b = self.buf.locked();
        b.exit = exit;
        b.failed = failed;
        b.ended = true;
    }

    /// Output after `after` that the buffer still holds.
    pub fn replay(&self, after: u64) -> Replay {
        let b = self.buf.locked();
        let chunks: Vec<Chunk> = b.chunks.iter().filter(|c| c.seq > after).cloned().collect();
        Replay {
            first_seq: chunks.first().map(|c| c.seq).unwrap_or(b.next_seq),
            chunks,
            exit: b.exit.clone(),
            failed: b.failed.clone(),
        }
    }
}

/// Moves a job's events into its record and out to the session's sockets.
/// Runs until the job ends or the sandbox goes away.
pub(super) async fn pump(
    mut job: Job,
    record: Arc<JobRecord>,
    hub: Arc<SessionHub>,
    metrics: Metrics,
    on_end: impl FnOnce() + Send,
) {
    metrics.jobs_running.inc();
    let requested = Instant::now();
    let mut end = (
        None,
        Some("The sandbox stopped while the job ran.".to_string()),
    );
    while let Some(ev) = job.next().await {
        match ev {
            JobEvent::Started { pid } => {
                metrics
                    .job_start_seconds
                    .observe(requested.elapsed().as_secs_f64());
                hub.send(SessionEvent::Started {
                    job: record.id,
                    kind: record.kind,
                    pid,
                })
                .await;
            }
            JobEvent::Output { stream, data } => {
                metrics.bytes_streamed.inc_by(data.len() as u64);
                let seq = record.push(stream, data.clone());
                hub.send(SessionEvent::Output {
                    job: record.id,
                    seq,
                    stream,
                    data,
                })
                .await;
            }
            JobEvent::Exit(exit) => {
                metrics
                    .job_duration_seconds
                    .observe(exit.wall_ms as f64 / 1000.0);
                end = (Some(exit), None);
                break;
            }
            JobEvent::SpawnFailed(message) => {
                end = (None, Some(message));
                break;
            }
            JobEvent::KernelReady { language } => {
                hub.send(SessionEvent::KernelReady {
                    job: record.id,
                    language,
                })
                .await;
            }
            JobEvent::KernelMessage { channel, message } => {
                hub.send(SessionEvent::KernelMessage {
                    job: record.id,
                    channel,
                    message: message.into(),
                })
                .await;
            }
        }
    }
    let (exit, failed) = end;
    record.end(exit.clone(), failed.clone());
    metrics.jobs_running.dec();
    on_end();
    hub.send(match (exit, failed) {
        (Some(exit), _) => SessionEvent::Exit {
            job: record.id,
            exit,
        },
        (None, message) => SessionEvent::Failed {
            job: record.id,
            message: message.unwrap_or_default(),
        },
    })
    .await;
}
