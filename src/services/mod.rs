//! The service layer: what every front door (the page's socket, the REST
//! API, the classroom routes and pages, and later MCP and Jupyter) asks
//! of replbox. Routes parse and render; services decide. A service calls
//! `sessions` (which sandbox an owner has), `classroom`, `exercises` and,
//! through a session, `sandbox`; it never reaches up into `routes`.
//!
//! - `runs`: a run request becomes files and a job; runs to their end.
//! - `files`: file operations on an owner's workspace.
//! - `shells`, `kernels`: the terminal and Jupyter kernels.
//! - `classes`, `checks`: the classroom, and grading a student's work.
//! - `tasks`: API sandboxes by taskId under a token, and one-shot runs
//!   (the REST API, MCP and the Jupyter gateway); `tokens`: the keyed
//!   fingerprints that own them.

pub mod checks;
pub mod classes;
pub mod error;
pub mod files;
pub mod jobs;
pub mod kernels;
pub mod runs;
pub mod shells;
pub mod tasks;
pub mod tokens;

pub use error::ServiceError;

use crate::classroom::Classroom;
use crate::config::{Config, Language};
use crate::exercises::Exercise;
use crate::limits::Limits;
use crate::sessions::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the services share: one of these per server, cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    /// Every owner's session and sandbox.
    pub registry: Registry,
    pub languages: Arc<BTreeMap<String, Language>>,
    /// Classes, students, teachers and checks.
    pub classroom: Classroom,
    /// The exercises of REPLBOX_EXERCISES_DIR that loaded, by id.
    pub exercises: Arc<BTreeMap<String, Arc<Exercise>>>,
    /// Limits per client: wrong codes and passwords, Checks, sockets.
    pub limits: Arc<Limits>,
    /// Background work a stopping server waits for (sandbox starts,
    /// one-shot removals; the routes' sockets too).
    pub background: tokio_util::task::TaskTracker,
    /// Fires on shutdown.
    pub shutdown: tokio_util::sync::CancellationToken,
}
