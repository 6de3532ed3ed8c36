//! What an agent reads of a tool's answer: the text, and the structured
//! content, long streams cut with a marker in both.

use serde_json::Value;

/// What one stream of a run shows an agent at most; the rest is cut with a
/// marker (the whole output stays within the API's own limit).
const TEXT_LIMIT: usize = 64 * 1024;
fn cut(text: &str) -> String {
    if text.len() <= TEXT_LIMIT {
        return text.to_string();
    }
    let mut end = TEXT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[... output truncated: {} more bytes not shown]",
        &text[..end],
        text.len() - end
    )
}

/// The text an agent reads for a tool's answer.
pub(super) fn text_of(name: &str, v: &Value) -> String {
    match name {
        "run_code" | "run_command" => {
            let mut s = String::new();
            let stdout = v["stdout"].as_str().unwrap_or_default();
            let stderr = v["stderr"].as_str().unwrap_or_default();
            if !stdout.is_empty() {
                s.push_str(&format!("stdout:\n{}\n", cut(stdout)));
            }
            if !stderr.is_empty() {
                s.push_str(&format!("stderr:\n{}\n", cut(stderr)));
            }
            let code = match &v["exitCode"] {
                Value::Null => "none".to_string(),
                c => c.to_string(),
            };
            s.push_str(&format!(
                "exit code: {code} ({}), {} ms",
                v["reason"].as_str().unwrap_or_default(),
                v["durationMs"]
            ));
            if v["truncated"] == true {
                s.push_str("\n[output over the limit was cut]");
            }
            s
        }
        "read_file" => v["content"].as_str().map(cut).unwrap_or_default(),
        "create_sandbox" => format!("Created sandbox {}.", v["taskId"].as_str().unwrap_or("")),
        _ => v.to_string(),
    }
}

/// Structured content keeps what fits: the streams cut as in the text.
pub(super) fn structured(name: &str, mut v: Value) -> Value {
    if matches!(name, "run_code" | "run_command") {
        for key in ["stdout", "stderr"] {
            if let Some(s) = v[key].as_str() {
                if s.len() > TEXT_LIMIT {
                    v[key] = Value::String(cut(s));
                    v["truncated"] = Value::Bool(true);
                }
            }
        }
    }
    if name == "read_file" {
        if let Some(s) = v["content"].as_str() {
            if s.len() > TEXT_LIMIT {
                v["content"] = Value::String(cut(s));
                v["truncated"] = Value::Bool(true);
            }
        }
    }
    v
}
