//! Making a sandbox's pod and claim, waiting until it runs, and the attach
//! stream to its agent.

use super::*;
use futures::StreamExt;
use kube::api::{AttachParams, PostParams};

/// Bytes the attach stream's pipes hold each way (kube's default is 1 KiB,
/// which would cut a stream into tiny reads).
const STDOUT_PIPE: usize = 256 * 1024;
const STDIN_PIPE: usize = 64 * 1024;

impl Pods {
    /// The workspace claim, made when missing (a returning student's is
    /// kept, and bound again).
    async fn ensure_claim(&self, name: &str, session: &str) -> Result<(), SandboxError> {
        let claims = self.claims().await?;
        match claims.get_opt(name).await {
            // Another deployment's claim of that name is not ours to mount.
            Ok(Some(claim)) => {
                let theirs = claim
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(LABEL_DEPLOYMENT).cloned());
                return match crate::sandbox::Ownership::of(self.deployment(), theirs.as_deref()) {
                    crate::sandbox::Ownership::Other => {
                        warn!(
                            claim = name,
                            "a workspace claim of this name belongs to another deployment"
                        );
                        Err(SandboxError::Conflict)
                    }
                    _ => Ok(()),
                };
            }
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
        match self.attach(&name).await {
            Ok(handle) => Ok(handle),
            // A pod whose agent cannot be reached is not left holding its
            // memory request.
            Err(e) => {
                let _ = self.remove(&name).await;
                Err(e)
            }
        }
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
}

/// Whether a pod's sandbox container runs (and the pod is not going).
pub(super) fn running(pod: &Pod) -> bool {
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
    // A waiting reason it cannot leave: its image, or its container's
    // making.
    let stuck = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
        .find_map(|reason| match reason {
            "ErrImageNeverPull" | "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => {
                info!(reason, image, "a sandbox pod's image is not available");
                Some(SandboxError::ImageMissing(image.to_string()))
            }
            "CreateContainerConfigError" | "CreateContainerError" => {
                warn!(reason, "a sandbox pod cannot start");
                Some(SandboxError::Engine)
            }
            _ => None,
        });
    if let Some(e) = stuck {
        return Some(Err(e));
    }
    None
}
