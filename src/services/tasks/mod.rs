//! API sandboxes by taskId, for every front door that serves programs (the
//! REST API, MCP, the Jupyter gateway): each is owned by one API token,
//! found, made, run in and removed here with the same rules and limits;
//! and the one-shot run, a throwaway sandbox around one program.

use super::runs::{self, RunRequest};
use super::{ServiceError, Services};
use crate::sandbox::Collected;
use crate::sessions::{NewSession, OwnerKind, Session, Status, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Who asks: the keyed fingerprint of an API token (`services::tokens`).
/// What a token makes is its own; another token's is "not found".
#[derive(Clone, Debug)]
pub struct Tenant(pub String);

/// The longest wall-time limit a call may ask for.
pub const MAX_TIMEOUT_MS: u64 = runs::API_MAX_TIMEOUT_MS;

/// `timeoutMs`: 1 to 900000 when given (0 would kill a program at once).
pub fn timeout_ms(timeout: Option<u64>) -> Result<Option<u64>, ServiceError> {
    match timeout {
        Some(t) if !(1..=MAX_TIMEOUT_MS).contains(&t) => Err(ServiceError::BadTimeout),
        t => Ok(t),
    }
}

/// A taskId: 1 to 63 letters, digits, `-`, `_` or `.`, starting with a
/// letter or digit.
pub fn valid_task_id(id: &str) -> Result<(), ServiceError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::BadTaskId)
    }
}

/// Hex digits of the tenant's fingerprint in the names of its sandboxes.
const NAMESPACE_HEX: usize = 16;

/// The owner (the registry's and the store's name, and so the container's
/// and the volume's) of `tenant`'s sandbox `task_id`: the taskId under the
/// token's namespace, `t-<16 hex of its keyed fingerprint>-<taskId>`, so
/// two tokens may use the same taskId and each reaches only its own.
pub fn owner_of(tenant: &Tenant, task_id: &str) -> String {
    format!("t-{}-{task_id}", namespace(&tenant.0))
}

fn namespace(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(NAMESPACE_HEX)]
}

/// At start-up, once: API sandboxes recorded before names were namespaced
/// by token (`t-<taskId>`) are renamed to their token's namespace. Their
/// containers and volumes keep their names (the record keeps the volume's
/// name, and containers are found by id), so their files and running
/// programs stay. Answers how many were renamed.
pub async fn namespace_old_names(
    store: &Store,
    volume_name: impl Fn(&str) -> String,
) -> Result<usize, sqlx::Error> {
    let mut renamed = 0;
    for row in store.all().await? {
        let Some(fingerprint) = row.token_hash.as_deref() else {
            continue;
        };
        let Some(task_id) = row.owner.strip_prefix("t-") else {
            continue;
        };
        if row.kind != "api" || task_id.starts_with(&format!("{}-", namespace(fingerprint))) {
            continue;
        }
        let owner = owner_of(&Tenant(fingerprint.to_string()), task_id);
        let volume = row
            .workspace_volume
            .clone()
            .unwrap_or_else(|| volume_name(&row.owner));
        // A row already under the new name (an older and a newer server
        // both ran on this store) stays as it is: start-up goes on.
        if let Err(e) = store.rename_owner(&row.owner, &owner, &volume).await {
            tracing::warn!(old = %row.owner, new = %owner, error = %e, "cannot rename an API sandbox into its token's namespace; left as it is");
            continue;
        }
        tracing::info!(old = %row.owner, new = %owner, "API sandbox renamed into its token's namespace");
        renamed += 1;
    }
    Ok(renamed)
}

/// What a new sandbox asks for.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRequest {
    pub task_id: Option<String>,
    pub image_id: Option<String>,
    pub ttl_seconds: Option<u64>,
    pub env_vars: Option<BTreeMap<String, String>>,
}

