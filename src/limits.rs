//! Limits on what one client may try: wrong class codes, wrong passwords,
//! recovery codes and Checks, each counted per key (a client address, a
//! teacher's name, a student) in a small GCRA.
//!
//! Hand-written rather than governor's keyed limiter (which the new-session
//! limit uses): governor has no way to look without spending, and here only
//! *failures* may spend (thirty students behind one school's address all
//! join with the right code within a minute), while every attempt must be
//! able to ask first whether it may go ahead.
//!
//! Memory is bounded: at most `MAX_KEYS` keys are remembered; past that the
//! ones whose debt is paid are forgotten, then (a flood of new keys) the
//! half with the least debt, so a flood of fresh keys cannot wipe the debt
//! of the key being guessed at. A key's debt is capped at one window
//! (`burst` intervals), so attempts that raced past the check together
//! lock it out for a minute at most.
//!
//! The limit per teacher name is three times the limit per client, so one
//! address (a student behind the school's address, say) can never lock a
//! teacher out: it is refused by its own limit first.

use crate::sync::Lock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered at most per limiter.
const MAX_KEYS: usize = 100_000;

/// Refused: try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many attempts: try again in {retry_after_secs} s")]
pub struct Limited {
    pub retry_after_secs: u64,
    /// What was limited, for the message.
    pub what: Attempt,
}

/// What was limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    SignIn,
    ClassCode,
    RecoveryCode,
    Check,
    /// A second Check while the student's first is still being graded.
    CheckInFlight,
    /// One more WebSocket than a browser session may hold.
    Socket,
}

/// Every per-client limit of the server, shared by the routes.
pub struct Limits {
    /// Wrong sign-ins per client address.
    pub sign_in_client: Attempts,
    /// Wrong sign-ins per teacher name (a distributed guesser).
    pub sign_in_account: Attempts,
    /// Wrong class codes per client address.
    pub class_code: Attempts,
    /// Wrong recovery codes per client address.
    pub recovery: Attempts,
    /// Checks per student.
    pub checks: Attempts,
    /// Students with a Check being graded.
    checking: Mutex<std::collections::HashSet<String>>,
    /// Open sockets per browser owner key.
    sockets: Mutex<HashMap<String, usize>>,
    sockets_per_session: usize,
}

impl Limits {
    pub fn new(config: &crate::config::Config) -> Self {
        let n = config.attempts_per_minute;
        Self {
            sign_in_client: Attempts::per_minute(Attempt::SignIn, n),
            sign_in_account: Attempts::per_minute(Attempt::SignIn, n.saturating_mul(3)),
            class_code: Attempts::per_minute(Attempt::ClassCode, n),
            recovery: Attempts::per_minute(Attempt::RecoveryCode, n),
            checks: Attempts::per_minute(Attempt::Check, config.checks_per_minute),
            checking: Mutex::default(),
            sockets: Mutex::default(),
            sockets_per_session: config.sockets_per_session.max(1),
        }
    }

    /// The student's one Check in flight: refused while another is, and
    /// past the rate per student. Held until the Check is answered.
    pub fn begin_check(self: &std::sync::Arc<Self>, student: &str) -> Result<Turn, Limited> {
        let mut checking = self.checking.locked();
        if checking.contains(student) {
            return Err(Limited {
                retry_after_secs: 2,
                what: Attempt::CheckInFlight,
            });
        }
        self.checks.take(student)?;
        checking.insert(student.to_string());
        Ok(Turn {
            limits: self.clone(),
            key: student.to_string(),
            kind: TurnKind::Check,
        })
    }

    /// One more socket of this browser, or refused past the cap.
    pub fn open_socket(self: &std::sync::Arc<Self>, owner: &str) -> Result<Turn, Limited> {
        let mut sockets = self.sockets.locked();
        let open = sockets.entry(owner.to_string()).or_insert(0);
        if *open >= self.sockets_per_session {
            return Err(Limited {
                retry_after_secs: 5,
                what: Attempt::Socket,
            });
        }
        *open += 1;
        Ok(Turn {
            limits: self.clone(),
            key: owner.to_string(),
            kind: TurnKind::Socket,
        })
    }
}

enum TurnKind {
    Check,
    Socket,
}

/// A Check in flight or an open socket; ends when dropped.
pub struct Turn {
    limits: std::sync::Arc<Limits>,
    key: String,
    kind: TurnKind,
}

