//! File operations under the workspace. Paths are checked lexically (no
//! absolute paths, no `..`) and then by resolution: a symlink whose target
//! lies outside the workspace is refused.

use replbox_protocol::{path, DirEntry, EntryKind, FileError, FileOp, FileReply, MAX_FILE_LEN};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

pub fn apply(root: &Path, op: FileOp) -> Result<FileReply, FileError> {
    match op {
        FileOp::Read { path } => {
            let full = resolve(root, &path, Mode::Follow)?;
            // One open and one fstat: the checks and the version are those
            // of the file read.
            let mut f = fs::File::open(&full).map_err(|e| io_error(e, &path))?;
            let meta = f.metadata().map_err(|e| io_error(e, &path))?;
            if meta.is_dir() {
                return Err(FileError::IsADirectory(path));
            }
            if meta.len() > MAX_FILE_LEN {
                return Err(FileError::TooLarge {
                    limit: MAX_FILE_LEN,
                });
            }
            let mut data = Vec::with_capacity(meta.len() as usize);
            io::Read::read_to_end(&mut f, &mut data).map_err(|e| io_error(e, &path))?;
            Ok(FileReply::Data {
                data,
                version: version(&meta),
            })
        }
        FileOp::Write {
            path,
            data,
            parents,
            if_version,
        } => {
            if data.len() as u64 > MAX_FILE_LEN {
                return Err(FileError::TooLarge {
                    limit: MAX_FILE_LEN,
                });
            }
            let full = resolve(root, &path, Mode::Write)?;
            if full == root {
                return Err(FileError::IsADirectory(path));
            }
            if parents {
                if let Some(parent) = full.parent() {
                    fs::create_dir_all(parent).map_err(|e| io_error(e, &path))?;
                    // Created directories must not have let us out.
                    resolve(root, &path, Mode::Write)?;
                }
            }
            let version =
                write_atomically(&full, &data, if_version.as_deref()).map_err(|e| match e {
                    WriteError::Changed => FileError::Changed(path.clone()),
                    WriteError::Io(e) => io_error(e, &path),
                })?;
            Ok(FileReply::Written { version })
        }
        FileOp::List { path } => {
            let full = resolve(root, &path, Mode::Follow)?;
            let mut entries = Vec::new();
            for entry in fs::read_dir(&full).map_err(|e| io_error(e, &path))? {
                let entry = entry.map_err(|e| io_error(e, &path))?;
                let meta = match entry.path().symlink_metadata() {
                    Ok(m) => m,
                    Err(_) => continue, // gone meanwhile
                };
                let kind = if meta.is_dir() {
                    EntryKind::Dir
                } else if meta.is_file() {
                    EntryKind::File
                } else if meta.file_type().is_symlink() {
                    EntryKind::Symlink
                } else {
                    EntryKind::Other
                };
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                entries.push(DirEntry {
                    name: String::from_utf8_lossy(entry.file_name().as_bytes()).into_owned(),
                    kind,
                    size: meta.len(),
                    modified,
                });
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(FileReply::Listing(entries))
        }
        FileOp::Mkdir { path } => {
            let full = resolve(root, &path, Mode::Write)?;
            fs::create_dir_all(&full).map_err(|e| io_error(e, &path))?;
            resolve(root, &path, Mode::Follow)?;
            Ok(FileReply::Done)
        }
        FileOp::Rename { from, to } => {
            let src = resolve(root, &from, Mode::Entry)?;
            let dst = resolve(root, &to, Mode::Write)?;
            if src == root || dst == root {
                return Err(FileError::InvalidPath(from));
            }
            if src.symlink_metadata().is_err() {
                return Err(FileError::NotFound(from));
            }
            if dst.symlink_metadata().is_ok() {
                return Err(FileError::AlreadyExists(to));
            }
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent).map_err(|e| io_error(e, &to))?;
            }
            fs::rename(&src, &dst).map_err(|e| io_error(e, &from))?;
            Ok(FileReply::Done)
        }
        FileOp::Delete { path } => {
            let full = resolve(root, &path, Mode::Entry)?;
            if full == root {
                return Err(FileError::InvalidPath(path));
            }
            let meta = full.symlink_metadata().map_err(|e| io_error(e, &path))?;
            if meta.is_dir() {
                fs::remove_dir_all(&full)
            } else {
                fs::remove_file(&full)
            }
            .map_err(|e| io_error(e, &path))?;
            Ok(FileReply::Done)
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The whole path is resolved (reading, listing).
    Follow,
    /// The parent is resolved, and a symlink as the last component must
    /// point inside, since writing through it follows it.
    Write,
    /// The parent is resolved; the last component is the entry itself
    /// (deleting or renaming a symlink acts on the link).
    Entry,
}

/// Maps a workspace path to a real one inside `root`.
fn resolve(root: &Path, path: &str, mode: Mode) -> Result<PathBuf, FileError> {
    let rel = path::normalize(path)?;
    let root = root
        .canonicalize()
        .map_err(|e| FileError::Io(format!("workspace unavailable: {e}")))?;
    let full = root.join(&rel);
    if rel.is_empty() {
        return Ok(root);
    }
    let inside = |p: &Path| p.starts_with(&root);
    if mode == Mode::Follow {
        let real = full.canonicalize().map_err(|e| io_error(e, path))?;
        if !inside(&real) {
            return Err(FileError::OutsideWorkspace(path.to_string()));
        }
        return Ok(real);
    }
    // The deepest existing ancestor must resolve inside the workspace.
    let mut ancestor = full.parent().map(Path::to_path_buf);
    while let Some(a) = ancestor {
        match a.canonicalize() {
            Ok(real) => {
                if !inside(&real) {
                    return Err(FileError::OutsideWorkspace(path.to_string()));
                }
                break;
            }
            Err(_) => ancestor = a.parent().map(Path::to_path_buf),
        }
    }
    if mode == Mode::Entry {
        return Ok(full);
    }
    if let Ok(meta) = full.symlink_metadata() {
        if meta.file_type().is_symlink() {
            match full.canonicalize() {
                Ok(real) if inside(&real) => {}
                Ok(_) => return Err(FileError::OutsideWorkspace(path.to_string())),
                Err(_) => {
                    // A dangling link: resolve its target lexically.
                    let target = fs::read_link(&full).map_err(|e| io_error(e, path))?;
                    if target.is_absolute() && !target.starts_with(&root) {
                        return Err(FileError::OutsideWorkspace(path.to_string()));
                    }
                }
            }
        }
    }
    Ok(full)
}

/// A file's version: its inode, modification time (ns) and size. An
/// atomic write makes a new inode, and anything that edits the file in
/// place moves its modification time.
fn version(meta: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{:x}-{:x}{:08x}-{:x}",
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.size()
    )
}

