//! The container's own cgroup counters, read before and after a job to say
//! why it ended: the OOM killer struck, or the process limit was hit.
//! cgroup v2 (`memory.events`, `pids.events`) or v1 (`memory.oom_control`,
//! `pids/pids.events`); missing files read as zero.

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub oom_kills: u64,
    pub pids_max_hits: u64,
}

impl Counters {
    pub fn read() -> Self {
        Self {
            oom_kills: first_of(&[
                ("/sys/fs/cgroup/memory.events", "oom_kill"),
                ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
            ]),
            pids_max_hits: first_of(&PIDS_EVENTS),
        }
    }
}

/// Whether the container's tasks stand at RLIMIT_NPROC (at 90% of it or
/// more: a bomb's processes that met it exit and leave gaps, the leader was
/// just reaped), where no cgroup counter says when the
/// process limit was hit. That is gVisor: it counts a sandbox's tasks
/// against RLIMIT_NPROC in its own kernel instead of the cgroup's pids
/// limit, and keeps no `pids.events` (nor a `pids.current` that counts the
/// jobs). A job that ends, or is stopped, while the count stands at the
/// limit hit it. Under runc (`pids.events` present) this is always false.
pub fn at_process_limit() -> bool {
    static NO_COUNTER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let no_counter = *NO_COUNTER.get_or_init(|| {
        PIDS_EVENTS
            .iter()
            .all(|(path, _)| !std::path::Path::new(path).exists())
    });
    if !no_counter {
        return false;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return false;
    }
    tasks().saturating_mul(10) >= lim.rlim_cur.saturating_mul(9)
}

/// The tasks (threads) of every process this container's /proc shows.
fn tasks() -> u64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| {
            std::fs::read_dir(e.path().join("task"))
                .map(|t| t.count() as u64)
                .unwrap_or(1)
        })
        .sum()
}

const PIDS_EVENTS: [(&str, &str); 2] = [
    ("/sys/fs/cgroup/pids.events", "max"),
    ("/sys/fs/cgroup/pids/pids.events", "max"),
];

fn first_of(files: &[(&str, &str)]) -> u64 {
    files
        .iter()
        .find_map(|(path, key)| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| field(&t, key))
        })
        .unwrap_or(0)
}

/// Whether the workspace's filesystem has less than 1 MiB left (with a
/// per-workspace quota, that is the workspace being full).
pub fn workspace_full(workspace: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(workspace.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills a plain struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a pointer to our struct.
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } != 0 {
        return false;
    }
    (st.f_bavail as u64).saturating_mul(st.f_bsize as u64) < 1024 * 1024
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
pub fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(key)).then(|| parts.next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flat_keyed_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(field(v1, "oom_kill"), Some(3));
        assert_eq!(
            field("low 0\nhigh 0\nmax 7\noom 1\noom_kill 2\n", "max"),
            Some(7)
        );
        assert_eq!(field("", "max"), None);
    }
}
