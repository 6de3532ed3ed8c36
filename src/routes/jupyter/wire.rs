//! Jupyter messages on a client's socket: JSON text with `channel` (the
//! legacy protocol), or the `v1.kernel.websocket.jupyter.org` binary
//! framing (a count and offsets, then channel, header, parent_header,
//! metadata, content and buffers). Buffers from clients are dropped: the
//! relay carries a message's JSON parts only.

use super::messages::Outgoing;
use serde_json::Value;

/// A legacy text message: its channel and the message. Without a channel
/// it is for shell, as Jupyter Server has it (jupyter_server's own gateway
/// kernel client sends none).
pub fn parse_text(text: &str) -> Result<(String, Value), String> {
    let message: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if !message.is_object() {
        return Err("a message is a JSON object".into());
    }
    let channel = message["channel"].as_str().unwrap_or("shell").to_string();
    Ok((channel, message))
}

/// A binary message: v1 framing when that protocol was agreed, else the
/// legacy framing with buffers (u32 count and offsets, big endian, the
/// first part the message's JSON).
pub fn parse_binary(data: &[u8], v1: bool) -> Result<(String, Value), String> {
    if !v1 {
        let word = |i: usize| -> Result<usize, String> {
            data.get(i * 4..i * 4 + 4)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
                .ok_or_else(|| "a binary message cut short".to_string())
        };
        let n = word(0)?;
        if n == 0 {
            return Err("a binary message without parts".into());
        }
        let start = word(1)?;
        let end = if n > 1 { word(2)? } else { data.len() };
        let json = data.get(start..end).ok_or("bad offsets")?;
        let text = std::str::from_utf8(json).map_err(|e| e.to_string())?;
        return parse_text(text);
    }
    let word = |i: usize| -> Result<usize, String> {
        data.get(i * 8..i * 8 + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| "a binary message cut short".to_string())
    };
    let count = word(0)?;
    if !(6..=1024).contains(&count) {
        return Err(format!(
            "{count} offsets: expected channel, header, parent_header, metadata, content"
        ));
    }
    let offsets = (1..=count).map(word).collect::<Result<Vec<_>, _>>()?;
    let part = |i: usize| -> Result<&[u8], String> {
        let (a, b) = (
            offsets[i],
            offsets.get(i + 1).copied().unwrap_or(data.len()),
        );
        data.get(a..b).ok_or_else(|| "bad offsets".to_string())
    };
    let channel = std::str::from_utf8(part(0)?)
        .map_err(|e| e.to_string())?
        .to_string();
    let json = |i: usize| -> Result<Value, String> {
        let bytes = part(i)?;
        if bytes.is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    };
    let message = serde_json::json!({
        "channel": channel,
        "header": json(1)?,
        "parent_header": json(2)?,
        "metadata": json(3)?,
        "content": json(4)?,
    });
    Ok((channel, message))
}

/// A kernel's message in v1 framing.
pub fn to_v1(out: &Outgoing) -> Vec<u8> {
    let m = &out.message;
    let parts: Vec<Vec<u8>> = ["header", "parent_header", "metadata", "content"]
        .iter()
        .map(|k| serde_json::to_vec(&m[*k]).unwrap_or_default())
        .collect();
    let channel = out.channel.as_bytes();
    // Offsets: where the channel starts, then where each part ends.
    let count = 2 + parts.len();
    let mut offsets = vec![8 * (1 + count)];
    offsets.push(offsets[0] + channel.len());
    for p in &parts {
        offsets.push(offsets.last().expect("non-empty") + p.len());
    }
    let mut buf = Vec::with_capacity(*offsets.last().expect("non-empty"));
    buf.extend_from_slice(&(count as u64).to_le_bytes());
    for o in &offsets {
        buf.extend_from_slice(&(*o as u64).to_le_bytes());
    }
    buf.extend_from_slice(channel);
    for p in &parts {
        buf.extend_from_slice(p);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn v1_round_trips() {
        let out = Outgoing {
            channel: "shell".into(),
            parent_session: None,
            message: Arc::new(serde_json::json!({
                "header": {"msg_id": "m", "msg_type": "execute_request", "session": "s"},
                "parent_header": {},
                "metadata": {"a": 1},
                "content": {"code": "1+1"},
            })),
        };
        let bytes = to_v1(&out);
        let (channel, m) = parse_binary(&bytes, true).unwrap();
        assert_eq!(channel, "shell");
        assert_eq!(m["header"]["msg_id"], "m");
        assert_eq!(m["metadata"]["a"], 1);
        assert_eq!(m["content"]["code"], "1+1");
        assert!(parse_binary(&bytes[..20], true).is_err());
        assert!(parse_binary(b"", true).is_err());
    }

    #[test]
    fn legacy_text_and_binary() {
        let (c, m) = parse_text(r#"{"channel":"shell","header":{"session":"s"}}"#).unwrap();
        assert_eq!(c, "shell");
        assert_eq!(m["header"]["session"], "s");
        assert_eq!(parse_text(r#"{"header":{}}"#).unwrap().0, "shell");
        assert!(parse_text("[1]").is_err());
        let json = br#"{"channel":"stdin","header":{"session":"s"}}"#;
        let mut b = Vec::new();
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&8u32.to_be_bytes());
        b.extend_from_slice(json);
        assert_eq!(parse_binary(&b, false).unwrap().0, "stdin");
    }
}
