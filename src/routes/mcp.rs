//! The Model Context Protocol front door: `/mcp`, Streamable HTTP (rmcp),
//! behind the API tokens. Its tools are the REST API's operations under the
//! names agents are configured with; they keep the API's owner rules and
//! limits, because they call the same functions. A failure is a tool result
//! with `isError` and our sentence, never a protocol error. docs/mcp.md.

use super::frames::entries;
use super::token_auth::ApiCaller;
use super::AppState;
use crate::error::ErrorCode;
use crate::error::{clip, echo, AppError, REASON_CHARS};
use crate::services::files::{self, file_op, Encoding};
use crate::services::runs::RunRequest;
use crate::services::tasks::{CreateRequest, ExecResult, OneShotRequest, Tenant};
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use replbox_protocol::{FileOp, FileReply};
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;
use tracing::Instrument;

mod args;
mod errors;
mod text;

use args::{
    tool, CreateSandbox, DestroySandbox, ListFiles, ReadFile, RunCode, RunCommand, WriteFile,
};
use text::{structured, text_of};

/// A request's body at most: a file of the largest size the API takes,
/// escaped as JSON, and the envelope.
const BODY_LIMIT: usize = 24 * 1024 * 1024;

pub fn router(state: AppState) -> Router<AppState> {
    let config = StreamableHttpServerConfig::default()
        // Stateless: no server-side session per client to hold or expire;
        // every call carries its token.
        .with_legacy_session_mode(false)
        .with_json_response(true)
        // The bearer token, not the Host header, is what lets a caller in
        // (a page elsewhere cannot add it), and deployments have their own
        // host names.
        .disable_allowed_hosts()
        .with_max_request_body_bytes(BODY_LIMIT)
        .with_cancellation_token(state.shutdown.child_token());
    let tools_state = state.clone();
    let service: StreamableHttpService<Tools, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(Tools::new(tools_state.clone())),
        Default::default(),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn(errors::json_errors))
        .layer(axum::middleware::from_fn_with_state(state, require_token))
}

/// Lets in a request with one of the API tokens; anything else is our 401.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    match ApiCaller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Clone)]
pub struct Tools {
    state: AppState,
    list: Arc<Vec<Tool>>,
}

impl Tools {
    fn new(state: AppState) -> Self {
        let list = vec![
            tool::<RunCode>(
                "run_code",
                "Run a program in a fresh throwaway sandbox (no network, removed after): \
                 stdout, stderr, exit code and duration.",
            ),
            tool::<CreateSandbox>(
                "create_sandbox",
                "Create a persistent sandbox (a Linux container with Python, Node, Go and \
                 Bash; no network). Answers its taskId.",
            ),
            tool::<RunCommand>(
                "run_command",
                "Run a shell command in a sandbox's /workspace: stdout, stderr, exit code \
                 and duration.",
            ),
            tool::<WriteFile>(
                "write_file",
                "Write a text file in a sandbox's workspace. Answers the file's version.",
            ),
            tool::<ReadFile>(
                "read_file",
                "Read a file of a sandbox's workspace: its text, or base64 when it is not \
                 UTF-8.",
            ),
            tool::<ListFiles>(
                "list_files",
                "List a folder of a sandbox's workspace: name, kind, size, modified.",
            ),
            tool::<DestroySandbox>("destroy_sandbox", "Remove a sandbox and its files."),
        ];
        Self {
            state,
            list: Arc::new(list),
        }
    }

