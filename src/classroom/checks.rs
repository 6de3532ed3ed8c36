//! Checks: recording one with its files (a bounded number kept), a
//! student's progress, a class's standings and their CSV.

use super::{new_id, now, CheckRow, Classroom, ClassroomError, Standing, Student};
use crate::exercises::grade::Report;
use base64::Engine as _;
use std::collections::BTreeMap;

impl Classroom {
    /// Stores a check with the files it graded.
    pub async fn record_check(
        &self,
        student_id: &str,
        exercise: &str,
        report: &Report,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<String, ClassroomError> {
        let id = new_id();
        let files = stored_files(files);
        sqlx::query("INSERT INTO checks (id, student_id, exercise, score, max_score, report, files, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(&id)
            .bind(student_id)
            .bind(exercise)
            .bind(i64::from(report.score))
            .bind(i64::from(report.max_score))
            .bind(serde_json::to_string(report).unwrap_or_default())
            .bind(serde_json::to_string(&files).unwrap_or_default())
            .bind(now())
            .execute(&self.pool)
            .await?;
        // Only the newest checks of a student on an exercise keep files.
        sqlx::query(
            "UPDATE checks SET files = '{}' WHERE student_id = ? AND exercise = ? AND files <> '{}'
             AND id NOT IN (SELECT id FROM checks WHERE student_id = ? AND exercise = ?
                            ORDER BY created_at DESC, rowid DESC LIMIT ?)",
        )
        .bind(student_id)
        .bind(exercise)
        .bind(student_id)
        .bind(exercise)
        .bind(CHECK_FILES_KEPT as i64)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Best score and attempts of one student per exercise.
    pub async fn progress(
        &self,
        student_id: &str,
    ) -> Result<BTreeMap<String, (i64, i64)>, ClassroomError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT exercise, MAX(score), COUNT(*) FROM checks WHERE student_id = ? GROUP BY exercise",
        )
        .bind(student_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(e, best, n)| (e, (best, n)))
            .collect())
    }

    /// A class's students on one exercise, best score first.
    pub async fn standings(
        &self,
        class_id: &str,
        exercise: &str,
    ) -> Result<Vec<Standing>, ClassroomError> {
        Ok(sqlx::query_as(
            "SELECT s.id AS student_id, s.display_name,
                    MAX(c.score) AS best_score, MAX(c.max_score) AS max_score,
                    COUNT(c.id) AS attempts, MAX(c.created_at) AS last_check,
                    (SELECT c2.id FROM checks c2 WHERE c2.student_id = s.id AND c2.exercise = ?
                     ORDER BY c2.created_at DESC, c2.rowid DESC LIMIT 1) AS last_check_id
             FROM students s LEFT JOIN checks c ON c.student_id = s.id AND c.exercise = ?
             WHERE s.class_id = ?
             GROUP BY s.id, s.display_name
             ORDER BY best_score IS NULL, best_score DESC, s.display_name",
        )
        .bind(exercise)
        .bind(exercise)
        .bind(class_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn check(&self, id: &str) -> Result<Option<CheckRow>, ClassroomError> {
        Ok(sqlx::query_as("SELECT * FROM checks WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A check and the student who made it.
    pub async fn check_with_student(
        &self,
        id: &str,
    ) -> Result<Option<(CheckRow, Student)>, ClassroomError> {
        let Some(check) = self.check(id).await? else {
            return Ok(None);
        };
        Ok(self.student(&check.student_id).await?.map(|s| (check, s)))
    }
}
impl CheckRow {
    /// The checked files as text (bytes that are not UTF-8 replaced).
    pub fn files_text(&self) -> BTreeMap<String, String> {
        let files: BTreeMap<String, String> = serde_json::from_str(&self.files).unwrap_or_default();
        files
            .into_iter()
            .map(|(k, v)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .unwrap_or_default();
                (k, String::from_utf8_lossy(&bytes).into_owned())
            })
            .collect()
    }
}

/// Checks per student and exercise whose files are kept; older ones keep
/// their score and report.
pub const CHECK_FILES_KEPT: usize = 5;
/// File bytes kept per check; files past it (in path order) are replaced by
/// a note.
pub const CHECK_STORED_BYTES: usize = 1024 * 1024;

/// A check's files as stored: base64, at most `CHECK_STORED_BYTES` of them.
fn stored_files(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<&String, String> {
    let mut budget = CHECK_STORED_BYTES;
    files
        .iter()
        .map(|(k, v)| {
            let kept: &[u8] = if v.len() <= budget {
                budget -= v.len();
                v
            } else {
                b"(not kept: a check keeps 1 MiB of files)"
            };
            (k, base64::engine::general_purpose::STANDARD.encode(kept))
        })
        .collect()
}

/// A CSV field: quoted when it must be, and text that a spreadsheet would
/// take for a formula (`=`, `+`, `-`, `@`, a tab or a return first) led by
/// a `'` so that it stays text.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The dashboard as CSV (the same rows, the same order).
pub fn standings_csv(rows: &[Standing]) -> String {
    let mut out = String::from("student,best_score,max_score,attempts,last_check\n");
    for r in rows {
        let last = r
            .last_check
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            csv_field(&r.display_name),
            r.best_score.map(|v| v.to_string()).unwrap_or_default(),
            r.max_score.map(|v| v.to_string()).unwrap_or_default(),
            r.attempts,
            last
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn csv_fields_never_start_a_formula() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("Ada"), "Ada");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
