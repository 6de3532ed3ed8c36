//! A student's Check: their turn (one at a time, a few a minute), their
//! exercise workspace read in full, room for the grading containers in the
//! sandbox cap, and grading in a task of its own, so a client that goes
//! away cannot leave containers behind. The report is recorded.

use super::error::Purpose;
use super::ServiceError;
use super::Services;
use crate::classroom::Student;

/// What a check reads of a workspace at most.
const CHECK_MAX_FILES: usize = 500;
const CHECK_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Containers one Check runs at once (a grader and the student's program).
const GRADING_CONTAINERS: usize = 2;

/// A recorded Check: its id and its report.
pub struct Checked {
    pub check_id: String,
    pub report: crate::exercises::grade::Report,
}

impl Services {
    /// Grades the student's work on exercise `id` and records the result.
    pub async fn check(&self, student: Student, id: &str) -> Result<Checked, ServiceError> {
        let x = self.student_exercise(&student, id).await?;
        let language = self
            .languages
            .get(&x.language)
            .ok_or(ServiceError::Internal("an exercise in an unknown language"))?
            .clone();
        // One Check in flight per student, a few per minute.
        let turn = self.limits.begin_check(&student.id)?;
        let workspace = self.exercise_session(&student.owner, &x).await?;
        let handle = workspace.ensure().await?;
        workspace.touch().await;
        let files = super::files::workspace_files(&handle, CHECK_MAX_FILES, CHECK_MAX_BYTES)
            .await?
            .ok_or(ServiceError::WorkspaceTooLarge(Purpose::Check))?;
        // The grader's container and the student's, within the same cap as
        // every sandbox.
        let room = self.registry.reserve(GRADING_CONTAINERS).await?;
        // Grading runs in a task of its own that holds the turn and the
        // room: a client that goes away mid-Check drops this request, not
        // the Check, so its containers are always removed and counted
        // until they are.
        let services = self.clone();
        let graded = tokio::spawn(async move {
            let _held = (turn, room);
            let report = crate::exercises::grade::grade(
                services.registry.sandboxes(),
                &x,
                &language,
                &files,
            )
            .await?;
            let check_id = services
                .classroom
                .record_check(&student.id, &x.id, &report, &files)
                .await?;
            Ok::<_, ServiceError>(Checked { check_id, report })
        });
        graded
            .await
            .map_err(|_| ServiceError::Internal("a Check's task died"))?
    }
}
