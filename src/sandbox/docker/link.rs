//! Each container's socket directory (the socket transport, `direct.rs`):
//! made with the container, found again after a restart (the container's
//! own mounts say where), removed with the container.

use super::super::direct::{self, DirectDir};
use super::*;
use crate::sync::Lock;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};

impl Sandboxes {
    /// A new container's socket directory; `None` with the attach transport.
    pub(super) fn new_direct_dir(&self) -> Result<Option<DirectDir>, SandboxError> {
        let Some(root) = &self.sockets else {
            return Ok(None);
        };
        direct::new_dir(root, &self.config.name_prefix)
            .map(Some)
            .map_err(|e| {
                warn!(dir = %root.display(), error = %e, "cannot make a socket directory");
                SandboxError::Engine
            })
    }

    pub(super) fn keep_direct_dir(&self, id: &str, dir: Option<DirectDir>) {
        if let Some(dir) = dir {
            self.direct_dirs.locked().insert(id.to_string(), dir);
        }
    }

    /// A directory made for a container the engine did not make.
    pub(super) fn drop_new_direct_dir(&self, dir: Option<DirectDir>) {
        if let Some(dir) = dir {
            direct::remove_dir(&dir.host);
        }
    }

    /// The socket directory of container `id`, when this server talks to
    /// agents over sockets and the container has one: remembered from its
    /// making, or read from its mounts (a container made before a restart;
    /// one made with the attach transport has none and keeps attach).
    pub(super) async fn direct_dir(&self, id: &str) -> Option<DirectDir> {
        let root = self.sockets.as_ref()?;
        if let Some(dir) = self.direct_dirs.locked().get(id) {
            return Some(dir.clone());
        }
        let dir = self.mounted_direct_dir(id).await?;
        // Only a directory of ours: the engine's record is not the judge
        // of where this server listens.
        if dir.host.parent() != Some(root.as_path()) {
            warn!(container = id, dir = %dir.host.display(), "a socket directory outside ours: using attach");
            return None;
        }
        self.keep_direct_dir(id, Some(dir.clone()));
        Some(dir)
    }

    async fn mounted_direct_dir(&self, id: &str) -> Option<DirectDir> {
        let info = self
            .client()
            .ok()?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .ok()?;
        info.mounts?
            .into_iter()
            .find(|m| m.destination.as_deref() == Some(direct::CONTAINER_DIR))
            .and_then(|m| m.source)
            .map(|source| DirectDir {
                host: source.into(),
                container: direct::CONTAINER_DIR.to_string(),
            })
    }

    /// Removes container `id`'s socket directory (after the container).
    pub(super) async fn remove_direct_dir(&self, id: &str, dir: Option<DirectDir>) {
        let dir = match dir {
            Some(dir) => Some(dir),
            None => self.direct_dirs.locked().remove(id),
        };
        if let Some(dir) = dir {
            self.direct_dirs.locked().remove(id);
            direct::remove_dir(&dir.host);
        }
    }

    /// Socket directories of ours (`<prefix>-<16 hex>`) that no container
    /// of ours mounts, older than a minute (one may be for a container
    /// being made): what a crash, or a container removed behind our back,
    /// left.
    pub(super) async fn remove_orphan_direct_dirs(&self) {
        let Some(root) = self.sockets.clone() else {
            return;
        };
        let Ok(client) = self.client() else { return };
        let Ok(list) = client
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.managed_filter()),
                ..Default::default()
            }))
            .await
        else {
            return;
        };
        let held: std::collections::HashSet<std::path::PathBuf> = list
            .into_iter()
            .flat_map(|c| c.mounts.unwrap_or_default())
            .filter(|m| m.destination.as_deref() == Some(direct::CONTAINER_DIR))
            .filter_map(|m| m.source.map(Into::into))
            .collect();
        let prefix = format!("{}-", self.config.name_prefix);
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&root) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = name.strip_prefix(&prefix).is_some_and(|rest| {
                    rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit())
                });
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(60));
                if ours && old && !held.contains(&entry.path()) {
                    tracing::info!(dir = %name, "removing a socket directory no container holds");
                    direct::remove_dir(&entry.path());
                }
            }
        })
        .await;
    }
}
