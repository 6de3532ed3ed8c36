//! What a command test's requests do in the student's container: a call
//! into the student's modules (in a worker process kept between calls), a
//! run of the student's program.

use super::{error, is_json_object, take_line, Sides, Worker, CHANNEL_LIMIT, MAX_ANSWER};
use crate::exercises::grade::OUTPUT_LIMIT;
use crate::sandbox::{JobEvent, SandboxError};
use replbox_protocol::{JobSpec, Stream as OutStream};
use serde_json::{json, Map, Value};
use tokio::time::{timeout_at, Instant};
const WORKER: &str = include_str!("worker.py");

impl Sides<'_> {
    /// A call into (or a look at) one of the student's modules, in the
    /// student's worker process, started on first use and after it ended.
    pub(super) async fn call(
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
                            crate::sandbox::exit_reason(&exit)
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
    pub(super) async fn run_program(
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
            line.push_str(&crate::sandbox::shell_quote(arg));
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
