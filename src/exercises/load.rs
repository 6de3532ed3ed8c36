//! Loading exercise folders: `exercise.toml` parsed and checked (a refusal
//! names the file, the line and the reason), the prompt, the starter and
//! the hidden tests read.

use super::{Compare, Exercise, LoadError, TestKind, TestSpec};
use crate::config::Language;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExerciseFile {
    title: String,
    language: String,
    /// The file run for input/output tests (default `main.<ext>`).
    entry: Option<String>,
    #[serde(default = "default_time_limit")]
    time_limit_ms: u64,
    #[serde(default)]
    tests: Vec<TestSpec>,
}

fn default_time_limit() -> u64 {
    5_000
}

/// Every exercise folder under `dir`, each loaded or refused.
pub fn load_all(
    dir: &Path,
    languages: &BTreeMap<String, Language>,
) -> Result<Vec<Result<Exercise, LoadError>>, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|e| LoadError {
        file: dir.to_path_buf(),
        line: None,
        reason: format!("cannot read the exercises folder: {e}"),
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs.iter().map(|d| load(d, languages)).collect())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of the `n`th `[[tests]]` table (0-based), for errors in it.
fn test_line(text: &str, n: usize) -> Option<usize> {
    text.match_indices("[[tests]]")
        .nth(n)
        .map(|(at, _)| line_of(text, at))
}

/// The line where `key =` first appears at the start of a line.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(key) && l[key.len()..].trim_start().starts_with('=')
        })
        .map(|i| i + 1)
}

/// Loads one exercise folder.
pub fn load(dir: &Path, languages: &BTreeMap<String, Language>) -> Result<Exercise, LoadError> {
    let toml_path = dir.join("exercise.toml");
    let err = |file: &Path, line: Option<usize>, reason: String| LoadError {
        file: file.to_path_buf(),
        line,
        reason,
    };
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id_ok = !id.is_empty()
        && id.len() <= 40
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !id_ok {
        return Err(err(
            dir,
            None,
            "a folder name is 1 to 40 letters, digits, '-', '_' or '.' (it names the exercise in URLs)".into(),
        ));
    }
    let text = std::fs::read_to_string(&toml_path)
        .map_err(|e| err(&toml_path, None, format!("cannot read it: {e}")))?;
    let file: ExerciseFile = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| line_of(&text, s.start));
        err(&toml_path, line, e.message().trim().to_string())
    })?;
    let language = languages.get(&file.language).ok_or_else(|| {
        err(
            &toml_path,
            key_line(&text, "language"),
            format!(
                "unknown language {:?} (this server has: {})",
                file.language,
                languages.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    if file.title.trim().is_empty() {
        return Err(err(
            &toml_path,
            key_line(&text, "title"),
            "the title is empty".into(),
        ));
    }
    if file.tests.is_empty() {
        return Err(err(&toml_path, None, "there are no [[tests]]".into()));
    }
    for (i, t) in file.tests.iter().enumerate() {
        let at = test_line(&text, i);
        match t.kind {
            TestKind::Io => {
                let Some(expected) = &t.expected else {
                    return Err(err(
                        &toml_path,
                        at,
                        format!("test {:?}: an io test needs `expected`", t.name),
                    ));
                };
                if t.compare == Compare::Regex {
                    if let Err(e) = regex::Regex::new(expected) {
                        return Err(err(
                            &toml_path,
                            at,
                            format!("test {:?}: `expected` is not a valid regex: {e}", t.name),
                        ));
                    }
                }
            }
            TestKind::Command => {
                if t.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
                    return Err(err(
                        &toml_path,
                        at,
                        format!("test {:?}: a command test needs `command`", t.name),
                    ));
                }
                if t.expect.is_some() {
                    return Err(err(
                        &toml_path,
                        at,
                        format!(
                            "test {:?}: `expect` is gone: a command test passes by exiting 0 in the grader's container, where no student code runs (output can carry text the student's code printed, so it decides nothing); make the command exit non-zero on failure and remove `expect` (and any `{{nonce}}` conftest)",
                            t.name
                        ),
                    ));
                }
            }
        }
        if t.timeout_ms == Some(0) {
            return Err(err(
                &toml_path,
                at,
                format!("test {:?}: timeout_ms must be above 0", t.name),
            ));
        }
    }
    let prompt_path = dir.join("prompt.md");
    let prompt = std::fs::read_to_string(&prompt_path)
        .map_err(|e| err(&prompt_path, None, format!("cannot read the prompt: {e}")))?;
    let starter_dir = dir.join("starter");
    let starter = read_tree(&starter_dir).map_err(|e| err(&starter_dir, None, e))?;
    if starter.is_empty() {
        return Err(err(&starter_dir, None, "there are no starter files".into()));
    }
    let tests_dir = dir.join("tests");
    let hidden = if tests_dir.exists() {
        read_tree(&tests_dir).map_err(|e| err(&tests_dir, None, e))?
    } else {
        BTreeMap::new()
    };
    let entry = file
        .entry
        .unwrap_or_else(|| format!("main.{}", language.extension));
    if !starter.contains_key(&entry) {
        return Err(err(
            &toml_path,
            key_line(&text, "entry"),
            format!("the entry file {entry:?} is not among the starter files"),
        ));
    }
    Ok(Exercise {
        id,
        dir: dir.to_path_buf(),
        title: file.title,
        language: file.language,
        entry,
        time_limit_ms: file.time_limit_ms,
        tests: file.tests,
        prompt,
        starter,
        hidden,
    })
}

/// Every file under `dir`, by relative path.
fn read_tree(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("cannot read it: {e}"))?;
        for e in entries.filter_map(|e| e.ok()) {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .into_owned();
                let data = std::fs::read(&path).map_err(|e| format!("cannot read {rel}: {e}"))?;
                out.insert(rel, data);
            }
        }
    }
    Ok(out)
}

/// `replbox exercises check DIR`: a line per exercise; false when any is
/// refused.
pub fn check(
    dir: &Path,
    languages: &BTreeMap<String, Language>,
    out: &mut impl std::io::Write,
) -> bool {
    match load_all(dir, languages) {
        Err(e) => {
            let _ = writeln!(out, "error {e}");
            false
        }
        Ok(list) => {
            let mut ok = true;
            for item in &list {
                match item {
                    Ok(x) => {
                        let _ = writeln!(
                            out,
                            "ok    {}: {} ({}, {} tests, {} points)",
                            x.id,
                            x.title,
                            x.language,
                            x.tests.len(),
                            x.points()
                        );
                    }
                    Err(e) => {
                        ok = false;
                        let _ = writeln!(out, "error {e}");
                    }
                }
            }
            if list.is_empty() {
                let _ = writeln!(out, "error {}: no exercise folders", dir.display());
                ok = false;
            }
            ok
        }
    }
}
