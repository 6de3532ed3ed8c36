//! Checks: recording one with its files (a bounded number kept), a
//! student's progress, a class's standings and their CSV.

use super::{new_id, now, CheckRow, Classroom, ClassroomError, Standing, Student};
use crate::exercises::grade::Report;
use crate::on_db;
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
        let (score, max_score) = (i64::from(report.score), i64::from(report.max_score));
        let report = serde_json::to_string(report).unwrap_or_default();
        let files = serde_json::to_string(&files).unwrap_or_default();
        on_db!(&self.db, p => {
            // `seq`: one more than the largest, the order checks were made
            // in (two made at once on PostgreSQL may share one: they are
            // then equally new).
            sqlx::query(
                "INSERT INTO checks (id, student_id, exercise, score, max_score, report, files, created_at, seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, (SELECT COALESCE(MAX(seq), 0) + 1 FROM checks))",
            )
            .bind(&id)
            .bind(student_id)
            .bind(exercise)
            .bind(score)
            .bind(max_score)
            .bind(&report)
            .bind(&files)
            .bind(now())
            .execute(p)
            .await?;
            // Only the newest checks of a student on an exercise keep files.
            sqlx::query(
                "UPDATE checks SET files = '{}' WHERE student_id = $1 AND exercise = $2 AND files <> '{}'
                 AND id NOT IN (SELECT id FROM checks WHERE student_id = $3 AND exercise = $4
                                ORDER BY created_at DESC, seq DESC LIMIT $5)",
            )
            .bind(student_id)
            .bind(exercise)
            .bind(student_id)
            .bind(exercise)
            .bind(CHECK_FILES_KEPT as i64)
            .execute(p)
            .await?;
        });
        Ok(id)
    }

    /// Best score and attempts of one student per exercise.
    pub async fn progress(
        &self,
        student_id: &str,
    ) -> Result<BTreeMap<String, (i64, i64)>, ClassroomError> {
        let rows: Vec<(String, i64, i64)> = on_db!(&self.db, p => {
            sqlx::query_as(
                "SELECT exercise, MAX(score), COUNT(*) FROM checks WHERE student_id = $1 GROUP BY exercise",
            )
            .bind(student_id)
            .fetch_all(p)
            .await
        })?;
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
        // The ORDER BY repeats MAX(c.score): PostgreSQL takes an output
        // column's name only on its own, not inside an expression.
        Ok(on_db!(&self.db, p => {
            sqlx::query_as(
                "SELECT s.id AS student_id, s.display_name,
                        MAX(c.score) AS best_score, MAX(c.max_score) AS max_score,
                        COUNT(c.id) AS attempts, MAX(c.created_at) AS last_check,
                        (SELECT c2.id FROM checks c2 WHERE c2.student_id = s.id AND c2.exercise = $1
                         ORDER BY c2.created_at DESC, c2.seq DESC LIMIT 1) AS last_check_id
                 FROM students s LEFT JOIN checks c ON c.student_id = s.id AND c.exercise = $2
                 WHERE s.class_id = $3
                 GROUP BY s.id, s.display_name
                 ORDER BY MAX(c.score) IS NULL, MAX(c.score) DESC, s.display_name",
            )
            .bind(exercise)
            .bind(exercise)
            .bind(class_id)
            .fetch_all(p)
            .await
        })?)
    }

    pub async fn check(&self, id: &str) -> Result<Option<CheckRow>, ClassroomError> {
        Ok(on_db!(&self.db, p => {
            sqlx::query_as("SELECT * FROM checks WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await
        })?)
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
