//! The Kubernetes backend (`REPLBOX_BACKEND=kubernetes`): a sandbox is a
//! pod in REPLBOX_KUBE_NAMESPACE with the agent as PID 1 (an image volume),
//! its workspace a PersistentVolumeClaim sized by the quota, and its agent
//! reached over the pod's attach stream (apiserver → kubelet → runtime): a
//! sandbox has no network, so there is no connection to the pod to make
//! (docs/kubernetes.md says why and what it costs). The apiserver's error
//! text is logged here and never leaves: callers get a [`SandboxError`].

mod spec;

pub use spec::{object_name, AGENT, CONTAINER};

use super::{
    Backend, CreateSpec, ManagedContainer, ManagedVolume, SandboxError, SandboxHandle,
    LABEL_DEPLOYMENT, LABEL_EXPIRES_AT, LABEL_SESSION,
};
use crate::config::SandboxConfig;
use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, AttachParams, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

/// Bytes the attach stream's pipes hold each way (kube's default is 1 KiB,
/// which would cut a stream into tiny reads).
const STDOUT_PIPE: usize = 256 * 1024;
const STDIN_PIPE: usize = 64 * 1024;

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

    /// The workspace claim, made when missing (a returning student's is
    /// kept, and bound again).
    async fn ensure_claim(&self, name: &str, session: &str) -> Result<(), SandboxError> {
        let claims = self.claims().await?;
        match claims.get_opt(name).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(e) => return Err(SandboxError::from_kube("get claim", e)),
        }
        let claim = spec::claim(&self.config, name, session);
        match claims.create(&PostParams::default(), &claim).await {
            Ok(_) => Ok(()),
            // Made meanwhile by another request for the same owner.
            Err(e) => match SandboxError::from_kube("create claim", e) {
                SandboxError::Conflict => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Makes the claim (when missing) and the pod, waits until it runs,
    /// and connects to its agent.
    pub async fn create(&self, spec: &CreateSpec) -> Result<SandboxHandle, SandboxError> {
        let name = spec
            .name
            .as_deref()
            .map(object_name)
            .unwrap_or_else(|| self.container_name(&spec.session));
        let claim = spec
            .volume
            .as_deref()
            .map(object_name)
            .unwrap_or_else(|| self.volume_name(&spec.session));
        self.ensure_claim(&claim, &spec.session).await?;
        let pod = spec::pod(&self.config, &name, &claim, spec);
        let image = spec
            .image
            .clone()
            .unwrap_or_else(|| self.config.image.clone());
        let pods = self.pods().await?;
        pods.create(&PostParams::default(), &pod)
            .await
            .map_err(|e| SandboxError::from_kube("create pod", e))?;
        if let Err(e) = self.wait_running(&pods, &name, &image).await {
            let _ = self.remove(&name).await;
            return Err(e);
        }
        self.attach(&name).await
    }

    /// Waits until the pod's container runs; a pod that cannot (its image
    /// is missing, it ended) is an error at once.
    async fn wait_running(
        &self,
        pods: &Api<Pod>,
        name: &str,
        image: &str,
    ) -> Result<(), SandboxError> {
        let deadline = Duration::from_secs(self.config.kube_start_timeout_s);
        let watch = async {
            loop {
                let pod = pods
                    .get(name)
                    .await
                    .map_err(|e| SandboxError::from_kube("get pod", e))?;
                if let Some(done) = started(&pod, image) {
                    return done;
                }
                let version = pod.metadata.resource_version.clone().unwrap_or_default();
                let params = kube::api::WatchParams::default()
                    .fields(&format!("metadata.name={name}"))
                    .timeout(30);
                let mut events = pods
                    .watch(&params, &version)
                    .await
                    .map_err(|e| SandboxError::from_kube("watch pod", e))?
                    .boxed();
                while let Some(event) = events.next().await {
                    match event {
                        Ok(kube::api::WatchEvent::Added(pod))
                        | Ok(kube::api::WatchEvent::Modified(pod)) => {
                            if let Some(done) = started(&pod, image) {
                                return done;
                            }
                        }
                        Ok(kube::api::WatchEvent::Deleted(_)) => {
                            return Err(SandboxError::AgentGone)
                        }
                        // Expired resource version, or a cut stream: read again.
                        Ok(_) | Err(_) => break,
                    }
                }
            }
        };
        match tokio::time::timeout(deadline, watch).await {
            Ok(done) => done,
            Err(_) => {
                warn!(pod = name, "the pod did not run in time");
                Err(SandboxError::AgentUnresponsive)
            }
        }
    }

    /// Connects to the agent of a running pod over its attach stream.
    pub async fn attach(&self, id: &str) -> Result<SandboxHandle, SandboxError> {
        let pods = self.pods().await?;
        let params = AttachParams::default()
            .container(CONTAINER)
            .stdin(true)
            .stdout(true)
            .stderr(false)
            .max_stdin_buf_size(STDIN_PIPE)
            .max_stdout_buf_size(STDOUT_PIPE);
        let mut attached = pods
            .attach(id, &params)
            .await
            .map_err(|e| SandboxError::from_kube("attach", e))?;
        let (Some(stdin), Some(stdout)) = (attached.stdin(), attached.stdout()) else {
            return Err(SandboxError::Engine);
        };
        // The attach task lives as long as the agent's output is read: the
        // stream owns it, and dropping the handle ends both.
        let output = tokio_util::io::ReaderStream::with_capacity(stdout, 64 * 1024)
            .map(move |chunk| {
                let _keep = &attached;
                chunk
                    .map(|message| bollard::container::LogOutput::StdOut { message })
                    .map_err(|err| bollard::errors::Error::IOError { err })
            })
            .boxed();
        let handle = SandboxHandle::connect(id.to_string(), output, Box::pin(stdin), None).await?;
        let mut live = self.live.lock().unwrap();
        live.retain(|_, h| h.upgrade().is_some());
        live.insert(id.to_string(), handle.downgrade());
        drop(live);
        Ok(handle)
    }

    pub async fn is_running(&self, id: &str) -> Result<bool, SandboxError> {
        match self.pods().await?.get_opt(id).await {
            Ok(Some(pod)) => Ok(running(&pod)),
            Ok(None) => Ok(false),
            Err(e) => Err(SandboxError::from_kube("get pod", e)),
        }
    }

    /// Pods cannot be renamed: the name a claimed warm pod answers to is
    /// an annotation (what the reaper lists).
    pub async fn rename(&self, id: &str, name: &str) -> Result<(), SandboxError> {
        let patch = serde_json::json!({"metadata": {"annotations": {spec::ANNOTATION_NAME: name}}});
        self.pods()
            .await?
            .patch(id, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| SandboxError::from_kube("annotate pod", e))
    }

    /// Unpacks a tar archive into a pod at `path` through its agent (the
    /// server may not exec in sandboxes): the files are the sandbox user's.
    pub async fn upload_tar(&self, id: &str, path: &str, tar: Vec<u8>) -> Result<(), SandboxError> {
        let handle = self.live.lock().unwrap().get(id).and_then(|h| h.upgrade());
        let handle = match handle {
            Some(h) => h,
            None => return Err(SandboxError::AgentGone),
        };
        let base = path.trim_end_matches('/').trim_start_matches("/workspace");
        let base = base.trim_start_matches('/').to_string();
        let files =
            tokio::task::spawn_blocking(move || -> std::io::Result<Vec<(String, Vec<u8>)>> {
                let mut archive = tar::Archive::new(std::io::Cursor::new(tar));
                let mut files = Vec::new();
                for entry in archive.entries()? {
                    let mut entry = entry?;
                    if entry.header().entry_type() != tar::EntryType::Regular {
                        continue;
                    }
                    let name = entry.path()?.display().to_string();
                    let mut data = Vec::new();
                    std::io::Read::read_to_end(&mut entry, &mut data)?;
                    files.push((name, data));
                }
                Ok(files)
            })
            .await
            .map_err(|_| SandboxError::Engine)?
            .map_err(|e| {
                warn!(error = %e, "a tar archive for a sandbox cannot be read");
                SandboxError::Engine
            })?;
        for (name, data) in files {
            let name = name.trim_start_matches("./");
            let full = if base.is_empty() {
                name.to_string()
            } else {
                format!("{base}/{name}")
            };
            handle.write_file(full, data).await?;
        }
        Ok(())
    }

    /// Deletes a pod and waits until it is gone (it counts against the cap
    /// until then); a missing one is not an error.
    pub async fn remove(&self, id: &str) -> Result<(), SandboxError> {
        self.live.lock().unwrap().remove(id);
        let pods = self.pods().await?;
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        match pods.delete(id, &params).await {
            Ok(_) => {}
            Err(e) => match SandboxError::from_kube("delete pod", e) {
                SandboxError::NotFound => return Ok(()),
                other => return Err(other),
            },
        }
        let gone = async {
            loop {
                match pods.get_opt(id).await {
                    Ok(None) => return Ok(()),
                    Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(e) => return Err(SandboxError::from_kube("get pod", e)),
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(60), gone).await {
            Ok(done) => done,
            Err(_) => {
                warn!(pod = id, "the pod is still terminating after 60 s");
                Ok(())
            }
        }
    }

    /// Deletes a workspace claim (its volume goes with it, by the storage
    /// class's reclaim policy); a missing one is not an error.
    pub async fn remove_volume(&self, name: &str) -> Result<(), SandboxError> {
        match self
            .claims()
            .await?
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match SandboxError::from_kube("delete claim", e) {
                SandboxError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    pub async fn list(&self) -> Result<Vec<ManagedContainer>, SandboxError> {
        let params = ListParams::default()
            .labels(&spec::selector(&self.config))
            .labels(&format!("{}=sandbox", super::LABEL_KIND));
        let list = self
            .pods()
            .await?
            .list(&params)
            .await
            .map_err(|e| SandboxError::from_kube("list pods", e))?;
        Ok(list
            .items
            .into_iter()
            .map(|pod| {
                let notes = pod.metadata.annotations.clone().unwrap_or_default();
                let id = pod.metadata.name.clone().unwrap_or_default();
                ManagedContainer {
                    name: notes
                        .get(spec::ANNOTATION_NAME)
                        .cloned()
                        .unwrap_or_else(|| id.clone()),
                    id,
                    session: notes.get(LABEL_SESSION).cloned().unwrap_or_default(),
                    expires_at: notes
                        .get(LABEL_EXPIRES_AT)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    running: running(&pod),
                    deployment: notes.get(LABEL_DEPLOYMENT).cloned(),
                }
            })
            .collect())
    }

    pub async fn list_volumes(&self) -> Result<Vec<ManagedVolume>, SandboxError> {
        let params = ListParams::default().labels(&spec::selector(&self.config));
        let list = self
            .claims()
            .await?
            .list(&params)
            .await
            .map_err(|e| SandboxError::from_kube("list claims", e))?;
        Ok(list
            .items
            .into_iter()
            .map(|claim| {
                let notes = claim.metadata.annotations.unwrap_or_default();
                ManagedVolume {
                    name: claim.metadata.name.unwrap_or_default(),
                    session: notes.get(LABEL_SESSION).cloned().unwrap_or_default(),
                    deployment: notes.get(LABEL_DEPLOYMENT).cloned(),
                }
            })
            .collect())
    }

    /// The pod as the apiserver holds it (tests read the lock-down back).
    pub async fn pod(&self, id: &str) -> Result<Pod, SandboxError> {
        self.pods()
            .await?
            .get(id)
            .await
            .map_err(|e| SandboxError::from_kube("get pod", e))
    }

    /// The workspace claim as the apiserver holds it.
    pub async fn claim(&self, name: &str) -> Result<Option<PersistentVolumeClaim>, SandboxError> {
        self.claims()
            .await?
            .get_opt(name)
            .await
            .map_err(|e| SandboxError::from_kube("get claim", e))
    }
}

/// Whether a pod's sandbox container runs (and the pod is not going).
fn running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.iter().find(|c| c.name == CONTAINER))
            .and_then(|c| c.state.as_ref())
            .is_some_and(|s| s.running.is_some())
}

/// `Some` once waiting is over: running, or a state it cannot leave.
fn started(pod: &Pod, image: &str) -> Option<Result<(), SandboxError>> {
    if running(pod) {
        return Some(Ok(()));
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Failed" | "Succeeded")) {
        return Some(Err(SandboxError::AgentGone));
    }
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .filter_map(|w| w.reason.as_deref())
        .find(|r| {
            matches!(
                *r,
                "ErrImageNeverPull" | "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName"
            )
        });
    if let Some(reason) = waiting {
        info!(reason, image, "a sandbox pod's image is not available");
        return Some(Err(SandboxError::ImageMissing(image.to_string())));
    }
    if let Some(reason) = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .find(|r| r == "CreateContainerConfigError" || r == "CreateContainerError")
    {
        warn!(%reason, "a sandbox pod cannot start");
        return Some(Err(SandboxError::Engine));
    }
    None
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
