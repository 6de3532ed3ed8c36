//! What the server does with pods and claims that exist: whether they run,
//! annotations, files through the agent, removal, listing.

use super::create::running;
use super::*;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};

impl Pods {
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
        type Files = Vec<(String, Vec<u8>, u32)>;
        let files = tokio::task::spawn_blocking(move || -> std::io::Result<Files> {
            let mut archive = tar::Archive::new(std::io::Cursor::new(tar));
            let mut files = Vec::new();
            for entry in archive.entries()? {
                let mut entry = entry?;
                if entry.header().entry_type() != tar::EntryType::Regular {
                    continue;
                }
                let name = entry.path()?.display().to_string();
                let mode = entry.header().mode().unwrap_or(0o644);
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data)?;
                files.push((name, data, mode));
            }
            Ok(files)
        })
        .await
        .map_err(|_| SandboxError::Engine)?
        .map_err(|e| {
            warn!(error = %e, "a tar archive for a sandbox cannot be read");
            SandboxError::Engine
        })?;
        let mut modes = Vec::new();
        for (name, data, mode) in files {
            let name = name.trim_start_matches("./");
            let full = if base.is_empty() {
                name.to_string()
            } else {
                format!("{base}/{name}")
            };
            handle.write_file(full.clone(), data).await?;
            if mode & 0o7777 != 0o644 {
                modes.push(format!(
                    "chmod {:o} {}",
                    mode & 0o777,
                    crate::sandbox::shell_quote(&full)
                ));
            }
        }
        // The agent writes files 0644: the archive's own modes (a
        // harness's executables) are given back by a job of the sandbox's
        // user, who owns them.
        if !modes.is_empty() {
            let done = handle
                .spawn(replbox_protocol::JobSpec::shell(modes.join(" && ")))
                .await?
                .collect()
                .await?;
            if done.exit.and_then(|e| e.code) != Some(0) {
                warn!(pod = id, "cannot give an uploaded file its mode");
                return Err(SandboxError::Engine);
            }
        }
        Ok(())
    }

    /// Deletes a pod and waits until it is gone (it counts against the cap
    /// until then); a missing one is not an error.
    pub async fn remove(&self, id: &str) -> Result<(), SandboxError> {
        self.live.lock().unwrap().remove(id);
        let pods = self.pods().await?;
        // Not a forced delete (grace 0 drops the object while its
        // processes may still run on the claim): a second's grace, and the
        // wait below ends when the kubelet has really stopped it.
        let params = DeleteParams {
            grace_period_seconds: Some(1),
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
        // One selector: a second `labels` would replace the first.
        let params = ListParams::default().labels(&format!(
            "{},{}=sandbox",
            spec::selector(&self.config),
            crate::sandbox::LABEL_KIND
        ));
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
