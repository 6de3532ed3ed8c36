//! Workspace paths to real ones: lexically first, then by resolution, so
//! no path or symlink leads outside the workspace.

use super::io_error;
use replbox_protocol::{path, FileError};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Mode {
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
pub(super) fn resolve(root: &Path, path: &str, mode: Mode) -> Result<PathBuf, FileError> {
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
