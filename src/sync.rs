//! Mutex poisoning, handled one way for the whole server: a lock whose
//! holder panicked is taken anyway. What the server keeps under its locks
//! is bookkeeping (tables, counters, queues) that each holder leaves
//! consistent between statements; the panic itself is already a logged bug,
//! and refusing every later request over it would turn one bug into an
//! outage. Use `.locked()`, never `.lock().unwrap()`.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub trait Lock<T> {
    /// The lock, taken even when a holder panicked.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Lock<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
