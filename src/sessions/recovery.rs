//! At start-up: what the engine holds that no session owns is removed.

use super::*;

impl Registry {
    /// At start-up: removes managed containers and volumes that no session
    /// owns, and forgets containers that no longer run.
    pub async fn recover(&self) -> Result<(), SandboxError> {
        let sandboxes = &self.shared.sandboxes;
        let all = self.all();
        for c in sandboxes.list().await? {
            let owner = all
                .iter()
                .find(|s| s.container_id().as_deref() == Some(c.id.as_str()));
            if owner.is_none() || !c.running {
                info!(container = %c.name, owned = owner.is_some(), "removing a container no live session owns");
                sandboxes.remove(&c.id).await?;
                if let Some(s) = owner {
                    s.lock().container_id = None;
                }
            }
        }
        let volumes: std::collections::HashSet<String> = all.iter().map(|s| s.volume()).collect();
        for v in sandboxes.list_volumes().await? {
            if !volumes.contains(&v.name) {
                info!(volume = %v.name, "removing a workspace volume no session owns");
                sandboxes.remove_volume(&v.name).await?;
            }
        }
        sandboxes.remove_orphan_workspaces(&volumes).await;
        // Workspaces of sandboxes without a container (expired before a
        // restart, or whose container was just removed) hold no mount.
        for s in self.all().iter().filter(|s| !s.has_container()) {
            sandboxes.release_workspace(&s.volume()).await;
        }
        self.update_gauges();
        Ok(())
    }
}
