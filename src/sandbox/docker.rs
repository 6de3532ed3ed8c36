//! The Docker backend: containers through bollard, with labels, limits,
//! the seccomp profile, the engine's uid mapping, workspace volumes (or
//! loop-mounted quota filesystems, `quota.rs`), and the agent bind-mounted
//! read-only as the entrypoint.

use super::*;
use crate::config::SandboxConfig;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, ResourcesUlimits};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, InspectContainerOptions, ListContainersOptions,
    ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
};
use bollard::Docker;
use std::collections::HashMap;
use tracing::{debug, warn};

/// uid and gid of a `uid:gid` user string.
fn user_ids(user: &str) -> (u32, u32) {
    let mut parts = user.split(':').map(|p| p.parse().unwrap_or(1000));
    let uid = parts.next().unwrap_or(1000);
    (uid, parts.next().unwrap_or(uid))
}

/// The host ids of `(uid, gid)` in a container of an engine with these
/// `docker info` security options and root directory: `None` when the
/// engine does not remap user namespaces; shifted by the remapped root's
/// ids (the root directory's last part, `100000.100000`) when it does.
fn shifted_ids(
    security_options: &[String],
    root_dir: &str,
    (uid, gid): (u32, u32),
) -> Result<Option<(u32, u32)>, String> {
    let remapped = security_options
        .iter()
        .any(|o| o.split(',').any(|kv| kv == "name=userns"));
    if !remapped {
        return Ok(None);
    }
    let base = root_dir
        .rsplit('/')
        .next()
        .and_then(|last| last.split_once('.'))
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)));
    match base {
        Some((bu, bg)) => Ok(Some((bu + uid, bg + gid))),
        None => Err(format!(
            "the engine remaps user namespaces, but its root directory {root_dir} does not end in the remapped root's uid.gid"
        )),
    }
}

