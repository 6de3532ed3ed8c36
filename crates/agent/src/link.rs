//! The agent's link to the server. Frames come in on stdin (the attached
//! stream, the bootstrap channel) and, once the server hands the
//! conversation over with `ToAgent::Direct`, on a unix socket the server
//! listens on; frames go out through one writer that moves from stdout to
//! that socket at one clear point: its answer `FromAgent::Direct` is its
//! last frame on stdout, and every frame after it goes on the socket (see
//! docs/protocol.md, "The direct socket").

use bytes::BytesMut;
use replbox_protocol::{FrameCodec, FrameError, FromAgent, ToAgent, DIRECT_SECRET_LEN};
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

/// A partial frame that gets no more bytes for this long is dropped: its
/// sender went away mid-frame (a server restart) and the next bytes start a
/// new conversation. The timer runs only while a partial frame is held, so
/// an idle agent has none.
const STALL_RESET: Duration = Duration::from_millis(250);
/// How long connecting to the server's socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What a read asks room for; allocated on the first read, not before.
const READ_ROOM: usize = 16 * 1024;
/// A buffer larger than this (after a burst) is given back when empty: an
/// idle agent keeps no burst's room.
const KEEP_AT_MOST: usize = 64 * 1024;

/// Frames from one byte stream (stdin or the socket).
pub struct Source {
    input: Pin<Box<dyn AsyncRead + Send>>,
    buf: BytesMut,
    codec: FrameCodec<ToAgent>,
}

impl Source {
    pub fn new(input: Pin<Box<dyn AsyncRead + Send>>) -> Self {
        Self {
            input,
            buf: BytesMut::new(),
            codec: FrameCodec::new(),
        }
    }

    /// The next frame (a frame that does not decode is an `Err`); `None`
    /// at the end of the stream. Cancel-safe: bytes read stay in `buf`.
    pub async fn next(&mut self) -> Option<Result<ToAgent, FrameError>> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(item)) => return Some(item),
                Ok(None) => {}
                Err(_) => return None,
            }
            if self.buf.is_empty() && self.buf.capacity() > KEEP_AT_MOST {
                self.buf = BytesMut::new();
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(READ_ROOM);
            }
            let partial = !self.buf.is_empty();
            let read = self.input.read_buf(&mut self.buf);
            let read = if partial {
                match tokio::time::timeout(STALL_RESET, read).await {
                    Ok(read) => read,
                    Err(_) => {
                        eprintln!(
                            "agent: dropping {} bytes of a stalled frame",
                            self.buf.len()
                        );
                        self.buf.clear();
                        continue;
                    }
                }
            } else {
                read.await
            };
            match read {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("agent: reading frames: {e}");
                    return None;
                }
            }
        }
    }
}

