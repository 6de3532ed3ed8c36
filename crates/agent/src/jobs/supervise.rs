//! A job's life from start to exit: its output forwarded under the output
//! limit, its stdin fed, its timeout enforced, its exit status measured.

use super::readers::{read_pipe_in_thread, read_stream, Source};
use super::start::{Sink, Started};
use super::{kill_group, Reaped, StdinMsg};
use crate::{pty, Outbox};
use replbox_protocol::{utf8, ExitStatus, FromAgent, JobId, JobSpec, Stream};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// How long output may keep coming after the job's leader exited (from
/// processes that left its group).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(300);

/// How often a running job's container is checked for standing at
/// RLIMIT_NPROC (a file read; only where that limit is set).
const PROCESS_LIMIT_PROBE: Duration = Duration::from_millis(100);

pub(super) async fn supervise(
    id: JobId,
    workspace: &std::path::Path,
    spec: &JobSpec,
    started: Started,
    stdin_rx: mpsc::Receiver<StdinMsg>,
    started_at: Instant,
    out: &Outbox,
) -> ExitStatus {
    let Started {
        pid,
        mut exit,
        sources,
        sink,
        master,
    } = started;

    let stdin_task = AbortOnDrop(tokio::spawn(feed_stdin(sink, stdin_rx)));

    // One reader per stream, each cutting at UTF-8 boundaries: a pipe is
    // read by a thread of its own when one can be had, a terminal (or a
    // pipe when the pids limit refuses a thread) by a task.
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<(Stream, Vec<u8>)>(8);
    let mut readers = Vec::new();
    for (stream, source) in sources {
        let source = match source {
            Source::Pipe(p) => match read_pipe_in_thread(stream, p, chunk_tx.clone()) {
                Ok(()) => continue,
                Err(p) => Source::Pipe(p),
            },
            source => source,
        };
        readers.push(AbortOnDrop(tokio::spawn(read_stream(
            stream,
            source,
            chunk_tx.clone(),
        ))));
    }
    drop(chunk_tx);

    let counters_before = crate::cgroup::Counters::read();
    let limit = spec.output_limit.unwrap_or(u64::MAX);
    let deadline = spec
        .timeout_ms
        .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let mut written = 0u64;
    let mut truncated = false;
    let mut timed_out = false;
    let mut reaped: Option<Reaped> = None;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut outputs_open = true;
    // Sampled where no cgroup counter says it (gVisor): at the limit when
    // the leader exits, at the time limit, or at any tick in between.
    let mut at_limit = false;
    let mut probe = tokio::time::interval(PROCESS_LIMIT_PROBE);

    loop {
        if reaped.is_some() && !outputs_open {
            break;
        }
        tokio::select! {
            chunk = chunk_rx.recv(), if outputs_open => match chunk {
                Some((stream, mut data)) => {
                    if truncated { continue; }
                    let room = limit - written;
                    if data.len() as u64 > room {
                        data.truncate(utf8::complete_prefix_len(&data[..room as usize]));
                        truncated = true;
                        kill_group(pid, libc::SIGKILL);
                    }
                    written += data.len() as u64;
                    if !data.is_empty() {
                        let _ = out.send(FromAgent::Output { id, stream, data }).await;
                    }
                }
                None => outputs_open = false,
            },
            r = &mut exit, if reaped.is_none() => {
                at_limit |= crate::cgroup::at_process_limit();
                // The leader is gone: end what is left of its group.
                kill_group(pid, libc::SIGKILL);
                reaped = Some(r.unwrap_or_else(|_| Reaped::unknown()));
                drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            _ = sleep_until(deadline), if reaped.is_none() && !timed_out && deadline.is_some() => {
                timed_out = true;
                at_limit |= crate::cgroup::at_process_limit();
                kill_group(pid, libc::SIGKILL);
            }
            _ = probe.tick(), if reaped.is_none() && !at_limit => {
                at_limit = crate::cgroup::at_process_limit();
            }
            _ = sleep_until(drain_until), if drain_until.is_some() => break,
        }
    }
    drop(readers);
    drop(stdin_task);
    drop(master);

    let r = reaped.expect("loop ends after the leader is reaped");
    let status = r.status;
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    let counters_after = crate::cgroup::Counters::read();
    let tv_ms = |tv: libc::timeval| tv.tv_sec as u64 * 1000 + tv.tv_usec as u64 / 1000;
    ExitStatus {
        code,
        signal,
        wall_ms: started_at.elapsed().as_millis() as u64,
        cpu_ms: tv_ms(r.usage.ru_utime) + tv_ms(r.usage.ru_stime),
        peak_rss_kb: r.usage.ru_maxrss.max(0) as u64,
        timed_out,
        truncated,
        output_bytes: written,
        oom_killed: counters_after.oom_kills > counters_before.oom_kills,
        pids_limited: at_limit || counters_after.pids_max_hits > counters_before.pids_max_hits,
        workspace_full: crate::cgroup::workspace_full(workspace),
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn feed_stdin(sink: Sink, mut rx: mpsc::Receiver<StdinMsg>) {
    let mut sink = Some(sink);
    while let Some(msg) = rx.recv().await {
        match (msg, sink.as_mut()) {
            (StdinMsg::Data(data), Some(Sink::Pipe(p))) => {
                if p.write_all(&data).await.is_err() {
                    sink = None;
                }
            }
            (StdinMsg::Data(data), Some(Sink::Pty(m))) => {
                let _ = pty::write_all(m, &data).await;
            }
            (StdinMsg::Close, Some(Sink::Pty(m))) => {
                // End of input on a terminal is ^D.
                let _ = pty::write_all(m, b"\x04").await;
            }
            (StdinMsg::Close, _) => sink = None,
            (StdinMsg::Data(_), None) => {}
        }
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
