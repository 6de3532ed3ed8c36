//! The gateway's book of kernels: every kernel it started, by id, with the
//! caps per caller (kernels, channels sockets) and the kernelspecs cached
//! per caller and image.

use crate::error::{echo, AppError, ErrorCode};
use crate::sessions::{AbortOnDrop, Session};
use axum::http::StatusCode;
use replbox_protocol::KernelSpecInfo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::{info_span, Instrument};

use super::kernel::Kernel;
use super::monitor::{monitor, start_job};
pub use super::sockets::SocketSlot;

/// Kernelspecs kept per caller and image at most.
const MAX_SPECS: usize = 64;
/// Kernels one token may have at once (starting ones included).
pub const MAX_KERNELS_PER_CALLER: usize = 8;

/// Every kernel the gateway started, by id.
/// A caller's fingerprint and an image (`None`: the server's default).
type SpecsKey = (String, Option<String>);

#[derive(Default)]
pub struct Gateway {
    kernels: Mutex<HashMap<String, Arc<Kernel>>>,
    /// Kernels being started, by caller: counted against the cap before
    /// the (slow) start, so simultaneous starts cannot pass it.
    starting: Mutex<HashMap<String, usize>>,
    /// Kernelspecs by caller and image (`None`: the server's default
    /// image). Per caller: the specs come from a sandbox whose user can
    /// write kernelspecs of their own under $HOME, so one token's answer
    /// is never shown to another.
    specs: Mutex<HashMap<SpecsKey, Vec<KernelSpecInfo>>>,
    /// Channels sockets open, by caller.
    sockets: Arc<Mutex<HashMap<String, usize>>>,
}

impl Gateway {
    /// Room for one more channels socket of `caller`, held until the slot
    /// is dropped; past `max` a JSON 429 `too_many_sockets`.
    pub fn socket_slot(&self, caller: &str, max: usize) -> Result<SocketSlot, AppError> {
        let mut open = self.sockets.lock().unwrap();
        let n = open.entry(caller.to_string()).or_default();
        if *n >= max.max(1) {
            return Err(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManySockets,
                format!(
                    "A token may hold at most {max} Jupyter channels sockets open: close one first."
                ),
            ));
        }
        *n += 1;
        Ok(SocketSlot {
            sockets: self.sockets.clone(),
            caller: caller.to_string(),
        })
    }

    pub fn cached_specs(
        &self,
        caller: &str,
        image: &Option<String>,
    ) -> Option<Vec<KernelSpecInfo>> {
        self.specs
            .lock()
            .unwrap()
            .get(&(caller.to_string(), image.clone()))
            .cloned()
    }

    /// Keeps at most MAX_SPECS specs, each name and display name cut to
    /// 200 characters: a sandbox's answer is the sandbox user's to shape.
    pub fn cache_specs(&self, caller: &str, image: Option<String>, mut specs: Vec<KernelSpecInfo>) {
        specs.truncate(MAX_SPECS);
        for s in &mut specs {
            for field in [&mut s.name, &mut s.display_name, &mut s.language] {
                if field.len() > 200 {
                    let mut end = 200;
                    while !field.is_char_boundary(end) {
                        end -= 1;
                    }
                    field.truncate(end);
                }
            }
        }
        if !specs.is_empty() {
            self.specs
                .lock()
                .unwrap()
                .insert((caller.to_string(), image), specs);
        }
    }

    /// The caller's kernel `id` while it lives; one that died or whose
    /// sandbox expired is forgotten.
    pub fn get(&self, caller: &str, id: &str) -> Result<Arc<Kernel>, AppError> {
        let kernel = self.kernels.lock().unwrap().get(id).cloned();
        match kernel {
            Some(k) if k.caller == caller && k.alive() => Ok(k),
            Some(k) if k.caller == caller => {
                self.forget(&k.id);
                Err(no_kernel(id))
            }
            _ => Err(no_kernel(id)),
        }
    }

    /// The caller's live kernels.
    pub fn list(&self, caller: &str) -> Vec<Arc<Kernel>> {
        let all: Vec<_> = self.kernels.lock().unwrap().values().cloned().collect();
        let mut mine = Vec::new();
        for k in all.into_iter().filter(|k| k.caller == caller) {
            if k.alive() {
                mine.push(k);
            } else {
                self.forget(&k.id);
            }
        }
        mine.sort_by(|a, b| a.id.cmp(&b.id));
        mine
    }

    pub(super) fn forget(&self, id: &str) {
        let k = self.kernels.lock().unwrap().remove(id);
        if let Some(k) = k {
            k.stop_monitor();
        }
    }

    /// Starts kernel `name` in `session` (working directory `cwd`, relative
    /// to /workspace) and waits until it answers.
    pub async fn start(
        self: &Arc<Self>,
        caller: &str,
        session: Arc<Session>,
        name: &str,
        cwd: &str,
    ) -> Result<Arc<Kernel>, AppError> {
        let running = self.list(caller).len();
        let _slot = {
            let mut starting = self.starting.lock().unwrap();
            let n = starting.entry(caller.to_string()).or_default();
            if running + *n >= MAX_KERNELS_PER_CALLER {
                return Err(AppError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::CapacityFull,
                    format!(
                        "A token may run at most {MAX_KERNELS_PER_CALLER} kernels: delete one first."
                    ),
                ));
            }
            *n += 1;
            Starting {
                gateway: self.clone(),
                caller: caller.to_string(),
            }
        };
        let job = start_job(&session, name, cwd).await?;
        let kernel = Arc::new(Kernel::new(name, caller, session.clone(), cwd, job));
        let monitor = tokio::spawn(
            monitor(Arc::downgrade(self), Arc::downgrade(&kernel))
                .instrument(info_span!("kernel", owner = %session.owner, kernel = %kernel.id)),
        );
        kernel.set_monitor(AbortOnDrop(monitor));
        self.kernels
            .lock()
            .unwrap()
            .insert(kernel.id.clone(), kernel.clone());
        Ok(kernel)
    }

    /// A new kernel process under the same id: the old one is shut down,
    /// its state is gone.
    pub async fn restart(&self, kernel: &Arc<Kernel>) -> Result<(), AppError> {
        kernel.live.lock().unwrap().restarting = true;
        kernel.shutdown_job().await;
        let job = start_job(&kernel.session, &kernel.name, &kernel.cwd).await;
        let mut live = kernel.live.lock().unwrap();
        live.restarting = false;
        live.job = job?;
        live.execution_state = "idle".into();
        live.last_activity = chrono::Utc::now();
        Ok(())
    }

    pub async fn delete(&self, kernel: &Arc<Kernel>) {
        self.forget(&kernel.id);
        kernel.shutdown_job().await;
    }
}

fn no_kernel(id: &str) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownKernel,
        format!("There is no kernel {}.", echo(id)),
    )
}

/// A start in progress, counted against its caller's cap until dropped.
struct Starting {
    gateway: Arc<Gateway>,
    caller: String,
}

impl Drop for Starting {
    fn drop(&mut self) {
        let mut starting = self.gateway.starting.lock().unwrap();
        if let Some(n) = starting.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                starting.remove(&self.caller);
            }
        }
    }
}
