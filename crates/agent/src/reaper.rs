//! PID 1 duty: reap every child, ours or orphaned, and hand a job leader's
//! status and resource usage to the job that waits for it.

use crate::jobs::{JobTable, Reaped};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;

pub fn spawn(table: Arc<JobTable>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut sigchld = match signal(SignalKind::child()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("agent: cannot watch SIGCHLD: {e}");
                return;
            }
        };
        // Signals coalesce, but none is lost: one that comes while we reap
        // wakes the next `recv`, and each wake reaps until nothing is left.
        // No tick: an idle agent sleeps until a child ends.
        loop {
            reap_all(&table);
            if sigchld.recv().await.is_none() {
                return;
            }
        }
    })
}

fn reap_all(table: &JobTable) {
    // The table is locked while reaping so a job registered at spawn time
    // can never exit unseen between fork and registration.
    let mut inner = table.lock();
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 with pointers to locals.
        let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut usage) };
        if pid <= 0 {
            break;
        }
        if let Some(tx) = inner.leaders.remove(&pid) {
            let _ = tx.send(Reaped { status, usage });
        }
    }
}
