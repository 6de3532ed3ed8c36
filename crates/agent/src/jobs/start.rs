//! Starting a job: the command, its working directory, pipes or a pty, and
//! the fork and exec in a session of its own.

use super::readers::Source;
use super::{JobTable, Reaped};
use crate::pty;
use replbox_protocol::{path, Command, JobSpec, Stream};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

/// Pipe buffers for job output (the kernel's default is 64 KiB).
const PIPE_SIZE: i32 = 1024 * 1024;

pub(super) enum Sink {
    Pipe(pipe::Sender),
    Pty(Arc<AsyncFd<OwnedFd>>),
}

pub(super) struct Started {
    pub(super) pid: i32,
    pub(super) exit: oneshot::Receiver<Reaped>,
    pub(super) sources: Vec<(Stream, Source)>,
    pub(super) sink: Sink,
    pub(super) master: Option<Arc<AsyncFd<OwnedFd>>>,
}

pub(super) fn start(
    table: &JobTable,
    spec: &JobSpec,
    workspace: &std::path::Path,
) -> Result<Started, String> {
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
