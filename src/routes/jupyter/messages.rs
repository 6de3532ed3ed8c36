//! Kernel messages in Jupyter's wire shape: the agent's JSON of a kernel's
//! message becomes the text the channels sockets send on, built once per
//! message from the raw parts (only the header fields the gateway routes
//! on are parsed), shared by every socket, and cut into the v1 framing's
//! parts without another copy of the content.

use axum::extract::ws::Utf8Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::ops::Range;

/// The largest kernel message the gateway relays, as the agent's JSON; a
/// larger one reaches the client as a short stream message saying so (the
/// page's own socket has its frame limit for the same reason).
const MAX_MESSAGE: usize = 2 << 20;

/// A message from the kernel, as the sockets send it on.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub channel: String,
    /// `parent_header.session`: whose request this answers.
    pub parent_session: Option<String>,
    pub msg_type: String,
    /// `content.execution_state` of a status message.
    pub execution_state: Option<String>,
    /// The whole message as JSON text: channel, msg_id, msg_type, header,
    /// parent_header, metadata, content, buffers.
    pub text: Utf8Bytes,
    /// Where header, parent_header, metadata and content are in `text`.
    pub parts: [Range<usize>; 4],
}

/// A header whose `date` is an ISO 8601 string, as the protocol says:
/// jupyter_server's gateway kernel client sends a Unix timestamp instead.
pub(super) fn with_iso_date(mut header: Value) -> Value {
    if let Some(h) = header.as_object_mut().filter(|h| !h.is_empty()) {
        if !h.get("date").is_some_and(Value::is_string) {
            let date = h
                .get("date")
                .and_then(Value::as_f64)
                .and_then(|t| chrono::DateTime::from_timestamp_micros((t * 1e6) as i64))
                .unwrap_or_else(chrono::Utc::now);
            h.insert(
                "date".into(),
                date.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    .into(),
            );
        }
    }
    header
}

/// The agent's JSON of a kernel message in Jupyter's wire shape. One over
/// MAX_MESSAGE is replaced by a stream message on iopub that says so.
pub(super) fn to_wire(channel: &str, message: &str) -> Option<Outgoing> {
    if message.len() > MAX_MESSAGE {
        return too_large(message);
    }
    wire(channel, message)
}

/// What the agent sends: a message's four parts, kept as raw JSON.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    header: &'a RawValue,
    #[serde(borrow, default)]
    parent_header: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// The header fields the gateway reads.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    msg_id: Value,
    #[serde(default)]
    msg_type: Value,
}

#[derive(Deserialize)]
struct Parent {
    #[serde(default)]
    session: Option<Value>,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    execution_state: Option<Value>,
}

fn wire(channel: &str, message: &str) -> Option<Outgoing> {
    let raw: Raw = serde_json::from_str(message).ok()?;
    let head: Head = serde_json::from_str(raw.header.get()).ok()?;
    let is_object = |r: &&RawValue| r.get().starts_with('{');
    let parent = raw
        .parent_header
        .filter(is_object)
        .map_or("{}", RawValue::get);
    let parent_session = serde_json::from_str::<Parent>(parent)
        .ok()
        .and_then(|p| p.session)
        .and_then(|s| s.as_str().map(String::from));
    let msg_type = head.msg_type.as_str().unwrap_or_default().to_string();
    let content = raw.content.map_or("{}", RawValue::get);
    let execution_state = (channel == "iopub" && msg_type == "status")
        .then(|| serde_json::from_str::<Status>(content).ok())
        .flatten()
        .and_then(|s| s.execution_state)
        .and_then(|s| s.as_str().map(String::from));
    let mut text = String::with_capacity(message.len() + 128);
    text.push_str("{\"channel\":");
    text.push_str(&Value::from(channel).to_string());
    text.push_str(",\"msg_id\":");
    text.push_str(&head.msg_id.to_string());
    text.push_str(",\"msg_type\":");
    text.push_str(&head.msg_type.to_string());
    let mut part = |key: &str, json: &str| {
        text.push_str(",\"");
        text.push_str(key);
        text.push_str("\":");
        let start = text.len();
        text.push_str(json);
        start..text.len()
    };
    let parts = [
        part("header", raw.header.get()),
        part("parent_header", parent),
        part("metadata", raw.metadata.map_or("{}", RawValue::get)),
        part("content", content),
    ];
    text.push_str(",\"buffers\":[]}");
    Some(Outgoing {
        channel: channel.to_string(),
        parent_session,
        msg_type,
        execution_state,
        text: text.into(),
        parts,
    })
}

impl Outgoing {
    /// One of the four parts (header, parent_header, metadata, content).
    pub fn part(&self, i: usize) -> &[u8] {
        &self.text.as_bytes()[self.parts[i].clone()]
    }
}

