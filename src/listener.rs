//! The accept loop: hyper's HTTP/1 with a deadline on every connection.
//! axum's own `serve` sets no timer, so a client that sends half a request
//! line (or nothing) holds its connection for ever; here
//!
//! - a request's headers must arrive within `REPLBOX_HEADER_READ_TIMEOUT_SECS`
//!   (hyper's header-read timeout, which also closes a kept-alive
//!   connection that sends no next request in that time);
//! - a connection with no request being handled and no byte moving either
//!   way for `REPLBOX_IDLE_TIMEOUT_SECS` is closed (a client that stopped
//!   reading its response, say);
//! - a connection upgraded to a WebSocket leaves both: its own loop owns it;
//! - a request's body must arrive within `REPLBOX_BODY_TIMEOUT_SECS` in all
//!   (a handler waiting for a body that stalls gets an error, and the
//!   connection then falls to the idle timeout);
//! - one client address (an IPv6 /64) holds at most
//!   `REPLBOX_CONNECTIONS_PER_CLIENT` connections at once, sockets included;
//!   one more is closed as soon as it is accepted. Trusted proxies are not
//!   limited (their clients are told apart by the routes, per request);
//! - the whole server holds at most `REPLBOX_MAX_CONNECTIONS` (by default
//!   half its open-file limit, raised to the hard limit at start-up), so
//!   many clients together cannot take the descriptors the engine, the
//!   store and the workspaces need.

use crate::sync::Lock;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The deadlines of a connection, and how many one client may hold.
#[derive(Debug, Clone)]
pub struct Deadlines {
    pub header_read: Duration,
    pub idle: Duration,
    /// A request's whole body.
    pub body: Duration,
    /// Connections on the whole server.
    pub max_connections: usize,
    pub per_client: usize,
    /// Peers not limited per client (trusted proxies).
    pub exempt: Vec<ipnet::IpNet>,
}

/// Open connections per client address, and in all.
#[derive(Default)]
struct Open(std::sync::Mutex<(std::collections::HashMap<std::net::IpAddr, usize>, usize)>);

/// One connection counted against its client; uncounted when dropped.
struct Counted {
    open: Arc<Open>,
    key: Option<std::net::IpAddr>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.open.0.locked();
        open.1 -= 1;
        if let Some(key) = self.key {
            let map = &mut open.0;
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
    }
}

impl Open {
    /// Counts a connection from `peer`, or `None` past the limit.
    fn admit(self: &Arc<Self>, peer: std::net::IpAddr, d: &Deadlines) -> Option<Counted> {
        let peer = peer.to_canonical();
        let mut open = self.0.locked();
        if open.1 >= d.max_connections.max(1) {
            return None;
        }
        if d.exempt.iter().any(|net| net.contains(&peer)) {
            open.1 += 1;
            return Some(Counted {
                open: self.clone(),
                key: None,
            });
        }
        let key = crate::limits::limit_key(peer);
        let n = open.0.entry(key).or_insert(0);
        if *n >= d.per_client.max(1) {
            return None;
        }
        *n += 1;
        open.1 += 1;
        Some(Counted {
            open: self.clone(),
            key: Some(key),
        })
    }
}

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(15);

/// Serves `app` on `listener` until `shutdown` fires, then lets requests in
/// flight finish (up to `DRAIN`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    deadlines: Deadlines,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = TaskTracker::new();
    let open = Arc::new(Open::default());
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a moment rather than spin.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(counted) = open.admit(peer.ip(), &deadlines) else {
            tracing::debug!(%peer, "too many connections (this client's, or all)");
            drop(tcp);
            continue;
        };
        // Small frames (a keystroke, an exit) must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        connections.spawn(connection(
            tcp,
            peer,
            app.clone(),
            deadlines.clone(),
            shutdown.clone(),
            counted,
        ));
    }
    connections.close();
    let _ = tokio::time::timeout(DRAIN, connections.wait()).await;
    Ok(())
}

/// When the connection last moved a byte, and how many requests it is
/// handling now.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    handling: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Counts a request as being handled until dropped.
struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    deadlines: Deadlines,
    shutdown: CancellationToken,
    counted: Counted,
) {
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        handling: AtomicUsize::new(0),
    });
    let io = TokioIo::new(Watched {
        inner: tcp,
        activity: activity.clone(),
        _counted: counted,
    });
    let seen = activity.clone();
    let body_time = deadlines.body;
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            seen.handling.fetch_add(1, Ordering::Relaxed);
            let handling = Handling(seen.clone());
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            let body_deadline = tokio::time::Instant::now() + body_time;
            async move {
                let req = req.map(|body| {
                    axum::body::Body::new(Deadlined {
                        inner: body,
                        deadline: Box::pin(tokio::time::sleep_until(body_deadline)),
                    })
                });
                let resp = app.oneshot(req).await;
                drop(handling);
                resp
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(deadlines.header_read)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let idle = deadlines.idle;
    let watchdog = async {
        loop {
            let quiet = activity.quiet_for();
            if quiet >= idle && activity.handling.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(idle.saturating_sub(quiet).max(Duration::from_millis(200))).await;
        }
    };
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended");
            }
        }
        _ = watchdog => {
            tracing::debug!(%peer, "closing an idle connection");
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, conn.as_mut()).await;
        }
    }
}

/// A stream that notes when bytes move, counted against its client for as
/// long as it lives (an upgraded socket keeps it).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    _counted: Counted,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that must arrive by its deadline, in all.
struct Deadlined {
    inner: hyper::body::Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for Deadlined {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(
                Err("the request's body did not arrive in time".into()),
            ));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Raises the soft limit on open files to the hard one; returns the limit
/// now in force.
pub fn raise_open_files() -> usize {
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
        lim.rlim_cur.min(1 << 20) as usize
    }
}
