//! The tools' arguments: each a struct whose JSON Schema `tools/list`
//! shows (names and required sets are what agents are configured by).

use rmcp::model::Tool;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RunCode {
    /// One of the server's languages: python, javascript, bash, go.
    pub(super) language: String,
    /// The program's source.
    pub(super) code: String,
    /// Given to the program on its standard input.
    pub(super) stdin: Option<String>,
    /// Wall-clock limit in milliseconds (default 60000, at most 900000).
    #[schemars(range(min = 1, max = 900000))]
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateSandbox {
    /// A name for the sandbox (1-63 letters, digits, '-', '_' or '.');
    /// one is made up when absent.
    pub(super) task_id: Option<String>,
    /// Idle seconds before the sandbox stops (60-86400, default 3600); its
    /// files are kept for the server's retention period.
    #[schemars(range(min = 60, max = 86400))]
    pub(super) ttl_seconds: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RunCommand {
    /// The sandbox, as create_sandbox answered.
    pub(super) task_id: String,
    /// A shell command line, run by /bin/sh in /workspace.
    pub(super) command: String,
    /// Given to the command on its standard input.
    pub(super) stdin: Option<String>,
    /// Wall-clock limit in milliseconds (default 60000, at most 900000).
    #[schemars(range(min = 1, max = 900000))]
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct WriteFile {
    pub(super) task_id: String,
    /// A path in the workspace: relative, or absolute under /workspace.
    pub(super) path: String,
    /// The file's whole new content, as text. Parent folders are made.
    pub(super) content: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ReadFile {
    pub(super) task_id: String,
    /// A path in the workspace: relative, or absolute under /workspace.
    pub(super) path: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ListFiles {
    pub(super) task_id: String,
    /// A folder in the workspace (default: the workspace itself).
    pub(super) path: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DestroySandbox {
    pub(super) task_id: String,
}

fn schema<T: JsonSchema>() -> Arc<Map<String, Value>> {
    match serde_json::to_value(schemars::schema_for!(T)) {
        Ok(Value::Object(map)) => Arc::new(map),
        _ => unreachable!("a derived schema is an object"),
    }
}

pub(super) fn tool<T: JsonSchema>(name: &'static str, description: &'static str) -> Tool {
    Tool::new(name, description, schema::<T>())
}
