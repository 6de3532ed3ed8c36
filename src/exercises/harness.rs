//! The two sides of a command test, and the narrow channel between them.
//!
//! A command test's command runs in a grader container that holds the
//! hidden tests and no file of the student's, as a user of its own
//! (`GRADER_USER`), under `harness/wrapper.py`. The student's code runs in
//! the student's container only: a Python module the tests import is a proxy
//! (`harness/replbox_harness.py`) whose calls travel as one JSON line each,
//! through this server, to `harness/worker.py` in the student's container;
//! `replbox-run` runs the student's program there. Only plain JSON data
//! crosses, so nothing the student's code does can reach the process that
//! decides the verdict, the files it reads, or the server's own reading of
//! how it ended.

use super::grade::OUTPUT_LIMIT;
use super::TestSpec;
use crate::sandbox::{Job, JobEvent, SandboxError, SandboxHandle};
use bytes::Bytes;
use replbox_protocol::{ExitStatus, JobSpec, Stream as OutStream};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tokio::time::{timeout_at, Instant};

/// The grader container's user: not the student's (1000), owns nothing.
pub const GRADER_USER: &str = "1001:1001";
/// Where the harness lives in the grader container (root's, read-only).
const HOME: &str = "/workspace/.replbox";
/// The longest request line the tests may send; a longer one ends the test.
const MAX_LINE: usize = 4 * 1024 * 1024;
/// The longest answer the student's side may give to one call.
const MAX_ANSWER: usize = 1024 * 1024;
/// Channel traffic a test may send in all (requests and the student's replies).
const CHANNEL_LIMIT: u64 = 64 * 1024 * 1024;
/// Messages kept for the student, and the length of each.
const MAX_MESSAGES: usize = 20;
const MESSAGE_CHARS: usize = 1000;
/// Time the server gives a test beyond its own limit before it stops waiting.
const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The harness files, with their modes, under `.replbox/` of the grader's
/// workspace (beside the hidden tests in `tests/`).
pub const FILES: [(&str, &str, u32); 5] = [
    ("wrapper.py", include_str!("harness/wrapper.py"), 0o444),
    (
        "lib/replbox_harness.py",
        include_str!("harness/replbox_harness.py"),
        0o444,
    ),
    (
        "bin/replbox-run",
        include_str!("harness/replbox-run"),
        0o555,
    ),
    (
        "bin/replbox-message",
        include_str!("harness/replbox-message"),
        0o555,
    ),
    (
        "lib/README",
        "replbox's grading harness; see docs/exercises.md\n",
        0o444,
    ),
];
const WORKER: &str = include_str!("harness/worker.py");

/// How a command test ended, as the grader container saw it.
#[derive(Debug, Default)]
pub struct CommandRun {
    pub exit: Option<ExitStatus>,
    pub spawn_error: Option<String>,
    /// What the command printed (stdout and stderr), up to `OUTPUT_LIMIT`.
    pub output: Vec<u8>,
    /// What the tests chose to tell the student (`message()`, pytest's
    /// one-line failure messages).
    pub messages: Vec<String>,
    /// The server stopped waiting (the test ran past its time and grace).
    pub timed_out: bool,
}

/// The two containers of a check and what a test may run in the student's.
pub struct Sides<'a> {
    pub grader: &'a SandboxHandle,
    pub student: &'a SandboxHandle,
    /// The shell line that runs the student's program.
    pub program: String,
    /// The student's Python modules the tests may import (proxied).
    pub modules: Vec<String>,
}

/// The student's long-lived process for calls into their modules.
struct Worker {
    job: Job,
    buf: Vec<u8>,
}

fn error(kind: &str, message: impl Into<String>) -> Value {
    json!({"ok": false, "error": {"type": kind, "message": message.into()}})
}

/// One JSON object, checked without building it (no allocation per node,
/// and no recursion: serde_json skips what it ignores with a loop).
fn is_json_object(line: &[u8]) -> bool {
    line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
}

fn take_line(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let end = buf.iter().position(|&b| b == b'\n')?;
    let mut line: Vec<u8> = buf.drain(..=end).collect();
    line.pop();
    Some(line)
}

