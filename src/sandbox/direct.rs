//! The direct socket: the server's own unix socket to a sandbox's agent,
//! off the engine's copy path (agent → container stdout → shim → dockerd →
//! attach). The server listens in a per-sandbox host directory that only
//! host root may write and that the container sees read-only, hands the
//! agent a one-time secret over the attach stream (the bootstrap channel),
//! and accepts exactly one connection that proves it; then the listener is
//! closed and its file removed. Jobs run as the agent's user and can see
//! the directory, but cannot replace the socket, read the secret (the
//! agent is not dumpable) or get anything from a connection without it.

use crate::config::{AgentTransport, SandboxConfig};
use replbox_protocol::DIRECT_SECRET_LEN;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Where a sandbox's socket directory is mounted in its container.
pub const CONTAINER_DIR: &str = "/opt/replbox/direct";
/// The socket's name in that directory.
const SOCKET_NAME: &str = "agent.sock";
/// Connections one hand-over looks at before it gives up.
const MAX_TRIES: usize = 16;
/// Connections proving themselves at once; more are closed at once.
const MAX_PROVING: usize = 4;
/// How long a connection has to send the secret.
const PROVE_TIMEOUT: Duration = Duration::from_secs(2);

/// A sandbox's socket directory: on the host, and in the container.
#[derive(Debug, Clone)]
pub struct DirectDir {
    pub host: PathBuf,
    pub container: String,
}

impl DirectDir {
    fn socket(&self) -> PathBuf {
        self.host.join(SOCKET_NAME)
    }

    /// The socket's path as the agent sees it.
    pub fn container_socket(&self) -> String {
        format!("{}/{SOCKET_NAME}", self.container)
    }
}

/// The transport this server uses: `Some(root)` of the socket
/// directories, or `None` for attach. `auto` falls back to attach (with a
/// warning) when the root cannot be made.
pub fn resolve(config: &SandboxConfig) -> Option<PathBuf> {
    let root = config.runtime_dir.join("sockets");
    match config.agent_transport {
        AgentTransport::Attach => None,
        transport => match make_dir(&root) {
            Ok(()) => Some(root),
            Err(e) if transport == AgentTransport::Auto => {
                warn!(dir = %root.display(), error = %e, "cannot make the agents' socket directory: sandboxes talk through the engine's attach stream");
                None
            }
            Err(e) => {
                // An explicit `socket` that cannot work: every sandbox would
                // fail at its hand-over; say so now, and use attach.
                warn!(dir = %root.display(), error = %e, "REPLBOX_AGENT_TRANSPORT=socket, but the socket directory cannot be made: using attach");
                None
            }
        },
    }
}

/// A directory owned by us (host root), writable by nobody else.
fn make_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

/// Makes a new sandbox's socket directory under `root`.
pub fn new_dir(root: &Path, prefix: &str) -> io::Result<DirectDir> {
    let host = root.join(format!("{prefix}-{:016x}", rand::random::<u64>()));
    std::fs::create_dir(&host)?;
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755))?;
    Ok(DirectDir {
        host,
        container: CONTAINER_DIR.to_string(),
    })
}

/// Removes a sandbox's socket directory (and a socket left in it).
pub fn remove_dir(host: &Path) {
    let _ = std::fs::remove_file(host.join(SOCKET_NAME));
    if let Err(e) = std::fs::remove_dir(host) {
        if e.kind() != io::ErrorKind::NotFound {
            debug!(dir = %host.display(), error = %e, "cannot remove a socket directory");
        }
    }
}

/// A one-time secret from the OS's random source, zeroed when dropped.
pub struct Secret([u8; DIRECT_SECRET_LEN]);

