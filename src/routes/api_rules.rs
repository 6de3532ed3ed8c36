//! The REST API's rules at its edge: query strings, unknown routes and
//! wrong methods answered with our JSON errors (never the framework's
//! plain text), the bounds of numbers a request may give, and the OpenAPI
//! document as served, with this server's languages and images in it.

use super::AppState;
use crate::error::{clip, AppError, ErrorCode, REASON_CHARS};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// A query string whose errors are ours: 400 `bad_query`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| {
                AppError::bad_request(
                    ErrorCode::BadQuery,
                    format!(
                        "The query string is not valid: {}.",
                        clip(&query_reason(&e), REASON_CHARS)
                    ),
                )
            })
    }
}

/// serde's reason, without axum's own prefix.
fn query_reason(e: &axum::extract::rejection::QueryRejection) -> String {
    let text = e.body_text();
    text.strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text)
        .to_string()
}

/// The longest `?wait=` on a sandbox's status, in seconds.
pub const MAX_WAIT_SECS: f64 = 120.0;

/// `?wait=SECONDS`: 0 to 120.
pub fn wait_secs(wait: Option<f64>) -> Result<Option<f64>, AppError> {
    match wait {
        None => Ok(None),
        Some(w) if (0.0..=MAX_WAIT_SECS).contains(&w) => Ok(Some(w)),
        Some(_) => Err(AppError::bad_request(
            ErrorCode::BadWait,
            "`wait` is a number of seconds from 0 to 120.",
        )),
    }
}

/// Any path under /api/ that names no route.
pub async fn no_route() -> AppError {
    AppError::not_found("There is no such API route: see /api/v1/openapi.json.")
}

/// A route asked with a method it does not take (the router adds `Allow`).
pub async fn wrong_method() -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "This route does not take that method: the Allow header lists those it takes.",
    )
}

/// The OpenAPI document: `docs/openapi.json`, with the languages and the
/// images this server offers as the enums of `language` and `imageId`.
pub async fn openapi(State(state): State<AppState>) -> Response {
    let doc = document(
        state.services.languages.keys().cloned().collect(),
        std::iter::once(state.config.sandbox.image.clone())
            .chain(state.config.sandbox.allowed_images.iter().cloned())
            .collect(),
    );
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response()
}

/// The document with these languages and images.
pub fn document(languages: Vec<String>, images: Vec<String>) -> Value {
    let mut doc: Value =
        serde_json::from_str(include_str!("../../docs/openapi.json")).expect("docs/openapi.json");
    let schemas = &mut doc["components"]["schemas"];
    schemas["Run"]["properties"]["language"]["enum"] = json!(languages);
    // Nullable: null (the default image) is one of its values.
    let mut images: Vec<Value> = images.into_iter().map(Value::String).collect();
    images.push(Value::Null);
    schemas["CreateSandbox"]["properties"]["imageId"]["enum"] = Value::Array(images);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_this_servers_languages_and_images() {
        let doc = document(vec!["ruby".into()], vec!["a:1".into(), "b:2".into()]);
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["Run"]["properties"]["language"]["enum"],
            json!(["ruby"])
        );
        assert_eq!(
            schemas["CreateSandbox"]["properties"]["imageId"]["enum"],
            json!(["a:1", "b:2", null])
        );
    }

    #[test]
    fn bounds_are_refused_clearly() {
        use crate::services::tasks::timeout_ms;
        let code = |t| AppError::from(timeout_ms(t).unwrap_err()).code;
        assert_eq!(code(Some(0)), "bad_timeout");
        assert_eq!(code(Some(900_001)), "bad_timeout");
        assert_eq!(timeout_ms(Some(1)).unwrap(), Some(1));
        assert_eq!(timeout_ms(None).unwrap(), None);
        assert_eq!(wait_secs(Some(-1.0)).unwrap_err().code, "bad_wait");
        assert_eq!(wait_secs(Some(120.5)).unwrap_err().code, "bad_wait");
        assert_eq!(wait_secs(Some(f64::NAN)).unwrap_err().code, "bad_wait");
        assert_eq!(wait_secs(Some(0.0)).unwrap(), Some(0.0));
    }
}