    async fn call(&self, caller: ApiCaller, name: &str, args: Value) -> Result<Value, AppError> {
        let services = &self.state.services;
        let tenant = &caller.0;
        match name {
            "run_code" => {
                let a: RunCode = parse(args)?;
                let r = services
                    .run_one_shot(
                        tenant,
                        OneShotRequest {
                            language: a.language,
                            code: Some(a.code),
                            files: None,
                            entry: None,
                            stdin: a.stdin,
                            timeout_ms: a.timeout_ms,
                        },
                    )
                    .await?;
                Ok(exec_value(r))
            }
            "create_sandbox" => {
                let a: CreateSandbox = parse(args)?;
                let info = services
                    .create_task(
                        tenant,
                        CreateRequest {
                            task_id: a.task_id,
                            ttl_seconds: a.ttl_seconds,
                            ..Default::default()
                        },
                    )
                    .await?;
                Ok(serde_json::to_value(info).unwrap_or_default())
            }
            "run_command" => {
                let a: RunCommand = parse(args)?;
                let run = RunRequest {
                    command: Some(a.command),
                    timeout_ms: a.timeout_ms,
                    ..Default::default()
                };
                let r = services.exec_task(tenant, &a.task_id, run, a.stdin).await?;
                Ok(exec_value(r))
            }
            "write_file" => {
                let a: WriteFile = parse(args)?;
                let op = FileOp::Write {
                    path: a.path.clone(),
                    data: a.content.into_bytes(),
                    parents: true,
                    if_version: None,
                };
                match self.file(tenant, &a.task_id, op, true).await? {
                    FileReply::Written { version } => {
                        Ok(json!({"path": a.path, "version": version}))
                    }
                    _ => Err(AppError::internal()),
                }
            }
            "read_file" => {
                let a: ReadFile = parse(args)?;
                let op = FileOp::Read {
                    path: a.path.clone(),
                };
                match self.file(tenant, &a.task_id, op, false).await? {
                    FileReply::Data { data, version } => Ok(match files::as_text(data) {
                        (text, Encoding::Utf8) => json!({
                            "path": a.path, "version": version, "encoding": "utf-8", "content": text,
                        }),
                        (text, Encoding::Base64) => json!({
                            "path": a.path, "version": version, "encoding": "base64", "content": text,
                            "note": "The file is not UTF-8 text: its bytes are given in base64.",
                        }),
                    }),
                    _ => Err(AppError::internal()),
                }
            }
            "list_files" => {
                let a: ListFiles = parse(args)?;
                let path = a.path.unwrap_or_default();
                let op = FileOp::List { path: path.clone() };
                match self.file(tenant, &a.task_id, op, false).await? {
                    FileReply::Listing(list) => Ok(json!({"path": path, "entries": entries(list)})),
                    _ => Err(AppError::internal()),
                }
            }
            "destroy_sandbox" => {
                let a: DestroySandbox = parse(args)?;
                services.remove_task(tenant, &a.task_id).await?;
                Ok(json!({"taskId": a.task_id, "destroyed": true}))
            }
            other => Err(AppError::bad_request(
                ErrorCode::UnknownTool,
                format!(
                    "There is no tool {}: the tools are run_code, create_sandbox, \
                     run_command, write_file, read_file, list_files and destroy_sandbox.",
                    echo(other)
                ),
            )),
        }
    }
}

impl Tools {
    /// A file operation on the caller's sandbox `task_id` (another
    /// token's is `not_found`, as in the REST API).
    async fn file(
        &self,
        tenant: &Tenant,
        task_id: &str,
        op: FileOp,
        writes: bool,
    ) -> Result<FileReply, AppError> {
        let session = self.state.services.find_task(tenant, task_id)?;
        Ok(file_op(&session, op, writes).await?)
    }
}

/// Arguments that do not fit the tool's schema are a tool error an agent
/// can read and correct, not a protocol failure.
fn parse<T: DeserializeOwned>(args: Value) -> Result<T, AppError> {
    serde_json::from_value(args).map_err(|e| {
        AppError::bad_request(
            ErrorCode::BadArguments,
            format!("Bad arguments: {}.", clip(&e.to_string(), REASON_CHARS)),
        )
    })
}

/// A run's answer: the API's fields as structured content; the text gives
/// each stream cut to `TEXT_LIMIT` with a marker.
fn exec_value(r: ExecResult) -> Value {
    serde_json::to_value(r).unwrap_or_default()
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("replbox", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Sandboxes: Linux containers with Python, Node.js, Go and Bash, no network. \
                 run_code for a one-off program; create_sandbox, then run_command and the \
                 file tools for work that keeps state; destroy_sandbox when done.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.list.as_ref().clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<ApiCaller>())
            .cloned()
            .ok_or_else(|| ErrorData::internal_error("no caller", None))?;
        let name = request.name.to_string();
        let args = Value::Object(request.arguments.unwrap_or_default());
        let span = tracing::info_span!("mcp", tool = %name);
        let result = match self.call(caller, &name, args).instrument(span).await {
            Ok(v) => {
                let text = text_of(&name, &v);
                let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
                r.structured_content = Some(structured(&name, v));
                r
            }
            Err(e) => {
                let body = json!({"error": {"code": e.code.as_str(), "message": e.message}});
                let mut r = CallToolResult::error(vec![ContentBlock::text(e.message.clone())]);
                r.structured_content = Some(body);
                r
            }
        };
        Ok(result.into())
    }
}
