//! File operations under the workspace. Paths are checked lexically (no
//! absolute paths, no `..`) and then by resolution: a symlink whose target
//! lies outside the workspace is refused.
//!
//! `mod.rs` applies an operation; `paths.rs` maps a workspace path to a
//! real one; `write.rs` writes atomically and conditionally, and says a
//! file's version.

mod paths;
mod write;

use paths::{resolve, Mode};
use replbox_protocol::{DirEntry, EntryKind, FileError, FileOp, FileReply, MAX_FILE_LEN};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::UNIX_EPOCH;
use write::{version, write_atomically, WriteError};

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
mod tests;
