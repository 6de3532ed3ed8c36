//! Reading a job's output, cut at UTF-8 boundaries: a pipe on a thread of
//! its own, a terminal (or a pipe when no thread can be had) in a task.

use crate::pty;
use replbox_protocol::{utf8, Stream};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

const CHUNK: usize = 256 * 1024;

pub(super) enum Source {
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

pub(super) async fn read_stream(
    stream: Stream,
    mut source: Source,
    tx: mpsc::Sender<(Stream, Vec<u8>)>,
) {
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
pub(super) fn read_pipe_in_thread(
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
