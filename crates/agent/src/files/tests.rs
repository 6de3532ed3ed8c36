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
    let FileReply::Listing(list) = apply(root, FileOp::List { path: "".into() }).unwrap() else {
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
