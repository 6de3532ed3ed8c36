//! Checking a student's work: a fresh, short-lived container (the same
//! limits as any sandbox) gets a copy of the student's files and the hidden
//! tests, the tests run one by one, and the verdict is computed here, from
//! what the programs printed and how they exited. Nothing the student's
//! code writes can change it: the hidden tests arrive owned by root and
//! read-only, input/output expectations never enter the container, and a
//! command test must also print what its `expect` pattern says.

use super::{Compare, Exercise, TestKind, TestSpec};
use crate::config::Language;
use crate::runs::shell_quote;
use crate::sandbox::{CreateSpec, SandboxError, SandboxHandle, Sandboxes};
use replbox_protocol::JobSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Output kept per test (more is cut, and the test fails on it).
const OUTPUT_LIMIT: u64 = 1024 * 1024;
/// What a result shows of expected and got.
const SHOWN: usize = 400;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub name: String,
    pub passed: bool,
    pub points: u32,
    pub max_points: u32,
    /// A short sentence: why it failed.
    pub reason: String,
    pub expected: Option<String>,
    pub got: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub score: u32,
    pub max_score: u32,
    pub tests: Vec<TestResult>,
}

fn shown(s: &str) -> String {
    if s.chars().count() > SHOWN {
        format!("{}…", s.chars().take(SHOWN).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Whether `got` passes for `expected` under `compare`.
pub fn matches(compare: Compare, expected: &str, got: &str) -> bool {
    match compare {
        Compare::Exact => got == expected,
        Compare::Trimmed => {
            let norm = |s: &str| {
                s.trim_end()
                    .lines()
                    .map(str::trim_end)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            norm(got) == norm(expected)
        }
        Compare::Regex => regex::Regex::new(&format!("^(?:{expected})$"))
            .map(|r| r.is_match(got))
            .unwrap_or(false),
    }
}

/// A tar of the hidden tests under `tests/`, owned by root, read-only.
fn hidden_tar(hidden: &BTreeMap<String, Vec<u8>>) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::from(["tests".to_string()]);
    for path in hidden.keys() {
        let mut p = std::path::Path::new("tests").join(path);
        while let Some(parent) = p.parent().map(|x| x.to_path_buf()) {
            if parent.as_os_str().is_empty() {
                break;
            }
            dirs.insert(parent.to_string_lossy().into_owned());
            p = parent;
        }
    }
    for dir in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o555);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        tar.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
    }
    for (path, data) in hidden {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o444);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, format!("tests/{path}"), data.as_slice())?;
    }
    tar.into_inner()
}

