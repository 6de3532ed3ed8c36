//! replbox-agent: PID 1 inside every sandbox container.
//!
//! It reads [`ToAgent`] frames on stdin and writes [`FromAgent`] frames on
//! stdout (the container's attached stdio) until the server hands the
//! conversation over to a unix socket (`link.rs`), runs jobs, serves files
//! under the workspace, and reaps every process that ends up as its child.
//! Diagnostics go to stderr.

mod cgroup;
mod claim;
mod files;
mod jobs;
mod kernel;
mod link;
mod pty;
mod reaper;
mod stdio;

use replbox_protocol::{FromAgent, ToAgent, PROTOCOL_VERSION};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

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
    // One thread: an idle sandbox's agent is one thread and a few pages
    // (jobs' output is read on threads of their own, `jobs.rs`), and jobs
    // are forked only from it (`link::Mark` relies on that).
    let runtime = tokio::runtime::Builder::new_current_thread()
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
    // chatty job is not held up by the engine's copy loop (pages are taken
    // only as it fills).
    // SAFETY: fcntl on our own stdout; failure leaves the default.
    unsafe { libc::fcntl(1, libc::F_SETPIPE_SZ, 1024 * 1024) };
    let (out_tx, out_rx) = mpsc::channel::<FromAgent>(64);
    let (switch_tx, switch_rx) = mpsc::channel::<link::Switch>(4);
    let writer = tokio::spawn(link::Writer::new(stdio::output()).run(out_rx, switch_rx));

    let table = Arc::new(jobs::JobTable::default());
    let kernels = kernel::Kernels::default();
    let _reaper = reaper::spawn(table.clone());
    // Frames come from stdin (the bootstrap channel, where every server
    // starts with a hello) and, after a hand-over, from the server's socket.
    let mut stdin = Some(link::Source::new(stdio::input()));
    let mut socket: Option<link::Source> = None;
    loop {
        let (next, on_stdin) = tokio::select! {
            next = link::next(&mut stdin), if stdin.is_some() => (next, true),
            next = link::next(&mut socket), if socket.is_some() => (next, false),
            else => break,
        };
        let frame = match next {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                let _ = out_tx
                    .send(FromAgent::Error {
                        message: e.to_string(),
                    })
                    .await;
                continue;
            }
            None if on_stdin => {
                stdin = None;
                continue;
            }
            None => {
                // The server went away; the next one says hello on stdin.
                socket = None;
                let _ = switch_tx.send(link::Switch::ToStdout).await;
                continue;
            }
        };
        match frame {
            // A server speaks on stdin: it is the one we answer from now on.
            ToAgent::Hello { .. } if on_stdin && socket.is_some() => {
                socket = None;
                let _ = switch_tx.send(link::Switch::ToStdout).await;
            }
            ToAgent::Direct {
                nonce,
                path,
                secret,
            } => {
                if !on_stdin {
                    let _ = out_tx
                        .send(FromAgent::Error {
                            message: "a hand-over comes on stdin only".into(),
                        })
                        .await;
                    continue;
                }
                if socket.take().is_some() {
                    let _ = switch_tx.send(link::Switch::ToStdout).await;
                }
                match link::connect(&path, secret).await {
                    Ok((read, write)) => {
                        socket = Some(link::Source::new(Box::pin(read)));
                        let _ = switch_tx
                            .send(link::Switch::ToSocket {
                                socket: write,
                                nonce,
                            })
                            .await;
                    }
                    Err(e) => {
                        eprintln!("agent: cannot connect to the server's socket {path}: {e}");
                        let _ = out_tx
                            .send(FromAgent::Direct {
                                nonce,
                                error: Some(e.to_string()),
                            })
                            .await;
                    }
                }
                continue;
            }
            _ => {}
        }
        handle(frame, &table, &kernels, &out_tx, &workspace).await;
    }

    // No server can reach us any more. As PID 1 the container lives as
    // long as we do, so keep the jobs running; anywhere else (tests), end.
    drop(out_tx);
    drop(switch_tx);
    if std::process::id() == 1 {
        std::future::pending::<()>().await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
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
        // Taken by `run` (on stdin); anywhere else it has no meaning.
        ToAgent::Direct { .. } => {}
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
