//! Per-workspace disk quotas. Docker's local volumes on ext4 have no size
//! limit, and this kernel has no quota support at all (neither XFS project
//! quotas nor ext4's), so each workspace is its own small filesystem: a
//! sparse ext4 image of the quota's size, loop-mounted. The filesystem's
//! size is the limit; a full one is `ENOSPC` inside that workspace only.
//! The named volume a container mounts is a bind of that mount, so the
//! workspace is still a labelled Docker volume.
//!
//! A few images are formatted ahead of need, so a new workspace costs only
//! a mount (a few milliseconds). Needs root and e2fsprogs; without them (a
//! developer's box) workspaces are plain volumes, and the log says so.

use crate::sync::Lock;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use tracing::{info, warn};

/// Formatted images kept ready.
const SPARES: usize = 3;

#[derive(Debug)]
pub struct QuotaFs {
    root: PathBuf,
    limit_mb: u64,
    /// Bytes all workspace images may take on disk together, each counted
    /// at its quota (what it may grow to, not what it holds now): past it no
    /// new workspace is made.
    budget_bytes: u64,
    uid: u32,
    gid: u32,
    spares: Mutex<()>,
    /// Held while a new workspace is admitted and its image made, so two
    /// cannot both take the budget's last place.
    creating: Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
#[error("workspace disk: {0}")]
pub struct QuotaError(String);

impl QuotaError {
    /// Whether the disk budget refused a new workspace.
    pub fn is_budget(&self) -> bool {
        self.0.starts_with(BUDGET_REACHED)
    }
}

const BUDGET_REACHED: &str = "the disk budget for workspaces is used up";

fn io(e: std::io::Error) -> QuotaError {
    QuotaError(e.to_string())
}

fn run(cmd: &mut Command) -> Result<(), QuotaError> {
    let out = cmd
        .output()
        .map_err(|e| QuotaError(format!("{cmd:?}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(QuotaError(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether `dir` is a mount point now.
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let dir = dir.to_string_lossy();
    info.lines()
        .any(|l| l.split_whitespace().nth(4) == Some(dir.as_ref()))
}

impl QuotaFs {
    /// `None` when quotas are off or cannot work here.
    pub fn setup(root: &Path, limit_mb: u64, uid: u32, gid: u32) -> Option<Self> {
        if limit_mb == 0 {
            return None;
        }
        // SAFETY: geteuid has no side effects.
        if unsafe { libc_geteuid() } != 0 {
            warn!("workspace quotas need root; workspaces are plain volumes without a size limit");
            return None;
        }
        if let Err(e) = std::fs::create_dir_all(root.join("spare")) {
            warn!(error = %e, "workspace quotas off");
            return None;
        }
        let fs = Self {
            root: root.to_path_buf(),
            limit_mb,
            budget_bytes: u64::MAX,
            uid,
            gid,
            spares: Mutex::new(()),
            creating: Mutex::new(()),
        };
        // One image made and mounted now proves that loop mounts work here.
        // Its name is this call's own: several setups in one process (the
        // tests make many) must not format or unmount each other's probe,
        // which turned quotas off for the loser, whose removals then left
        // workspaces mounted.
        let probe = root.join("spare").join(format!(
            "probe-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let check = fs.format(&probe.with_extension("img")).and_then(|_| {
            std::fs::create_dir_all(&probe).map_err(io)?;
            fs.mount(&probe.with_extension("img"), &probe)?;
            run(Command::new("umount").arg(&probe)).inspect_err(|_| {
                let _ = run(Command::new("umount").arg("-l").arg(&probe));
            })
        });
        let _ = std::fs::remove_file(probe.with_extension("img"));
        let _ = std::fs::remove_dir(&probe);
        match check {
            Ok(()) => {
                info!(root = %root.display(), limit_mb, "workspace quotas on");
                Some(fs)
            }
            Err(e) => {
                warn!(error = %e, "workspace quotas off: cannot loop-mount an image here");
                None
            }
        }
    }

    pub fn limit_mb(&self) -> u64 {
        self.limit_mb
    }

    /// Sets the disk budget: `budget_mb`, or (0) 90% of the filesystem
    /// that holds the workspaces.
    pub fn with_budget(mut self, budget_mb: u64) -> Self {
        self.budget_bytes = if budget_mb > 0 {
            budget_mb << 20
        } else {
            filesystem_bytes(&self.root).map_or(u64::MAX, |b| b / 10 * 9)
        };
        info!(budget_mb = self.budget_bytes >> 20, "workspace disk budget");
        self
    }

    /// Workspace images there are (not spares).
    fn images(&self) -> usize {
        std::fs::read_dir(&self.root)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "img"))
                    .count()
            })
            .unwrap_or(0)
    }

