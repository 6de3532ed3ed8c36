//! Writing a file: through a temporary file and a rename, conditional on
//! its version when asked.

use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A file's version: its inode, modification time (ns) and size. An
/// atomic write makes a new inode, and anything that edits the file in
/// place moves its modification time.
pub(super) fn version(meta: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{:x}-{:x}{:08x}-{:x}",
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.size()
    )
}

pub(super) enum WriteError {
    Changed,
    Io(io::Error),
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

/// Conditional writes check the version and replace the file under this
/// lock, so two of them cannot both pass the check.
static REPLACE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `replace` on the file at `full` if it is still at `expected` (a
/// missing file is not), checked and replaced under [`REPLACE`]; with no
/// expectation, just runs it.
fn if_unchanged<T>(
    full: &Path,
    expected: Option<&str>,
    replace: impl FnOnce() -> io::Result<T>,
) -> Result<T, WriteError> {
    let Some(v) = expected else {
        return Ok(replace()?);
    };
    let _guard = REPLACE.lock().unwrap_or_else(|e| e.into_inner());
    if !fs::metadata(full).is_ok_and(|m| version(&m) == v) {
        return Err(WriteError::Changed);
    }
    Ok(replace()?)
}

/// Writes through a temporary file and a rename, so a reader never sees
/// half a file; returns the new version.
pub(super) fn write_atomically(
    full: &Path,
    data: &[u8],
    if_version: Option<&str>,
) -> Result<String, WriteError> {
    // A symlink inside the workspace is written through, in place.
    if full
        .symlink_metadata()
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
    {
        return if_unchanged(full, if_version, || {
            fs::write(full, data)?;
            Ok(version(&fs::metadata(full)?))
        });
    }
    let name = full
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    // Unique per write: two writes of one file may run at once.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp_name = b".".to_vec();
    tmp_name.extend_from_slice(&name);
    tmp_name.extend_from_slice(format!(".replbox-tmp-{n}").as_bytes());
    let tmp = full.with_file_name(std::ffi::OsStr::from_bytes(&tmp_name));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
        let written = version(&f.metadata()?);
        if_unchanged(full, if_version, || fs::rename(&tmp, full))?;
        Ok(written)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