impl Secret {
    pub fn new() -> io::Result<Self> {
        let mut bytes = [0u8; DIRECT_SECRET_LEN];
        let mut got = 0;
        while got < bytes.len() {
            // SAFETY: getrandom fills at most the rest of our buffer.
            let n =
                unsafe { libc::getrandom(bytes[got..].as_mut_ptr().cast(), bytes.len() - got, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            got += n as usize;
        }
        Ok(Self(bytes))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Compares in time that does not depend on where `other` differs.
    fn matches(&self, other: &[u8]) -> bool {
        if other.len() != self.0.len() {
            return false;
        }
        let diff = self
            .0
            .iter()
            .zip(other)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zero(&mut self.0);
    }
}

fn zero(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: a valid, aligned pointer to a byte we own.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// A listening socket; its file goes with it.
pub struct Listening {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens in `dir` on a fresh socket (a stale one is replaced) that the
/// container's user may connect to.
pub fn listen(dir: &DirectDir) -> io::Result<Listening> {
    let path = dir.socket();
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let listening = Listening { listener, path };
    // connect() needs write permission on the socket; the secret, not the
    // mode, is what keeps a job out.
    std::fs::set_permissions(&listening.path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listening)
}

/// The first connection that sends `secret` as its first bytes; the
/// listener is closed and its file removed when this returns. A connection
/// that sends anything else, or nothing within a short time, is closed
/// having received nothing; at most [`MAX_TRIES`] are looked at.
pub async fn accept_one(listening: Listening, secret: Secret) -> io::Result<UnixStream> {
    let secret = std::sync::Arc::new(secret);
    let mut proving = JoinSet::new();
    let mut tried = 0;
    loop {
        tokio::select! {
            accepted = listening.listener.accept(), if tried < MAX_TRIES => {
                tried += 1;
                let (stream, _) = accepted?;
                if proving.len() >= MAX_PROVING {
                    debug!("too many connections proving themselves at once: closing one");
                    continue;
                }
                proving.spawn(prove(stream, secret.clone()));
            }
            Some(done) = proving.join_next() => {
                if let Ok(Some(stream)) = done {
                    return Ok(stream);
                }
                warn!("a connection to an agent's socket did not prove itself");
            }
            else => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "no connection to the agent's socket proved itself",
                ));
            }
        }
    }
}

async fn prove(mut stream: UnixStream, secret: std::sync::Arc<Secret>) -> Option<UnixStream> {
    let mut got = [0u8; DIRECT_SECRET_LEN];
    let read = tokio::time::timeout(PROVE_TIMEOUT, stream.read_exact(&mut got)).await;
    let proved = matches!(read, Ok(Ok(_))) && secret.matches(&got);
    zero(&mut got);
    proved.then_some(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn dir() -> (tempfile::TempDir, DirectDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DirectDir {
            host: tmp.path().to_path_buf(),
            container: tmp.path().display().to_string(),
        };
        (tmp, dir)
    }

    #[tokio::test]
    async fn only_the_connection_with_the_secret_is_accepted_and_the_socket_goes() {
        tokio::time::timeout(Duration::from_secs(20), async {
            let (_tmp, dir) = dir();
            let secret = Secret::new().unwrap();
            let proof = secret.bytes().to_vec();
            let listening = listen(&dir).unwrap();
            let accept = tokio::spawn(accept_one(listening, secret));
            let path = dir.container_socket();
            // A wrong secret is closed without a byte.
            let mut wrong = UnixStream::connect(&path).await.unwrap();
            wrong.write_all(&[7u8; DIRECT_SECRET_LEN]).await.unwrap();
            let mut got = Vec::new();
            let n = wrong.read_to_end(&mut got).await.unwrap_or(0);
            assert_eq!(n, 0, "a connection without the secret gets nothing");
            // A silent one does not hold up the right one.
            let _silent = UnixStream::connect(&path).await.unwrap();
            let mut right = UnixStream::connect(&path).await.unwrap();
            right.write_all(&proof).await.unwrap();
            let mut accepted = accept.await.unwrap().unwrap();
            accepted.write_all(b"hi").await.unwrap();
            let mut two = [0u8; 2];
            right.read_exact(&mut two).await.unwrap();
            assert_eq!(&two, b"hi");
            assert!(
                !Path::new(&path).exists(),
                "the socket file is removed after the hand-over"
            );
            assert!(UnixStream::connect(&path).await.is_err());
        })
        .await
        .expect("timed out");
    }

    #[test]
    fn secrets_are_fresh_and_compared_whole() {
        let a = Secret::new().unwrap();
        let b = Secret::new().unwrap();
        assert_ne!(a.bytes(), b.bytes());
        assert!(a.matches(a.bytes()));
        assert!(!a.matches(b.bytes()));
        assert!(!a.matches(&a.bytes()[..31]));
    }
}
