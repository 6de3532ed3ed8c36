//! The frames of the page's WebSocket (and the API's): JSON control frames
//! tagged by `type`, and binary frames for output and terminal bytes.
//! Documented, with an example of each, in docs/protocol.md.

use crate::services::runs::RunRequest;
use replbox_protocol::{JobId, Stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod server;

pub use server::*;

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
