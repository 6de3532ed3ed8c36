//! Turning a run request (a language and its files, a command line, or an
//! argv) into the files to write and the job to start.

use super::ServiceError;
use crate::config::{Config, Language};
use crate::sandbox::Collected;
use crate::sessions::{JobKind, JobRecord, Session};
use replbox_protocol::{path, Command, JobSpec, PtySize};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Below the services: grading uses them too.
pub use crate::sandbox::{exit_reason, shell_quote};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequest {
    #[serde(rename = "ref")]
    pub reference: Option<Value>,
    /// A language from the server's table; runs `entry` (or `code`).
    pub language: Option<String>,
    /// Files written before the run (path -> UTF-8 text).
    pub files: Option<BTreeMap<String, String>>,
    pub entry: Option<String>,
    /// Source of a one-file program in `language`.
    pub code: Option<String>,
    /// A shell command line.
    pub command: Option<String>,
    pub argv: Option<Vec<String>>,
    pub stdin: Option<String>,
    pub cwd: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    pub pty: Option<PtyRequest>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PtyRequest {
    pub rows: u16,
    pub cols: u16,
}

/// What a run request asks for.
#[derive(Debug)]
pub struct RunPlan {
    pub files: Vec<(String, String)>,
    pub spec: JobSpec,
    pub stdin: Option<String>,
}

/// Writes a run's files into its sandbox (parents made as needed).
pub async fn write_files(
    handle: &crate::sandbox::SandboxHandle,
    files: Vec<(String, String)>,
) -> Result<(), ServiceError> {
    for (path, text) in files {
        handle.write_file(path, text.into_bytes()).await?;
    }
    Ok(())
}

/// Writes a run's files, starts it, and feeds its stdin.
pub async fn start_run(
    sandbox: &Arc<Session>,
    plan: RunPlan,
    reference: Option<serde_json::Value>,
) -> Result<Arc<JobRecord>, ServiceError> {
    if !plan.files.is_empty() {
        let handle = sandbox.ensure().await?;
        write_files(&handle, plan.files).await?;
    }
    let record = sandbox.run(plan.spec, JobKind::Run, reference).await?;
    if let Some(stdin) = plan.stdin {
        record.control.stdin(stdin).await?;
        record.control.close_stdin().await?;
    }
    Ok(record)
}

/// Output the API returns at most per call.
pub const API_OUTPUT_LIMIT: u64 = 16 * 1024 * 1024;
pub const API_DEFAULT_TIMEOUT_MS: u64 = 60_000;
pub const API_MAX_TIMEOUT_MS: u64 = 15 * 60_000;

/// Runs a job to its end on a session's sandbox, with its stdin.
pub async fn run_to_end(
    session: &Arc<Session>,
    mut spec: JobSpec,
    stdin: Option<String>,
) -> Result<Collected, ServiceError> {
    let timeout = spec
        .timeout_ms
        .unwrap_or(API_DEFAULT_TIMEOUT_MS)
        .clamp(1, API_MAX_TIMEOUT_MS);
    spec.timeout_ms = Some(timeout);
    spec.output_limit = Some(
        spec.output_limit
            .unwrap_or(API_OUTPUT_LIMIT)
            .min(API_OUTPUT_LIMIT),
    );
    spec.pty = None;
    let handle = session.ensure().await?;
    session.touch().await;
    let job = handle.spawn(spec).await?;
    let collected = job
        .run_with_stdin(stdin.unwrap_or_default().into_bytes())
        .await;
    session.touch().await;
    Ok(collected?)
}

pub fn plan(
    req: &RunRequest,
    languages: &BTreeMap<String, Language>,
    config: &Config,
) -> Result<RunPlan, ServiceError> {
    let mut files: Vec<(String, String)> = Vec::new();
    for (p, text) in req.files.iter().flatten() {
        files.push((path::normalize(p)?, text.clone()));
    }
    let command = match (&req.language, &req.command, &req.argv) {
        (Some(lang), None, None) => {
            let language = languages
                .get(lang)
                .ok_or_else(|| ServiceError::UnknownLanguage {
                    name: lang.clone(),
                    known: languages.keys().cloned().collect(),
                })?;
            let entry = match (&req.entry, &req.code) {
                (Some(entry), _) => entry.clone(),
                (None, Some(_)) => format!("main.{}", language.extension),
                // The first file of the language, or `main.EXT` (which a
                // workspace may hold already; if not, the program says so).
                (None, None) => files
                    .iter()
                    .map(|(p, _)| p.clone())
                    .find(|p| p.ends_with(&format!(".{}", language.extension)))
                    .unwrap_or_else(|| format!("main.{}", language.extension)),
            };
            // `dir/`, `dir/.` and `/workspace` name no file.
            let named = !matches!(entry.rsplit('/').next(), Some("" | "."));
            let entry = path::normalize(&entry)?;
            if entry.is_empty() || !named {
                return Err(ServiceError::MissingEntry("The entry file has no name."));
            }
            if let Some(code) = &req.code {
                files.push((entry.clone(), code.clone()));
            }
            Command::Shell(language.command.replace("{file}", &shell_quote(&entry)))
        }
        (None, Some(line), None) => Command::Shell(line.clone()),
        (None, None, Some(argv)) if !argv.is_empty() => Command::Argv(argv.clone()),
        _ => return Err(ServiceError::BadRun),
    };
    let mut spec = JobSpec::new(command);
    if let Some(cwd) = &req.cwd {
        spec.cwd = path::normalize(cwd)?;
    }
    spec.env = req.env.clone().unwrap_or_default();
    spec.pty = req.pty.map(|p| PtySize {
        rows: p.rows.clamp(1, 500),
        cols: p.cols.clamp(1, 1000),
    });
    spec.timeout_ms = req
        .timeout_ms
        .or((config.sandbox.job_timeout_ms > 0).then_some(config.sandbox.job_timeout_ms));
    spec.output_limit = Some(config.sandbox.job_output_limit);
    Ok(RunPlan {
        files,
        spec,
        stdin: req.stdin.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> RunRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn language_runs_its_entry() {
        let config = Config::default();
        let langs = config.language_table().unwrap();
        let p = plan(
            &req(r#"{"language":"python","code":"print(1)"}"#),
            &langs,
            &config,
        )
        .unwrap();
        assert_eq!(
            p.spec.command,
            Command::Shell("python3 -u 'main.py'".into())
        );
        assert_eq!(p.files, [("main.py".to_string(), "print(1)".to_string())]);
        let p = plan(
            &req(r#"{"language":"go","entry":"it's.go"}"#),
            &langs,
            &config,
        )
        .unwrap();
        assert!(matches!(p.spec.command, Command::Shell(s) if s.ends_with("go run 'it'\\''s.go'")));
    }

    #[test]
    fn bad_requests_are_refused_clearly() {
        let config = Config::default();
        let langs = config.language_table().unwrap();
        let code = |e: ServiceError| crate::error::AppError::from(e).code.as_str();
        let e = plan(&req(r#"{"language":"cobol","code":""}"#), &langs, &config).unwrap_err();
        assert!(matches!(&e, ServiceError::UnknownLanguage { name, .. } if name == "cobol"));
        assert_eq!(code(e), "unknown_language");
        let e = plan(&req(r#"{"command":"ls","argv":["ls"]}"#), &langs, &config).unwrap_err();
        assert!(matches!(e, ServiceError::BadRun));
        let e = plan(
            &req(r#"{"language":"python","entry":"../x.py"}"#),
            &langs,
            &config,
        )
        .unwrap_err();
        assert_eq!(code(e), "path_outside_workspace");
        let e = plan(&req(r#"{"command":"ls","cwd":"/etc"}"#), &langs, &config).unwrap_err();
        assert_eq!(code(e), "path_outside_workspace");
        let e = plan(
            &req(r#"{"language":"python","entry":"/workspace/"}"#),
            &langs,
            &config,
        )
        .unwrap_err();
        assert_eq!(code(e), "missing_entry");
    }

    #[test]
    fn absolute_paths_in_the_workspace_are_accepted() {
        let config = Config::default();
        let langs = config.language_table().unwrap();
        let p = plan(
            &req(r#"{"command":"ls","cwd":"/workspace"}"#),
            &langs,
            &config,
        )
        .unwrap();
        assert_eq!(p.spec.cwd, "");
        let p = plan(
            &req(r#"{"language":"python","files":{"/workspace/src/a.py":"1"},"entry":"/workspace/src/a.py"}"#),
            &langs,
            &config,
        )
        .unwrap();
        assert_eq!(p.files, [("src/a.py".to_string(), "1".to_string())]);
        assert_eq!(
            p.spec.command,
            Command::Shell("python3 -u 'src/a.py'".into())
        );
        // A language alone runs main.EXT.
        let p = plan(&req(r#"{"language":"go"}"#), &langs, &config).unwrap();
        assert!(matches!(p.spec.command, Command::Shell(s) if s.ends_with("'main.go'")));
    }
}
