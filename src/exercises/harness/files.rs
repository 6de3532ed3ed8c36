//! The grader container's files: the harness and the hidden tests, packed
//! as a tar owned by root and read-only.

use std::collections::BTreeMap;
/// The harness files, with their modes, under `.replbox/` of the grader's
/// workspace (beside the hidden tests in `tests/`).
pub const FILES: [(&str, &str, u32); 5] = [
    ("wrapper.py", include_str!("wrapper.py"), 0o444),
    (
        "lib/replbox_harness.py",
        include_str!("replbox_harness.py"),
        0o444,
    ),
    ("bin/replbox-run", include_str!("replbox-run"), 0o555),
    (
        "bin/replbox-message",
        include_str!("replbox-message"),
        0o555,
    ),
    (
        "lib/README",
        "replbox's grading harness; see docs/exercises.md\n",
        0o444,
    ),
];
/// A tar of the hidden tests under `tests/` and the harness under
/// `.replbox/`, all owned by root and read-only.
pub fn grader_tar(hidden: &BTreeMap<String, Vec<u8>>) -> std::io::Result<Vec<u8>> {
    let mut files: BTreeMap<String, (&[u8], u32)> = hidden
        .iter()
        .map(|(p, d)| (format!("tests/{p}"), (d.as_slice(), 0o444)))
        .collect();
    for (path, text, mode) in FILES {
        files.insert(format!(".replbox/{path}"), (text.as_bytes(), mode));
    }
    let mut dirs = std::collections::BTreeSet::from(["tests".to_string()]);
    for path in files.keys() {
        let mut p = std::path::Path::new(path);
        while let Some(parent) = p.parent() {
            if parent.as_os_str().is_empty() {
                break;
            }
            dirs.insert(parent.to_string_lossy().into_owned());
            p = parent;
        }
    }
    let mut tar = tar::Builder::new(Vec::new());
    let header = |mode: u32, size: u64, kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size);
        h
    };
    for dir in &dirs {
        let mut h = header(0o555, 0, tar::EntryType::Directory);
        tar.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
    }
    for (path, (data, mode)) in files {
        let mut h = header(mode, data.len() as u64, tar::EntryType::Regular);
        tar.append_data(&mut h, path, data)?;
    }
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grader_tar_is_root_owned_and_read_only() {
        let hidden = BTreeMap::from([("sub/t.py".to_string(), b"x".to_vec())]);
        let tar = grader_tar(&hidden).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let e = entry.unwrap();
            let h = e.header();
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.mode().unwrap() & 0o222, 0, "{:?}", e.path());
            names.push(e.path().unwrap().display().to_string());
        }
        assert!(names.contains(&"tests/sub/t.py".to_string()), "{names:?}");
        assert!(
            names.contains(&".replbox/wrapper.py".to_string()),
            "{names:?}"
        );
    }
}
