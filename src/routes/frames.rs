//! The frames of the page's WebSocket (and the API's): JSON control frames
//! tagged by `type`, and binary frames for output and terminal bytes.
//! Documented, with an example of each, in docs/protocol.md.

use crate::services::runs::{exit_reason, RunRequest};
use crate::sessions::JobKind;
use replbox_protocol::{DirEntry, EntryKind, ExitStatus, JobId, Stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Frames a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum ClientFrame {
    #[serde(rename = "run")]
    Run(Box<RunRequest>),
    /// The interactive terminal: re-attaches to the running one unless `new`.
    #[serde(rename = "shell")]
    Shell {
        #[serde(rename = "ref")]
        reference: Option<Value>,
        rows: Option<u16>,
        cols: Option<u16>,
        #[serde(default)]
        new: bool,
    },
    #[serde(rename = "stdin")]
    Stdin { job: JobId, data: String },
    #[serde(rename = "eof")]
    Eof { job: JobId },
    #[serde(rename = "resize")]
    Resize { job: JobId, rows: u16, cols: u16 },
    #[serde(rename = "signal")]
    Signal { job: JobId, signal: SignalName },
    /// Sends the job's buffered output after sequence number `after`.
    #[serde(rename = "replay")]
    Replay {
        job: JobId,
        #[serde(default)]
        after: u64,
    },
    /// Brings back an expired sandbox (a new container, the same files).
    #[serde(rename = "restore")]
    Restore,
    #[serde(rename = "file.list")]
    FileList {
        #[serde(rename = "ref")]
        reference: Option<Value>,
        #[serde(default)]
        path: String,
    },
    #[serde(rename = "file.read")]
    FileRead {
        #[serde(rename = "ref")]
        reference: Option<Value>,
        path: String,
    },
    #[serde(rename = "file.write")]
    FileWrite {
        #[serde(rename = "ref")]
        reference: Option<Value>,
        path: String,
        data: String,
        #[serde(default)]
        encoding: Encoding,
        /// Write only if the file is still at this version (from the
        /// `file` frame that answered a read or a write); else a
        /// `file_changed` error. Absent: write whatever is there.
        #[serde(default)]
        if_version: Option<String>,
    },
    #[serde(rename = "file.mkdir")]
    FileMkdir {
        #[serde(rename = "ref")]
        reference: Option<Value>,
        path: String,
    },
    #[serde(rename = "file.rename")]
    FileRename {
        #[serde(rename = "ref")]
        reference: Option<Value>,
        from: String,
        to: String,
    },
    #[serde(rename = "file.delete")]
    FileDelete {
        #[serde(rename = "ref")]
        reference: Option<Value>,
        path: String,
    },
    /// Starts a Jupyter kernel (default `python3`); answered by `started`
    /// (kind `kernel`), then `kernel.ready`.
    #[serde(rename = "kernel.start")]
    KernelStart {
        #[serde(rename = "ref")]
        reference: Option<Value>,
        name: Option<String>,
    },
    /// Lists the kernels the image offers; answered by `kernel.specs`.
    #[serde(rename = "kernel.specs")]
    KernelSpecs {
        #[serde(rename = "ref")]
        reference: Option<Value>,
    },
    #[serde(rename = "kernel.execute")]
    KernelExecute {
        kernel: JobId,
        msg_id: String,
        code: String,
    },
    #[serde(rename = "kernel.complete")]
    KernelComplete {
        kernel: JobId,
        msg_id: String,
        code: String,
        cursor_pos: u32,
    },
    #[serde(rename = "kernel.inspect")]
    KernelInspect {
        kernel: JobId,
        msg_id: String,
        code: String,
        cursor_pos: u32,
    },
    #[serde(rename = "kernel.interrupt")]
    KernelInterrupt { kernel: JobId },
    #[serde(rename = "kernel.shutdown")]
    KernelShutdown { kernel: JobId },
    #[serde(rename = "ping")]
    Ping {
        #[serde(rename = "ref")]
        reference: Option<Value>,
    },
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SignalName {
    Number(i32),
    Name(String),
}

impl SignalName {
    pub fn number(&self) -> Option<i32> {
        match self {
            SignalName::Number(n) if (1..=64).contains(n) => Some(*n),
            SignalName::Number(_) => None,
            SignalName::Name(name) => match name.to_ascii_lowercase().trim_start_matches("sig") {
                "interrupt" | "int" => Some(2),
                "terminate" | "term" => Some(15),
                "kill" => Some(9),
                "hangup" | "hup" => Some(1),
                "quit" => Some(3),
                "stop" => Some(19),
                "cont" | "continue" => Some(18),
                "usr1" => Some(10),
                "usr2" => Some(12),
                _ => None,
            },
        }
    }
}

/// Frames the server sends.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum ServerFrame {
    #[serde(rename = "hello")]
    Hello {
        session: String,
        status: crate::sessions::Status,
        expires_at: Option<String>,
        idle_ttl_secs: u64,
        jobs: Vec<JobInfo>,
        languages: Vec<LanguageInfo>,
        output: OutputMode,
        max_frame_bytes: usize,
    },
    #[serde(rename = "status")]
    Status { status: crate::sessions::Status },
    /// Every sandbox is in use: this many browsers wait ahead (1: next).
    #[serde(rename = "queued")]
    Queued { position: usize },
    #[serde(rename = "started")]
    Started {
        job: JobId,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
        kind: JobKind,
        pid: i32,
    },
    #[serde(rename = "output")]
    Output {
        job: JobId,
        seq: u64,
        stream: Stream,
        data: String,
    },
    #[serde(rename = "exit")]
    Exit(ExitFrame),
    #[serde(rename = "failed")]
    Failed {
        job: JobId,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
        message: String,
    },
    /// Output from `from` up to `to` (inclusive) fell out of the buffer.
    #[serde(rename = "gap")]
    Gap { job: JobId, from: u64, to: u64 },
    #[serde(rename = "expiry")]
    Expiry {
        expires_at: String,
        expires_in_secs: i64,
    },
    #[serde(rename = "expired")]
    Expired { message: String },
    #[serde(rename = "file")]
    File {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
        path: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding: Option<Encoding>,
        #[serde(skip_serializing_if = "Option::is_none")]
        entries: Option<Vec<Entry>>,
        /// After a read or a write: the file's version, for `ifVersion`.
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    #[serde(rename = "error")]
    Error {
        code: crate::error::ErrorCode,
        message: String,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    #[serde(rename = "kernel.ready")]
    KernelReady { kernel: JobId, language: String },
    #[serde(rename = "kernel.specs")]
    KernelSpecs {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
        specs: Vec<replbox_protocol::KernelSpecInfo>,
    },
    /// A Jupyter message from a kernel: `parentMsgId` is the `msgId` of the
    /// request it answers; `content` is the message's content as Jupyter
    /// defines it for `msgType`.
    #[serde(rename = "kernel.message")]
    KernelMessage {
        kernel: JobId,
        channel: String,
        msg_type: String,
        parent_msg_id: Option<String>,
        content: Value,
    },
    #[serde(rename = "pong")]
    Pong {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    pub job: JobId,
    pub kind: JobKind,
    pub running: bool,
    pub last_seq: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LanguageInfo {
    pub name: String,
    pub extension: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub name: String,
    pub kind: &'static str,
    pub size: u64,
    pub modified: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputMode {
    /// Output in JSON `output` frames (text, lossy for bytes that are not UTF-8).
    #[default]
    Json,
    /// Output in binary frames (see [`encode_output`]).
    Binary,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitFrame {
    pub job: JobId,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// A sentence for the student: "exited with code 1", "killed: time limit".
    pub reason: String,
    pub duration_ms: u64,
    pub cpu_ms: u64,
    pub peak_rss_kb: u64,
    pub timed_out: bool,
    pub truncated: bool,
    pub oom_killed: bool,
    pub pids_limited: bool,
    pub workspace_full: bool,
}

impl ExitFrame {
    pub fn new(job: JobId, e: &ExitStatus) -> Self {
        Self {
            job,
            code: e.code,
            signal: e.signal,
            reason: exit_reason(e),
            duration_ms: e.wall_ms,
            cpu_ms: e.cpu_ms,
            peak_rss_kb: e.peak_rss_kb,
            timed_out: e.timed_out,
            truncated: e.truncated,
            oom_killed: e.oom_killed,
            pids_limited: e.pids_limited,
            workspace_full: e.workspace_full,
        }
    }
}

/// A time as the frames and the API give it.
pub fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A directory listing as the frames and the API give it.
pub fn entries(list: Vec<DirEntry>) -> Vec<Entry> {
    list.into_iter()
        .map(|e| Entry {
            name: e.name,
            kind: match e.kind {
                EntryKind::File => "file",
                EntryKind::Dir => "dir",
                EntryKind::Symlink => "symlink",
                EntryKind::Other => "other",
            },
            size: e.size,
            modified: e.modified,
        })
        .collect()
}

/// Binary output frame: `0x01 | stream (0 stdout, 1 stderr, 2 pty) | job u64 BE
/// | seq u64 BE | bytes`.
pub fn encode_output(job: JobId, seq: u64, stream: Stream, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(18 + data.len());
    v.push(0x01);
    v.push(match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
        Stream::Pty => 2,
    });
    v.extend_from_slice(&job.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// Binary stdin frame from a client: `0x02 | job u64 BE | bytes`.
pub fn decode_stdin(frame: &[u8]) -> Option<(JobId, &[u8])> {
    if frame.len() < 9 || frame[0] != 0x02 {
        return None;
    }
    let job = u64::from_be_bytes(frame[1..9].try_into().ok()?);
    Some((job, &frame[9..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"run","language":"python","entry":"main.py","ref":1}"#)
                .unwrap();
        assert!(matches!(f, ClientFrame::Run(r) if r.language.as_deref() == Some("python")));
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"signal","job":3,"signal":"interrupt"}"#).unwrap();
        assert!(matches!(f, ClientFrame::Signal { signal, .. } if signal.number() == Some(2)));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
    }

    #[test]
    fn binary_frames_round_trip() {
        let out = encode_output(7, 9, Stream::Pty, b"hi");
        assert_eq!(out.len(), 20);
        let mut stdin = vec![0x02];
        stdin.extend_from_slice(&7u64.to_be_bytes());
        stdin.extend_from_slice(b"ls\n");
        assert_eq!(decode_stdin(&stdin), Some((7, &b"ls\n"[..])));
        assert_eq!(decode_stdin(b"\x02abc"), None);
    }
}
