//! Our stdin and stdout as non-blocking pipes on the runtime's reactor.
//! Tokio's own `stdin()`/`stdout()` hand every read and write to a blocking
//! thread, which halves the throughput of a chatty job; inside a container
//! both are FIFOs, so they can be polled directly. Anything else (a
//! terminal, a file, in tests) falls back to tokio's.

use std::os::fd::{FromRawFd, OwnedFd};
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;

fn dup(fd: i32) -> Option<OwnedFd> {
    // SAFETY: dup of a standard descriptor; the copy is ours.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: a fresh descriptor we own.
    (new >= 0).then(|| unsafe { OwnedFd::from_raw_fd(new) })
}

pub fn input() -> Pin<Box<dyn AsyncRead + Send>> {
    match dup(0).and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok()) {
        Some(p) => Box::pin(p),
        None => Box::pin(tokio::io::stdin()),
    }
}

pub fn output() -> Pin<Box<dyn AsyncWrite + Send>> {
    match dup(1).and_then(|fd| pipe::Sender::from_owned_fd(fd).ok()) {
        Some(p) => Box::pin(p),
        None => Box::pin(tokio::io::stdout()),
    }
}
