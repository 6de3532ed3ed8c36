//! Jobs: a process group started from an argv or a shell line, on pipes or a
//! pty, with its output streamed, its stdin fed, its limits enforced and its
//! exit reported.
//!
//! `mod.rs` keeps the table of running jobs and `spawn`; `start.rs` the
//! fork and exec (the unsafe part); `supervise.rs` a job's life from start
//! to exit; `readers.rs` the output readers.

mod readers;
mod start;
mod supervise;

use crate::{pty, Outbox};
use replbox_protocol::{FromAgent, JobId, JobSpec};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

/// Stdin chunks queued per job before input is refused.
const STDIN_QUEUE: usize = 1024;

pub struct Reaped {
    pub status: i32,
    pub usage: libc::rusage,
}

impl Reaped {
    fn unknown() -> Self {
        Reaped {
            status: 0,
            // SAFETY: rusage is plain integers.
            usage: unsafe { std::mem::zeroed() },
        }
    }
}

pub enum Control {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize(u16, u16),
}

enum StdinMsg {
    Data(Vec<u8>),
    Close,
}

struct JobEntry {
    pgid: i32,
    stdin: Option<mpsc::Sender<StdinMsg>>,
    master: Option<Arc<AsyncFd<OwnedFd>>>,
}

#[derive(Default)]
pub struct Inner {
    pub leaders: HashMap<i32, oneshot::Sender<Reaped>>,
    jobs: HashMap<JobId, JobEntry>,
}

#[derive(Default)]
pub struct JobTable {
    inner: Mutex<Inner>,
}

impl JobTable {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn running(&self) -> Vec<JobId> {
        let mut ids: Vec<_> = self.lock().jobs.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn signal(&self, id: JobId, signal: i32) {
        if let Some(job) = self.lock().jobs.get(&id) {
            kill_group(job.pgid, signal);
        }
    }

    pub async fn control(&self, id: JobId, ctl: Control) {
        let (stdin, master) = {
            let inner = self.lock();
            match inner.jobs.get(&id) {
                Some(job) => (job.stdin.clone(), job.master.clone()),
                None => return,
            }
        };
        match ctl {
            Control::Resize(rows, cols) => {
                if let Some(master) = master {
                    let _ = pty::resize(master.get_ref(), rows, cols);
                }
            }
            Control::Stdin(data) => {
                if let Some(tx) = stdin {
                    if tx.try_send(StdinMsg::Data(data)).is_err() {
                        eprintln!("agent: job {id}: stdin queue full, input dropped");
                    }
                }
            }
            Control::CloseStdin => {
                if let Some(tx) = stdin {
                    let _ = tx.try_send(StdinMsg::Close);
                }
            }
        }
    }
}

fn kill_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(-pgid, signal) };
    }
}

pub fn spawn(table: Arc<JobTable>, id: JobId, spec: JobSpec, workspace: PathBuf, out: Outbox) {
    // Started here, before the next frame is read, so stdin sent right
    // after the spawn finds the job.
    let started_at = Instant::now();
    let started = start::start(&table, &spec, &workspace);
    let (stdin_tx, stdin_rx) = mpsc::channel(STDIN_QUEUE);
    if let Ok(s) = &started {
        table.lock().jobs.insert(
            id,
            JobEntry {
                pgid: s.pid,
                stdin: Some(stdin_tx),
                master: s.master.clone(),
            },
        );
    }
    tokio::spawn(async move {
        let started = match started {
            Ok(s) => s,
            Err(message) => {
                let _ = out.send(FromAgent::SpawnFailed { id, message }).await;
                return;
            }
        };
        let _ = out
            .send(FromAgent::Started {
                id,
                pid: started.pid,
            })
            .await;
        let exit =
            supervise::supervise(id, &workspace, &spec, started, stdin_rx, started_at, &out).await;
        table.lock().jobs.remove(&id);
        let _ = out.send(FromAgent::Exit { id, exit }).await;
    });
}