/// The next frame of an optional source; never resolves without one.
pub async fn next(source: &mut Option<Source>) -> Option<Result<ToAgent, FrameError>> {
    match source {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Where the writer sends frames from now on.
pub enum Switch {
    /// To the server's socket; the writer first answers `Direct { nonce }`
    /// on stdout, after every frame queued before.
    ToSocket {
        socket: Tracked<OwnedWriteHalf>,
        nonce: u64,
    },
    /// Back to stdout: a new server spoke on stdin, or the socket ended.
    ToStdout,
}

/// Connects to the server's socket at `path` and proves it with `secret`,
/// which is zeroed whatever happens. The socket's descriptor is recorded
/// (`stdio::COPIES`) so that a job's child closes it before its dumpable
/// moment.
pub async fn connect(
    path: &str,
    mut secret: Vec<u8>,
) -> io::Result<(Tracked<OwnedReadHalf>, Tracked<OwnedWriteHalf>)> {
    let result = async {
        if secret.len() != DIRECT_SECRET_LEN {
            return Err(io::Error::other("the secret has the wrong length"));
        }
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(path))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        let mark = Arc::new(Mark(stream.as_raw_fd()));
        crate::stdio::COPIES[2].store(mark.0, Ordering::Relaxed);
        tokio::time::timeout(CONNECT_TIMEOUT, stream.write_all(&secret))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        let (read, write) = stream.into_split();
        Ok((
            Tracked {
                inner: read,
                _mark: mark.clone(),
            },
            Tracked {
                inner: write,
                _mark: mark,
            },
        ))
    }
    .await;
    zero(&mut secret);
    result
}

/// Overwrites a secret so that no copy stays in our memory.
fn zero(secret: &mut [u8]) {
    for b in secret.iter_mut() {
        // SAFETY: a valid, aligned pointer to a byte we own.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// Forgets the socket's descriptor in `stdio::COPIES` when the last half
/// goes (it is closed in the same step: nothing forks in between, as jobs
/// are started on the runtime's one thread).
struct Mark(i32);

impl Drop for Mark {
    fn drop(&mut self) {
        let _ = crate::stdio::COPIES[2].compare_exchange(
            self.0,
            -1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

/// A half of the socket that keeps its descriptor's record alive.
pub struct Tracked<T> {
    inner: T,
    _mark: Arc<Mark>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The one writer of frames: batches what is queued, and moves between
/// stdout and the socket when told, in order (a switch sent before a frame
/// is queued applies before that frame is written).
pub struct Writer {
    stdout: Pin<Box<dyn AsyncWrite + Send>>,
    socket: Option<Tracked<OwnedWriteHalf>>,
    buf: BytesMut,
}

impl Writer {
    pub fn new(stdout: Pin<Box<dyn AsyncWrite + Send>>) -> Self {
        Self {
            stdout,
            socket: None,
            buf: BytesMut::new(),
        }
    }

    /// Runs until the frames end or stdout breaks.
    pub async fn run(
        mut self,
        mut frames: mpsc::Receiver<FromAgent>,
        mut switches: mpsc::Receiver<Switch>,
    ) {
        loop {
            // Nothing queued: give back a burst's room before waiting.
            if frames.is_empty() && self.buf.capacity() > KEEP_AT_MOST {
                self.buf = BytesMut::new();
            }
            let frame = tokio::select! {
                biased;
                Some(switch) = switches.recv() => {
                    if self.apply(switch).await.is_err() {
                        return;
                    }
                    continue;
                }
                frame = frames.recv() => match frame {
                    Some(frame) => frame,
                    None => return,
                },
            };
            let mut next = Some(frame);
            while let Some(frame) = next.take() {
                while let Ok(switch) = switches.try_recv() {
                    if self.apply(switch).await.is_err() {
                        return;
                    }
                }
                if self.encode(frame).await.is_err() {
                    return;
                }
                if self.buf.len() < 256 * 1024 {
                    next = frames.try_recv().ok();
                }
            }
            if self.flush().await.is_err() {
                return;
            }
        }
    }

    /// Where frames go now.
    fn sink(&mut self) -> &mut (dyn AsyncWrite + Send + Unpin) {
        match &mut self.socket {
            Some(socket) => socket,
            None => &mut self.stdout,
        }
    }

    /// Writes what is buffered; a broken socket falls back to stdout (its
    /// frames were for a server that is gone); a broken stdout is the end.
    async fn flush(&mut self) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let sink = self.sink();
        let written = async {
            sink.write_all(&buf).await?;
            sink.flush().await
        }
        .await;
        buf.clear();
        self.buf = buf;
        self.lost(written)
    }

    fn lost(&mut self, result: io::Result<()>) -> io::Result<()> {
        match result {
            Err(_) if self.socket.is_some() => {
                self.socket = None;
                self.buf.clear();
                Ok(())
            }
            other => other,
        }
    }

    /// Large output goes out as a header and its data, written as they
    /// are (no copy into the buffer); everything else is encoded into it.
    async fn encode(&mut self, frame: FromAgent) -> io::Result<()> {
        match frame {
            FromAgent::Output { id, stream, data } if data.len() >= 16 * 1024 => {
                self.buf.extend_from_slice(&replbox_protocol::output_header(
                    id,
                    stream,
                    data.len(),
                ));
                let on_socket = self.socket.is_some();
                self.flush().await?;
                if on_socket && self.socket.is_none() {
                    return Ok(());
                }
                let sink = self.sink();
                let written = sink.write_all(&data).await;
                self.lost(written)
            }
            frame => match replbox_protocol::codec::encode_frame(&frame, &mut self.buf) {
                // One frame over the limit is that request's error, not the
                // end of the writer (and so of every answer of this sandbox).
                Err(replbox_protocol::FrameError::TooLarge(size)) => {
                    let frame = crate::kernel::too_large(frame, size);
                    replbox_protocol::codec::encode_frame(&frame, &mut self.buf)
                        .map_err(io::Error::other)
                }
                other => other.map_err(io::Error::other),
            },
        }
    }

    async fn apply(&mut self, switch: Switch) -> io::Result<()> {
        self.flush().await?;
        match switch {
            Switch::ToStdout => {
                self.socket = None;
                Ok(())
            }
            Switch::ToSocket { socket, nonce } => {
                self.socket = None;
                replbox_protocol::codec::encode_frame(
                    &FromAgent::Direct { nonce, error: None },
                    &mut self.buf,
                )
                .map_err(io::Error::other)?;
                self.flush().await?;
                self.socket = Some(socket);
                Ok(())
            }
        }
    }
}
