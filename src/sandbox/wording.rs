//! A job's end and a shell word, in the words every layer above shows:
//! the socket, the API and grading alike.

use replbox_protocol::ExitStatus;

/// How a job ended, in words.
pub fn exit_reason(e: &ExitStatus) -> String {
    if e.timed_out {
        return "killed: time limit reached".into();
    }
    if e.truncated {
        return "stopped: too much output".into();
    }
    if e.workspace_full && e.code != Some(0) {
        return "stopped: workspace full".into();
    }
    if e.oom_killed && e.code != Some(0) {
        return "killed: out of memory".into();
    }
    if e.pids_limited {
        return if e.code == Some(0) {
            "finished, but it hit the limit on processes".into()
        } else {
            "stopped: too many processes".into()
        };
    }
    match (e.code, e.signal) {
        (Some(0), _) => "finished".into(),
        (Some(c), _) => format!("exited with code {c}"),
        (_, Some(2)) => "interrupted".into(),
        (_, Some(9)) => "killed".into(),
        (_, Some(15)) => "terminated".into(),
        (_, Some(s)) => format!("ended by signal {s}"),
        _ => "ended".into(),
    }
}

/// Quotes a string for `/bin/sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
