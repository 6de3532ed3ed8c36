//! Checking a student's work. Two fresh, short-lived containers (the same
//! limits as any sandbox): the student's, with a copy of their files and
//! nothing else, where their code runs; and, when the exercise has command
//! tests, a grader's, with the hidden tests and the harness and none of the
//! student's files, where the tests run as another user and reach the
//! student's code only through the narrow channel of `harness`. An io test
//! runs the student's program and is judged here, from what it printed; its
//! expectation never enters a container. A command test passes when its
//! command, in the grader's container, exits 0.

use super::harness::{self, Sides};
use super::{Compare, Exercise, Show, TestKind, TestSpec};
use crate::config::Language;
use crate::sandbox::shell_quote;
use crate::sandbox::{Backend, CreateSpec, SandboxError, SandboxHandle};
use replbox_protocol::ExitStatus;
use replbox_protocol::JobSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Output kept per test (more is cut, and the test fails on it).
pub const OUTPUT_LIMIT: u64 = 1024 * 1024;
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

/// Grades `files` (the student's workspace: path -> bytes) against the
/// exercise, in containers made for this check and removed after it.
pub async fn grade(
    sandboxes: &dyn Backend,
    exercise: &Exercise,
    language: &Language,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Report, SandboxError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let student_id = format!("g-{id}");
    let grader_id = format!("gr-{id}");
    let needs_grader = exercise.tests.iter().any(|t| t.kind == TestKind::Command);
    let grader_spec = CreateSpec {
        session: grader_id.clone(),
        user: Some(harness::GRADER_USER.into()),
        ..Default::default()
    };
    let student_spec = CreateSpec {
        session: student_id.clone(),
        ..Default::default()
    };
    let (student, grader) = tokio::join!(sandboxes.create(&student_spec), async {
        match needs_grader {
            true => sandboxes.create(&grader_spec).await.map(Some),
            false => Ok(None),
        }
    });
    let (result, handles) = match (student, grader) {
        (Ok(student), Ok(grader)) => (
            run_checks(
                sandboxes,
                &student,
                grader.as_ref(),
                exercise,
                language,
                files,
            )
            .await,
            vec![Some(student), grader],
        ),
        (Err(e), grader) => (Err(e), vec![grader.ok().flatten()]),
        (Ok(student), Err(e)) => (Err(e), vec![Some(student)]),
    };
    for handle in handles.into_iter().flatten() {
        let container = handle.container_id().to_string();
        drop(handle);
        let _ = sandboxes.remove(&container).await;
    }
    for owner in [student_id, grader_id] {
        let _ = sandboxes
            .remove_volume(&sandboxes.volume_name(&owner))
            .await;
    }
    result
}