/// A sandbox as a caller sees it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
    pub task_id: String,
    status: Status,
    expires_at: String,
    created_at: String,
    ttl_seconds: u64,
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn info(task_id: &str, s: &Session) -> SandboxInfo {
    SandboxInfo {
        task_id: task_id.to_string(),
        status: s.status(),
        expires_at: rfc3339(s.expires_at()),
        created_at: rfc3339(s.created_at()),
        ttl_seconds: s.idle_ttl_secs,
    }
}

/// What a run in a sandbox answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecResult {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
    pub timed_out: bool,
    pub truncated: bool,
    pub reason: String,
}

pub fn exec_result(c: Collected) -> Result<ExecResult, ServiceError> {
    // A program that could not start (no such command, a cwd that is not a
    // directory) is answered as a shell would: exit 127, the reason on
    // stderr. The request itself was fine.
    if let Some(message) = c.spawn_error {
        return Ok(ExecResult {
            exit_code: Some(127),
            signal: None,
            stdout: String::new(),
            stderr: format!("{message}\n"),
            duration_ms: 0,
            timed_out: false,
            truncated: false,
            reason: "not started".into(),
        });
    }
    let exit = c
        .exit
        .ok_or(ServiceError::Internal("a run ended with no exit"))?;
    Ok(ExecResult {
        exit_code: exit.code.or(exit.signal.map(|s| 128 + s)),
        signal: exit.signal,
        stdout: String::from_utf8_lossy(&c.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&c.stderr).into_owned(),
        duration_ms: exit.wall_ms,
        timed_out: exit.timed_out,
        truncated: exit.truncated,
        reason: runs::exit_reason(&exit),
    })
}

/// A one-shot run: one program in a throwaway sandbox.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OneShotRequest {
    pub language: String,
    pub code: Option<String>,
    pub files: Option<BTreeMap<String, String>>,
    pub entry: Option<String>,
    pub stdin: Option<String>,
    pub timeout_ms: Option<u64>,
}

impl Services {
    /// The tenant's sandbox `task_id`; another token's (or a browser's) is
    /// "not found".
    pub fn find_task(&self, tenant: &Tenant, task_id: &str) -> Result<Arc<Session>, ServiceError> {
        valid_task_id(task_id)?;
        self.registry
            .get(&owner_of(tenant, task_id))
            .filter(|s| {
                s.kind == OwnerKind::Api && s.token_hash.as_deref() == Some(tenant.0.as_str())
            })
            .ok_or_else(|| ServiceError::NoSuchTask(task_id.to_string()))
    }

