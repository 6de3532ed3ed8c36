//! Kernel messages in Jupyter's wire shape: the agent's JSON of a kernel's
//! message becomes what the channels sockets send on.

use serde_json::Value;
use std::sync::Arc;

/// The largest kernel message the gateway relays, as the agent's JSON; a
/// larger one reaches the client as a short stream message saying so (the
/// page's own socket has its frame limit for the same reason).
const MAX_MESSAGE: usize = 2 << 20;

/// A message from the kernel, as the sockets send it on.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub channel: Arc<str>,
    /// `parent_header.session`: whose request this answers.
    pub parent_session: Option<String>,
    /// The whole message: header, parent_header, metadata, content,
    /// buffers, channel, msg_id, msg_type.
    pub message: Arc<Value>,
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
        return too_large(channel, message);
    }
    let m: Value = serde_json::from_str(message).ok()?;
    let header = m.get("header")?.clone();
    let parent = match m.get("parent_header") {
        Some(Value::Object(p)) => Value::Object(p.clone()),
        _ => Value::Object(Default::default()),
    };
    let parent_session = parent["session"].as_str().map(String::from);
    let wire = serde_json::json!({
        "channel": channel,
        "msg_id": header["msg_id"],
        "msg_type": header["msg_type"],
        "header": header,
        "parent_header": parent,
        "metadata": m.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
        "content": m.get("content").cloned().unwrap_or_else(|| serde_json::json!({})),
        "buffers": [],
    });
    Some(Outgoing {
        channel: channel.into(),
        parent_session,
        message: Arc::new(wire),
    })
}

/// What a client gets instead of a message too large to relay: a stream
/// message on iopub with the same parent, so its cell shows why.
fn too_large(channel: &str, message: &str) -> Option<Outgoing> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        parent_header: Value,
        #[serde(default)]
        header: Value,
    }
    // Only the two small headers are parsed; the content is skipped.
    let head: Head = serde_json::from_str(message).ok()?;
    let parent = match head.parent_header {
        Value::Object(p) => Value::Object(p),
        _ => Value::Object(Default::default()),
    };
    let parent_session = parent["session"].as_str().map(String::from);
    let text = format!(
        "[replbox: a {} message of {} bytes is larger than the gateway relays ({} bytes); it was not sent]\n",
        head.header["msg_type"].as_str().unwrap_or("kernel"),
        message.len(),
        MAX_MESSAGE
    );
    let msg_id = uuid::Uuid::new_v4().to_string();
    let header = serde_json::json!({
        "msg_id": msg_id, "msg_type": "stream", "username": "replbox",
        "session": head.header["session"], "date": chrono::Utc::now().to_rfc3339(),
        "version": "5.3",
    });
    let _ = channel;
    Some(Outgoing {
        channel: Arc::from("iopub"),
        parent_session,
        message: Arc::new(serde_json::json!({
            "channel": "iopub", "msg_id": msg_id, "msg_type": "stream",
            "header": header, "parent_header": parent, "metadata": {},
            "content": {"name": "stderr", "text": text}, "buffers": [],
        })),
    })
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
        assert_eq!(&*out.channel, "shell");
        assert_eq!(out.parent_session.as_deref(), Some("client"));
        assert_eq!(out.message["msg_type"], "execute_reply");
        assert_eq!(out.message["channel"], "shell");
        assert_eq!(out.message["content"]["execution_count"], 1);
        let orphan = r#"{"header":{"msg_id":"b","msg_type":"status"},"parent_header":null,"metadata":{},"content":{}}"#;
        let out = to_wire("iopub", orphan).unwrap();
        assert_eq!(out.message["parent_header"], serde_json::json!({}));
        assert!(out.parent_session.is_none());
    }
}
