//! The languages a run can be in: the table from `REPLBOX_LANGUAGES`, or
//! the default one.

use super::Config;
use std::collections::BTreeMap;
/// One language: how a file of it is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language {
    pub name: String,
    pub extension: String,
    /// A shell line; `{file}` is the entry file, quoted.
    pub command: String,
}

/// The default language table.
pub const DEFAULT_LANGUAGES: &[&str] = &[
    "python=py:python3 -u {file}",
    "javascript=js:node {file}",
    "bash=sh:bash {file}",
    "go=go:go run {file}",
];

impl Config {
    /// The language table from config, or the default one.
    pub fn language_table(&self) -> Result<BTreeMap<String, Language>, String> {
        let entries: Vec<&str> = if self.languages.iter().all(|l| l.trim().is_empty()) {
            DEFAULT_LANGUAGES.to_vec()
        } else {
            self.languages.iter().map(String::as_str).collect()
        };
        let mut table = BTreeMap::new();
        for entry in entries {
            let (name, rest) = entry
                .split_once('=')
                .ok_or_else(|| format!("language entry {entry:?}: expected name=ext:command"))?;
            let (ext, command) = rest
                .split_once(':')
                .ok_or_else(|| format!("language entry {entry:?}: expected name=ext:command"))?;
            table.insert(
                name.trim().to_string(),
                Language {
                    name: name.trim().to_string(),
                    extension: ext.trim().to_string(),
                    command: command.trim().to_string(),
                },
            );
        }
        Ok(table)
    }
}
