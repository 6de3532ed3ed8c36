//! Exercises as files a teacher keeps in git: one folder per exercise with
//! `exercise.toml` (title, language, points, time limits, tests),
//! `prompt.md`, `starter/` (what the student starts with) and `tests/`
//! (what the student never sees). A malformed exercise is refused with the
//! file, the line and the reason; the others still load.
//!
//! `mod.rs` holds what an exercise is; `load.rs` reads and checks the
//! folders; `grade.rs` runs a Check; `harness/` carries a command test's
//! requests to the student's code.

pub mod grade;
pub mod harness;

mod load;

pub use load::{check, load, load_all};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

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

#[cfg(test)]
mod tests;