async fn run_checks(
    sandboxes: &dyn Backend,
    student: &SandboxHandle,
    grader: Option<&SandboxHandle>,
    exercise: &Exercise,
    language: &Language,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Report, SandboxError> {
    // The student's files, but never their own tests/ (that name is ours).
    for (path, data) in files {
        if path == "tests" || path.starts_with("tests/") {
            continue;
        }
        student.write_file(path.clone(), data.clone()).await?;
    }
    if let Some(grader) = grader {
        let tar = harness::grader_tar(&exercise.hidden).map_err(|_| SandboxError::Engine)?;
        sandboxes
            .upload_tar(grader.container_id(), "/workspace", tar)
            .await?;
    }
    let program = language
        .command
        .replace("{file}", &shell_quote(&exercise.entry));
    let mut tests = Vec::new();
    for t in &exercise.tests {
        let result = match (t.kind, grader) {
            (TestKind::Command, Some(grader)) => {
                let sides = Sides {
                    grader,
                    student,
                    program: program.clone(),
                    modules: exercise.student_modules(),
                };
                command_test(&sides, exercise, t).await?
            }
            _ => io_test(student, &program, exercise, t).await?,
        };
        tests.push(as_shown(t, result));
    }
    Ok(Report {
        score: tests.iter().map(|t| t.points).sum(),
        max_score: exercise.points(),
        tests,
    })
}

fn failed(t: &TestSpec, duration_ms: u64, reason: String) -> TestResult {
    TestResult {
        name: t.name.clone(),
        passed: false,
        points: 0,
        max_points: t.points,
        reason,
        expected: None,
        got: None,
        duration_ms,
    }
}

/// With `show = "none"` a failed test says that it failed and nothing else:
/// no reason of its own, no output, no duration (the student's code controls
/// its timing, so a duration could carry what it was given).
fn as_shown(t: &TestSpec, result: TestResult) -> TestResult {
    if t.show != Show::None || result.passed {
        return result;
    }
    TestResult {
        duration_ms: 0,
        ..failed(t, 0, "a hidden test failed".into())
    }
}

fn passed(t: &TestSpec, duration_ms: u64) -> TestResult {
    TestResult {
        passed: true,
        points: t.points,
        ..failed(t, duration_ms, String::new())
    }
}

/// Why a run that did not finish cleanly failed, if it did not.
fn not_finished(limit_ms: u64, exit: &ExitStatus) -> Option<String> {
    if exit.timed_out {
        return Some(format!("took longer than {limit_ms} ms"));
    }
    if exit.truncated {
        return Some("printed too much".into());
    }
    None
}

async fn command_test(
    sides: &Sides<'_>,
    exercise: &Exercise,
    t: &TestSpec,
) -> Result<TestResult, SandboxError> {
    let limit_ms = t.timeout_ms.unwrap_or(exercise.time_limit_ms);
    let run = sides.run(t, limit_ms).await?;
    let duration_ms = run.exit.as_ref().map(|e| e.wall_ms).unwrap_or(0);
    if let Some(message) = run.spawn_error {
        return Ok(failed(t, duration_ms, message));
    }
    let Some(exit) = run.exit.filter(|_| !run.timed_out) else {
        return Ok(failed(
            t,
            duration_ms,
            format!("took longer than {limit_ms} ms"),
        ));
    };
    if let Some(reason) = not_finished(limit_ms, &exit) {
        return Ok(failed(t, duration_ms, reason));
    }
    if exit.code == Some(0) {
        return Ok(passed(t, duration_ms));
    }
    // What the student is shown is the exercise author's choice.
    let mut result = failed(
        t,
        duration_ms,
        format!(
            "a hidden test failed ({})",
            crate::sandbox::exit_reason(&exit)
        ),
    );
    match t.show {
        Show::None => {}
        Show::Message => {
            if !run.messages.is_empty() {
                result.got = Some(shown(&run.messages.join("\n")));
            }
        }
        Show::Output => result.got = Some(shown(&String::from_utf8_lossy(&run.output))),
    }
    Ok(result)
}

async fn io_test(
    student: &SandboxHandle,
    program: &str,
    exercise: &Exercise,
    t: &TestSpec,
) -> Result<TestResult, SandboxError> {
    let limit_ms = t.timeout_ms.unwrap_or(exercise.time_limit_ms);
    let mut spec = JobSpec::shell(program);
    spec.timeout_ms = Some(limit_ms);
    spec.output_limit = Some(OUTPUT_LIMIT);
    let job = student.spawn(spec).await?;
    let c = job.run_with_stdin(t.stdin.clone().into_bytes()).await?;
    let duration_ms = c.exit.as_ref().map(|e| e.wall_ms).unwrap_or(0);
    if let Some(message) = c.spawn_error {
        return Ok(failed(t, duration_ms, message));
    }
    let Some(exit) = c.exit else {
        return Ok(failed(t, duration_ms, "the sandbox stopped".into()));
    };
    if let Some(reason) = not_finished(limit_ms, &exit) {
        return Ok(failed(t, duration_ms, reason));
    }
    let stdout = String::from_utf8_lossy(&c.stdout).into_owned();
    let expected = t.expected.clone().unwrap_or_default();
    if matches(t.compare, &expected, &stdout) {
        return Ok(passed(t, duration_ms));
    }
    let reason = if exit.code == Some(0) {
        "the output differs".to_string()
    } else {
        format!(
            "{} and the output differs",
            crate::sandbox::exit_reason(&exit)
        )
    };
    let stderr = String::from_utf8_lossy(&c.stderr);
    let got = if stdout.is_empty() && !stderr.is_empty() {
        format!("(nothing on stdout; stderr:)\n{}", shown(&stderr))
    } else {
        shown(&stdout)
    };
    Ok(TestResult {
        expected: Some(shown(&expected)),
        got: Some(got),
        ..failed(t, duration_ms, reason)
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
}
