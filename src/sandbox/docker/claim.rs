//! Giving a new workspace to the sandbox user, for an image of one's own,
//! from a short-lived helper container with only CAP_CHOWN.

use super::*;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::CreateContainerOptions;
use tracing::warn;

impl Sandboxes {
    /// Makes the workspace root the sandbox user's, without a privileged
    /// exec in the sandbox (the engine has no per-exec capabilities: an
    /// exec is privileged or has the container's, which are none) and
    /// without anything of the sandbox's image: a short-lived helper
    /// container of the server's own image, with only CAP_CHOWN, no
    /// network, a read-only root and only the workspace volume mounted
    /// (never copied into), runs the agent's `claim-workspace /workspace
    /// UID GID`, which changes the owner of that directory itself, never
    /// following a symbolic link, and refuses any REPLBOX_* environment.
    pub async fn claim_workspace(&self, session: &str, volume: &str) -> Result<(), SandboxError> {
        use futures::StreamExt;
        let c = &self.config;
        let (uid, gid) = user_ids(&c.user);
        let docker = self.client()?;
        let host = HostConfig {
            mounts: Some(vec![
                self.agent_mount()?,
                Mount {
                    target: Some("/workspace".into()),
                    source: Some(volume.to_string()),
                    typ: Some(MountType::VOLUME),
                    volume_options: Some(bollard::models::MountVolumeOptions {
                        no_copy: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(vec!["CHOWN".into()]),
            security_opt: Some(
                std::iter::once("no-new-privileges".to_string())
                    .chain(self.seccomp.clone())
                    .collect(),
            ),
            readonly_rootfs: Some(true),
            network_mode: Some("none".into()),
            memory: Some(64 * 1024 * 1024),
            pids_limit: Some(8),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(c.image.clone()),
            entrypoint: Some(vec![AGENT_MOUNT.into()]),
            cmd: Some(vec![
                "claim-workspace".into(),
                "/workspace".into(),
                uid.to_string(),
                gid.to_string(),
            ]),
            user: Some("0:0".into()),
            working_dir: Some("/".into()),
            env: Some(vec![]),
            labels: Some(self.labels(session, 0, "claim")),
            network_disabled: Some(true),
            host_config: Some(host),
            ..Default::default()
        };
        let name = format!(
            "{}-claim-{}",
            c.name_prefix,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let helper = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| SandboxError::from_engine("claim workspace: create", e))?
            .id;
        let outcome = async {
            docker
                .start_container(&helper, None)
                .await
                .map_err(|e| SandboxError::from_engine("claim workspace: start", e))?;
            let mut waited = docker.wait_container(
                &helper,
                None::<bollard::query_parameters::WaitContainerOptions>,
            );
            let code = match waited.next().await {
                Some(Ok(r)) => r.status_code,
                // A non-zero exit comes as an error carrying the code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                Some(Err(e)) => return Err(SandboxError::from_engine("claim workspace: wait", e)),
                None => -1,
            };
            if code == 0 {
                return Ok(());
            }
            let mut said = String::new();
            let mut logs = docker.logs(
                &helper,
                Some(bollard::query_parameters::LogsOptions {
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            );
            while let Some(Ok(chunk)) = logs.next().await {
                said.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
            warn!(%volume, exit = code, said = said.trim(), "cannot give the workspace to the sandbox user");
            Err(SandboxError::WorkspaceUnclaimed(said.trim().to_string()))
        }
        .await;
        if let Err(e) = self.remove(&helper).await {
            warn!(container = %helper, error = %e, "cannot remove the workspace helper");
        }
        outcome
    }
}
