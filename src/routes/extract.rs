//! Request bodies whose errors are ours: JSON (`JsonBody`) and raw bytes
//! (`RawBody`), each refused with a clear JSON error.

use crate::error::{clip, AppError, ErrorCode, REASON_CHARS};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

/// The largest request body (a file write, an exec with its stdin).
pub const API_BODY_LIMIT: usize = 64 * 1024 * 1024;

fn body_too_large() -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::BodyTooLarge,
        format!(
            "The request body is larger than {} MiB.",
            API_BODY_LIMIT >> 20
        ),
    )
}

/// A raw body whose errors are ours. A body past the limit is read to its
/// end (and dropped) before the 413, so the client hears the answer rather
/// than a reset connection.
pub struct RawBody(pub Bytes);

/// How much of an oversized body is drained before giving up on it.
const DRAIN_LIMIT: usize = 1024 * 1024 * 1024;

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = AppError;

    async fn from_request(req: axum::extract::Request, _state: &S) -> Result<Self, AppError> {
        use futures::StreamExt;
        let mut stream = req.into_body().into_data_stream();
        let mut buf = bytes::BytesMut::new();
        let mut seen = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                AppError::bad_request(ErrorCode::BadBody, "The request body could not be read.")
            })?;
            seen += chunk.len();
            if seen <= API_BODY_LIMIT {
                buf.extend_from_slice(&chunk);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
        if seen > API_BODY_LIMIT {
            return Err(body_too_large());
        }
        Ok(RawBody(buf.freeze()))
    }
}

/// A JSON body whose errors are ours: `{"error": {"code": "bad_json", ...}}`.
/// A body must say it is JSON (`application/json`, or a `+json` type):
/// anything else is 415, so a form or a `text/plain` post from another
/// site is never read as one. An empty body without a type is `{}`.
pub struct JsonBody<T>(pub T);

/// Whether the request's Content-Type is JSON.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .is_some_and(|t| {
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        })
}

fn not_json() -> AppError {
    AppError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::NotJson,
        "The request body must be JSON, sent with `Content-Type: application/json`.",
    )
}

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AppError> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                body_too_large()
            } else {
                // Stalled past its deadline, or the connection went away.
                AppError::bad_request(
                    ErrorCode::BodyIncomplete,
                    "The request body did not arrive in full in time; send it again.",
                )
            }
        })?;
        let bytes = if bytes.is_empty() && !json {
            Bytes::from_static(b"{}")
        } else if !json {
            return Err(not_json());
        } else if bytes.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            AppError::bad_request(
                ErrorCode::BadJson,
                format!(
                    "The request body is not valid: {}.",
                    clip(&e.to_string(), REASON_CHARS)
                ),
            )
        })
    }
}