    fn dir(&self, volume: &str) -> PathBuf {
        self.root.join(volume)
    }

    fn image(&self, volume: &str) -> PathBuf {
        self.root.join(format!("{volume}.img"))
    }

    /// Beside each image: the deployment that made it (the workspace root
    /// may be shared by several servers on one machine).
    fn deployment_file(&self, volume: &str) -> PathBuf {
        self.root.join(format!("{volume}.deployment"))
    }

    /// The deployment that made a workspace (`None`: made before
    /// deployments were recorded, or by a handle bound to none).
    pub fn deployment(&self, volume: &str) -> Option<String> {
        std::fs::read_to_string(self.deployment_file(volume))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    fn format(&self, image: &Path) -> Result<(), QuotaError> {
        let f = std::fs::File::create(image).map_err(io)?;
        f.set_len(self.limit_mb << 20).map_err(io)?;
        drop(f);
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0", "-J", "size=4"])
            .arg("-E")
            .arg(format!("root_owner={}:{}", self.uid, self.gid))
            .arg(image))
    }

    fn mount(&self, image: &Path, dir: &Path) -> Result<(), QuotaError> {
        run(Command::new("mount")
            .args(["-o", "loop,nosuid,nodev,noatime"])
            .arg(image)
            .arg(dir))?;
        // Nobody needs to see fsck's corner in a student's workspace.
        let _ = std::fs::remove_dir(dir.join("lost+found"));
        Ok(())
    }

    /// The workspace's directory, mounted (its image made when new, and
    /// marked as `deployment`'s), and owned by `owner`: the sandbox user as
    /// the host sees it.
    pub fn prepare(
        &self,
        volume: &str,
        owner: (u32, u32),
        deployment: Option<&str>,
    ) -> Result<PathBuf, QuotaError> {
        let (dir, image) = (self.dir(volume), self.image(volume));
        if is_mounted(&dir) {
            // Mounted before the engine's mapping changed, maybe: its owner
            // is checked all the same (one stat when it is right).
            own(&dir, owner)?;
            return Ok(dir);
        }
        if !image.exists() {
            let _admitting = self.creating.locked();
            // Each workspace counts at its quota, so the images together can
            // never outgrow the budget; and the disk keeps room for one more.
            let quota = self.limit_mb << 20;
            let promised = (self.images() as u64 + 1).saturating_mul(quota);
            let free = filesystem_free_bytes(&self.root).unwrap_or(u64::MAX);
            if promised > self.budget_bytes || free < quota {
                return Err(QuotaError(format!(
                    "{BUDGET_REACHED} ({} MiB: {} workspaces of {} MiB)",
                    self.budget_bytes >> 20,
                    self.budget_bytes / quota.max(1),
                    self.limit_mb
                )));
            }
            // The mark first: an image is never anyone's to sweep unmarked.
            if let Some(d) = deployment {
                std::fs::write(self.deployment_file(volume), d).map_err(io)?;
            }
            let made = match self.take_spare() {
                Some(spare) => std::fs::rename(spare, &image).map_err(io),
                None => self.format(&image),
            };
            if let Err(e) = made {
                let _ = std::fs::remove_file(self.deployment_file(volume));
                return Err(e);
            }
        }
        std::fs::create_dir_all(&dir).map_err(io)?;
        self.mount(&image, &dir)?;
        own(&dir, owner)?;
        Ok(dir)
    }

