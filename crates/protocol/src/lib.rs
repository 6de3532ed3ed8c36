//! The frames the replbox server and the in-container agent exchange.
//!
//! Transport: the container's attached stdin (server -> agent) and stdout
//! (agent -> server). Each frame is `MAGIC | u32 length (big endian) | payload`
//! where the payload is a postcard-encoded [`ToAgent`] or [`FromAgent`]. The
//! magic lets either side find the next frame boundary again after a peer
//! went away mid-frame (a server restart re-attaching to a running agent).
//!
//! The conversation opens with [`ToAgent::Hello`] and [`FromAgent::Hello`];
//! a version mismatch is reported by the agent and the server refuses it.

pub mod codec;
pub mod path;
pub mod utf8;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use codec::{output_header, split_output, FrameCodec, FrameError, MAX_FRAME_LEN};

/// Bumped on any incompatible change to the frames below.
pub const PROTOCOL_VERSION: u32 = 6;

/// Identifies a job within one agent connection; chosen by the server.
pub type JobId = u64;
/// Identifies a file request within one agent connection.
pub type RequestId = u64;

/// Frames from the server to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToAgent {
    /// Opens (or re-opens after a re-attach) the conversation. `nonce` is
    /// echoed back so the server can tell this answer from stale frames.
    Hello {
        version: u32,
        nonce: u64,
    },
    Spawn {
        id: JobId,
        spec: JobSpec,
    },
    Stdin {
        id: JobId,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    CloseStdin {
        id: JobId,
    },
    Resize {
        id: JobId,
        rows: u16,
        cols: u16,
    },
    Signal {
        id: JobId,
        signal: i32,
    },
    File {
        req: RequestId,
        op: FileOp,
    },
    /// Asks which jobs are still running (after a re-attach).
    ListJobs,
    /// Starts a Jupyter kernel (a kernelspec's name, e.g. `python3`) as job
    /// `id`: its process's exit is that job's exit. `cwd` is its working
    /// directory, relative to /workspace (empty: /workspace).
    KernelStart {
        id: JobId,
        name: String,
        cwd: String,
    },
    /// A request to a running kernel.
    Kernel {
        id: JobId,
        request: KernelRequest,
    },
    /// Which kernelspecs the image has.
    KernelSpecs {
        req: RequestId,
    },
    /// Sent on the attached stdin only: move the conversation to the unix
    /// socket at `path` (inside the container). The agent connects, writes
    /// the [`DIRECT_SECRET_LEN`] bytes of `secret` as the first bytes on it,
    /// answers [`FromAgent::Direct`] on stdout, and from then on reads and
    /// writes frames on the socket (stdin stays open for the next server's
    /// `Hello`). The secret is one-time, from the server's OS RNG.
    Direct {
        nonce: u64,
        path: String,
        #[serde(with = "serde_bytes")]
        secret: Vec<u8>,
    },
}

/// The length of [`ToAgent::Direct`]'s secret.
pub const DIRECT_SECRET_LEN: usize = 32;

/// A kernelspec the image offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSpecInfo {
    pub name: String,
    pub display_name: String,
    pub language: String,
}

/// What the server asks of a kernel; the agent speaks the Jupyter
/// protocol (ZeroMQ, inside the container) for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KernelRequest {
    /// `msg_id` is the server's, so replies can be matched to requests.
    Execute {
        msg_id: String,
        code: String,
    },
    Complete {
        msg_id: String,
        code: String,
        cursor_pos: u32,
    },
    Inspect {
        msg_id: String,
        code: String,
        cursor_pos: u32,
    },
    /// SIGINT to the kernel's process group (ipykernel's interrupt mode).
    Interrupt,
    /// A client's own Jupyter message (JSON: header, parent_header,
    /// metadata, content), sent as is on `channel` (`shell`, `control` or
    /// `stdin`) from sockets of the client's session (`header.session`), so
    /// its msg_id, session and metadata reach the kernel unchanged and the
    /// kernel's replies (and input requests) come back tagged with them.
    Message {
        channel: String,
        message: String,
    },
    Shutdown,
}

