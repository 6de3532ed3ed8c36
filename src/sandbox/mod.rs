//! Sandboxes: one container per session, its workspace on a volume, the
//! agent as its entrypoint. The layers above see the [`Backend`] trait (make
//! with a spec, connect to the agent, stop, remove, list by label, workspace
//! volumes and quotas) and a [`SandboxHandle`] (one live connection to one
//! agent); Docker (`docker.rs`, through bollard) is the first backend.
//! Docker's error text is logged in `docker.rs` and never leaves it:
//! callers get a [`SandboxError`].

mod backend;
pub mod deployment;
pub mod direct;
mod docker;
#[cfg(test)]
pub mod fake;
mod handle;
pub mod kubernetes;
pub mod quota;
pub mod seccomp;
mod wording;

pub use backend::Backend;
pub use deployment::{Ownership, LABEL_DEPLOYMENT};
pub use docker::{Sandboxes, GVISOR_HOST_PIDS_FACTOR};
pub use handle::{Collected, Job, JobControl, JobEvent, SandboxHandle};
pub use kubernetes::Pods;
pub use wording::{exit_reason, shell_quote};

use replbox_protocol::FileError;

pub const LABEL_MANAGED: &str = "replbox.managed";
pub const LABEL_SESSION: &str = "replbox.session";
pub const LABEL_EXPIRES_AT: &str = "replbox.expires-at";
pub const LABEL_KIND: &str = "replbox.kind";

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the container engine is not reachable")]
    EngineUnavailable,
    #[error("the sandbox image {0} is not available")]
    ImageMissing(String),
    #[error("the sandbox does not exist")]
    NotFound,
    #[error("the sandbox already exists")]
    Conflict,
    #[error("the sandbox stopped")]
    AgentGone,
    #[error("the sandbox does not answer")]
    AgentUnresponsive,
    #[error("the sandbox agent speaks protocol {agent}, the server {server}")]
    AgentVersion { server: u32, agent: u32 },
    #[error("{0}")]
    File(#[from] FileError),
    #[error("the container engine refused the request")]
    Engine,
    /// A configuration the sandboxes cannot be made with (at start-up).
    #[error("{0}")]
    Config(String),
    #[error("the disk budget for workspaces is used up")]
    DiskFull,
    /// The workspace of a new sandbox could not be given to the sandbox
    /// user (the helper's words); the sandbox was removed.
    #[error("the workspace could not be given to the sandbox user: {0}")]
    WorkspaceUnclaimed(String),
}

/// uid and gid of a `uid:gid` user string (`REPLBOX_SANDBOX_USER`, a
/// spec's user), for every backend.
pub(crate) fn user_ids(user: &str) -> (u32, u32) {
    let mut parts = user.split(':').map(|p| p.parse().unwrap_or(1000));
    let uid = parts.next().unwrap_or(1000);
    (uid, parts.next().unwrap_or(uid))
}

/// What a new sandbox is for.
#[derive(Debug, Clone, Default)]
pub struct CreateSpec {
    /// The owner: names the container and the workspace volume.
    pub session: String,
    /// Unix seconds; a label the reaper reads after a restart.
    pub expires_at: i64,
    /// `None`: the configured default image.
    pub image: Option<String>,
    pub env: Vec<(String, String)>,
    /// The workspace volume; `None`: the session's default name.
    pub volume: Option<String>,
    /// The container's name; `None`: the session's default name.
    pub name: Option<String>,
    /// The user its processes run as; `None`: the configured sandbox user.
    pub user: Option<String>,
}

/// A managed container as the engine lists it.
#[derive(Debug, Clone)]
pub struct ManagedContainer {
    pub id: String,
    pub name: String,
    pub session: String,
    pub expires_at: i64,
    pub running: bool,
    /// Its `replbox.deployment` label (`None`: made before the label).
    pub deployment: Option<String>,
}

/// A managed workspace volume as the engine lists it.
#[derive(Debug, Clone)]
pub struct ManagedVolume {
    pub name: String,
    pub session: String,
    /// Its `replbox.deployment` label (`None`: made before the label).
    pub deployment: Option<String>,
}

/// The limits a container really got, read back from the engine.
#[derive(Debug, Clone)]
pub struct AppliedLimits {
    pub memory: i64,
    pub memory_swap: i64,
    pub pids_limit: i64,
    pub nano_cpus: i64,
    pub readonly_root: bool,
    pub network_mode: String,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub user: String,
}
