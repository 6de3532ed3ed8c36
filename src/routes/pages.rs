//! The pages a browser opens (askama templates), and the workspace as a zip.
//! Visiting a page gives the browser its session.

use super::browser_session::BrowserSession;
use super::client_addr::ClientAddr;
use super::{assets, browser_session, AppState};
use crate::error::{AppError, ErrorCode};
use crate::sessions::Session;
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::io::Write;
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(ide))
        .route("/workspace.zip", get(download))
        .route("/notebook/{*path}", get(notebook))
}

#[derive(Template)]
#[template(path = "ide.html")]
pub struct IdePage {
    /// The first script: opens the socket while `js` loads (boot.js).
    pub boot: String,
    pub js: String,
    /// The chunks `js` imports at once, fetched beside it.
    pub preload: Vec<String>,
    pub css: String,
    pub built: bool,
    /// On an exercise's page: the exercise.
    pub exercise: Option<ExerciseView>,
}

pub struct ExerciseView {
    pub id: String,
    pub prompt_html: String,
    pub points: u32,
}

impl IdePage {
    pub fn new(exercise: Option<ExerciseView>) -> Self {
        IdePage {
            boot: format!("/assets/boot.js?v={}", assets::version("boot.js")),
            js: format!("/assets/ide.js?v={}", assets::version("ide.js")),
            preload: assets::preload("ide"),
            css: format!("/assets/ide.css?v={}", assets::version("ide.css")),
            built: assets::built(),
            exercise,
        }
    }
}

#[derive(Template)]
#[template(path = "notebook.html")]
struct NotebookPage {
    js: String,
    preload: Vec<String>,
    css: String,
    path: String,
}

async fn notebook(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: BrowserSession,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Result<Response, AppError> {
    browser_session::owner(&state, &session, client).await?;
    let path = replbox_protocol::path::normalize(&path)?;
    if !path.ends_with(".ipynb") {
        return Err(AppError::bad_request(
            ErrorCode::NotANotebook,
            "Notebooks are .ipynb files.",
        ));
    }
    render(&NotebookPage {
        js: format!("/assets/notebook.js?v={}", assets::version("notebook.js")),
        preload: assets::preload("notebook"),
        css: format!("/assets/notebook.css?v={}", assets::version("notebook.css")),
        path,
    })
}

/// Renders a template into a page with the security headers.
pub fn render(t: &impl Template) -> Result<Response, AppError> {
    let html = t.render().map_err(|e| {
        tracing::error!(error = %e, "template");
        AppError::internal()
    })?;
    Ok(page(html))
}

/// A page with the security headers every page carries.
pub fn page(html: String) -> Response {
    let mut resp = Html(html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(assets::CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

async fn ide(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: BrowserSession,
) -> Result<Response, AppError> {
    browser_session::owner(&state, &session, client).await?;
    render(&IdePage::new(None))
}

/// Files a zip of the workspace may hold, and their total size.
const ZIP_MAX_FILES: usize = 10_000;
const ZIP_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Zips are built in memory (the files, then the archive): one at a time
/// on the whole server, so downloads cost at most about twice
/// `ZIP_MAX_BYTES` together, plus one file's read (8 MiB) past it; the
/// others wait up to `ZIP_WAIT`, then 503.
static ZIPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
const ZIP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn download(
    State(state): State<AppState>,
    session: BrowserSession,
) -> Result<Response, AppError> {
    let owner = browser_session::existing_owner(&session).await?;
    let sandbox = browser_session::sandbox(&state, &owner).await?;
    let busy = || AppError {
        retry_after: Some(10),
        ..AppError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Busy,
            "Other workspaces are being zipped right now; try again in a few seconds.",
        )
    };
    let _turn = tokio::time::timeout(ZIP_WAIT, ZIPS.acquire())
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
    let zip = zip_workspace(&sandbox).await?;
    let mut resp = zip.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"workspace.zip\""),
    );
    Ok(resp)
}

async fn zip_workspace(sandbox: &Arc<Session>) -> Result<Vec<u8>, AppError> {
    let handle = sandbox.ensure().await?;
    let files = crate::services::files::workspace_files(&handle, ZIP_MAX_FILES, ZIP_MAX_BYTES)
        .await?
        .ok_or_else(|| {
            AppError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::WorkspaceTooLarge,
                "The workspace is too large to download as one zip; use the terminal to pack part of it.",
            )
        })?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (path, data) in files {
        let write = zip
            .start_file(path.as_str(), options)
            .and_then(|_| zip.write_all(&data).map_err(Into::into));
        if write.is_err() {
            return Err(AppError::internal());
        }
    }
    zip.finish()
        .map(|c| c.into_inner())
        .map_err(|_| AppError::internal())
}