/// Whether every user may read `path` (and search its directories).
fn readable_by_all(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .map_err(|e| e.to_string())
    };
    if mode(&path)? & 0o004 == 0 {
        return Err(format!("{} is not world-readable", path.display()));
    }
    for dir in path.ancestors().skip(1) {
        if mode(dir)? & 0o001 == 0 {
            return Err(format!("{} is not searchable by others", dir.display()));
        }
    }
    Ok(())
}

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
            config,
            quota,
            seccomp,
            host_ids: Default::default(),
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

    /// Creates and starts a session's container (its workspace volume is
    /// created when missing, reused when not) and connects to its agent.
    pub async fn create(&self, spec: &CreateSpec) -> Result<SandboxHandle, SandboxError> {
        let id = self.create_container(spec).await?;
        let handle = self.start_and_attach(&id).await?;
        // The default image is built with /workspace owned by the sandbox
        // user; an image of the user's own may have none, or root's (and a
        // new volume takes its owner from the image): give it to the user.
        if spec.image.as_ref().is_some_and(|i| *i != self.config.image) {
            self.claim_workspace(&id).await?;
        }
        Ok(handle)
    }

    /// Makes the workspace root the sandbox user's: the agent, run once as
    /// the container's root with the capability to chown (a remapped root:
    /// no host root), changes the owner of /workspace itself and exits.
    pub async fn claim_workspace(&self, id: &str) -> Result<(), SandboxError> {
        use futures::StreamExt;
        let (uid, gid) = user_ids(&self.config.user);
        let docker = self.client()?;
        let exec = docker
            .create_exec(
                id,
                bollard::models::ExecConfig {
                    cmd: Some(vec![
                        AGENT_MOUNT.into(),
                        "claim-workspace".into(),
                        uid.to_string(),
                        gid.to_string(),
                    ]),
                    user: Some("0:0".into()),
                    privileged: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| SandboxError::from_engine("claim workspace", e))?;
        let mut said = String::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| SandboxError::from_engine("claim workspace", e))?
        {
            while let Some(Ok(chunk)) = output.next().await {
                said.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        let done = docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| SandboxError::from_engine("claim workspace", e))?;
        if done.exit_code != Some(0) {
            warn!(container = id, exit = ?done.exit_code, said = said.trim(), "cannot give the workspace to the sandbox user");
            return Err(SandboxError::Engine);
        }
        Ok(())
    }

    /// Creates (but does not start) the container; returns its id.
    pub async fn create_container(&self, spec: &CreateSpec) -> Result<String, SandboxError> {
        let c = &self.config;
        let volume = spec
            .volume
            .clone()
            .unwrap_or_else(|| self.volume_name(&spec.session));
        // With quotas, the volume is a bind of the workspace's own directory
        // on the quota filesystem (made with its limit when new).
        let driver_config = match &self.quota {
            Some(q) => {
                let (q, name) = (q.clone(), volume.clone());
                let deployment = c.deployment.clone();
                let owner = self.host_ids().await?;
                let dir = tokio::task::spawn_blocking(move || {
                    let dir = q.prepare(&name, owner, deployment.as_deref());
                    // Keep formatted images ready for the next ones.
                    let spare = q.clone();
                    std::thread::spawn(move || spare.fill_spares());
                    dir
                })
                .await
                .map_err(|_| SandboxError::Engine)?
                .map_err(|e| {
                    warn!(error = %e, "cannot prepare a workspace");
                    if e.is_budget() {
                        SandboxError::DiskFull
                    } else {
                        SandboxError::Engine
                    }
                })?;
                Some(bollard::models::MountVolumeOptionsDriverConfig {
                    name: Some("local".into()),
                    options: Some(HashMap::from([
                        ("type".to_string(), "none".to_string()),
                        ("o".to_string(), "bind".to_string()),
                        ("device".to_string(), dir.display().to_string()),
                    ])),
                })
            }
            None => None,
        };
        let agent = std::fs::canonicalize(&c.agent_path).map_err(|e| {
            warn!(path = %c.agent_path.display(), error = %e, "agent binary missing");
            SandboxError::Engine
        })?;
        let image = spec.image.clone().unwrap_or_else(|| c.image.clone());
        let memory = c.memory_mb * 1024 * 1024;
        let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push("REPLBOX_WORKSPACE=/workspace".into());
        let host = HostConfig {
            mounts: Some(vec![
                Mount {
                    target: Some(AGENT_MOUNT.into()),
                    source: Some(agent.display().to_string()),
                    typ: Some(MountType::BIND),
                    read_only: Some(true),
                    ..Default::default()
                },
                Mount {
                    target: Some("/workspace".into()),
                    source: Some(volume),
                    typ: Some(MountType::VOLUME),
                    // Made with the container when missing (one round trip
                    // fewer than creating it first), labelled all the same.
                    volume_options: Some(bollard::models::MountVolumeOptions {
                        labels: Some(self.labels(&spec.session, spec.expires_at, "workspace")),
                        driver_config,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_string(),
                format!("rw,nosuid,nodev,exec,size={}m,mode=1777", c.tmp_mb),
            )])),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(
                std::iter::once("no-new-privileges".to_string())
                    .chain(self.seccomp.clone())
                    .collect(),
            ),
            readonly_rootfs: Some(c.readonly_root),
            network_mode: Some(c.network.clone()),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some((c.cpus * 1e9) as i64),
            pids_limit: Some(c.pids_limit),
            ulimits: Some(vec![ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(c.nofile),
                hard: Some(c.nofile),
            }]),
            init: Some(false),
            runtime: c.runtime.clone(),
            log_config: Some(bollard::models::HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint: Some(vec![AGENT_MOUNT.into()]),
            cmd: Some(vec![]),
            user: Some(spec.user.clone().unwrap_or_else(|| c.user.clone())),
            working_dir: Some("/workspace".into()),
            env: Some(env),
            labels: Some(self.labels(&spec.session, spec.expires_at, "sandbox")),
            open_stdin: Some(true),
            stdin_once: Some(false),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            network_disabled: Some(c.network == "none"),
            host_config: Some(host),
            ..Default::default()
        };
        let created = self
            .client()?
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(
                        spec.name
                            .clone()
                            .unwrap_or_else(|| self.container_name(&spec.session)),
                    ),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| match SandboxError::from_engine("create container", e) {
                SandboxError::NotFound => SandboxError::ImageMissing(image.clone()),
                other => other,
            })?;
        Ok(created.id)
    }

    /// Attaches to a created container's stdio, starts it, and handshakes.
    pub async fn start_and_attach(&self, id: &str) -> Result<SandboxHandle, SandboxError> {
        // Attach first, so nothing the agent writes can be missed.
        let attached = self.attach_stdio(id).await?;
        if let Err(e) = self.client()?.start_container(id, None).await {
            return Err(SandboxError::from_engine("start container", e));
        }
        SandboxHandle::connect(id.to_string(), attached.output, attached.input).await
    }

    /// Connects to the agent of a container that is already running (after
    /// a server restart, or when a previous handle was dropped).
    pub async fn attach(&self, id: &str) -> Result<SandboxHandle, SandboxError> {
        let attached = self.attach_stdio(id).await?;
        SandboxHandle::connect(id.to_string(), attached.output, attached.input).await
    }

    async fn attach_stdio(
        &self,
        id: &str,
    ) -> Result<bollard::container::AttachContainerResults, SandboxError> {
        self.client()?
            .attach_container(
                id,
                Some(AttachContainerOptions {
                    stdin: true,
                    stdout: true,
                    stderr: true,
                    stream: true,
                    logs: false,
                    detach_keys: Some("ctrl-@,ctrl-@".into()),
                }),
            )
            .await
            .map_err(|e| SandboxError::from_engine("attach", e))
    }

    /// Unpacks a tar archive into a container at `path` (a volume path: the
    /// root filesystem is read-only). Entries keep the owners the archive
    /// gives them, so root-owned files stay out of the user's reach.
    pub async fn upload_tar(&self, id: &str, path: &str, tar: Vec<u8>) -> Result<(), SandboxError> {
        self.client()?
            .upload_to_container(
                id,
                Some(bollard::query_parameters::UploadToContainerOptions {
                    path: path.to_string(),
                    ..Default::default()
                }),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|e| SandboxError::from_engine("upload", e))
    }

    /// Renames a container (a claimed warm one takes its session's name).
    pub async fn rename(&self, id: &str, name: &str) -> Result<(), SandboxError> {
        self.client()?
            .rename_container(
                id,
                bollard::query_parameters::RenameContainerOptions {
                    name: name.to_string(),
                },
            )
            .await
            .map_err(|e| SandboxError::from_engine("rename container", e))
    }

    /// Removes a container (killing it); a missing one is not an error.
    pub async fn remove(&self, id: &str) -> Result<(), SandboxError> {
        match self
            .client()?
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: false,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match SandboxError::from_engine("remove container", e) {
                SandboxError::NotFound => Ok(()),
                // Removal already in progress.
                SandboxError::Conflict => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Removes a workspace volume by name (and its directory on the quota
    /// filesystem); a missing one is not an error.
    pub async fn remove_volume(&self, name: &str) -> Result<(), SandboxError> {
        match self
            .client()?
            .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
            .await
        {
            Ok(()) => {}
            Err(e) => match SandboxError::from_engine("remove volume", e) {
                SandboxError::NotFound => {}
                other => return Err(other),
            },
        }
        if let Some(q) = self.quota.clone() {
            let name = name.to_string();
            let _ = tokio::task::spawn_blocking(move || q.remove(&name)).await;
        }
        Ok(())
    }

    /// Releases a workspace's mount (with quotas) while no container uses
    /// it; its files stay, and the next container mounts it again.
    pub async fn release_workspace(&self, name: &str) {
        if let Some(q) = self.quota.clone() {
            let name = name.to_string();
            let _ = tokio::task::spawn_blocking(move || q.unmount(&name)).await;
        }
    }

    /// Where a workspace is mounted (with quotas).
    pub fn workspace_dir(&self, name: &str) -> Option<std::path::PathBuf> {
        self.quota
            .as_ref()
            .map(|_| self.config.workspace_root.join(name))
    }

    /// Workspace filesystems on disk (with quotas) that no volume in `keep`
    /// names: what a crash between making one and its container left. Only
    /// this deployment's (another's, and one made before deployments were
    /// recorded, is left alone).
    pub async fn remove_orphan_workspaces(&self, keep: &std::collections::HashSet<String>) {
        let Some(q) = self.quota.clone() else { return };
        let prefix = format!("{}-", self.config.name_prefix);
        let keep = keep.clone();
        let ours = self.config.deployment.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for name in q.list(&prefix) {
                if keep.contains(&name) {
                    continue;
                }
                match Ownership::of(ours.as_deref(), q.deployment(&name).as_deref()) {
                    Ownership::Ours => {
                        tracing::info!(workspace = %name, "removing a workspace no session owns");
                        q.remove(&name);
                    }
                    Ownership::Unlabelled => {
                        tracing::info!(workspace = %name, "leaving alone a workspace from before deployment ids that no session here owns");
                    }
                    Ownership::Other => {}
                }
            }
        })
        .await;
    }

    fn managed_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_MANAGED}={}", self.config.name_prefix)],
        )])
    }

    /// Every container this server manages, running or not.
    pub async fn list(&self) -> Result<Vec<ManagedContainer>, SandboxError> {
        let list = self
            .client()?
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.managed_filter()),
                ..Default::default()
            }))
            .await
            .map_err(|e| SandboxError::from_engine("list containers", e))?;
        Ok(list
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                ManagedContainer {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    session: labels.get(LABEL_SESSION).cloned().unwrap_or_default(),
                    expires_at: labels
                        .get(LABEL_EXPIRES_AT)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    running: c.state.map(|s| s.to_string() == "running").unwrap_or(false),
                    deployment: labels.get(LABEL_DEPLOYMENT).cloned(),
                }
            })
            .collect())
    }

    /// Every workspace volume this server manages.
    pub async fn list_volumes(&self) -> Result<Vec<ManagedVolume>, SandboxError> {
        let list = self
            .client()?
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(self.managed_filter()),
            }))
            .await
            .map_err(|e| SandboxError::from_engine("list volumes", e))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| ManagedVolume {
                session: v.labels.get(LABEL_SESSION).cloned().unwrap_or_default(),
                deployment: v.labels.get(LABEL_DEPLOYMENT).cloned(),
                name: v.name,
            })
            .collect())
    }

    /// Whether a container exists and runs.
    pub async fn is_running(&self, id: &str) -> Result<bool, SandboxError> {
        match self
            .client()?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => Ok(info.state.and_then(|s| s.running).unwrap_or(false)),
            Err(e) => match SandboxError::from_engine("inspect", e) {
                SandboxError::NotFound => Ok(false),
                other => Err(other),
            },
        }
    }

    /// The limits the engine applied to a container.
    pub async fn applied_limits(&self, id: &str) -> Result<AppliedLimits, SandboxError> {
        let info = self
            .client()?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| SandboxError::from_engine("inspect", e))?;
        let host = info.host_config.unwrap_or_default();
        Ok(AppliedLimits {
            memory: host.memory.unwrap_or(0),
            memory_swap: host.memory_swap.unwrap_or(0),
            pids_limit: host.pids_limit.unwrap_or(0),
            nano_cpus: host.nano_cpus.unwrap_or(0),
            readonly_root: host.readonly_rootfs.unwrap_or(false),
            network_mode: host.network_mode.unwrap_or_default(),
            cap_drop: host.cap_drop.unwrap_or_default(),
            security_opt: host.security_opt.unwrap_or_default(),
            user: info.config.and_then(|c| c.user).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_follow_the_engines_remapping() {
        let plain = ["name=seccomp,profile=default".to_string()];
        assert_eq!(
            shifted_ids(&plain, "/var/lib/docker", (1000, 1000)),
            Ok(None)
        );
        let remapped = [plain[0].clone(), "name=userns".to_string()];
        assert_eq!(
            shifted_ids(&remapped, "/var/lib/docker/100000.100000", (1000, 1000)),
            Ok(Some((101000, 101000)))
        );
        assert_eq!(
            shifted_ids(&remapped, "/srv/docker/231072.231072", (1000, 1001)),
            Ok(Some((232072, 232073)))
        );
        assert!(shifted_ids(&remapped, "/var/lib/docker", (1000, 1000)).is_err());
    }
}