impl Drop for Turn {
    fn drop(&mut self) {
        match self.kind {
            TurnKind::Check => {
                self.limits.checking.locked().remove(&self.key);
            }
            TurnKind::Socket => {
                let mut sockets = self.limits.sockets.locked();
                if let Some(n) = sockets.get_mut(&self.key) {
                    *n -= 1;
                    if *n == 0 {
                        sockets.remove(&self.key);
                    }
                }
            }
        }
    }
}

/// `burst` events at once, then one per `interval`.
pub struct Attempts {
    what: Attempt,
    interval: Duration,
    burst: u32,
    /// Per key: the time at which its debt is paid (GCRA's TAT).
    paid_at: Mutex<HashMap<String, Instant>>,
}

impl Attempts {
    /// `per_minute` events per minute, all of them at once if they come so.
    pub fn per_minute(what: Attempt, per_minute: u32) -> Self {
        let n = per_minute.max(1);
        Self {
            what,
            interval: Duration::from_secs(60) / n,
            burst: n,
            paid_at: Mutex::default(),
        }
    }

    /// Whether `key` may try now (spends nothing).
    pub fn check(&self, key: &str) -> Result<(), Limited> {
        let now = Instant::now();
        let map = self.paid_at.locked();
        match map.get(key) {
            Some(&paid) => self.verdict(now, paid),
            None => Ok(()),
        }
    }

    fn verdict(&self, now: Instant, paid: Instant) -> Result<(), Limited> {
        // Allowed while the debt is below `burst` intervals.
        let allowed_until = paid.checked_sub(self.interval * (self.burst - 1));
        match allowed_until {
            Some(t) if t > now => Err(Limited {
                retry_after_secs: (t - now).as_secs_f64().ceil().max(1.0) as u64,
                what: self.what,
            }),
            _ => Ok(()),
        }
    }

    /// Counts one event against `key` (a failure, or any Check).
    pub fn spend(&self, key: &str) {
        let now = Instant::now();
        let mut map = self.paid_at.locked();
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            map.retain(|_, paid| *paid > now);
            if map.len() >= MAX_KEYS {
                let mut debts: Vec<Instant> = map.values().copied().collect();
                let (_, median, _) = debts.select_nth_unstable(MAX_KEYS / 2);
                let median = *median;
                map.retain(|_, paid| *paid > median);
            }
        }
        let paid = map.entry(key.to_string()).or_insert(now);
        *paid = ((*paid).max(now) + self.interval).min(now + self.interval * self.burst);
    }

    /// Checks, and spends when allowed: for events that count whatever
    /// their outcome.
    pub fn take(&self, key: &str) -> Result<(), Limited> {
        self.check(key)?;
        self.spend(key);
        Ok(())
    }

    /// Keys remembered now (for tests of the bound).
    pub fn len(&self) -> usize {
        self.paid_at.locked().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the new-session limit counts: an IPv4 address, or an IPv6 /64 (one
/// client is usually given a whole /64 and could pick any address in it).
pub fn limit_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(_) => ip,
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            std::net::IpAddr::V6(bits.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_with_a_retry_time() {
        let a = Attempts::per_minute(Attempt::SignIn, 3);
        for _ in 0..3 {
            a.check("x").unwrap();
            a.spend("x");
        }
        let e = a.check("x").unwrap_err();
        assert!((1..=20).contains(&e.retry_after_secs), "{e:?}");
        // Another key is not affected.
        a.check("y").unwrap();
    }

    #[test]
    fn successes_spend_nothing() {
        let a = Attempts::per_minute(Attempt::ClassCode, 2);
        for _ in 0..100 {
            a.check("school").unwrap();
        }
        assert!(a.is_empty());
    }

    #[test]
    fn debt_is_capped_at_one_window_and_a_flood_keeps_the_biggest_debts() {
        let a = Attempts::per_minute(Attempt::SignIn, 6);
        for _ in 0..500 {
            a.spend("raced");
        }
        let e = a.check("raced").unwrap_err();
        assert!(e.retry_after_secs <= 60, "{e:?}");
        for i in 0..(MAX_KEYS + 10) {
            a.spend(&i.to_string());
        }
        assert!(a.check("raced").is_err(), "a flood of new keys forgave it");
    }

    #[test]
    fn the_table_is_bounded() {
        let a = Attempts::per_minute(Attempt::SignIn, 1);
        for i in 0..(MAX_KEYS + 10) {
            a.spend(&i.to_string());
        }
        assert!(a.len() <= MAX_KEYS);
    }
}
