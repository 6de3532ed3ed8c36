//! replbox-agent: PID 1 inside every sandbox container.
//!
//! It reads [`ToAgent`] frames on stdin and writes [`FromAgent`] frames on
//! stdout (the container's attached stdio), runs jobs, serves files under
//! the workspace, and reaps every process that ends up as its child.
//! Diagnostics go to stderr.

mod cgroup;
mod claim;
mod files;
mod jobs;
mod kernel;
mod pty;
mod reaper;
mod stdio;

use futures::StreamExt;
use replbox_protocol::{FrameCodec, FromAgent, ToAgent, PROTOCOL_VERSION};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

/// A partial frame that gets no more bytes for this long is dropped: its
/// sender went away mid-frame (a server restart) and the next bytes start a
/// new conversation.
const STALL_RESET: Duration = Duration::from_millis(250);

/// Where the outgoing frames queue; bounded so a slow reader slows the jobs.
pub type Outbox = mpsc::Sender<FromAgent>;

fn main() {
    // `replbox-agent claim-workspace /workspace UID GID`: run by the
    // server in a helper container with only CAP_CHOWN and the workspace
    // volume, to give the workspace root to the sandbox user, whatever the
    // user's image made of it.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("claim-workspace") {
        std::process::exit(claim_workspace(&args[2..]));
    }
    // Jobs run as our user, so without this they could open /proc/1/fd/0
    // and /proc/1/fd/1 (the server's frame stream) to read its requests or
    // forge frames, and ptrace us. Not dumpable, our /proc entries belong
    // to root; a job's execve makes it dumpable again as usual.
    // SAFETY: prctl on ourselves with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        eprintln!(
            "agent: cannot make itself undumpable: {}",
            std::io::Error::last_os_error()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("agent: cannot start the runtime");
    runtime.block_on(run());
}

/// `claim-workspace PATH UID GID`: gives the directory PATH (itself, not
/// what is in it) to `UID GID`. Exit 0 when it is theirs now, 1 (with a
/// reason on stderr) when not.
fn claim_workspace(args: &[String]) -> i32 {
    match claim::claim(args, std::env::vars_os().map(|(k, _)| k)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("agent: claim-workspace refused: {e}");
            1
        }
    }
}

