//! Turning a run request (a language and its files, a command line, or an
//! argv) into the files to write and the job to start.

use crate::config::{Config, Language};
use crate::error::AppError;
use crate::routes::frames::RunRequest;
use replbox_protocol::{path, Command, JobSpec, PtySize};
use std::collections::BTreeMap;

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
) -> Result<(), AppError> {
    for (path, text) in files {
        handle.write_file(path, text.into_bytes()).await?;
    }
    Ok(())
}

/// Quotes a string for `/bin/sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub fn plan(
    req: &RunRequest,
    languages: &BTreeMap<String, Language>,
    config: &Config,
) -> Result<RunPlan, AppError> {
    let mut files: Vec<(String, String)> = Vec::new();
    for (p, text) in req.files.iter().flatten() {
        files.push((path::normalize(p).map_err(AppError::from)?, text.clone()));
    }
    let command = match (&req.language, &req.command, &req.argv) {
        (Some(lang), None, None) => {
            let language = languages.get(lang).ok_or_else(|| {
                AppError::bad_request(
                    "unknown_language",
                    format!(
                        "There is no language {lang:?} here; try one of: {}.",
                        languages.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
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
            let entry = path::normalize(&entry).map_err(AppError::from)?;
            if entry.is_empty() || !named {
                return Err(AppError::bad_request(
                    "missing_entry",
                    "The entry file has no name.",
                ));
            }
            if let Some(code) = &req.code {
                files.push((entry.clone(), code.clone()));
            }
            Command::Shell(language.command.replace("{file}", &shell_quote(&entry)))
        }
        (None, Some(line), None) => Command::Shell(line.clone()),
        (None, None, Some(argv)) if !argv.is_empty() => Command::Argv(argv.clone()),
        _ => {
            return Err(AppError::bad_request(
                "bad_run",
                "Give exactly one of `language`, `command` or a non-empty `argv`.",
            ))
        }
    };
    let mut spec = JobSpec::new(command);
    if let Some(cwd) = &req.cwd {
        spec.cwd = path::normalize(cwd).map_err(AppError::from)?;
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
        let e = plan(&req(r#"{"language":"cobol","code":""}"#), &langs, &config).unwrap_err();
        assert_eq!(e.code, "unknown_language");
        let e = plan(&req(r#"{"command":"ls","argv":["ls"]}"#), &langs, &config).unwrap_err();
        assert_eq!(e.code, "bad_run");
        let e = plan(
            &req(r#"{"language":"python","entry":"../x.py"}"#),
            &langs,
            &config,
        )
        .unwrap_err();
        assert_eq!(e.code, "path_outside_workspace");
        let e = plan(&req(r#"{"command":"ls","cwd":"/etc"}"#), &langs, &config).unwrap_err();
        assert_eq!(e.code, "path_outside_workspace");
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
    }
}
