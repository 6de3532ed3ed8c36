//! Jobs: a process group started from an argv or a shell line, on pipes or a
//! pty, with its output streamed, its stdin fed, its limits enforced and its
//! exit reported.

use crate::{pty, Outbox};
use replbox_protocol::{path, utf8, Command, ExitStatus, FromAgent, JobId, JobSpec, Stream};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

const CHUNK: usize = 256 * 1024;
/// Pipe buffers for job output (the kernel's default is 64 KiB).
const PIPE_SIZE: i32 = 1024 * 1024;
/// How long output may keep coming after the job's leader exited (from
/// processes that left its group).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(300);
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

enum Source {
    Pipe(pipe::Receiver),
    Pty(Arc<AsyncFd<OwnedFd>>),
}

impl Source {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Pipe(p) => p.read(buf).await,
            Source::Pty(m) => pty::read(m, buf).await,
        }
    }

    /// More bytes only if they are already there (never waits).
    fn read_more(&mut self, buf: &mut [u8]) -> usize {
        match self {
            Source::Pipe(p) => p.try_read(buf).unwrap_or(0),
            Source::Pty(_) => 0,
        }
    }
}

enum Sink {
    Pipe(pipe::Sender),
    Pty(Arc<AsyncFd<OwnedFd>>),
}

struct Started {
    pid: i32,
    exit: oneshot::Receiver<Reaped>,
    sources: Vec<(Stream, Source)>,
    sink: Sink,
    master: Option<Arc<AsyncFd<OwnedFd>>>,
}

pub fn spawn(table: Arc<JobTable>, id: JobId, spec: JobSpec, workspace: PathBuf, out: Outbox) {
    // Started here, before the next frame is read, so stdin sent right
    // after the spawn finds the job.
    let started_at = Instant::now();
    let started = start(&table, &spec, &workspace);
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
        let exit = supervise(id, &workspace, &spec, started, stdin_rx, started_at, &out).await;
        table.lock().jobs.remove(&id);
        let _ = out.send(FromAgent::Exit { id, exit }).await;
    });
}

fn start(table: &JobTable, spec: &JobSpec, workspace: &std::path::Path) -> Result<Started, String> {
    let (program, args): (String, Vec<String>) = match &spec.command {
        Command::Argv(argv) => match argv.split_first() {
            Some((p, rest)) => (p.clone(), rest.to_vec()),
            None => return Err("the command is empty".into()),
        },
        Command::Shell(line) => ("/bin/sh".into(), vec!["-c".into(), line.clone()]),
    };
    let cwd = path::normalize(&spec.cwd).map_err(|e| e.to_string())?;
    let cwd = workspace.join(cwd);
    if !cwd.is_dir() {
        return Err(format!(
            "the working directory {:?} does not exist",
            spec.cwd
        ));
    }
    let mut cmd = std::process::Command::new(&program);
    cmd.args(&args).current_dir(&cwd).envs(&spec.env);

    let pty_pair = match spec.pty {
        Some(size) => {
            if !spec.env.contains_key("TERM") {
                cmd.env("TERM", "xterm-256color");
            }
            let pair =
                pty::open(size.rows, size.cols).map_err(|e| format!("cannot open a pty: {e}"))?;
            let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
            cmd.stdin(dup(&pair.slave).map_err(|e| e.to_string())?)
                .stdout(dup(&pair.slave).map_err(|e| e.to_string())?)
                .stderr(dup(&pair.slave).map_err(|e| e.to_string())?);
            Some(pair)
        }
        None => {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            None
        }
    };
    let with_tty = pty_pair.is_some();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if with_tty {
                libc::ioctl(0, libc::TIOCSCTTY, 0);
            }
            // Let the kernel's OOM killer pick the user's processes first.
            // The agent is not dumpable (main.rs), so neither is this child
            // until its exec and its /proc files belong to root: it is made
            // dumpable for the write, with the server's frame stream closed
            // first so that no process of the user can take it meanwhile.
            for copy in &crate::stdio::COPIES {
                let fd = copy.load(std::sync::atomic::Ordering::Relaxed);
                if fd >= 0 {
                    libc::close(fd);
                }
            }
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if fd >= 0 {
                libc::write(fd, b"1000".as_ptr().cast(), 4);
                libc::close(fd);
            }
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            Ok(())
        });
    }

    let mut inner = table.lock();
    let mut child = cmd.spawn().map_err(|e| spawn_error(&program, e))?;
    let pid = child.id() as i32;
    let (exit_tx, exit_rx) = oneshot::channel();
    inner.leaders.insert(pid, exit_tx);
    drop(inner);

    let (sources, sink, master) = match pty_pair {
        Some(pair) => {
            drop(pair.slave);
            // SAFETY: the master fd is owned by the AsyncFd for its whole life.
            let master = unsafe { AsyncFd::register(pair.master) }
                .map_err(|e| format!("cannot watch the pty: {e}"))?;
            let master = Arc::new(master);
            (
                vec![(Stream::Pty, Source::Pty(master.clone()))],
                Sink::Pty(master.clone()),
                Some(master),
            )
        }
        None => {
            let pipe_err = |e: io::Error| format!("cannot set up pipes: {e}");
            let stdout = child.stdout.take().expect("piped stdout");
            let stderr = child.stderr.take().expect("piped stderr");
            for fd in [stdout.as_raw_fd(), stderr.as_raw_fd()] {
                // SAFETY: fcntl on a pipe we own; failure leaves the default.
                unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE) };
            }
            let stdin = child.stdin.take().expect("piped stdin");
            let stdout = pipe::Receiver::from_owned_fd(stdout.into()).map_err(pipe_err)?;
            let stderr = pipe::Receiver::from_owned_fd(stderr.into()).map_err(pipe_err)?;
            let stdin = pipe::Sender::from_owned_fd(stdin.into()).map_err(pipe_err)?;
            (
                vec![
                    (Stream::Stdout, Source::Pipe(stdout)),
                    (Stream::Stderr, Source::Pipe(stderr)),
                ],
                Sink::Pipe(stdin),
                None,
            )
        }
    };
    Ok(Started {
        pid,
        exit: exit_rx,
        sources,
        sink,
        master,
    })
}