async fn run() {
    let workspace = PathBuf::from(
        std::env::var("REPLBOX_WORKSPACE").unwrap_or_else(|_| "/workspace".to_string()),
    );
    // A larger buffer on our stdout (the container's attached stream), so a
    // chatty job is not held up by the engine's copy loop.
    // SAFETY: fcntl on our own stdout; failure leaves the default.
    unsafe { libc::fcntl(1, libc::F_SETPIPE_SZ, 1024 * 1024) };
    let (out_tx, mut out_rx) = mpsc::channel::<FromAgent>(64);

    // One writer owns stdout; it batches what is queued before writing.
    let writer = tokio::spawn(async move {
        let mut stdout = stdio::output();
        let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
        while let Some(frame) = out_rx.recv().await {
            let mut next = Some(frame);
            while let Some(frame) = next.take() {
                if write_frame(&mut stdout, &mut buf, frame).await.is_err() {
                    return;
                }
                if buf.len() < 256 * 1024 {
                    next = out_rx.try_recv().ok();
                }
            }
            if stdout.write_all(&buf).await.is_err() || stdout.flush().await.is_err() {
                return;
            }
            buf.clear();
        }
    });

    let table = Arc::new(jobs::JobTable::default());
    let kernels = kernel::Kernels::default();
    let _reaper = reaper::spawn(table.clone());
    let mut reader = FramedRead::new(stdio::input(), FrameCodec::<ToAgent>::new());

    // How much of a partial frame was held at the last tick: a frame that
    // grew since is still arriving (a large one, slowly), however long it
    // takes; only one that got nothing for a whole tick is dropped.
    let mut held = 0;
    loop {
        let next = match tokio::time::timeout(STALL_RESET, reader.next()).await {
            Ok(next) => next,
            Err(_) => {
                let len = reader.read_buffer().len();
                if len > 0 && len == held {
                    eprintln!("agent: dropping {len} bytes of a stalled frame");
                    reader.read_buffer_mut().clear();
                    held = 0;
                } else {
                    held = len;
                }
                continue;
            }
        };
        held = 0;
        let frame = match next {
            Some(Ok(Ok(frame))) => frame,
            Some(Ok(Err(e))) => {
                let _ = out_tx
                    .send(FromAgent::Error {
                        message: e.to_string(),
                    })
                    .await;
                continue;
            }
            Some(Err(e)) => {
                eprintln!("agent: reading stdin: {e}");
                break;
            }
            None => break,
        };
        handle(frame, &table, &kernels, &out_tx, &workspace).await;
    }

    // stdin is gone. As PID 1 the container lives as long as we do, so keep
    // the jobs running; anywhere else (tests), end.
    drop(out_tx);
    if std::process::id() == 1 {
        std::future::pending::<()>().await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}

/// Large output goes out as a header and its data, written as they are
/// (no copy into a buffer); everything else is encoded into `buf`.
async fn write_frame(
    stdout: &mut std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    buf: &mut bytes::BytesMut,
    frame: FromAgent,
) -> std::io::Result<()> {
    match frame {
        FromAgent::Output { id, stream, data } if data.len() >= 16 * 1024 => {
            buf.extend_from_slice(&replbox_protocol::output_header(id, stream, data.len()));
            stdout.write_all(buf).await?;
            buf.clear();
            stdout.write_all(&data).await
        }
        frame => replbox_protocol::codec::encode_frame(&frame, buf).map_err(std::io::Error::other),
    }
}

async fn handle(
    frame: ToAgent,
    table: &Arc<jobs::JobTable>,
    kernels: &kernel::Kernels,
    out: &Outbox,
    workspace: &Path,
) {
    match frame {
        ToAgent::Hello { version, nonce } => {
            if version != PROTOCOL_VERSION {
                eprintln!("agent: server speaks protocol {version}, agent {PROTOCOL_VERSION}");
            }
            let _ = out
                .send(FromAgent::Hello {
                    version: PROTOCOL_VERSION,
                    nonce,
                    agent: concat!("replbox-agent ", env!("CARGO_PKG_VERSION")).to_string(),
                })
                .await;
        }
        ToAgent::Spawn { id, spec } => {
            jobs::spawn(
                table.clone(),
                id,
                spec,
                workspace.to_path_buf(),
                out.clone(),
            );
        }
        ToAgent::Stdin { id, data } => table.control(id, jobs::Control::Stdin(data)).await,
        ToAgent::CloseStdin { id } => table.control(id, jobs::Control::CloseStdin).await,
        ToAgent::Resize { id, rows, cols } => {
            table.control(id, jobs::Control::Resize(rows, cols)).await
        }
        ToAgent::Signal { id, signal } => table.signal(id, signal),
        ToAgent::KernelStart { id, name, cwd } => kernels.start(
            table.clone(),
            id,
            name,
            cwd,
            workspace.to_path_buf(),
            out.clone(),
        ),
        ToAgent::Kernel { id, request } => kernels.request(table, id, request, out).await,
        ToAgent::KernelSpecs { req } => {
            let out = out.clone();
            tokio::spawn(async move {
                let specs = kernel::specs().await;
                let _ = out.send(FromAgent::KernelSpecs { req, specs }).await;
            });
        }
        ToAgent::ListJobs => {
            let _ = out
                .send(FromAgent::Jobs {
                    running: table.running(),
                })
                .await;
        }
        ToAgent::File { req, op } => {
            let out = out.clone();
            let workspace = workspace.to_path_buf();
            tokio::spawn(async move {
                let result = tokio::task::spawn_blocking(move || files::apply(&workspace, op))
                    .await
                    .unwrap_or_else(|e| Err(replbox_protocol::FileError::Io(e.to_string())));
                let _ = out.send(FromAgent::File { req, result }).await;
            });
        }
    }
}