/// What a client gets instead of a message too large to relay: a stream
/// message on iopub with the same parent, so its cell shows why.
fn too_large(message: &str) -> Option<Outgoing> {
    #[derive(Deserialize)]
    struct Heads {
        #[serde(default)]
        parent_header: Value,
        #[serde(default)]
        header: Value,
    }
    // Only the two small headers are parsed; the content is skipped.
    let head: Heads = serde_json::from_str(message).ok()?;
    let text = format!(
        "[replbox: a {} message of {} bytes is larger than the gateway relays ({} bytes); it was not sent]\n",
        head.header["msg_type"].as_str().unwrap_or("kernel"),
        message.len(),
        MAX_MESSAGE
    );
    let parent = head.parent_header.to_string();
    stream_note(&parent, &head.header["session"], &text)
}

/// A stream message on iopub (stderr) from replbox, answering `parent`
/// (a parent header's JSON), so the client shows `text` in that cell.
pub(super) fn stream_note(parent: &str, session: &Value, text: &str) -> Option<Outgoing> {
    let header = serde_json::json!({
        "msg_id": uuid::Uuid::new_v4().to_string(), "msg_type": "stream", "username": "replbox",
        "session": session, "date": chrono::Utc::now().to_rfc3339(), "version": "5.3",
    });
    let content = serde_json::json!({"name": "stderr", "text": text});
    let note = format!(
        r#"{{"header":{header},"parent_header":{parent},"metadata":{{}},"content":{content}}}"#
    );
    wire("iopub", &note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_become_iso_dates() {
        let h = with_iso_date(serde_json::json!({"msg_id": "a", "date": 1_700_000_000.5}));
        assert_eq!(h["date"], "2023-11-14T22:13:20.500000Z");
        let h = with_iso_date(serde_json::json!({"msg_id": "a", "date": "2026-01-01T00:00:00Z"}));
        assert_eq!(h["date"], "2026-01-01T00:00:00Z");
        assert!(with_iso_date(serde_json::json!({"msg_id": "a"}))["date"].is_string());
        // An empty parent header stays empty.
        assert_eq!(with_iso_date(serde_json::json!({})), serde_json::json!({}));
        assert_eq!(with_iso_date(Value::Null), Value::Null);
    }

    #[test]
    fn agent_json_becomes_wire_json() {
        let agent = r#"{"header":{"msg_id":"a","username":"u","session":"s1","date":"2026-01-01T00:00:00Z","msg_type":"execute_reply","version":"5.3"},"parent_header":{"msg_id":"p","username":"u","session":"client","date":"2026-01-01T00:00:00Z","msg_type":"execute_request","version":"5.3"},"metadata":{},"content":{"status":"ok","execution_count":1},"channel":null}"#;
        let out = to_wire("shell", agent).unwrap();
        assert_eq!(out.channel, "shell");
        assert_eq!(out.parent_session.as_deref(), Some("client"));
        let m: Value = serde_json::from_str(out.text.as_str()).unwrap();
        assert_eq!(m["msg_type"], "execute_reply");
        assert_eq!(m["msg_id"], "a");
        assert_eq!(m["channel"], "shell");
        assert_eq!(m["content"]["execution_count"], 1);
        assert_eq!(m["buffers"], serde_json::json!([]));
        assert_eq!(out.part(3), br#"{"status":"ok","execution_count":1}"#);
        let orphan = r#"{"header":{"msg_id":"b","msg_type":"status"},"parent_header":null,"metadata":{},"content":{"execution_state":"busy"}}"#;
        let out = to_wire("iopub", orphan).unwrap();
        let m: Value = serde_json::from_str(out.text.as_str()).unwrap();
        assert_eq!(m["parent_header"], serde_json::json!({}));
        assert!(out.parent_session.is_none());
        assert_eq!(out.execution_state.as_deref(), Some("busy"));
    }

    #[test]
    fn a_message_too_large_becomes_a_note_to_its_cell() {
        let big = format!(
            r#"{{"header":{{"msg_id":"d","msg_type":"display_data","session":"k"}},"parent_header":{{"msg_id":"p","session":"client"}},"metadata":{{}},"content":{{"data":{{"text/plain":"{}"}}}}}}"#,
            "x".repeat(MAX_MESSAGE)
        );
        let out = to_wire("iopub", &big).unwrap();
        assert_eq!(
            (out.channel.as_str(), out.msg_type.as_str()),
            ("iopub", "stream")
        );
        assert_eq!(out.parent_session.as_deref(), Some("client"));
        assert!(out.text.len() < 1024);
        assert!(out.text.as_str().contains("larger than the gateway relays"));
    }
}