fn spawn_error(program: &str, e: io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => format!("{program}: command not found"),
        io::ErrorKind::PermissionDenied => format!("{program}: permission denied"),
        _ => format!("{program}: cannot start: {e}"),
    }
}

async fn supervise(
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
                // The leader is gone: end what is left of its group.
                kill_group(pid, libc::SIGKILL);
                reaped = Some(r.unwrap_or_else(|_| Reaped::unknown()));
                drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            _ = sleep_until(deadline), if reaped.is_none() && !timed_out && deadline.is_some() => {
                timed_out = true;
                kill_group(pid, libc::SIGKILL);
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
        pids_limited: counters_after.pids_max_hits > counters_before.pids_max_hits,
        workspace_full: crate::cgroup::workspace_full(workspace),
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A read buffer that hands out what it holds up to the last complete
/// UTF-8 character, keeping an unfinished one for the next read.
struct Chunker {
    buf: Vec<u8>,
    /// Bytes held at the start of `buf`.
    filled: usize,
}

impl Chunker {
    fn new() -> Self {
        Chunker {
            buf: vec![0u8; CHUNK],
            filled: 0,
        }
    }

    /// Where the next read goes.
    fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// Takes `n` bytes just read into [`Chunker::spare`]; returns the
    /// complete characters held, if any.
    fn add(&mut self, n: usize) -> Option<Vec<u8>> {
        self.filled += n;
        let cut = utf8::complete_prefix_len(&self.buf[..self.filled]);
        if cut == 0 {
            return None;
        }
        let chunk = self.buf[..cut].to_vec();
        self.buf.copy_within(cut..self.filled, 0);
        self.filled -= cut;
        Some(chunk)
    }

    /// What is left at the end (an unfinished character, as bytes).
    fn rest(self) -> Option<Vec<u8>> {
        (self.filled > 0).then(|| self.buf[..self.filled].to_vec())
    }
}

async fn read_stream(stream: Stream, mut source: Source, tx: mpsc::Sender<(Stream, Vec<u8>)>) {
    let mut chunker = Chunker::new();
    loop {
        let mut n = match source.read(chunker.spare()).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A fast writer: take what is already waiting too, so a flood goes
        // out in few large frames (an interactive trickle is not delayed).
        while n < chunker.spare().len() {
            let more = source.read_more(&mut chunker.spare()[n..]);
            if more == 0 {
                break;
            }
            n += more;
        }
        if let Some(chunk) = chunker.add(n) {
            if tx.send((stream, chunk)).await.is_err() {
                return;
            }
        }
    }
    if let Some(rest) = chunker.rest() {
        let _ = tx.send((stream, rest)).await;
    }
}

/// Reads a job's pipe on a thread of its own with blocking reads, as `cat`
/// does: a flood then reaches the server faster than through the reactor,
/// which wakes for every write of the job (`make bench`: about 0.1 more of
/// the engine's own exec throughput). The thread ends at the pipe's end, or
/// at its next chunk once the job is over. Threads count against the pids
/// limit: when none can be started the pipe is handed back.
fn read_pipe_in_thread(
    stream: Stream,
    pipe: pipe::Receiver,
    tx: mpsc::Sender<(Stream, Vec<u8>)>,
) -> Result<(), pipe::Receiver> {
    let (fd_tx, fd_rx) = std::sync::mpsc::sync_channel::<OwnedFd>(1);
    let spawned = std::thread::Builder::new()
        .name("job-output".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            if let Ok(fd) = fd_rx.recv() {
                copy_blocking(stream, std::fs::File::from(fd), tx);
            }
        });
    if spawned.is_err() {
        return Err(pipe);
    }
    match pipe.into_blocking_fd() {
        Ok(fd) => {
            let _ = fd_tx.send(fd);
        }
        Err(e) => eprintln!("agent: cannot read a job's output: {e}"),
    }
    Ok(())
}

fn copy_blocking(stream: Stream, mut source: std::fs::File, tx: mpsc::Sender<(Stream, Vec<u8>)>) {
    use std::io::Read;
    let mut chunker = Chunker::new();
    loop {
        let n = match source.read(chunker.spare()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if let Some(chunk) = chunker.add(n) {
            if tx.blocking_send((stream, chunk)).is_err() {
                return;
            }
        }
    }
    if let Some(rest) = chunker.rest() {
        let _ = tx.blocking_send((stream, rest));
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
