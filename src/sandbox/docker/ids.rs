//! The sandbox user's ids, on the host and in the container.

/// The host ids of `(uid, gid)` in a container of an engine with these
/// `docker info` security options and root directory: `None` when the
/// engine does not remap user namespaces; shifted by the remapped root's
/// ids (the root directory's last part, `100000.100000`) when it does.
pub(super) fn shifted_ids(
    security_options: &[String],
    root_dir: &str,
    (uid, gid): (u32, u32),
) -> Result<Option<(u32, u32)>, String> {
    let remapped = security_options
        .iter()
        .any(|o| o.split(',').any(|kv| kv == "name=userns"));
    if !remapped {
        return Ok(None);
    }
    let base = root_dir
        .rsplit('/')
        .next()
        .and_then(|last| last.split_once('.'))
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)));
    match base {
        Some((bu, bg)) => Ok(Some((bu + uid, bg + gid))),
        None => Err(format!(
            "the engine remaps user namespaces, but its root directory {root_dir} does not end in the remapped root's uid.gid"
        )),
    }
}

/// Whether every user may read `path` (and search its directories).
pub(super) fn readable_by_all(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .map_err(|e| e.to_string())
    };
    if mode(&path)? & 0o004 == 0 {
        return Err(format!("{} is not world-readable", path.display()));
    }
    for dir in path.ancestors().skip(1) {
        if mode(dir)? & 0o001 == 0 {
            return Err(format!("{} is not searchable by others", dir.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_follow_the_engines_remapping() {
        let plain = ["name=seccomp,profile=default".to_string()];
        assert_eq!(
            shifted_ids(&plain, "/var/lib/docker", (1000, 1000)),
            Ok(None)
        );
        let remapped = [plain[0].clone(), "name=userns".to_string()];
        assert_eq!(
            shifted_ids(&remapped, "/var/lib/docker/100000.100000", (1000, 1000)),
            Ok(Some((101000, 101000)))
        );
        assert_eq!(
            shifted_ids(&remapped, "/srv/docker/231072.231072", (1000, 1001)),
            Ok(Some((232072, 232073)))
        );
        assert!(shifted_ids(&remapped, "/var/lib/docker", (1000, 1000)).is_err());
    }
}
