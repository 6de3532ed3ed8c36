//! Workspace path confinement, checked lexically by both sides: a path is
//! relative to /workspace, and never absolute, never `..`, never NUL. The
//! agent also refuses symlinks that resolve outside /workspace.

use crate::FileError;

/// Normalises a workspace-relative path: drops `.` and empty components.
/// Returns the components joined by `/` (empty for the workspace itself).
pub fn normalize(path: &str) -> Result<String, FileError> {
    if path.contains('\0') {
        return Err(FileError::InvalidPath(path.to_string()));
    }
    if path.starts_with('/') {
        return Err(FileError::OutsideWorkspace(path.to_string()));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(FileError::OutsideWorkspace(path.to_string())),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_escapes() {
        assert!(matches!(
            normalize("../etc/passwd"),
            Err(FileError::OutsideWorkspace(_))
        ));
        assert!(matches!(
            normalize("/etc/passwd"),
            Err(FileError::OutsideWorkspace(_))
        ));
        assert!(matches!(
            normalize("a/../../b"),
            Err(FileError::OutsideWorkspace(_))
        ));
        assert!(matches!(normalize("a\0b"), Err(FileError::InvalidPath(_))));
        assert_eq!(normalize("./a//b/").unwrap(), "a/b");
        assert_eq!(normalize("").unwrap(), "");
    }

    proptest! {
        #[test]
        fn normalized_paths_stay_inside(path in "[a-z./\\\\]{0,40}") {
            if let Ok(p) = normalize(&path) {
                prop_assert!(!p.starts_with('/'));
                prop_assert!(p.split('/').all(|c| c != ".." && c != "." ));
                prop_assert!(p.is_empty() || p.split('/').all(|c| !c.is_empty()));
            }
        }
    }
}
