//! What can go wrong with an owner's session. `error.rs` turns these into
//! what a client sees.

use crate::sandbox::SandboxError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session was deleted while a caller still held it.
    #[error("the sandbox was deleted")]
    Deleted,
    #[error("no such sandbox")]
    NoSuchSandbox,
    /// The name (as the client gave it) is taken.
    #[error("a sandbox named {0:?} already exists")]
    AlreadyExists(String),
    /// The name's previous owner is still being removed.
    #[error("the sandbox {0:?} is being removed")]
    BeingRemoved(String),
    /// The cap on live sandboxes is reached and nothing can be evicted.
    #[error("every sandbox is in use")]
    CapacityFull,
    /// Another replica holds the sandbox's lease (it lapses at
    /// `until_ms` unless renewed).
    #[error("another server replica ({addr}) holds this sandbox")]
    Elsewhere { addr: String, until_ms: i64 },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("the store: {0}")]
    Store(#[from] sqlx::Error),
}