/// Frames from the agent to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromAgent {
    Hello {
        version: u32,
        nonce: u64,
        agent: String,
    },
    Started {
        id: JobId,
        pid: i32,
    },
    /// Output, cut so that a chunk never ends inside a UTF-8 character
    /// (unless the bytes are not UTF-8 at all).
    Output {
        id: JobId,
        stream: Stream,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    Exit {
        id: JobId,
        exit: ExitStatus,
    },
    /// The job could not be started (no such program, bad cwd, ...).
    SpawnFailed {
        id: JobId,
        message: String,
    },
    File {
        req: RequestId,
        result: Result<FileReply, FileError>,
    },
    Jobs {
        running: Vec<JobId>,
    },
    /// A frame the agent could not act on.
    Error {
        message: String,
    },
    KernelSpecs {
        req: RequestId,
        specs: Vec<KernelSpecInfo>,
    },
    /// The kernel of job `id` answers.
    KernelReady {
        id: JobId,
        language: String,
    },
    /// A message from the kernel: its channel (`iopub`, `shell`, `control`,
    /// `stdin`) and the whole Jupyter message as JSON.
    KernelMessage {
        id: JobId,
        channel: String,
        message: String,
    },
    /// The answer to [`ToAgent::Direct`], the agent's last frame on stdout:
    /// `error: None`, every later frame goes on the socket; `Some`, the
    /// agent could not connect and stays on stdio.
    Direct {
        nonce: u64,
        error: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
    /// The merged output of a pty.
    Pty,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Executed directly, no shell.
    Argv(Vec<String>),
    /// A shell command line, run by `/bin/sh -c`.
    Shell(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySize {
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub command: Command,
    /// Relative to /workspace; empty means /workspace.
    pub cwd: String,
    pub env: BTreeMap<String, String>,
    /// `Some` runs the job on a pty of that size, `None` on pipes.
    pub pty: Option<PtySize>,
    /// Killed (SIGKILL to the group) after this many milliseconds.
    pub timeout_ms: Option<u64>,
    /// Killed once it wrote more than this many bytes of output.
    pub output_limit: Option<u64>,
}

impl JobSpec {
    pub fn shell(line: impl Into<String>) -> Self {
        Self::new(Command::Shell(line.into()))
    }

    pub fn argv<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Self::new(Command::Argv(argv.into_iter().map(Into::into).collect()))
    }

    pub fn new(command: Command) -> Self {
        Self {
            command,
            cwd: String::new(),
            env: BTreeMap::new(),
            pty: None,
            timeout_ms: None,
            output_limit: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code when the job exited by itself.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub peak_rss_kb: u64,
    /// The wall-time limit ended it.
    pub timed_out: bool,
    /// The output limit ended it; output past the limit was dropped.
    pub truncated: bool,
    /// Bytes of output the job wrote (up to the limit).
    pub output_bytes: u64,
    /// The kernel's OOM killer ended a process of the sandbox while the job
    /// ran (the memory limit was reached).
    pub oom_killed: bool,
    /// A fork failed while the job ran: the process limit was reached.
    pub pids_limited: bool,
    /// The workspace had no room left when the job ended.
    pub workspace_full: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileOp {
    Read {
        path: String,
    },
    Write {
        path: String,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Create missing parent directories.
        parents: bool,
        /// Write only if the file is still at this version (from the read
        /// or write that gave the writer its copy); else
        /// [`FileError::Changed`]. `None` writes whatever is there.
        if_version: Option<String>,
    },
    List {
        path: String,
    },
    Mkdir {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Delete {
        path: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// The name as bytes may not be UTF-8; this is its lossy form.
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub modified: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileReply {
    /// A file's bytes and its version (see [`FileReply::Written`]).
    Data {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        version: String,
    },
    /// A write landed; `version` names what is now on disk, for the next
    /// conditional write. It changes whenever the file's content may have
    /// (its inode, modification time or size).
    Written {
        version: String,
    },
    Listing(Vec<DirEntry>),
    Done,
}

/// Why a file operation was refused. Each has a stable code and a message a
/// student can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FileError {
    #[error("the path {0:?} leaves /workspace")]
    OutsideWorkspace(String),
    #[error("the path {0:?} is not valid")]
    InvalidPath(String),
    #[error("{0:?} does not exist")]
    NotFound(String),
    #[error("{0:?} already exists")]
    AlreadyExists(String),
    #[error("{0:?} is a directory")]
    IsADirectory(String),
    #[error("{0:?} is not a directory")]
    NotADirectory(String),
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the workspace is full")]
    NoSpace,
    #[error("permission denied for {0:?}")]
    PermissionDenied(String),
    #[error("the directory {0:?} is not empty")]
    NotEmpty(String),
    #[error("{0:?} was changed since it was read (in another tab, or by a program)")]
    Changed(String),
    #[error("file operation failed: {0}")]
    Io(String),
}

/// The maximum file size read or written in one frame.
pub const MAX_FILE_LEN: u64 = 8 * 1024 * 1024;
