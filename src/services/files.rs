//! File operations on an owner's workspace, for every front door (the
//! page's socket, the REST API): paths are checked before a sandbox is
//! started, and a write counts as activity.

use super::ServiceError;
use crate::sandbox::SandboxError;
use crate::sessions::Session;
use replbox_protocol::{EntryKind, FileError, FileOp, FileReply};
use std::sync::Arc;

/// How a file's bytes travel as text: as they are when they are UTF-8,
/// else in base64.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
}

/// A file's bytes as text for a client: the one place that decides UTF-8
/// or base64, for the page's socket and MCP's read_file alike.
pub fn as_text(data: Vec<u8>) -> (String, Encoding) {
    use base64::Engine as _;
    match String::from_utf8(data) {
        Ok(text) => (text, Encoding::Utf8),
        Err(e) => (
            base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            Encoding::Base64,
        ),
    }
}

/// Runs a file operation on the session's sandbox (starting it if needed).
pub async fn file_op(
    sandbox: &Arc<Session>,
    op: FileOp,
    writes: bool,
) -> Result<FileReply, ServiceError> {
    // Paths are checked here too, so a bad one is refused without a
    // sandbox; the agent is sent them relative to /workspace.
    let mut op = op;
    match &mut op {
        FileOp::Read { path }
        | FileOp::List { path }
        | FileOp::Mkdir { path }
        | FileOp::Delete { path }
        | FileOp::Write { path, .. } => {
            *path = replbox_protocol::path::normalize(path)?;
        }
        FileOp::Rename { from, to } => {
            *from = replbox_protocol::path::normalize(from)?;
            *to = replbox_protocol::path::normalize(to)?;
        }
    }
    let handle = sandbox.ensure().await?;
    let reply = handle.file(op).await?;
    if writes {
        sandbox.touch().await;
    }
    Ok(reply)
}

/// A file's bytes, or a directory's listing when the path is one.
pub async fn read_or_list(sandbox: &Arc<Session>, path: String) -> Result<FileReply, ServiceError> {
    match file_op(sandbox, FileOp::Read { path: path.clone() }, false).await {
        Err(ServiceError::Sandbox(SandboxError::File(FileError::IsADirectory(_)))) => {
            file_op(sandbox, FileOp::List { path }, false).await
        }
        other => other,
    }
}

/// Every file of a workspace with its bytes (files that vanish meanwhile
/// are left out; one too large for a read is refused by name), or `None`
/// past the limits. The limit
/// on bytes holds for what is read, not only for what the listing said: a
/// program may grow its files between the two.
pub async fn workspace_files(
    handle: &crate::sandbox::SandboxHandle,
    max_files: usize,
    max_bytes: u64,
) -> Result<Option<std::collections::BTreeMap<String, Vec<u8>>>, ServiceError> {
    let Some(paths) = workspace_paths(handle, max_files, max_bytes).await? else {
        return Ok(None);
    };
    let mut files = std::collections::BTreeMap::new();
    let mut read = 0u64;
    for path in paths {
        match handle.read_file(path.clone()).await {
            Ok(d) => {
                read += d.len() as u64;
                if read > max_bytes {
                    return Ok(None);
                }
                files.insert(path, d);
            }
            // Never left out unsaid: a Check without it would grade
            // another program than the student's.
            Err(crate::sandbox::SandboxError::File(replbox_protocol::FileError::TooLarge {
                limit,
            })) => return Err(ServiceError::FileTooLarge { path, limit }),
            // A file that went away meanwhile is simply not there.
            Err(_) => {}
        }
    }
    Ok(Some(files))
}

/// Every file of a workspace (paths, sorted), or `None` past the limits.
async fn workspace_paths(
    handle: &crate::sandbox::SandboxHandle,
    max_files: usize,
    max_bytes: u64,
) -> Result<Option<Vec<String>>, ServiceError> {
    let mut files = Vec::new();
    let mut dirs = vec![String::new()];
    let mut total = 0u64;
    while let Some(dir) = dirs.pop() {
        let FileReply::Listing(entries) = handle.file(FileOp::List { path: dir.clone() }).await?
        else {
            continue;
        };
        for e in entries {
            let path = if dir.is_empty() {
                e.name.clone()
            } else {
                format!("{dir}/{}", e.name)
            };
            match e.kind {
                EntryKind::Dir => dirs.push(path),
                EntryKind::File => {
                    total += e.size;
                    files.push(path);
                }
                _ => {}
            }
            if files.len() > max_files || total > max_bytes {
                return Ok(None);
            }
        }
    }
    files.sort();
    Ok(Some(files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_when_utf8_else_base64() {
        assert_eq!(
            as_text("héllo".into()),
            ("héllo".to_string(), Encoding::Utf8)
        );
        assert_eq!(
            as_text(vec![0xff, 0]),
            ("/wA=".to_string(), Encoding::Base64)
        );
    }
}
