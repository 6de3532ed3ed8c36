//! Workspace path confinement, checked lexically by both sides: a path is
//! relative to /workspace, or absolute and under /workspace (`/workspace`,
//! `/workspace/src/main.py`); never another absolute path, never `..`,
//! never NUL. The agent also refuses symlinks that resolve outside
//! /workspace. This is the one place a path from a client (the REST API,
//! the page's socket, MCP tools) is given its meaning.

use crate::FileError;

/// The workspace's absolute path inside every sandbox.
pub const WORKSPACE: &str = "/workspace";

/// Normalises a path in the workspace: relative to it, or absolute under
/// it. Drops `.` and empty components. Returns the components joined by
/// `/`, relative to /workspace (empty for the workspace itself).
pub fn normalize(path: &str) -> Result<String, FileError> {
    if path.contains('\0') {
        return Err(FileError::InvalidPath(path.to_string()));
    }
    let relative = if path.starts_with('/') {
        // `/workspace` itself or `/workspace/...`; not `/workspaces`, and
        // not `//workspace` (which is no name a client means).
        match path.strip_prefix(WORKSPACE) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
            _ => return Err(FileError::OutsideWorkspace(path.to_string())),
        }
    } else {
        path
    };
    let mut parts = Vec::new();
    for part in relative.split('/') {
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

    #[test]
    fn absolute_paths_inside_the_workspace_mean_what_they_say() {
        assert_eq!(normalize("/workspace").unwrap(), "");
        assert_eq!(normalize("/workspace/").unwrap(), "");
        assert_eq!(normalize("/workspace/src/main.py").unwrap(), "src/main.py");
        assert_eq!(normalize("/workspace/./a//b/").unwrap(), "a/b");
        for outside in [
            "/etc/passwd",
            "/workspace/../etc",
            "/workspace/a/../../etc",
            "/workspaces/x",
            "/workspacex",
            "//workspace/a",
            "/",
            "/tmp/workspace/a",
        ] {
            assert!(
                matches!(normalize(outside), Err(FileError::OutsideWorkspace(_))),
                "{outside:?} accepted"
            );
        }
        assert!(matches!(
            normalize("/workspace/a\0"),
            Err(FileError::InvalidPath(_))
        ));
    }

    proptest! {
        #[test]
        fn normalized_paths_stay_inside(path in "(/workspace)?[a-z./\\\\]{0,40}") {
            // The rule, stated apart: absolute (but for /workspace and
            // below) or any `..` is refused; anything else keeps its
            // components less `.` and empty ones.
            let inside = path == "/workspace" || path.starts_with("/workspace/");
            let escapes = (path.starts_with('/') && !inside) || path.split('/').any(|c| c == "..");
            let normalized = normalize(&path);
            let path = if inside { path["/workspace".len()..].to_string() } else { path };
            match normalized {
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