enum WriteError {
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
fn write_atomically(
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

fn io_error(e: io::Error, path: &str) -> FileError {
    let p = path.to_string();
    match e.raw_os_error() {
        Some(libc::ENOENT) => FileError::NotFound(p),
        Some(libc::EEXIST) => FileError::AlreadyExists(p),
        Some(libc::EISDIR) => FileError::IsADirectory(p),
        Some(libc::ENOTDIR) => FileError::NotADirectory(p),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => FileError::NoSpace,
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
            FileError::PermissionDenied(p)
        }
        Some(libc::ENOTEMPTY) => FileError::NotEmpty(p),
        Some(libc::ENAMETOOLONG) | Some(libc::EINVAL) => FileError::InvalidPath(p),
        _ => FileError::Io(e.kind().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn write(root: &Path, path: &str, data: &[u8]) -> Result<FileReply, FileError> {
        write_if(root, path, data, None)
    }

    fn write_if(
        root: &Path,
        path: &str,
        data: &[u8],
        if_version: Option<&str>,
    ) -> Result<FileReply, FileError> {
        apply(
            root,
            FileOp::Write {
                path: path.into(),
                data: data.to_vec(),
                parents: true,
                if_version: if_version.map(str::to_string),
            },
        )
    }

    fn read(root: &Path, path: &str) -> (Vec<u8>, String) {
        match apply(root, FileOp::Read { path: path.into() }).unwrap() {
            FileReply::Data { data, version } => (data, version),
            other => panic!("{other:?}"),
        }
    }

    fn written(reply: FileReply) -> String {
        match reply {
            FileReply::Written { version } => version,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_write_based_on_an_old_version_is_refused() {
        let dir = ws();
        let root = dir.path();
        let v1 = written(write(root, "f.txt", b"one").unwrap());
        let (data, read_version) = read(root, "f.txt");
        assert_eq!((data.as_slice(), &read_version), (&b"one"[..], &v1));
        // Two tabs hold v1; the first to save wins, the second is told.
        let v2 = written(write_if(root, "f.txt", b"tab 1", Some(&v1)).unwrap());
        assert_ne!(v2, v1);
        assert_eq!(
            write_if(root, "f.txt", b"tab 2", Some(&v1)),
            Err(FileError::Changed("f.txt".into()))
        );
        assert_eq!(read(root, "f.txt"), (b"tab 1".to_vec(), v2.clone()));
        // A program's in-place edit of the same size counts too (once the
        // clock has moved: file times tick at the kernel's timer, ~4 ms).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(root.join("f.txt"), b"prog!").unwrap();
        assert!(matches!(
            write_if(root, "f.txt", b"tab 1 again", Some(&v2)),
            Err(FileError::Changed(_))
        ));
        // A deleted file is a changed one; no temporary file is left.
        let (_, v3) = read(root, "f.txt");
        std::fs::remove_file(root.join("f.txt")).unwrap();
        assert!(matches!(
            write_if(root, "f.txt", b"x", Some(&v3)),
            Err(FileError::Changed(_))
        ));
        let left: Vec<_> = std::fs::read_dir(root).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        // Unconditional writes still go through.
        write(root, "f.txt", b"forced").unwrap();
        assert_eq!(read(root, "f.txt").0, b"forced");
    }

    #[test]
    fn concurrent_conditional_writes_let_exactly_one_win() {
        let dir = ws();
        let root = dir.path().to_path_buf();
        let v = written(write(&root, "race.txt", b"base").unwrap());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (root, v) = (root.clone(), v.clone());
                std::thread::spawn(move || {
                    write_if(&root, "race.txt", format!("{i}").as_bytes(), Some(&v)).is_ok()
                })
            })
            .collect();
        let wins = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(wins, 1);
    }

    #[test]
    fn write_read_list_rename_delete() {
        let dir = ws();
        let root = dir.path();
        write(root, "a/b.txt", b"hi").unwrap();
        assert_eq!(read(root, "a/b.txt").0, b"hi");
        apply(
            root,
            FileOp::Rename {
                from: "a/b.txt".into(),
                to: "c.txt".into(),
            },
        )
        .unwrap();
        let FileReply::Listing(list) = apply(root, FileOp::List { path: "".into() }).unwrap()
        else {
            panic!()
        };
        let names: Vec<_> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "c.txt"]);
        apply(root, FileOp::Delete { path: "a".into() }).unwrap();
        assert!(matches!(
            apply(
                root,
                FileOp::Read {
                    path: "a/b.txt".into()
                }
            ),
            Err(FileError::NotFound(_))
        ));
    }

    #[test]
    fn concurrent_writes_of_one_file_all_succeed() {
        let dir = ws();
        let root = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let root = root.clone();
                std::thread::spawn(move || {
                    for j in 0..25 {
                        write(&root, "same.txt", format!("{i}-{j}").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The file holds one thread's last write, whole (never a mix of two
        // writes, never an earlier one), and no temporary file is left.
        let data = match apply(
            &root,
            FileOp::Read {
                path: "same.txt".into(),
            },
        ) {
            Ok(FileReply::Data { data, .. }) => String::from_utf8(data).unwrap(),
            other => panic!("{other:?}"),
        };
        let lasts: Vec<String> = (0..8).map(|i| format!("{i}-24")).collect();
        assert!(lasts.contains(&data), "not a thread's last write: {data:?}");
        let names: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["same.txt"]);
    }

    #[test]
    fn refuses_escapes_and_outward_symlinks() {
        let dir = ws();
        let root = dir.path();
        std::os::unix::fs::symlink("/", root.join("root")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("pw")).unwrap();
        for p in ["../etc/passwd", "/etc/passwd", "root/etc/passwd", "pw"] {
            let got = apply(root, FileOp::Read { path: p.into() });
            assert!(
                matches!(got, Err(FileError::OutsideWorkspace(_))),
                "{p}: {got:?}"
            );
        }
        assert!(matches!(
            write(root, "root/tmp/x", b"x"),
            Err(FileError::OutsideWorkspace(_))
        ));
        assert!(matches!(
            write(root, "pw", b"x"),
            Err(FileError::OutsideWorkspace(_))
        ));
        // Deleting the link itself is fine and leaves its target alone.
        apply(
            root,
            FileOp::Delete {
                path: "root".into(),
            },
        )
        .unwrap();
        assert!(Path::new("/etc").exists());
    }
}