    fn take_spare(&self) -> Option<PathBuf> {
        let _guard = self.spares.locked();
        let spare = std::fs::read_dir(self.root.join("spare"))
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "ready"))?;
        let taken = spare.with_extension("taken");
        std::fs::rename(&spare, &taken).ok()?;
        Some(taken)
    }

    /// Formats images ahead of need, up to a few.
    pub fn fill_spares(&self) {
        let _guard = self.spares.locked();
        let count = std::fs::read_dir(self.root.join("spare"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "ready"))
                    .count()
            })
            .unwrap_or(SPARES);
        for _ in count..SPARES {
            let name = uuid::Uuid::new_v4().simple().to_string();
            let tmp = self.root.join("spare").join(format!("{name}.making"));
            match self.format(&tmp) {
                Ok(()) => {
                    let _ = std::fs::rename(&tmp, tmp.with_extension("ready"));
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    warn!(error = %e, "cannot format a spare workspace image");
                    return;
                }
            }
        }
    }

    /// Names of the workspaces on disk that start with `prefix`.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter_map(|n| n.strip_suffix(".img").map(str::to_string))
                    .filter(|n| n.starts_with(prefix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Unmounts a workspace's filesystem, keeping its image (a sandbox
    /// expired: its loop device is released until the next start mounts it
    /// again).
    pub fn unmount(&self, volume: &str) {
        let dir = self.dir(volume);
        if is_mounted(&dir) {
            if let Err(e) = run(Command::new("umount").arg(&dir)) {
                // Still busy (a container being removed): detach it lazily;
                // the loop device goes when the last user does.
                warn!(error = %e, "lazy unmount of a workspace");
                let _ = run(Command::new("umount").arg("-l").arg(&dir));
            }
        }
    }

    /// Unmounts and deletes a workspace's filesystem.
    pub fn remove(&self, volume: &str) {
        let (dir, image) = (self.dir(volume), self.image(volume));
        self.unmount(volume);
        let _ = std::fs::remove_dir(&dir);
        let _ = std::fs::remove_file(&image);
        let _ = std::fs::remove_file(self.deployment_file(volume));
    }
}

/// Gives a mounted workspace to `uid:gid` when its root belongs to someone
/// else: a spare formatted before the engine's user-namespace mapping was
/// known, or a workspace made under an engine that mapped differently (or
/// not at all). What the old owner owned becomes the new owner's; the rest
/// (root's files) stays. The workspace is a filesystem of its own, and
/// `-h` with `-R` follows no symbolic link, so nothing outside it changes.
fn own(dir: &Path, (uid, gid): (u32, u32)) -> Result<(), QuotaError> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata(dir).map_err(io)?;
    if (root.uid(), root.gid()) == (uid, gid) {
        return Ok(());
    }
    info!(workspace = %dir.display(), from = root.uid(), to = uid, "workspace owner changed");
    run(Command::new("chown")
        .args(["-R", "-h"])
        .arg(format!("--from={}:{}", root.uid(), root.gid()))
        .arg(format!("{uid}:{gid}"))
        .arg(dir))
}

/// What statvfs says of the filesystem holding `dir`.
fn statvfs(dir: &Path) -> Option<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the struct we own; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(path.as_ptr(), &mut st) } == 0).then_some(st)
}

/// The bytes free (to an unprivileged writer) on the filesystem holding `dir`.
fn filesystem_free_bytes(dir: &Path) -> Option<u64> {
    statvfs(dir).map(|st| st.f_bavail * st.f_frsize)
}

/// The size of the filesystem holding `dir`.
fn filesystem_bytes(dir: &Path) -> Option<u64> {
    statvfs(dir).map(|st| st.f_blocks * st.f_frsize)
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
