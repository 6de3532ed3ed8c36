//! `claim-workspace PATH UID GID`: gives a workspace directory to the
//! sandbox user. It runs with the capability to chown, so it trusts
//! nothing it did not get as an argument: no environment (any `REPLBOX_*`
//! variable is refused), exactly three arguments, an absolute path of
//! plain components, ids that are not root's, and no symbolic link
//! followed on the way or at the end (each component is opened with
//! `O_NOFOLLOW`, the last as a directory, and the open directory is the
//! one changed).

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path};

pub fn claim(args: &[String], env: impl Iterator<Item = OsString>) -> Result<(), String> {
    let usage = "usage: replbox-agent claim-workspace /ABSOLUTE/DIR UID GID";
    if let Some(var) = env
        .map(|k| k.to_string_lossy().into_owned())
        .find(|k| k.starts_with("REPLBOX_"))
    {
        return Err(format!(
            "{var} is set: the workspace is only ever given as an argument"
        ));
    }
    let [path, uid, gid] = args else {
        return Err(usage.into());
    };
    let id = |s: &str| match s.parse::<u32>() {
        Ok(0) => Err("the workspace is never given to root".to_string()),
        Ok(n) if s == n.to_string() => Ok(n),
        _ => Err(format!("{s:?} is not an id; {usage}")),
    };
    let (uid, gid) = (id(uid)?, id(gid)?);
    let dir = open_no_follow(Path::new(path))?;
    // SAFETY: fchown on a descriptor we own.
    if unsafe { libc::fchown(dir.as_raw_fd(), uid, gid) } != 0 {
        return Err(format!(
            "cannot give {path} to {uid}:{gid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The directory at `path`, opened component by component from `/`
/// without following a symbolic link anywhere.
fn open_no_follow(path: &Path) -> Result<OwnedFd, String> {
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    let open = |at: libc::c_int, name: &CString| -> Result<OwnedFd, String> {
        // SAFETY: openat with a NUL-terminated name; the result is checked
        // and owned.
        let fd = unsafe {
            libc::openat(
                at,
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            let why = match e.raw_os_error() {
                Some(libc::ELOOP) => "a symbolic link, never followed".to_string(),
                Some(libc::ENOTDIR) => "not a directory (or a symbolic link)".to_string(),
                _ => e.to_string(),
            };
            return Err(format!("{}: {why}", path.display()));
        }
        // SAFETY: a descriptor openat just gave us.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let mut dir = open(libc::AT_FDCWD, &CString::new("/").expect("no NUL"))?;
    let mut any = false;
    for c in components {
        let Component::Normal(name) = c else {
            return Err(format!("{} is not a plain path", path.display()));
        };
        let name = CString::new(name.as_encoded_bytes())
            .map_err(|_| format!("{} holds NUL", path.display()))?;
        dir = open(dir.as_raw_fd(), &name)?;
        any = true;
    }
    if !any {
        return Err("the root directory is never a workspace".into());
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn args(path: &Path, uid: u32, gid: u32) -> Vec<String> {
        vec![path.display().to_string(), uid.to_string(), gid.to_string()]
    }

    fn ids() -> (u32, u32) {
        // SAFETY: plain getters.
        unsafe { (libc::getuid(), libc::getgid()) }
    }

    #[test]
    fn a_plain_directory_is_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("workspace");
        std::fs::create_dir(&ws).unwrap();
        let (uid, gid) = ids();
        if uid == 0 {
            // As root the ids must not be root's: give it to 1000 and back.
            claim(&args(&ws, 1000, 1000), std::iter::empty()).unwrap();
            assert_eq!(std::fs::metadata(&ws).unwrap().uid(), 1000);
        } else {
            claim(&args(&ws, uid, gid), std::iter::empty()).unwrap();
        }
    }

    #[test]
    fn symbolic_links_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let before = std::fs::metadata(&outside).unwrap().uid();
        // A link as the workspace, and a link on the way to it.
        let link = dir.path().join("workspace");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let err = claim(&args(&link, 4242, 4242), std::iter::empty()).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        std::fs::create_dir(outside.join("ws")).unwrap();
        let err = claim(&args(&link.join("ws"), 4242, 4242), std::iter::empty()).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::metadata(&outside).unwrap().uid(), before);
        assert_eq!(std::fs::metadata(outside.join("ws")).unwrap().uid(), before);
    }

    #[test]
    fn environment_and_odd_arguments_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = (4242, 4242);
        let env = || vec![OsString::from("PATH"), OsString::from("REPLBOX_WORKSPACE")];
        let err = claim(&args(dir.path(), uid, gid), env().into_iter()).unwrap_err();
        assert!(err.contains("REPLBOX_WORKSPACE"), "{err}");
        for bad in [
            vec!["1000".to_string(), "1000".into()],
            vec!["/w".into(), "1000".into(), "1000".into(), "extra".into()],
            vec!["relative".into(), "1000".into(), "1000".into()],
            vec!["/".into(), "1000".into(), "1000".into()],
            vec!["/tmp/../etc".into(), "1000".into(), "1000".into()],
            vec![dir.path().display().to_string(), "0".into(), "1000".into()],
            vec![
                dir.path().display().to_string(),
                "+1000".into(),
                "1000".into(),
            ],
            vec![dir.path().display().to_string(), "1000".into(), "-1".into()],
        ] {
            assert!(claim(&bad, std::iter::empty()).is_err(), "{bad:?}");
        }
    }
}
