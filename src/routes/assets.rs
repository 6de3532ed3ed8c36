//! The front end's bundles, embedded with rust-embed from `static/dist`
//! (built by `make`), served with their content type, a cache policy and
//! the page's Content-Security-Policy.

use super::AppState;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "static/dist/"]
#[allow_missing = true]
struct Dist;

pub fn router() -> Router<AppState> {
    Router::new().route("/assets/{*path}", get(asset))
}

/// The Content-Security-Policy of every page: scripts and styles from this
/// origin only (styles may be inline: the editor and terminal set them), the
/// socket to this origin, kernel output in sandboxed frames only.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; frame-src 'self' blob: data:; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A short content hash of an asset, for cache-busting URLs.
pub fn version(path: &str) -> String {
    Dist::get(path)
        .map(|f| hex::encode(&f.metadata.sha256_hash()[..6]))
        .unwrap_or_else(|| "missing".into())
}

/// The chunks a page's script imports at once (`preload.json`, written by
/// static/build.mjs), as the URLs that script asks for: the page names
/// them in `<link rel="modulepreload">` so they load beside it.
pub fn preload(page: &str) -> Vec<String> {
    let Some(file) = Dist::get("preload.json") else {
        return Vec::new();
    };
    let all: std::collections::HashMap<String, Vec<String>> =
        serde_json::from_slice(&file.data).unwrap_or_default();
    all.get(page)
        .into_iter()
        .flatten()
        .filter(|p| Dist::get(p).is_some())
        .map(|p| format!("/assets/{p}"))
        .collect()
}

/// Whether the front end was built (it is build output, not committed).
pub fn built() -> bool {
    Dist::get("ide.js").is_some()
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(file) = Dist::get(&path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    // The build's gzipped copy, when the browser takes gzip: compressed
    // once at build time, not on each request.
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            // `gzip`, unless refused with `q=0`.
            v.split(',').any(|e| {
                let mut parts = e.split(';').map(str::trim);
                parts.next() == Some("gzip")
                    && !parts.any(|p| {
                        p.strip_prefix("q=")
                            .and_then(|q| q.parse::<f32>().ok())
                            .is_some_and(|q| q == 0.0)
                    })
            })
        });
    let gzipped = gzip.then(|| Dist::get(&format!("{path}.gz"))).flatten();
    // One tag per body: the gzipped one is another representation.
    let etag = format!(
        "\"{}{}\"",
        hex::encode(&file.metadata.sha256_hash()[..12]),
        if gzipped.is_some() { "-gz" } else { "" }
    );

    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mime = file.metadata.mimetype().to_string();
    let encoded = gzipped.is_some();
    let mut resp = match gzipped {
        Some(gz) => gz.data.into_owned().into_response(),
        None => file.data.into_owned().into_response(),
    };
    let h = resp.headers_mut();
    if encoded {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&mime)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    // URLs carry the content hash (?v=), so a year is safe.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}
