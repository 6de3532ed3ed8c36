//! A student's pages: the list of exercises (and the forms to join or
//! recover), an exercise's page.

use super::{css, failed, no_cookie};
use crate::error::AppError;
use crate::routes::browser_session::{self, BrowserSession};
use crate::routes::client_addr::ClientAddr;
use crate::routes::pages::{render, ExerciseView, IdePage};
use crate::routes::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use axum::Form;
use axum::Router;
use serde::Deserialize;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/exercises", get(list))
        .route("/exercises/join", post(join))
        .route("/exercises/recover", post(recover))
        .route("/exercises/{id}", get(exercise_page))
}

struct ExerciseRow {
    id: String,
    title: String,
    language: String,
    points: u32,
    best: Option<i64>,
    attempts: i64,
}

#[derive(Template)]
#[template(path = "exercises.html")]
struct ListPage {
    css: String,
    error: Option<String>,
    student: Option<String>,
    /// Shown once, just after joining.
    recovery_code: Option<String>,
    class_name: String,
    exercises: Vec<ExerciseRow>,
}

async fn list_page(
    state: &AppState,
    owner: &str,
    error: Option<String>,
    recovery_code: Option<String>,
) -> Result<Response, AppError> {
    let student = state.services.classroom.student_by_owner(owner).await?;
    let mut page = ListPage {
        css: css(),
        error,
        recovery_code,
        student: None,
        class_name: String::new(),
        exercises: Vec::new(),
    };
    if let Some(s) = student {
        let progress = state.services.classroom.progress(&s.id).await?;
        page.class_name = state
            .services
            .classroom
            .class(&s.class_id)
            .await?
            .map(|c| c.name)
            .unwrap_or_default();
        page.student = Some(s.display_name);
        page.exercises = state
            .services
            .class_exercises(&s.class_id)
            .await?
            .iter()
            .map(|x| {
                let p = progress.get(&x.id).copied();
                ExerciseRow {
                    id: x.id.clone(),
                    title: x.title.clone(),
                    language: x.language.clone(),
                    points: x.points(),
                    best: p.map(|(b, _)| b),
                    attempts: p.map(|(_, n)| n).unwrap_or(0),
                }
            })
            .collect();
    }
    render(&page)
}

async fn list(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: BrowserSession,
) -> Result<Response, AppError> {
    let owner = browser_session::owner(&state, &session, client).await?;
    let recovery = browser_session::take_recovery_code(&session).await?;
    list_page(&state, &owner, None, recovery).await
}

#[derive(Deserialize)]
struct JoinForm {
    code: String,
    name: String,
}

async fn join(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: BrowserSession,
    Form(form): Form<JoinForm>,
) -> Result<Response, AppError> {
    let owner = browser_session::existing_owner(&session)
        .await
        .map_err(|_| no_cookie())?;
    match state
        .services
        .join_limited(
            &crate::routes::client_addr::guess_key(client),
            &form.code,
            &form.name,
            &owner,
        )
        .await
        .map_err(AppError::from)
    {
        Ok(joined) => {
            if let Some(code) = joined.recovery_code {
                browser_session::show_recovery_code_once(&session, code).await?;
            }
            Ok(axum::response::IntoResponse::into_response(Redirect::to(
                "/exercises",
            )))
        }
        Err(e) => Ok(failed(
            list_page(&state, &owner, Some(e.message.clone()), None).await?,
            &e,
        )),
    }
}

#[derive(Deserialize)]
struct RecoverForm {
    code: String,
}

/// A student back on another browser with their recovery code.
async fn recover(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: BrowserSession,
    Form(form): Form<RecoverForm>,
) -> Result<Response, AppError> {
    let owner = browser_session::existing_owner(&session)
        .await
        .map_err(|_| no_cookie())?;
    match browser_session::recover_student(&state, client, &session, &form.code).await {
        Ok(_) => Ok(axum::response::IntoResponse::into_response(Redirect::to(
            "/exercises",
        ))),
        Err(e) => Ok(failed(
            list_page(&state, &owner, Some(e.message.clone()), None).await?,
            &e,
        )),
    }
}

async fn exercise_page(
    State(state): State<AppState>,
    session: BrowserSession,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let owner = browser_session::existing_owner(&session).await?;
    let Some(student) = state.services.classroom.student_by_owner(&owner).await? else {
        return Ok(axum::response::IntoResponse::into_response(Redirect::to(
            "/exercises",
        )));
    };
    let x = state.services.student_exercise(&student, &id).await?;
    render(&IdePage::new(Some(ExerciseView {
        id: x.id.clone(),
        prompt_html: crate::exercises::prompt_html(&x.prompt),
        points: x.points(),
    })))
}