/// Grades `files` (the student's workspace: path -> bytes) against the
/// exercise, in a container made for this check and removed after it.
pub async fn grade(
    sandboxes: &Sandboxes,
    exercise: &Exercise,
    language: &Language,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Report, SandboxError> {
    let id = format!("g-{}", uuid::Uuid::new_v4().simple());
    let handle = sandboxes
        .create(&CreateSpec {
            session: id.clone(),
            ..Default::default()
        })
        .await?;
    let result = run_checks(sandboxes, &handle, exercise, language, files).await;
    let container = handle.container_id().to_string();
    drop(handle);
    let _ = sandboxes.remove(&container).await;
    let _ = sandboxes.remove_volume(&sandboxes.volume_name(&id)).await;
    result
}

async fn run_checks(
    sandboxes: &Sandboxes,
    handle: &SandboxHandle,
    exercise: &Exercise,
    language: &Language,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Report, SandboxError> {
    // The student's files, but never their own tests/ (that name is ours).
    for (path, data) in files {
        if path == "tests" || path.starts_with("tests/") {
            continue;
        }
        handle.write_file(path.clone(), data.clone()).await?;
    }
    if !exercise.hidden.is_empty() {
        let tar = hidden_tar(&exercise.hidden).map_err(|_| SandboxError::Engine)?;
        sandboxes
            .upload_tar(handle.container_id(), "/workspace", tar)
            .await?;
    }
    let mut tests = Vec::new();
    for t in &exercise.tests {
        tests.push(run_one(handle, exercise, language, t).await?);
    }
    Ok(Report {
        score: tests.iter().map(|t| t.points).sum(),
        max_score: exercise.points(),
        tests,
    })
}

async fn run_one(
    handle: &SandboxHandle,
    exercise: &Exercise,
    language: &Language,
    t: &TestSpec,
) -> Result<TestResult, SandboxError> {
    let line = match t.kind {
        TestKind::Io => language
            .command
            .replace("{file}", &shell_quote(&exercise.entry)),
        TestKind::Command => t.command.clone().unwrap_or_default(),
    };
    let mut spec = JobSpec::shell(line);
    spec.timeout_ms = Some(t.timeout_ms.unwrap_or(exercise.time_limit_ms));
    spec.output_limit = Some(OUTPUT_LIMIT);
    let job = handle.spawn(spec).await?;
    // A command test whose `expect` holds `{nonce}` must print this check's
    // nonce, which it reads first on stdin (before the student's code runs):
    // a program that prints a result of its own cannot know it.
    let nonce = format!("{:032x}", rand::random::<u128>());
    let wants_nonce =
        t.kind == TestKind::Command && t.expect.as_deref().is_some_and(|e| e.contains("{nonce}"));
    let stdin = if wants_nonce {
        format!("{nonce}\n{}", t.stdin)
    } else {
        t.stdin.clone()
    };
    let c = job.run_with_stdin(stdin.into_bytes()).await?;
    let stdout = String::from_utf8_lossy(&c.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&c.stderr).into_owned();
    let exit = c.exit.clone();
    let duration_ms = exit.as_ref().map(|e| e.wall_ms).unwrap_or(0);
    let fail = |reason: String, expected: Option<String>, got: Option<String>| TestResult {
        name: t.name.clone(),
        passed: false,
        points: 0,
        max_points: t.points,
        reason,
        expected,
        got,
        duration_ms,
    };
    if let Some(message) = c.spawn_error {
        return Ok(fail(message, None, None));
    }
    let Some(exit) = exit else {
        return Ok(fail("the sandbox stopped".into(), None, None));
    };
    if exit.timed_out {
        return Ok(fail(
            format!(
                "took longer than {} ms",
                t.timeout_ms.unwrap_or(exercise.time_limit_ms)
            ),
            None,
            None,
        ));
    }
    if exit.truncated {
        return Ok(fail("printed too much".into(), None, None));
    }
    let passed = match t.kind {
        TestKind::Io => {
            let expected = t.expected.clone().unwrap_or_default();
            if !matches(t.compare, &expected, &stdout) {
                let reason = if exit.code == Some(0) {
                    "the output differs".to_string()
                } else {
                    format!(
                        "{} and the output differs",
                        crate::routes::frames::exit_reason(&exit)
                    )
                };
                let got = if stdout.is_empty() && !stderr.is_empty() {
                    format!("(nothing on stdout; stderr:)\n{}", shown(&stderr))
                } else {
                    shown(&stdout)
                };
                return Ok(fail(reason, Some(shown(&expected)), Some(got)));
            }
            true
        }
        TestKind::Command => {
            let both = format!("{stdout}{stderr}");
            if exit.code != Some(0) {
                return Ok(fail(
                    crate::routes::frames::exit_reason(&exit),
                    None,
                    Some(shown(&both)),
                ));
            }
            if let Some(expect) = &t.expect {
                let expect = expect.replace("{nonce}", &regex::escape(&nonce));
                let ok = regex::Regex::new(&expect)
                    .map(|r| r.is_match(&both))
                    .unwrap_or(false);
                if !ok {
                    return Ok(fail(
                        "it exited 0, but without running the tests to the end".into(),
                        None,
                        Some(shown(&both)),
                    ));
                }
            }
            true
        }
    };
    Ok(TestResult {
        name: t.name.clone(),
        passed,
        points: t.points,
        max_points: t.points,
        reason: String::new(),
        expected: None,
        got: None,
        duration_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons() {
        assert!(matches(Compare::Trimmed, "a\nb", "a  \nb\n\n"));
        assert!(!matches(Compare::Trimmed, "a\nb", "a\nc"));
        assert!(matches(Compare::Exact, "x\n", "x\n"));
        assert!(!matches(Compare::Exact, "x", "x\n"));
        assert!(matches(
            Compare::Regex,
            "(?s).*Hello, Grace!\\s*",
            "Name? Hello, Grace!\n"
        ));
        assert!(!matches(Compare::Regex, "Hello", "Hello, Grace"));
    }

    #[test]
    fn the_hidden_tests_are_root_owned_and_read_only() {
        let hidden = BTreeMap::from([("sub/t.py".to_string(), b"x".to_vec())]);
        let tar = hidden_tar(&hidden).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        for entry in archive.entries().unwrap() {
            let e = entry.unwrap();
            let h = e.header();
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.mode().unwrap() & 0o222, 0, "{:?}", e.path());
        }
    }
}
