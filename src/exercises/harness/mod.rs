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
//!
//! `mod.rs` runs a command test and answers its requests; `calls.rs` carries
//! them into the student's container; `files.rs` packs the grader's files.

mod calls;
mod files;

use super::grade::OUTPUT_LIMIT;
use super::TestSpec;
use crate::sandbox::{Job, JobEvent, SandboxError, SandboxHandle};
use bytes::Bytes;
pub use files::grader_tar;
use replbox_protocol::{ExitStatus, JobSpec, Stream as OutStream};
use serde_json::{json, Value};
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
}
fn keep(out: &mut Vec<u8>, data: &Bytes) {
    let room = (OUTPUT_LIMIT as usize).saturating_sub(out.len());
    out.extend_from_slice(&data[..data.len().min(room)]);
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
}
