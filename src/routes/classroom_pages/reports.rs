//! What a teacher reads: a class's dashboard on one exercise, and one check
//! with its files.

use super::{css, own_class};
use crate::error::AppError;
use crate::routes::browser_session::BrowserSession;
use crate::routes::pages::render;
use crate::routes::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/teacher/classes/{class}/{id}", get(dashboard))
        .route("/teacher/check/{id}", get(check_page))
}

struct StandingRow {
    id: String,
    name: String,
    best: String,
    attempts: i64,
    last: String,
    check: Option<String>,
}

#[derive(Template)]
#[template(path = "teacher_dashboard.html")]
struct DashboardPage {
    css: String,
    error: Option<String>,
    class_id: String,
    class_name: String,
    exercise_id: String,
    exercise: String,
    rows: Vec<StandingRow>,
}

async fn dashboard(
    State(state): State<AppState>,
    session: BrowserSession,
    Path((class, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let c = match own_class(&state, &session, &class).await? {
        Ok(c) => c,
        Err(redirect) => return Ok(redirect),
    };
    let x = state.services.find_exercise(&id)?;
    let rows = state.services.classroom.standings(&class, &id).await?;
    render(&DashboardPage {
        css: css(),
        error: None,
        class_id: c.id,
        class_name: c.name,
        exercise_id: x.id.clone(),
        exercise: x.title.clone(),
        rows: rows
            .into_iter()
            .map(|r| StandingRow {
                id: r.student_id,
                name: r.display_name,
                best: match (r.best_score, r.max_score) {
                    (Some(b), Some(m)) => format!("{b} / {m}"),
                    _ => "—".into(),
                },
                attempts: r.attempts,
                last: r
                    .last_check
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default(),
                check: r.last_check_id,
            })
            .collect(),
    })
}

struct TestLine {
    name: String,
    passed: bool,
    reason: String,
}

#[derive(Template)]
#[template(path = "teacher_check.html")]
struct CheckPage {
    css: String,
    error: Option<String>,
    student: String,
    exercise: String,
    score: i64,
    max_score: i64,
    tests: Vec<TestLine>,
    files: Vec<(String, String)>,
}

async fn check_page(
    State(state): State<AppState>,
    session: BrowserSession,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let (check, student) = state
        .services
        .classroom
        .check_with_student(&id)
        .await?
        .ok_or_else(|| AppError::not_found("There is no such check."))?;
    if let Err(redirect) = own_class(&state, &session, &student.class_id).await? {
        return Ok(redirect);
    }
    let report: crate::exercises::grade::Report =
        serde_json::from_str(&check.report).map_err(|_| AppError::internal())?;
    render(&CheckPage {
        css: css(),
        error: None,
        student: student.display_name,
        exercise: state
            .services
            .exercises
            .get(&check.exercise)
            .map(|x| x.title.clone())
            .unwrap_or(check.exercise.clone()),
        score: check.score,
        max_score: check.max_score,
        tests: report
            .tests
            .into_iter()
            .map(|t| TestLine {
                name: t.name,
                passed: t.passed,
                reason: t.reason,
            })
            .collect(),
        files: check.files_text().into_iter().collect(),
    })
}
