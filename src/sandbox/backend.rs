//! The seam between replbox and a container engine. Everything above
//! `sandbox/` (sessions, the warm pool, grading) holds an
//! `Arc<dyn Backend>`; another engine (Kubernetes, say) is a new module
//! that implements this trait, and nothing above it changes.

use super::{CreateSpec, ManagedContainer, ManagedVolume, SandboxError, SandboxHandle};
use futures::future::BoxFuture;
use std::collections::HashSet;

pub trait Backend: Send + Sync + 'static {
    /// Whether the engine answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), SandboxError>>;

    /// Makes and starts a sandbox from `spec` and connects to its agent.
    fn create<'a>(
        &'a self,
        spec: &'a CreateSpec,
    ) -> BoxFuture<'a, Result<SandboxHandle, SandboxError>>;

    /// Connects to the agent of a sandbox that runs (after a restart).
    fn attach<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<SandboxHandle, SandboxError>>;

    fn is_running<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, SandboxError>>;

    /// Gives a sandbox another name (a warm one claimed by an owner).
    fn rename<'a>(&'a self, id: &'a str, name: &'a str) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// Copies a tar archive's files into a sandbox at `path`.
    fn upload_tar<'a>(
        &'a self,
        id: &'a str,
        path: &'a str,
        tar: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// Stops and removes a sandbox (its workspace volume stays).
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// The sandboxes this server manages (by label).
    fn list(&self) -> BoxFuture<'_, Result<Vec<ManagedContainer>, SandboxError>>;

    /// The workspace volumes this server manages.
    fn list_volumes(&self) -> BoxFuture<'_, Result<Vec<ManagedVolume>, SandboxError>>;

    /// Removes a workspace volume and what holds it (its quota image).
    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// No sandbox uses this workspace now: release what mounts it.
    fn release_workspace<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ()>;

    /// Removes workspaces on disk whose volume is not in `keep` (and what
    /// else on disk no sandbox holds).
    fn remove_orphan_workspaces<'a>(&'a self, keep: &'a HashSet<String>) -> BoxFuture<'a, ()>;

    /// The deployment whose sandboxes this is (`None`: everything under
    /// the name prefix, for tests and tools).
    fn deployment(&self) -> Option<&str>;

    /// The name of an owner's sandbox.
    fn container_name(&self, owner: &str) -> String;

    /// The name of an owner's workspace volume.
    fn volume_name(&self, owner: &str) -> String;
}

impl Backend for super::Sandboxes {
    fn ping(&self) -> BoxFuture<'_, Result<(), SandboxError>> {
        Box::pin(super::Sandboxes::ping(self))
    }

    fn create<'a>(
        &'a self,
        spec: &'a CreateSpec,
    ) -> BoxFuture<'a, Result<SandboxHandle, SandboxError>> {
        Box::pin(super::Sandboxes::create(self, spec))
    }

    fn attach<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<SandboxHandle, SandboxError>> {
        Box::pin(super::Sandboxes::attach(self, id))
    }

    fn is_running<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, SandboxError>> {
        Box::pin(super::Sandboxes::is_running(self, id))
    }

    fn rename<'a>(&'a self, id: &'a str, name: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(super::Sandboxes::rename(self, id, name))
    }

    fn upload_tar<'a>(
        &'a self,
        id: &'a str,
        path: &'a str,
        tar: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(super::Sandboxes::upload_tar(self, id, path, tar))
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(super::Sandboxes::remove(self, id))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ManagedContainer>, SandboxError>> {
        Box::pin(super::Sandboxes::list(self))
    }

    fn list_volumes(&self) -> BoxFuture<'_, Result<Vec<ManagedVolume>, SandboxError>> {
        Box::pin(super::Sandboxes::list_volumes(self))
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(super::Sandboxes::remove_volume(self, name))
    }

    fn release_workspace<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(super::Sandboxes::release_workspace(self, name))
    }

    fn remove_orphan_workspaces<'a>(&'a self, keep: &'a HashSet<String>) -> BoxFuture<'a, ()> {
        Box::pin(super::Sandboxes::remove_orphan_workspaces(self, keep))
    }

    fn deployment(&self) -> Option<&str> {
        self.config().deployment.as_deref()
    }

    fn container_name(&self, owner: &str) -> String {
        super::Sandboxes::container_name(self, owner)
    }

    fn volume_name(&self, owner: &str) -> String {
        super::Sandboxes::volume_name(self, owner)
    }
}