impl Sides<'_> {
    /// Runs one command test to its end (or its time limit and grace).
    pub async fn run(&self, t: &TestSpec, timeout_ms: u64) -> Result<CommandRun, SandboxError> {
        let command = t.command.clone().unwrap_or_default();
        let mut spec = JobSpec::argv([
            "python3".to_string(),
            "-I".into(),
            format!("{HOME}/wrapper.py"),
            "--".into(),
            "sh".into(),
            "-c".into(),
            command,
        ]);
        spec.timeout_ms = Some(timeout_ms);
        spec.output_limit = Some(CHANNEL_LIMIT);
        // Calls and runs end with the test's own time; the server waits a
        // little longer for the agent to say how the test ended.
        let ends = Instant::now() + std::time::Duration::from_millis(timeout_ms);
        let deadline = ends + GRACE;
        let mut job = self.grader.spawn(spec).await?;
        let hello = json!({"stdin": t.stdin, "modules": self.modules});
        job.control.stdin(format!("{hello}\n")).await?;

        let mut run = CommandRun::default();
        let mut requests = Vec::new();
        let mut worker: Option<Worker> = None;
        loop {
            let Ok(event) = timeout_at(deadline, job.next()).await else {
                let _ = job.control.signal(9).await;
                run.timed_out = true;
                break;
            };
            match event {
                None => return Err(SandboxError::AgentGone),
                Some(JobEvent::Output { stream, data }) => {
                    if stream == OutStream::Stdout {
                        requests.extend_from_slice(&data);
                        while let Some(line) = take_line(&mut requests) {
                            let reply = self.answer(&line, &mut worker, &mut run, ends).await?;
                            job.control.stdin(format!("{reply}\n")).await?;
                        }
                        if requests.len() > MAX_LINE {
                            let _ = job.control.signal(9).await;
                            run.spawn_error = Some("the test's harness sent garbage".into());
                            break;
                        }
                    } else {
                        keep(&mut run.output, &data);
                    }
                }
                Some(JobEvent::Exit(exit)) => {
                    run.exit = Some(exit);
                    break;
                }
                Some(JobEvent::SpawnFailed(message)) => {
                    run.spawn_error = Some(message);
                    break;
                }
                Some(_) => {}
            }
        }
        if let Some(w) = worker {
            let _ = w.job.control.signal(9).await;
        }
        Ok(run)
    }

    /// One request from the tests, answered.
    async fn answer(
        &self,
        line: &[u8],
        worker: &mut Option<Worker>,
        run: &mut CommandRun,
        deadline: Instant,
    ) -> Result<String, SandboxError> {
        let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(line) else {
            return Ok(error("ValueError", "not a JSON object").to_string());
        };
        let id = match request.remove("id") {
            Some(Value::Number(n)) if n.is_u64() => n,
            _ => return Ok(error("ValueError", "a request needs a numeric id").to_string()),
        };
        let op = request.get("op").and_then(Value::as_str).unwrap_or("");
        let reply = match op {
            // The student's answer goes on as the text it is, checked to be
            // one JSON object but never built into a tree here.
            "get" | "call" => self.call(&request, worker, deadline).await?,
            "run" => self.run_program(&request, deadline).await?.to_string(),
            "report" => {
                let text = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("");
                let message = match text("test") {
                    "" => text("message").to_string(),
                    test => format!("{test}: {}", text("message")),
                };
                if run.messages.len() < MAX_MESSAGES {
                    run.messages
                        .push(message.chars().take(MESSAGE_CHARS).collect());
                }
                json!({"ok": true}).to_string()
            }
            other => error("ValueError", format!("unknown request {other:?}")).to_string(),
        };
        // The id first, so the harness finds it without reading the rest.
        Ok(format!("{{\"id\":{id},\"reply\":{reply}}}"))
    }

    /// A call into (or a look at) one of the student's modules, in the
    /// student's worker process, started on first use and after it ended.
    async fn call(
        &self,
        request: &Map<String, Value>,
        worker: &mut Option<Worker>,
        deadline: Instant,
    ) -> Result<String, SandboxError> {
        if worker.is_none() {
            let mut spec = JobSpec::argv(["python3", "-I", "-c", WORKER]);
            spec.timeout_ms = Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis() as u64,
            );
            spec.output_limit = Some(CHANNEL_LIMIT);
            let job = self.student.spawn(spec).await?;
            *worker = Some(Worker {
                job,
                buf: Vec::new(),
            });
        }
        let w = worker.as_mut().expect("started above");
        let line = Value::Object(request.clone()).to_string() + "\n";
        w.job.control.stdin(line).await?;
        loop {
            if let Some(line) = take_line(&mut w.buf) {
                if is_json_object(&line) {
                    return Ok(String::from_utf8(line).expect("valid JSON is UTF-8"));
                }
                return Ok(
                    error("ProtocolError", "the student's side answered garbage").to_string(),
                );
            }
            if w.buf.len() > MAX_ANSWER {
                let _ = w.job.control.signal(9).await;
                *worker = None;
                return Ok(error("ValueError", "the answer is over 1 MiB").to_string());
            }
            let event = match timeout_at(deadline, w.job.next()).await {
                Ok(e) => e,
                Err(_) => {
                    let _ = w.job.control.signal(9).await;
                    *worker = None;
                    return Ok(error("TimeoutError", "the call did not return in time").to_string());
                }
            };
            match event {
                Some(JobEvent::Output {
                    stream: OutStream::Stdout,
                    data,
                }) => w.buf.extend_from_slice(&data),
                Some(JobEvent::Exit(exit)) => {
                    *worker = None;
                    return Ok(error(
                        "SystemExit",
                        format!(
                            "the student's program ended during the call ({})",
                            crate::services::runs::exit_reason(&exit)
                        ),
                    )
                    .to_string());
                }
                Some(JobEvent::SpawnFailed(m)) => {
                    *worker = None;
                    return Ok(error("OSError", m).to_string());
                }
                None => return Err(SandboxError::AgentGone),
                Some(_) => {}
            }
        }
    }

    /// The student's program, run with a stdin and arguments.
    async fn run_program(
        &self,
        request: &Map<String, Value>,
        deadline: Instant,
    ) -> Result<Value, SandboxError> {
        let stdin = request.get("stdin").and_then(Value::as_str).unwrap_or("");
        let mut line = self.program.clone();
        for arg in request
            .get("args")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(arg) = arg.as_str() else {
                return Ok(error("TypeError", "arguments are strings"));
            };
            line.push(' ');
            line.push_str(&crate::services::runs::shell_quote(arg));
        }
        let mut spec = JobSpec::shell(line);
        spec.timeout_ms = Some(
            deadline
                .saturating_duration_since(Instant::now())
                .as_millis()
                .max(1) as u64,
        );
        spec.output_limit = Some(OUTPUT_LIMIT);
        let job = self.student.spawn(spec).await?;
        let control = job.control.clone();
        let c = match timeout_at(deadline, job.run_with_stdin(stdin.as_bytes().to_vec())).await {
            Ok(c) => c?,
            Err(_) => {
                let _ = control.signal(9).await;
                return Ok(error("TimeoutError", "the program did not end in time"));
            }
        };
        if let Some(m) = c.spawn_error {
            return Ok(error("OSError", m));
        }
        let Some(exit) = c.exit else {
            return Ok(error("OSError", "the program did not finish"));
        };
        Ok(json!({
            "ok": true,
            "stdout": String::from_utf8_lossy(&c.stdout),
            "stderr": String::from_utf8_lossy(&c.stderr),
            "exitCode": exit.code,
            "signal": exit.signal,
            "timedOut": exit.timed_out,
            "truncated": exit.truncated,
        }))
    }
}

fn keep(out: &mut Vec<u8>, data: &Bytes) {
    let room = (OUTPUT_LIMIT as usize).saturating_sub(out.len());
    out.extend_from_slice(&data[..data.len().min(room)]);
}

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
    fn answers_are_checked_not_built() {
        assert!(is_json_object(
            br#" {"ok": true, "value": [1, {"b": 2, "a": 1}]}"#
        ));
        assert!(!is_json_object(b"[1]"));
        assert!(!is_json_object(br#"{"ok": true"#));
        assert!(!is_json_object(br#"{"ok": NaN}"#));
        // Depth costs no stack here (serde_json skips without recursing).
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(is_json_object(deep.as_bytes()));
    }

    #[test]
    fn lines_are_taken_whole() {
        let mut buf = b"{\"a\":1}\n{\"b\"".to_vec();
        assert_eq!(take_line(&mut buf).unwrap(), b"{\"a\":1}");
        assert_eq!(take_line(&mut buf), None);
        buf.extend_from_slice(b":2}\n");
        assert_eq!(take_line(&mut buf).unwrap(), b"{\"b\":2}");
    }

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
