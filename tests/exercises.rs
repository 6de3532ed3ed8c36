//! `replbox exercises check DIR`: the samples load; a broken copy is
//! refused with the file, the line and the reason, and the others still
//! load.

use std::path::{Path, PathBuf};
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn check(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_replbox"))
        .args(["exercises", "check"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_samples_pass_and_a_broken_copy_is_named() {
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/exercises");
    let (ok, out) = check(&samples);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok")).count(),
        4,
        "{out}"
    );

    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&samples, tmp.path());
    let toml = tmp.path().join("javascript-sum/exercise.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("points = 5\n\n[[tests]]", "points = \"five\"\n\n[[tests]]"),
    )
    .unwrap();
    let (ok, out) = check(tmp.path());
    assert!(!ok, "{out}");
    let error = out
        .lines()
        .find(|l| l.starts_with("error"))
        .expect("an error line");
    assert!(error.contains("javascript-sum/exercise.toml:9:"), "{error}");
    assert!(error.contains("invalid type"), "{error}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok")).count(),
        3,
        "the others still load: {out}"
    );
}
