//! The frames the server sends on the page's socket, and the shapes they
//! share with the API (listings, times).

use super::Encoding;
use crate::services::runs::exit_reason;
use crate::sessions::JobKind;
use replbox_protocol::{DirEntry, EntryKind, ExitStatus, JobId, Stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
