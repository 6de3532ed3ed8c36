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
            // The rule, stated apart: absolute or any `..` is refused;
            // anything else keeps its components less `.` and empty ones.
            let escapes = path.starts_with('/') || path.split('/').any(|c| c == "..");
            match normalize(&path) {
                Ok(p) => {
                    prop_assert!(!escapes, "{:?} escapes, accepted as {:?}", path, p);
                    prop_assert!(!p.starts_with('/'));
                    prop_assert!(p.split('/').all(|c| c != ".." && c != "."));
                    prop_assert!(p.is_empty() || p.split('/').all(|c| !c.is_empty()));
                    let kept: Vec<&str> = path
                        .split('/')
                        .filter(|c| !c.is_empty() && *c != ".")
                        .collect();
                    prop_assert_eq!(p, kept.join("/"));
                }
                Err(e) => {
                    prop_assert!(escapes, "{:?} refused: {:?}", path, e);
                    prop_assert!(matches!(e, FileError::OutsideWorkspace(_)));
                }
            }
        }
    }
}
