//! The Kubernetes backend (`REPLBOX_BACKEND=kubernetes`): a sandbox is a
//! pod in REPLBOX_KUBE_NAMESPACE with the agent as PID 1 (an image volume),
//! its workspace a PersistentVolumeClaim sized by the quota, and its agent
//! reached over the pod's attach stream (apiserver → kubelet → runtime): a
//! sandbox has no network, so there is no connection to the pod to make
//! (docs/kubernetes.md says why and what it costs). The apiserver's error
//! text is logged here and never leaves: callers get a [`SandboxError`].

mod create;
mod manage;
mod spec;

pub use spec::{object_name, AGENT, CONTAINER};

use super::{
    Backend, CreateSpec, ManagedContainer, ManagedVolume, SandboxError, SandboxHandle,
    LABEL_DEPLOYMENT, LABEL_EXPIRES_AT, LABEL_SESSION,
};
use crate::config::SandboxConfig;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::Api;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

impl SandboxError {
    /// Logs the apiserver's own error and maps it to what callers may see.
    fn from_kube(context: &str, e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(status) if status.code == 404 => {
                debug!(%context, error = %e, "not found");
                SandboxError::NotFound
            }
            kube::Error::Api(status) if status.code == 409 => {
                debug!(%context, error = %e, "conflict");
                SandboxError::Conflict
            }
            kube::Error::Api(_) => {
                warn!(%context, error = %e, "apiserver refused");
                SandboxError::Engine
            }
            _ => {
                warn!(%context, error = %e, "apiserver unreachable");
                SandboxError::EngineUnavailable
            }
        }
    }
}

/// A namespace of a Kubernetes cluster, seen as a place to make sandboxes.
#[derive(Clone)]
pub struct Pods {
    config: SandboxConfig,
    /// Made on first use (the in-cluster account, or $KUBECONFIG): the
    /// apiserver may come up after the server.
    client: Arc<OnceCell<kube::Client>>,
    /// The live connection made here to each pod: the grader's hidden
    /// files go in through the agent (the server has no exec right).
    live: Arc<Mutex<HashMap<String, super::handle::WeakHandle>>>,
}

impl Pods {
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            config,
            client: Default::default(),
            live: Default::default(),
        }
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    async fn client(&self) -> Result<kube::Client, SandboxError> {
        self.client
            .get_or_try_init(|| async {
                kube::Client::try_default().await.map_err(|e| {
                    warn!(error = %e, "no Kubernetes client (in-cluster account or $KUBECONFIG)");
                    SandboxError::EngineUnavailable
                })
            })
            .await
            .cloned()
    }

    async fn pods(&self) -> Result<Api<Pod>, SandboxError> {
        Ok(Api::namespaced(
            self.client().await?,
            &self.config.kube_namespace,
        ))
    }

    async fn claims(&self) -> Result<Api<PersistentVolumeClaim>, SandboxError> {
        Ok(Api::namespaced(
            self.client().await?,
            &self.config.kube_namespace,
        ))
    }

    pub async fn ping(&self) -> Result<(), SandboxError> {
        self.client()
            .await?
            .apiserver_version()
            .await
            .map(|_| ())
            .map_err(|e| SandboxError::from_kube("version", e))
    }

    pub fn container_name(&self, owner: &str) -> String {
        object_name(&format!("{}-{owner}", self.config.name_prefix))
    }

    pub fn volume_name(&self, owner: &str) -> String {
        object_name(&format!("{}-ws-{owner}", self.config.name_prefix))
    }
}

impl Backend for Pods {
    fn ping(&self) -> BoxFuture<'_, Result<(), SandboxError>> {
        Box::pin(Pods::ping(self))
    }

    fn create<'a>(
        &'a self,
        spec: &'a CreateSpec,
    ) -> BoxFuture<'a, Result<SandboxHandle, SandboxError>> {
        Box::pin(Pods::create(self, spec))
    }

    fn attach<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<SandboxHandle, SandboxError>> {
        Box::pin(Pods::attach(self, id))
    }

    fn is_running<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, SandboxError>> {
        Box::pin(Pods::is_running(self, id))
    }

    fn rename<'a>(&'a self, id: &'a str, name: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(Pods::rename(self, id, name))
    }

    fn upload_tar<'a>(
        &'a self,
        id: &'a str,
        path: &'a str,
        tar: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(Pods::upload_tar(self, id, path, tar))
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(Pods::remove(self, id))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ManagedContainer>, SandboxError>> {
        Box::pin(Pods::list(self))
    }

    fn list_volumes(&self) -> BoxFuture<'_, Result<Vec<ManagedVolume>, SandboxError>> {
        Box::pin(Pods::list_volumes(self))
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(Pods::remove_volume(self, name))
    }

    /// A claim holds no node resource while unmounted: nothing to release.
    fn release_workspace<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Volumes are the cluster's: removing a claim removes its volume.
    fn remove_orphan_workspaces<'a>(&'a self, _keep: &'a HashSet<String>) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn deployment(&self) -> Option<&str> {
        self.config.deployment.as_deref()
    }

    fn container_name(&self, owner: &str) -> String {
        Pods::container_name(self, owner)
    }

    fn volume_name(&self, owner: &str) -> String {
        Pods::volume_name(self, owner)
    }
}
