//! Classes over HTTP (JSON; the pages come later): students join with a
//! code and a name and check their work; teachers sign in, make classes and
//! read the results. A student's session never reaches a teacher's routes,
//! nor another student's files.

use super::browser_session::BrowserSession;
use super::client_addr::{self, ClientAddr};
use super::{browser_session, AppState};
use crate::classroom::standings_csv;
use crate::error::{AppError, ErrorCode};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/class/join", post(join))
        .route("/class/recover", post(recover))
        .route("/class/me", get(me))
        .route("/class/exercises/{id}", get(exercise))
        .route("/class/exercises/{id}/check", post(check))
        .route("/teacher/login", post(login))
        .route("/teacher/logout", post(logout))
        .route("/teacher/classes", get(classes).post(create_class))
        .route("/teacher/classes/{class}/exercises", put(assign))
        .route("/teacher/classes/{class}/code", post(new_code))
        .route(
            "/teacher/classes/{class}/students/{student}",
            put(rename_student).delete(remove_student),
        )
        .route("/teacher/classes/{class}/exercises/{id}", get(standings))
        .route(
            "/teacher/classes/{class}/exercises/{id}/csv",
            get(standings_as_csv),
        )
        .route("/teacher/checks/{id}", get(check_files))
}

async fn student(
    state: &AppState,
    session: &BrowserSession,
) -> Result<crate::classroom::Student, AppError> {
    let owner = browser_session::existing_owner(session).await?;
    Ok(state.services.joined(&owner).await?)
}

#[derive(Deserialize)]
struct JoinRequest {
    code: String,
    name: String,
}

async fn join(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: BrowserSession,
    super::extract::JsonBody(req): super::extract::JsonBody<JoinRequest>,
) -> Result<Response, AppError> {
    let owner = browser_session::existing_owner(&session).await?;
    let joined = state
        .services
        .join_limited(
            &client_addr::guess_key(client),
            &req.code,
            &req.name,
            &owner,
        )
        .await?;
    Ok((StatusCode::OK, Json(joined)).into_response())
}

#[derive(Deserialize)]
struct RecoverRequest {
    code: String,
}

async fn recover(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: BrowserSession,
    super::extract::JsonBody(req): super::extract::JsonBody<RecoverRequest>,
) -> Result<Response, AppError> {
    let student = browser_session::recover_student(&state, client, &session, &req.code).await?;
    Ok(Json(student).into_response())
}

async fn me(State(state): State<AppState>, session: BrowserSession) -> Result<Response, AppError> {
    let student = student(&state, &session).await?;
    let class = state.services.classroom.class(&student.class_id).await?;
    let progress = state.services.classroom.progress(&student.id).await?;
    let exercises: Vec<_> = state
        .services
        .class_exercises(&student.class_id)
        .await?
        .iter()
        .map(|x| {
            let (best, attempts) = progress
                .get(&x.id)
                .copied()
                .map(|(b, n)| (Some(b), n))
                .unwrap_or((None, 0));
            json!({"id": x.id, "title": x.title, "language": x.language, "points": x.points(),
                   "best": best, "attempts": attempts})
        })
        .collect();
    Ok(
        Json(json!({"student": student, "class": class.map(|c| c.name), "exercises": exercises}))
            .into_response(),
    )
}

async fn exercise(
    State(state): State<AppState>,
    session: BrowserSession,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let student = student(&state, &session).await?;
    let x = state.services.student_exercise(&student, &id).await?;
    Ok(Json(json!({"id": x.id, "title": x.title, "language": x.language, "entry": x.entry,
                   "points": x.points(), "prompt": x.prompt,
                   "tests": x.tests.iter().map(|t| json!({"name": t.name, "points": t.points})).collect::<Vec<_>>()}))
    .into_response())
}

async fn check(
    State(state): State<AppState>,
    session: BrowserSession,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let student = student(&state, &session).await?;
    let checked = state.services.check(student, &id).await?;
    Ok(Json(json!({"checkId": checked.check_id, "report": checked.report})).into_response())
}

async fn teacher(session: &BrowserSession) -> Result<String, AppError> {
    browser_session::teacher_id(session).await?.ok_or_else(|| {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::TeacherOnly,
            "Sign in as a teacher.",
        )
    })
}

