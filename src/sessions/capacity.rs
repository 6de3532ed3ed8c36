//! The cap on live sandboxes. Past it a browser waits in a first-come queue
//! (its sockets hear their place), an API caller gets 503 with Retry-After,
//! and a sandbox idle for longer than the grace period is expired early to
//! make room (its files kept, as with any expiry).

use super::SessionError;
use super::{OwnerKind, Session, SessionEvent};
use crate::sync::Lock;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::info;

#[derive(Default)]
struct Inner {
    /// Sandboxes being started (admitted, not yet counted as live).
    reserved: usize,
    queue: VecDeque<String>,
}

pub struct Capacity {
    max: usize,
    grace_secs: i64,
    inner: Mutex<Inner>,
    changed: Notify,
}

struct InLine<'a> {
    capacity: &'a Capacity,
    owner: &'a str,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.capacity.leave(self.owner);
    }
}

/// Held while a sandbox starts; gives its place back when dropped.
pub struct Slot<'a> {
    capacity: &'a Capacity,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.capacity.inner.locked().reserved -= 1;
        self.capacity.changed();
    }
}

impl Capacity {
    pub fn new(max: usize, grace_secs: u64) -> Self {
        Self {
            max: max.max(1),
            grace_secs: grace_secs as i64,
            inner: Mutex::default(),
            changed: Notify::new(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Wakes the waiters: a sandbox went away.
    pub fn changed(&self) {
        self.changed.notify_waiters();
    }

    /// Room for one more sandbox for `session`, waiting in line if it is a
    /// browser's.
    pub async fn acquire(&self, session: &Arc<Session>) -> Result<Slot<'_>, SessionError> {
        let mut told = 0usize;
        // Whoever stops waiting (a closed tab) leaves the line.
        let _in_line = InLine {
            capacity: self,
            owner: &session.owner,
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let live = session.shared.live() - usize::from(session.has_container());
            let position = {
                let mut inner = self.inner.locked();
                let queued_at = inner.queue.iter().position(|o| *o == session.owner);
                let first = queued_at.map_or(inner.queue.is_empty(), |p| p == 0);
                if live + inner.reserved < self.max && first {
                    if queued_at.is_some() {
                        inner.queue.pop_front();
                    }
                    inner.reserved += 1;
                    drop(inner);
                    self.changed();
                    return Ok(Slot { capacity: self });
                }
                match queued_at {
                    Some(p) => p + 1,
                    None if session.kind == OwnerKind::Browser => {
                        inner.queue.push_back(session.owner.clone());
                        inner.queue.len()
                    }
                    None => 0,
                }
            };
            if live + self.inner.locked().reserved >= self.max && self.evict_one(session).await {
                continue;
            }
            if position == 0 {
                return Err(SessionError::CapacityFull);
            }
            if position != told {
                told = position;
                session.hub.send(SessionEvent::Queued { position }).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    /// Sandboxes being started or short-lived containers (a Check's) held.
    pub fn reserved(&self) -> usize {
        self.inner.locked().reserved
    }

    /// Room for `n` containers at once, taken now when there is some and no
    /// browser waits in line (a Check never jumps the line).
    pub fn try_reserve(&self, live: usize, n: usize) -> bool {
        let mut inner = self.inner.locked();
        if inner.queue.is_empty() && live + inner.reserved + n <= self.max {
            inner.reserved += n;
            true
        } else {
            false
        }
    }

    /// Gives back what `try_reserve` took.
    pub fn release(&self, n: usize) {
        self.inner.locked().reserved -= n;
        self.changed();
    }

    /// Expires the longest-idle sandbox past the grace period, if any.
    async fn evict_one(&self, asking: &Arc<Session>) -> bool {
        self.evict_idle(asking.shared.all(), Some(&asking.owner))
            .await
    }

    /// Expires the longest-idle of `all` (but `except`) past the grace
    /// period, if any.
    pub(super) async fn evict_idle(&self, all: Vec<Arc<Session>>, except: Option<&str>) -> bool {
        let victim = all
            .into_iter()
            .filter(|s| {
                Some(s.owner.as_str()) != except && s.has_container() && s.leased() && !s.busy()
            })
            .filter(|s| s.idle_secs() >= self.grace_secs)
            .max_by_key(|s| s.idle_secs());
        match victim {
            Some(v) => {
                info!(owner = %v.owner, idle_secs = v.idle_secs(), "expiring an idle sandbox early to make room");
                v.expire().await;
                true
            }
            None => false,
        }
    }

    /// Leaves the queue (a session that went away while waiting).
    fn leave(&self, owner: &str) {
        self.inner.locked().queue.retain(|o| o != owner);
        self.changed();
    }
}
