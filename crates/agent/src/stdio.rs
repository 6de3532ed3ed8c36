//! Our stdin and stdout as non-blocking pipes on the runtime's reactor.
//! Tokio's own `stdin()`/`stdout()` hand every read and write to a blocking
//! thread, which halves the throughput of a chatty job; inside a container
//! both are FIFOs, so they can be polled directly. Anything else (a
//! terminal, a file, in tests) falls back to tokio's.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;

/// The copies of our stdin and stdout and the server's socket (the
/// server's frame streams), so a job's child can close them before it
/// briefly becomes dumpable (see `jobs::spawn`); -1 where there is none.
pub static COPIES: [AtomicI32; 3] = [AtomicI32::new(-1), AtomicI32::new(-1), AtomicI32::new(-1)];

fn dup(fd: i32) -> Option<OwnedFd> {
    // SAFETY: dup of a standard descriptor; the copy is ours.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: a fresh descriptor we own.
    (new >= 0).then(|| unsafe { OwnedFd::from_raw_fd(new) })
}

pub fn input() -> Pin<Box<dyn AsyncRead + Send>> {
    match dup(0).and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok()) {
        Some(p) => {
            COPIES[0].store(p.as_raw_fd(), Ordering::Relaxed);
            Box::pin(p)
        }
        None => Box::pin(tokio::io::stdin()),
    }
}

pub fn output() -> Pin<Box<dyn AsyncWrite + Send>> {
    match dup(1).and_then(|fd| pipe::Sender::from_owned_fd(fd).ok()) {
        Some(p) => {
            COPIES[1].store(p.as_raw_fd(), Ordering::Relaxed);
            Box::pin(p)
        }
        None => Box::pin(tokio::io::stdout()),
    }
}
