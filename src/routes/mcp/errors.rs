//! Every HTTP-level refusal at /mcp is our JSON error. rmcp answers some
//! requests itself, in plain text (405 for GET and DELETE, which a
//! stateless server does not serve; 406 for a wrong `Accept`; 413 for a
//! body past the limit; 415 for a body not sent as JSON; 400 for a bad
//! `MCP-Protocol-Version`): this layer gives those our shape, keeping the
//! status, `Allow`, and rmcp's own words as a detail. A JSON-RPC error
//! (JSON, naming the request it answers) is the protocol's, read by MCP
//! clients, and passes untouched.

use crate::error::{AppError, ErrorCode};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// rmcp's own words kept at most (its bodies are one short sentence).
const DETAIL: usize = 200;

pub(super) async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let detail = axum::body::to_bytes(body, 4 * DETAIL)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let mut out = refusal(status, &detail).into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

/// Our error for a plain-text answer of rmcp's with `status`.
fn refusal(status: StatusCode, detail: &str) -> AppError {
    let (code, sentence) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "/mcp takes POST only: the server is stateless (no GET event stream, no session to DELETE).",
        ),
        StatusCode::NOT_ACCEPTABLE => (
            ErrorCode::NotAcceptable,
            "An MCP request must accept both application/json and text/event-stream (its Accept header).",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::BodyTooLarge,
            "The request's body is larger than /mcp takes.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::NotJson,
            "An MCP request's body is JSON: send Content-Type: application/json.",
        ),
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "There is no such MCP session or route."),
        s if s.is_server_error() => (ErrorCode::Internal, "The MCP server failed."),
        _ => (ErrorCode::BadMcpRequest, "The MCP request is not valid."),
    };
    let mut detail = detail.to_string();
    if detail.len() > DETAIL {
        let mut end = DETAIL;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
    }
    let message = if detail.is_empty() {
        sentence.to_string()
    } else {
        format!("{sentence} ({detail})")
    };
    AppError::new(status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmcp_statuses_become_our_codes() {
        let e = refusal(StatusCode::NOT_ACCEPTABLE, "Not Acceptable: x");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::NOT_ACCEPTABLE, ErrorCode::NotAcceptable)
        );
        assert!(e.message.ends_with("(Not Acceptable: x)"));
        let e = refusal(StatusCode::BAD_REQUEST, &"é".repeat(500));
        assert_eq!(e.code, ErrorCode::BadMcpRequest);
        assert!(e.message.len() < 300);
    }
}
