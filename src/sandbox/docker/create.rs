//! Making, starting and attaching to a sandbox's container.

use super::*;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, ResourcesUlimits};
use bollard::query_parameters::{AttachContainerOptions, CreateContainerOptions};
use std::collections::HashMap;
use tracing::warn;

/// Under gVisor, the host's pids limit of a sandbox as a multiple of the
/// limit its processes see (README, "Running with gVisor").
pub const GVISOR_HOST_PIDS_FACTOR: i64 = 4;

impl Sandboxes {
    /// The agent binary, read-only at its path in a container (a
    /// sandbox's or a claim helper's).
    pub(super) fn agent_mount(&self) -> Result<Mount, SandboxError> {
        let path = &self.config.agent_path;
        let agent = std::fs::canonicalize(path).map_err(|e| {
            warn!(path = %path.display(), error = %e, "agent binary missing");
            SandboxError::Engine
        })?;
        Ok(Mount {
            target: Some(AGENT_MOUNT.into()),
            source: Some(agent.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        })
    }

    /// Creates and starts a session's container (its workspace volume is
    /// created when missing, reused when not) and connects to its agent.
    pub async fn create(&self, spec: &CreateSpec) -> Result<SandboxHandle, SandboxError> {
        let id = self.create_container(spec).await?;
        let handle = self.start_and_attach(&id).await?;
        // The default image is built with /workspace owned by the sandbox
        // user; an image of the user's own may have none, or root's (and a
        // new volume takes its owner from the image): give it to the user.
        // When that fails the half-made container goes, and the log and
        // the error say why.
        if spec.image.as_ref().is_some_and(|i| *i != self.config.image) {
            let volume = spec
                .volume
                .clone()
                .unwrap_or_else(|| self.volume_name(&spec.session));
            if let Err(e) = self.claim_workspace(&spec.session, &volume).await {
                drop(handle);
                if let Err(removal) = self.remove(&id).await {
                    warn!(container = %id, error = %removal, "cannot remove a sandbox whose workspace was not claimed");
                }
                return Err(e);
            }
        }
        Ok(handle)
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
                let deployment = self.config.deployment.clone();
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
        let direct = self.new_direct_dir()?;
        let image = spec.image.clone().unwrap_or_else(|| c.image.clone());
        let memory = c.memory_mb * 1024 * 1024;
        let gvisor = c.runtime.as_deref() == Some("runsc");
        let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push("REPLBOX_WORKSPACE=/workspace".into());
        let host = HostConfig {
            mounts: Some(
                [
                    self.agent_mount()?,
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
                ]
                .into_iter()
                .chain(direct.as_ref().map(|d| Mount {
                    target: Some(d.container.clone()),
                    source: Some(d.host.display().to_string()),
                    typ: Some(MountType::BIND),
                    // connect() works on a read-only mount; nothing in the
                    // container may make or replace a file there.
                    read_only: Some(true),
                    ..Default::default()
                }))
                .collect(),
            ),
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
            // Under gVisor the cgroup holds its kernel's host threads, about
            // one per task inside and its own: with the tasks at their limit
            // (RLIMIT_NPROC, below) the Go runtime could not make a thread
            // and the whole sandbox died (exit 2) at 2 times the limit; 4
            // times leaves it room and still bounds it on the host.
            pids_limit: Some(if gvisor {
                c.pids_limit.saturating_mul(GVISOR_HOST_PIDS_FACTOR)
            } else {
                c.pids_limit
            }),
            ulimits: Some(
                std::iter::once(ResourcesUlimits {
                    name: Some("nofile".into()),
                    soft: Some(c.nofile),
                    hard: Some(c.nofile),
                })
                // gVisor's kernel does not apply the pids limit to what runs
                // inside (its cgroup's pids.max is `max`), but it counts each
                // uid's tasks against RLIMIT_NPROC in its own kernel, one per
                // sandbox: the same limit there. Not under runc, where the
                // cgroup does it and the count would be the host's uid's.
                .chain(gvisor.then(|| ResourcesUlimits {
                    name: Some("nproc".into()),
                    soft: Some(c.pids_limit),
                    hard: Some(c.pids_limit),
                }))
                .collect(),
            ),
            init: Some(false),
            runtime: self.config.runtime.clone(),
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
        let created = match self.client() {
            Ok(client) => client,
            Err(e) => {
                self.drop_new_direct_dir(direct);
                return Err(e);
            }
        }
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
        });
        match created {
            Ok(created) => {
                self.keep_direct_dir(&created.id, direct);
                Ok(created.id)
            }
            Err(e) => {
                self.drop_new_direct_dir(direct);
                Err(e)
            }
        }
    }

    /// Attaches to a created container's stdio, starts it, and handshakes.
    pub async fn start_and_attach(&self, id: &str) -> Result<SandboxHandle, SandboxError> {
        // Attach first, so nothing the agent writes can be missed.
        let attached = self.attach_stdio(id).await?;
        if let Err(e) = self.client()?.start_container(id, None).await {
            return Err(SandboxError::from_engine("start container", e));
        }
        let direct = self.direct_dir(id).await;
        SandboxHandle::connect(id.to_string(), attached.output, attached.input, direct).await
    }

    /// Connects to the agent of a container that is already running (after
    /// a server restart, or when a previous handle was dropped).
    pub async fn attach(&self, id: &str) -> Result<SandboxHandle, SandboxError> {
        let attached = self.attach_stdio(id).await?;
        let direct = self.direct_dir(id).await;
        SandboxHandle::connect(id.to_string(), attached.output, attached.input, direct).await
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
}