    /// Creates the tenant's sandbox `taskId` (its container starts in the
    /// background, tracked so a stopping server waits for it).
    pub async fn create_task(
        &self,
        tenant: &Tenant,
        req: CreateRequest,
    ) -> Result<SandboxInfo, ServiceError> {
        let task_id = req
            .task_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        valid_task_id(&task_id)?;
        let ttl = req.ttl_seconds.unwrap_or(3600);
        if !(60..=86400).contains(&ttl) {
            return Err(ServiceError::BadTtl);
        }
        let image = match req.image_id {
            None => None,
            Some(image) if image == self.config.sandbox.image => None,
            Some(image) if self.config.sandbox.allowed_images.contains(&image) => Some(image),
            Some(image) => return Err(ServiceError::ImageNotAllowed(image)),
        };
        let env = req.env_vars.unwrap_or_default();
        // The engine would take the sandbox but never start it; REPLBOX_*
        // is the agent's own (where the workspace is), never the caller's.
        if env.iter().any(|(k, v)| {
            k.is_empty()
                || k.contains('=')
                || k.contains('\0')
                || v.contains('\0')
                || k.starts_with("REPLBOX_")
        }) {
            return Err(ServiceError::BadEnv);
        }
        let session = self
            .registry
            .create(
                &owner_of(tenant, &task_id),
                OwnerKind::Api,
                NewSession {
                    token_hash: Some(tenant.0.clone()),
                    idle_ttl_secs: Some(ttl),
                    image,
                    env: env.into_iter().collect(),
                },
            )
            .await
            .map_err(|e| match e {
                crate::sessions::SessionError::AlreadyExists(_) => {
                    ServiceError::TaskExists(task_id.clone())
                }
                e => e.into(),
            })?;
        // The container starts in the background; `GET ?wait=` waits for it.
        let s = session.clone();
        let shutdown = self.shutdown.clone();
        self.background.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = s.ensure() => if let Err(e) = r {
                    tracing::warn!(owner = %s.owner, error = %e, "sandbox did not start");
                }
            }
        });
        Ok(info(&task_id, &session))
    }

    /// The tenant's sandbox `task_id`, created (with the defaults) when
    /// absent: the Jupyter gateway's KERNEL_USERNAME.
    pub async fn find_or_create_task(
        &self,
        tenant: &Tenant,
        task_id: &str,
    ) -> Result<Arc<Session>, ServiceError> {
        if let Ok(s) = self.find_task(tenant, task_id) {
            return Ok(s);
        }
        let req = CreateRequest {
            task_id: Some(task_id.to_string()),
            ..Default::default()
        };
        match self.create_task(tenant, req).await {
            // Created meanwhile by another request of the same tenant: fine.
            Ok(_) | Err(ServiceError::TaskExists(_)) => {}
            Err(e) => return Err(e),
        }
        self.find_task(tenant, task_id)
    }

    /// Removes the tenant's sandbox `task_id`: container, volume, record.
    pub async fn remove_task(&self, tenant: &Tenant, task_id: &str) -> Result<(), ServiceError> {
        let session = self.find_task(tenant, task_id)?;
        self.registry.remove(&session.owner).await?;
        Ok(())
    }

    /// Runs a command (`command` or `argv`, `cwd`, `env`, `timeoutMs`) to
    /// its end in the tenant's sandbox `task_id`.
    pub async fn exec_task(
        &self,
        tenant: &Tenant,
        task_id: &str,
        run: RunRequest,
        stdin: Option<String>,
    ) -> Result<ExecResult, ServiceError> {
        let session = self.find_task(tenant, task_id)?;
        let run = RunRequest {
            timeout_ms: timeout_ms(run.timeout_ms)?,
            ..run
        };
        let plan = runs::plan(&run, &self.languages, &self.config)?;
        exec_result(runs::run_to_end(&session, plan.spec, stdin).await?)
    }

    /// Runs one program in a throwaway sandbox, removed after it.
    pub async fn run_one_shot(
        &self,
        tenant: &Tenant,
        req: OneShotRequest,
    ) -> Result<ExecResult, ServiceError> {
        let run = RunRequest {
            language: Some(req.language),
            code: req.code,
            files: req.files,
            entry: req.entry,
            timeout_ms: timeout_ms(req.timeout_ms)?,
            ..Default::default()
        };
        let plan = runs::plan(&run, &self.languages, &self.config)?;
        let owner = format!("r-{}", uuid::Uuid::new_v4().simple());
        let session = self
            .registry
            .create(
                &owner,
                OwnerKind::OneShot,
                NewSession {
                    token_hash: Some(tenant.0.clone()),
                    ..Default::default()
                },
            )
            .await?;
        // In its own task, so a client that hangs up still gets it cleaned
        // up. The sandbox is a warm container from the pool when one is
        // ready (a fresh one otherwise), for this run only: its owner is a
        // name no one else is told, and once the run ends the session
        // leaves the registry and its container and volume are removed,
        // right after the answer (the pool refills on its own). The removal
        // is tracked, so a stopping server waits for it.
        let registry = self.registry.clone();
        let removals = self.background.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let result = async {
                let handle = session.ensure().await?;
                runs::write_files(&handle, plan.files).await?;
                exec_result(runs::run_to_end(&session, plan.spec, req.stdin).await?)
            }
            .await;
            let _ = tx.send(result);
            removals.spawn(async move {
                if let Err(e) = registry.remove(&owner).await {
                    tracing::warn!(%owner, error = %e, "a one-shot sandbox was not removed");
                }
            });
        });
        rx.await
            .map_err(|_| ServiceError::Internal("a one-shot run's task died"))?
    }
}

#[cfg(test)]
mod tests;
