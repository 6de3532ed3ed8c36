//! A sandbox's files over HTTP: list, read (a directory lists), write with
//! `If-Match`, delete.

use super::*;

async fn file(session: &Arc<Session>, op: FileOp, writes: bool) -> Result<FileReply, AppError> {
    Ok(file_service::file_op(session, op, writes).await?)
}

/// A file operation's answer: a listing as JSON, a file's bytes with its
/// ETag, a write's ETag, or nothing.
fn file_response(reply: FileReply) -> Response {
    match reply {
        FileReply::Listing(list) => {
            Json(serde_json::json!({ "entries": entries(list) })).into_response()
        }
        FileReply::Data { data, version } => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (header::ETAG, format!("\"{version}\"")),
            ],
            data,
        )
            .into_response(),
        FileReply::Written { version } => (
            StatusCode::NO_CONTENT,
            [(header::ETAG, format!("\"{version}\""))],
        )
            .into_response(),
        FileReply::Done => StatusCode::NO_CONTENT.into_response(),
    }
}

pub(super) async fn list_root(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(task_id): Path<String>,
) -> Result<Response, AppError> {
    let session = find(&state, &caller, &task_id)?;
    Ok(file_response(
        file(
            &session,
            FileOp::List {
                path: String::new(),
            },
            false,
        )
        .await?,
    ))
}

pub(super) async fn read_file(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((task_id, path)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let session = find(&state, &caller, &task_id)?;
    Ok(file_response(
        file_service::read_or_list(&session, path).await?,
    ))
}

pub(super) async fn write_file(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((task_id, path)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, AppError> {
    let session = find(&state, &caller, &task_id)?;
    // `If-Match` with the ETag of a read or a write: a write over a file
    // that changed since is refused with 412 (`*` or none: write anyway).
    let if_version = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_string()
        })
        .filter(|v| v != "*");
    Ok(file_response(
        file(
            &session,
            FileOp::Write {
                path,
                data: body.to_vec(),
                parents: true,
                if_version,
            },
            true,
        )
        .await?,
    ))
}

pub(super) async fn delete_file(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((task_id, path)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    let session = find(&state, &caller, &task_id)?;
    file(&session, FileOp::Delete { path }, true).await?;
    Ok(StatusCode::NO_CONTENT)
}
