//! What the server does with sandboxes that exist: uploads, renames,
//! removal, listing, inspection; and their workspace volumes.

use super::*;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, ListVolumesOptions, RemoveContainerOptions,
    RemoveVolumeOptions,
};
use std::collections::HashMap;

impl Sandboxes {
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
        let dir = match self.sockets {
            Some(_) => self.direct_dir(id).await,
            None => None,
        };
        let removed = match self
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
        };
        if removed.is_ok() {
            self.remove_direct_dir(id, dir).await;
        }
        removed
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
    /// names: what a crash between making one and its container left (and
    /// socket directories no container holds). Only this deployment's
    /// (another's, and one made before deployments were recorded, is left
    /// alone).
    pub async fn remove_orphan_workspaces(&self, keep: &std::collections::HashSet<String>) {
        self.remove_orphan_direct_dirs().await;
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

    pub(super) fn managed_filter(&self) -> HashMap<String, Vec<String>> {
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
