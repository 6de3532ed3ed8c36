//! At start-up: what the engine holds of this deployment that no session
//! owns is removed; other deployments' sandboxes are never touched.

use super::*;
use crate::sandbox::Ownership;

impl Registry {
    /// At start-up: removes this deployment's containers and volumes that
    /// no session owns, and forgets containers that no longer run. Those
    /// of another deployment (their `replbox.deployment` label) are left
    /// alone; so are unlabelled ones (made before the label) that the store
    /// does not know, with a line in the log: they may be another server's.
    ///
    /// With replicas sharing the store, the sweep runs only when no other
    /// replica's heartbeat is live (what this store does not know may be a
    /// live replica's warm container, or a sandbox it is making); either
    /// way the sandboxes with a container that no live replica holds are
    /// taken here.
    pub async fn recover(&self) -> Result<(), SandboxError> {
        // Our heartbeat first: a replica starting after us sees us.
        self.renew_once().await;
        let alone = match self.others_live().await {
            Ok(others) => !others,
            Err(e) => {
                warn!(error = %e, "cannot read the other replicas' heartbeats");
                false
            }
        };
        self.adopt_unleased(true).await;
        if !alone {
            info!("other replicas are live: start-up removes nothing (what the store does not know may be theirs)");
            self.update_gauges();
            return Ok(());
        }
        let sandboxes = &self.shared.sandboxes;
        let ours = sandboxes.deployment();
        let all = self.all();
        // Sessions whose container or volume another deployment owns: this
        // store is a copy of that deployment's (a copied data directory).
        // They are forgotten here, and nothing of theirs is touched.
        let mut foreign = std::collections::BTreeSet::new();
        for c in sandboxes.list().await? {
            let owner = all
                .iter()
                .find(|s| s.container_id().as_deref() == Some(c.id.as_str()));
            match Ownership::of(ours, c.deployment.as_deref()) {
                Ownership::Other => {
                    if let Some(s) = owner {
                        foreign.insert(s.owner.clone());
                    }
                    continue;
                }
                Ownership::Unlabelled if owner.is_none() => {
                    info!(container = %c.name, "leaving alone a container from before deployment labels that this store does not know");
                    continue;
                }
                _ => {}
            }
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
            if volumes.contains(&v.name) {
                if matches!(
                    Ownership::of(ours, v.deployment.as_deref()),
                    Ownership::Other
                ) {
                    if let Some(s) = all.iter().find(|s| s.volume() == v.name) {
                        foreign.insert(s.owner.clone());
                    }
                }
                continue;
            }
            match Ownership::of(ours, v.deployment.as_deref()) {
                Ownership::Ours => {
                    info!(volume = %v.name, "removing a workspace volume no session owns");
                    sandboxes.remove_volume(&v.name).await?;
                }
                Ownership::Unlabelled => {
                    info!(volume = %v.name, "leaving alone a workspace volume from before deployment labels that this store does not know");
                }
                Ownership::Other => {}
            }
        }
        for owner in foreign {
            warn!(%owner, "forgetting a sandbox another deployment owns (this store is a copy of its store); nothing of it is touched");
            self.shared.sessions.locked().remove(&owner);
            if let Err(e) = self.shared.store.delete(&owner).await {
                warn!(%owner, error = %e, "cannot forget it in the store; tried again at the next start");
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