#[derive(Deserialize)]
struct LoginRequest {
    name: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: BrowserSession,
    super::extract::JsonBody(req): super::extract::JsonBody<LoginRequest>,
) -> Result<Response, AppError> {
    let id = state
        .services
        .sign_in_limited(&client_addr::guess_key(client), &req.name, &req.password)
        .await?;
    browser_session::sign_in_teacher(&session, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn logout(session: BrowserSession) -> Result<Response, AppError> {
    browser_session::sign_out_teacher(&session).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A class as the teacher's list gives it: its fields and what it sees.
#[derive(serde::Serialize)]
struct ClassWithExercises {
    #[serde(flatten)]
    class: crate::classroom::Class,
    exercises: Vec<String>,
}

async fn classes(
    State(state): State<AppState>,
    session: BrowserSession,
) -> Result<Response, AppError> {
    let t = teacher(&session).await?;
    let exercises: Vec<_> = state
        .services
        .exercises
        .values()
        .map(|x| json!({"id": x.id, "title": x.title}))
        .collect();
    let mut classes = Vec::new();
    for c in state.services.classroom.classes_of(&t).await? {
        let seen: Vec<_> = state
            .services
            .class_exercises(&c.id)
            .await?
            .iter()
            .map(|x| x.id.clone())
            .collect();
        classes.push(ClassWithExercises {
            class: c,
            exercises: seen,
        });
    }
    Ok(Json(json!({"classes": classes, "exercises": exercises})).into_response())
}

#[derive(Deserialize)]
struct ClassRequest {
    name: String,
}

async fn create_class(
    State(state): State<AppState>,
    session: BrowserSession,
    super::extract::JsonBody(req): super::extract::JsonBody<ClassRequest>,
) -> Result<Response, AppError> {
    let t = teacher(&session).await?;
    let class = state.services.classroom.create_class(&t, &req.name).await?;
    Ok((StatusCode::CREATED, Json(class)).into_response())
}

/// The teacher's own class, or 404 (never another teacher's).
/// The signed-in teacher's own class (401 without a teacher).
async fn own_class(
    state: &AppState,
    session: &BrowserSession,
    class: &str,
) -> Result<crate::classroom::Class, AppError> {
    Ok(state
        .services
        .class_of(&teacher(session).await?, class)
        .await?)
}

async fn standings(
    State(state): State<AppState>,
    session: BrowserSession,
    Path((class, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    own_class(&state, &session, &class).await?;
    state.services.find_exercise(&id)?;
    Ok(
        Json(json!({"rows": state.services.classroom.standings(&class, &id).await?}))
            .into_response(),
    )
}

async fn standings_as_csv(
    State(state): State<AppState>,
    session: BrowserSession,
    Path((class, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    own_class(&state, &session, &class).await?;
    state.services.find_exercise(&id)?;
    let rows = state.services.classroom.standings(&class, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.csv\""),
            ),
        ],
        standings_csv(&rows),
    )
        .into_response())
}

async fn check_files(
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
    own_class(&state, &session, &student.class_id).await?;
    let files = check.files_text();
    let report: serde_json::Value = serde_json::from_str(&check.report).unwrap_or_default();
    Ok(Json(json!({"student": student.display_name, "exercise": check.exercise, "score": check.score,
                   "maxScore": check.max_score, "createdAt": check.created_at, "report": report, "files": files}))
    .into_response())
}

#[derive(Deserialize)]
struct AssignRequest {
    exercises: Vec<String>,
}

/// The teacher chooses the exercises a class sees.
async fn assign(
    State(state): State<AppState>,
    session: BrowserSession,
    Path(class): Path<String>,
    super::extract::JsonBody(req): super::extract::JsonBody<AssignRequest>,
) -> Result<Response, AppError> {
    let c = own_class(&state, &session, &class).await?;
    state
        .services
        .choose_exercises(&c.id, &req.exercises)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A new code for the teacher's class: the old one lets nobody in any more
/// (a leaked code, or a removed student who kept it).
async fn new_code(
    State(state): State<AppState>,
    session: BrowserSession,
    Path(class): Path<String>,
) -> Result<Response, AppError> {
    let c = own_class(&state, &session, &class).await?;
    let code = state.services.classroom.new_class_code(&c.id).await?;
    Ok(Json(json!({"code": code})).into_response())
}

/// Sets a class's exercises after checking that each exists.
#[derive(Deserialize)]
struct RenameRequest {
    name: String,
}

/// The teacher renames a student of their class.
async fn rename_student(
    State(state): State<AppState>,
    session: BrowserSession,
    Path((class, student)): Path<(String, String)>,
    super::extract::JsonBody(req): super::extract::JsonBody<RenameRequest>,
) -> Result<Response, AppError> {
    let c = own_class(&state, &session, &class).await?;
    let s = state
        .services
        .classroom
        .rename_student(&c.id, &student, &req.name)
        .await?;
    Ok(Json(s).into_response())
}

/// The teacher removes a student of their class, their checks and their
/// exercise workspaces.
async fn remove_student(
    State(state): State<AppState>,
    session: BrowserSession,
    Path((class, student)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let c = own_class(&state, &session, &class).await?;
    state.services.forget_student(&c.id, &student).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
