//! A session's jobs: started through its sandbox, pumped into replay
//! buffers and the hub, the newest finished ones kept.

use super::{jobs, AbortOnDrop, JobKind, JobRecord, Session, SessionError, State};
use replbox_protocol::{JobId, JobSpec};
use std::sync::Arc;
use tracing::{info_span, Instrument};

impl Session {
    /// Starts a job and its pump; counts as activity.
    pub async fn run(
        self: &Arc<Self>,
        spec: JobSpec,
        kind: JobKind,
        reference: Option<serde_json::Value>,
    ) -> Result<Arc<JobRecord>, SessionError> {
        let handle = self.ensure().await?;
        let job = handle.spawn(spec).await?;
        self.track(job, kind, reference).await
    }

    /// Starts a Jupyter kernel (a kernelspec's name) as a job of the session.
    pub async fn start_kernel(
        self: &Arc<Self>,
        name: &str,
        reference: Option<serde_json::Value>,
    ) -> Result<Arc<JobRecord>, SessionError> {
        self.start_kernel_in(name, "", reference).await
    }

    /// Starts a kernel with its working directory `cwd` (relative to
    /// /workspace).
    pub async fn start_kernel_in(
        self: &Arc<Self>,
        name: &str,
        cwd: &str,
        reference: Option<serde_json::Value>,
    ) -> Result<Arc<JobRecord>, SessionError> {
        let handle = self.ensure().await?;
        let job = handle.kernel_start(name, cwd).await?;
        self.track(job, JobKind::Kernel, reference).await
    }

    /// Records a job and starts its pump.
    pub(super) async fn track(
        self: &Arc<Self>,
        job: crate::sandbox::Job,
        kind: JobKind,
        reference: Option<serde_json::Value>,
    ) -> Result<Arc<JobRecord>, SessionError> {
        let record = JobRecord::new(
            job.id,
            kind,
            reference,
            job.control.clone(),
            self.shared.config.replay_bytes,
        );
        // The record is in the table before its pump runs: a socket that
        // sees the job's exit looks the record up to answer, and a pump
        // that ran first (a job as short as `true` on a busy machine)
        // would leave that lookup empty and the run unanswered.
        self.lock().jobs.insert(record.id, record.clone());
        let weak = Arc::downgrade(self);
        let on_end = move || {
            if let Some(s) = weak.upgrade() {
                tokio::spawn(async move { s.touch().await });
            }
        };
        let pump = tokio::spawn(
            jobs::pump(
                job,
                record.clone(),
                self.hub.clone(),
                self.shared.metrics.clone(),
                on_end,
            )
            .instrument(info_span!("job", owner = %self.owner, job = record.id)),
        );
        {
            let mut state = self.lock();
            state.pumps.insert(record.id, AbortOnDrop(pump));
            if kind == JobKind::Shell {
                state.shell = Some(record.id);
            }
            prune_finished(&mut state);
        }
        self.touch().await;
        Ok(record)
    }

    pub fn job(&self, id: JobId) -> Option<Arc<JobRecord>> {
        self.lock().jobs.get(&id).cloned()
    }

    pub fn jobs(&self) -> Vec<Arc<JobRecord>> {
        self.lock().jobs.values().cloned().collect()
    }

    /// The interactive shell, when one still runs.
    pub fn shell(&self) -> Option<Arc<JobRecord>> {
        let state = self.lock();
        state
            .shell
            .and_then(|id| state.jobs.get(&id).cloned())
            .filter(|j| j.is_running())
    }
}

/// Keeps the newest finished jobs for replay; drops older ones.
fn prune_finished(state: &mut State) {
    const KEEP_FINISHED: usize = 32;
    let finished: Vec<JobId> = state
        .jobs
        .values()
        .filter(|j| !j.is_running())
        .map(|j| j.id)
        .collect();
    if finished.len() > KEEP_FINISHED {
        for id in &finished[..finished.len() - KEEP_FINISHED] {
            state.jobs.remove(id);
            state.pumps.remove(id);
        }
    }
}
