//! Exercises as files a teacher keeps in git: one folder per exercise with
//! `exercise.toml` (title, language, points, time limits, tests),
//! `prompt.md`, `starter/` (what the student starts with) and `tests/`
//! (what the student never sees). A malformed exercise is refused with the
//! file, the line and the reason; the others still load.

pub mod grade;
pub mod harness;

use crate::config::Language;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// How an input/output test compares what the program printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    Exact,
    /// Trailing white space on each line and at the end is ignored.
    #[default]
    Trimmed,
    /// `expected` is a regular expression that must match the whole output.
    Regex,
}

/// What a failed test shows the student: the exercise author's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Show {
    /// io: expected and got; command: the failed tests' names and exception
    /// types (pytest), and what the tests say with `message()` /
    /// `replbox-message`.
    #[default]
    Message,
    /// command: everything the command printed (tracebacks may quote the
    /// hidden tests' source).
    Output,
    /// Pass or fail alone (no reason, output or duration).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    /// Feed `stdin` to the program; compare its output with `expected`.
    Io,
    /// Run `command` in the grader's container; it passes by exiting 0.
    Command,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    pub name: String,
    pub kind: TestKind,
    #[serde(default)]
    pub stdin: String,
    pub expected: Option<String>,
    #[serde(default)]
    pub compare: Compare,
    pub command: Option<String>,
    /// Refused at load: a command test's verdict is its exit status alone.
    pub expect: Option<String>,
    #[serde(default)]
    pub show: Show,
    #[serde(default = "one")]
    pub points: u32,
    pub timeout_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

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

/// A loaded, valid exercise.
#[derive(Debug, Clone)]
pub struct Exercise {
    /// The folder's name: the exercise's id in URLs.
    pub id: String,
    pub dir: PathBuf,
    pub title: String,
    pub language: String,
    pub entry: String,
    pub time_limit_ms: u64,
    pub tests: Vec<TestSpec>,
    pub prompt: String,
    /// Starter files, path (relative to starter/) -> contents.
    pub starter: BTreeMap<String, Vec<u8>>,
    /// Hidden test files, path (relative to tests/) -> contents.
    pub hidden: BTreeMap<String, Vec<u8>>,
}

impl Exercise {
    pub fn points(&self) -> u32 {
        self.tests.iter().map(|t| t.points).sum()
    }

    /// The student's Python modules a command test may import: the entry's
    /// and the starter's top-level `.py` files (none for other languages).
    pub fn student_modules(&self) -> Vec<String> {
        if self.language != "python" {
            return Vec::new();
        }
        let mut names: Vec<String> = std::iter::once(self.entry.as_str())
            .chain(self.starter.keys().map(String::as_str))
            .filter_map(|p| p.strip_suffix(".py"))
            .filter(|m| {
                !m.is_empty()
                    && !m.starts_with(|c: char| c.is_ascii_digit())
                    && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Why an exercise was refused: the file, the line (1-based, when known)
/// and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

/// The prompt as HTML: Markdown, with any raw HTML in it shown as text, and
/// code blocks marked with their language for the page to highlight.
pub fn prompt_html(markdown: &str) -> String {
    use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag};
    let events = Parser::new_ext(
        markdown,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
    )
    .map(|e| match e {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(lang))) => {
            let lang: String = lang.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(lang.into())))
        }
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn examples() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/exercises")
    }

    #[test]
    fn prompts_render_without_raw_html() {
        let html = prompt_html("# Hi\n\n<script>alert(1)</script>\n\n```python\nprint(1)\n```\n");
        assert!(html.contains("<h1>Hi</h1>"));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("class=\"language-python\""), "{html}");
    }

    #[test]
    fn the_student_modules_are_the_python_files_at_the_top() {
        let langs = Config::default().language_table().unwrap();
        let x = load(&examples().join("python-hello"), &langs).unwrap();
        assert_eq!(x.student_modules(), ["main"]);
        let js = load(&examples().join("javascript-sum"), &langs).unwrap();
        assert!(js.student_modules().is_empty());
    }

    #[test]
    fn the_sample_exercises_load() {
        let langs = Config::default().language_table().unwrap();
        let all = load_all(&examples(), &langs).unwrap();
        let ok: Vec<_> = all.iter().filter_map(|r| r.as_ref().ok()).collect();
        let errors: Vec<_> = all.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        let mut languages: Vec<_> = ok.iter().map(|x| x.language.as_str()).collect();
        languages.sort();
        assert_eq!(languages, ["bash", "go", "javascript", "python"]);
        assert!(ok.iter().all(|x| !x.prompt.is_empty() && x.points() > 0));
    }

    fn broken_copy(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let src = examples().join("python-hello");
        let dst = tmp.path().join("python-hello");
        for sub in ["", "starter", "tests"] {
            std::fs::create_dir_all(dst.join(sub)).unwrap();
        }
        for (from, to) in [
            ("prompt.md", "prompt.md"),
            ("starter/main.py", "starter/main.py"),
            ("tests/test_greet.py", "tests/test_greet.py"),
        ] {
            std::fs::copy(src.join(from), dst.join(to)).unwrap();
        }
        let toml = std::fs::read_to_string(src.join("exercise.toml")).unwrap();
        std::fs::write(dst.join("exercise.toml"), edit(&toml)).unwrap();
        (tmp, dst)
    }

    #[test]
    fn a_broken_exercise_names_the_file_the_line_and_the_reason() {
        let langs = Config::default().language_table().unwrap();
        let (_t, dir) = broken_copy(|t| t.replace("language = \"python\"", "language = \"cobol\""));
        let e = load(&dir, &langs).unwrap_err();
        assert!(e.file.ends_with("exercise.toml"));
        assert!(e.reason.contains("unknown language \"cobol\""), "{e}");
        assert_eq!(e.line, Some(2));

        let (_t, dir) = broken_copy(|t| t.replacen("expected = ", "expectd = ", 1));
        let e = load(&dir, &langs).unwrap_err();
        assert!(e.reason.contains("expectd"), "{e}");
        assert!(e.line.is_some(), "{e}");

        let (_t, dir) = broken_copy(|t| t.replace("\ncommand = ", "\nnot_command = "));
        let e = load(&dir, &langs).unwrap_err();
        assert!(e.to_string().contains("exercise.toml:"), "{e}");

        let (_t, dir) = broken_copy(|t| {
            t.replace(
                "\ncommand = ",
                "\nexpect = \"REPLBOX-PASS {nonce}\"\ncommand = ",
            )
        });
        let e = load(&dir, &langs).unwrap_err();
        assert!(e.reason.contains("`expect` is gone"), "{e}");
        assert!(e.line.is_some(), "{e}");

        let (_t, dir) = broken_copy(|t| t.replace("\ncommand = ", "\nshow = \"all\"\ncommand = "));
        let e = load(&dir, &langs).unwrap_err();
        assert!(e.reason.contains("`message`, `output`, `none`"), "{e}");

        let (_t, dir) = broken_copy(|t| t.to_string());
        std::fs::remove_file(dir.join("prompt.md")).unwrap();
        let e = load(&dir, &langs).unwrap_err();
        assert!(e.file.ends_with("prompt.md"), "{e}");
    }
}
