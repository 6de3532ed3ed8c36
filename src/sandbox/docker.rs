//! The Docker backend: containers through bollard, with labels, limits,
//! the seccomp profile, the engine's uid mapping, workspace volumes (or
//! loop-mounted quota filesystems, `quota.rs`), and the agent bind-mounted
//! read-only as the entrypoint.

use super::*;
use crate::config::SandboxConfig;
use bollard::Docker;
use std::collections::HashMap;
use tracing::{debug, warn};

mod claim;
mod create;
mod ids;
mod link;
mod manage;

pub use create::GVISOR_HOST_PIDS_FACTOR;

use ids::{readable_by_all, shifted_ids};

/// Where the agent is mounted inside every container.
const AGENT_MOUNT: &str = "/opt/replbox/agent";

impl SandboxError {
    /// Logs Docker's own error and maps it to what callers may see.
    fn from_engine(context: &str, e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        match &e {
            E::DockerResponseServerError {
                status_code: 404, ..
            } => {
                debug!(%context, error = %e, "not found");
                SandboxError::NotFound
            }
            E::DockerResponseServerError {
                status_code: 409, ..
            } => {
                debug!(%context, error = %e, "conflict");
                SandboxError::Conflict
            }
            E::DockerResponseServerError { .. } => {
                warn!(%context, error = %e, "engine error");
                SandboxError::Engine
            }
            _ => {
                warn!(%context, error = %e, "engine unreachable");
                SandboxError::EngineUnavailable
            }
        }
    }
}

/// The Docker engine, seen as a place to make sandboxes in.
#[derive(Clone)]
pub struct Sandboxes {
    /// Connected on first use: the engine may come up after the server.
    client: std::sync::Arc<std::sync::RwLock<Option<Docker>>>,
    config: SandboxConfig,
    quota: Option<std::sync::Arc<quota::QuotaFs>>,
    /// The `seccomp=` security option; `None`: the engine's default profile.
    seccomp: Option<String>,
    /// The sandbox user's uid:gid on the host, learnt from the engine.
    host_ids: std::sync::Arc<std::sync::OnceLock<(u32, u32)>>,
    /// Where the agents' socket directories are made; `None`: the attach
    /// transport (`direct.rs`, REPLBOX_AGENT_TRANSPORT).
    sockets: Option<std::path::PathBuf>,
    /// The socket directory of each container made or attached to here.
    direct_dirs: std::sync::Arc<std::sync::Mutex<HashMap<String, super::direct::DirectDir>>>,
}

impl Sandboxes {
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let seccomp =
            seccomp::security_opt(&config.seccomp_profile).map_err(SandboxError::Config)?;
        if let Err(e) = readable_by_all(&config.agent_path) {
            // Under user-namespace remapping the container's root is not
            // the host's: the bind mount of the agent fails.
            warn!(path = %config.agent_path.display(), "the agent is not readable by every user ({e}): an engine that remaps user namespaces cannot mount it");
        }
        let (uid, gid) = user_ids(&config.user);
        let quota =
            quota::QuotaFs::setup(&config.workspace_root, config.workspace_quota_mb, uid, gid)
                .map(|q| std::sync::Arc::new(q.with_budget(config.disk_budget_mb)));
        if let Some(q) = quota.clone() {
            std::thread::spawn(move || q.fill_spares());
        }
        Ok(Self {
            client: Default::default(),
            quota,
            seccomp,
            host_ids: Default::default(),
            sockets: super::direct::resolve(&config),
            direct_dirs: Default::default(),
            config,
        })
    }

    /// The per-workspace disk quota in MiB, when quotas are on.
    pub fn quota_mb(&self) -> Option<u64> {
        self.quota.as_ref().map(|q| q.limit_mb())
    }

    /// The engine's client; bollard refuses to make one while the socket is
    /// missing, so it is made when first needed.
    fn client(&self) -> Result<Docker, SandboxError> {
        if let Some(d) = self.client.read().unwrap().as_ref() {
            return Ok(d.clone());
        }
        let docker = Docker::connect_with_unix(
            &self.config.docker_socket,
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| SandboxError::from_engine("connect", e))?;
        *self.client.write().unwrap() = Some(docker.clone());
        Ok(docker)
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The sandbox user's uid and gid as the host sees them: the configured
    /// user, shifted by the engine's user-namespace remapping when it remaps
    /// (`docker info` lists `name=userns`, and its root directory then ends
    /// in the remapped root's `uid.gid`, the base of the subordinate ids).
    /// What the server makes on the host for a sandbox is owned by these.
    pub async fn host_ids(&self) -> Result<(u32, u32), SandboxError> {
        if let Some(ids) = self.host_ids.get() {
            return Ok(*ids);
        }
        let info = self
            .client()?
            .info()
            .await
            .map_err(|e| SandboxError::from_engine("info", e))?;
        let ids = user_ids(&self.config.user);
        let ids = match shifted_ids(
            &info.security_options.unwrap_or_default(),
            &info.docker_root_dir.unwrap_or_default(),
            ids,
        ) {
            Ok(Some(shifted)) => {
                tracing::info!(
                    uid = shifted.0,
                    gid = shifted.1,
                    "sandbox user on the host (user namespaces remapped)"
                );
                shifted
            }
            Ok(None) => {
                warn!(uid = ids.0, "the engine does not remap user namespaces: the sandbox user is the same uid on the host (scripts/ensure-docker.sh says how to remap)");
                ids
            }
            Err(e) => {
                warn!(error = %e, "cannot learn the engine's user-namespace mapping");
                return Err(SandboxError::Engine);
            }
        };
        Ok(*self.host_ids.get_or_init(|| ids))
    }

    /// The engine itself, for benchmarks that compare against it.
    pub fn docker(&self) -> Result<Docker, SandboxError> {
        self.client()
    }

    /// Whether the engine knows the configured runtime (`Ok` when none is
    /// configured); a clear message when it does not.
    pub async fn check_runtime(&self) -> Result<(), SandboxError> {
        let Some(runtime) = &self.config.runtime else {
            return Ok(());
        };
        let info = self
            .client()?
            .info()
            .await
            .map_err(|e| SandboxError::from_engine("info", e))?;
        let known: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
        if known.iter().any(|r| r == runtime) {
            return Ok(());
        }
        Err(SandboxError::Config(format!(
            "REPLBOX_RUNTIME={runtime}, but the engine knows only {known:?}{}",
            if runtime == "runsc" {
                ": run scripts/ensure-runsc.sh (make gvisor) to build and register gVisor"
            } else {
                ""
            }
        )))
    }

    /// Whether the engine answers.
    pub async fn ping(&self) -> Result<(), SandboxError> {
        self.client()?
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| SandboxError::from_engine("ping", e))
    }

    pub fn container_name(&self, session: &str) -> String {
        format!("{}-{}", self.config.name_prefix, session)
    }

    pub fn volume_name(&self, session: &str) -> String {
        format!("{}-ws-{}", self.config.name_prefix, session)
    }

    fn labels(&self, session: &str, expires_at: i64, kind: &str) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_MANAGED.to_string(), self.config.name_prefix.clone()),
            (LABEL_SESSION.to_string(), session.to_string()),
            (LABEL_EXPIRES_AT.to_string(), expires_at.to_string()),
            (LABEL_KIND.to_string(), kind.to_string()),
        ]);
        if let Some(d) = &self.config.deployment {
            labels.insert(LABEL_DEPLOYMENT.to_string(), d.clone());
        }
        labels
    }
}
