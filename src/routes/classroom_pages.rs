//! The pages of classes: a student's list of exercises (and the form to
//! join), an exercise's page (the IDE with the prompt and Check), and the
//! teacher's sign-in, classes, dashboard and read-only view of a check.
//! Forms post urlencoded; SameSite=Lax cookies keep other sites' forms out.

use super::browser_session::BrowserSession;
use super::client_addr::ClientAddr;
use super::pages::{render, ExerciseView, IdePage};
use super::{assets, browser_session, AppState};
use crate::error::{AppError, ErrorCode};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/exercises", get(list))
        .route("/exercises/join", post(join))
        .route("/exercises/recover", post(recover))
        .route("/exercises/{id}", get(exercise_page))
        .route("/teacher", get(teacher_home))
        .route("/teacher/sign-in", get(sign_in_page).post(sign_in))
        .route("/teacher/sign-out", post(sign_out))
        .route("/teacher/new-class", post(new_class))
        .route("/teacher/classes/{class}/choose", post(choose))
        .route("/teacher/classes/{class}/new-code", post(new_code))
        .route(
            "/teacher/classes/{class}/students/{student}/rename",
            post(rename_student),
        )
        .route(
            "/teacher/classes/{class}/students/{student}/remove",
            post(remove_student),
        )
        .route("/teacher/classes/{class}/{id}", get(dashboard))
        .route("/teacher/check/{id}", get(check_page))
}

fn css() -> String {
    format!("/assets/ide.css?v={}", assets::version("ide.css"))
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

/// A page that says what went wrong, with the error's status (and its
/// Retry-After).
fn failed(mut page: Response, e: &AppError) -> Response {
    *page.status_mut() = e.status;
    if let Some(secs) = e.retry_after {
        page.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs.into());
    }
    page
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

/// A form posted without the cookie this page sets (from another site, or
/// a browser that lost it): refused, never answered with a new session
/// that would replace the student's.
fn no_cookie() -> AppError {
    AppError::new(
        axum::http::StatusCode::FORBIDDEN,
        ErrorCode::NoSession,
        "Your browser did not send its session: reload the page and try again.",
    )
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
            &super::classroom::limit_key(client),
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
    match super::classroom::recover_limited(&state, client, &session, &form.code).await {
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

#[derive(Template)]
#[template(path = "teacher_login.html")]
struct SignInPage {
    css: String,
    error: Option<String>,
}

async fn sign_in_page() -> Result<Response, AppError> {
    render(&SignInPage {
        css: css(),
        error: None,
    })
}

#[derive(Deserialize)]
struct SignInForm {
    name: String,
    password: String,
}

async fn sign_in(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: BrowserSession,
    Form(form): Form<SignInForm>,
) -> Result<Response, AppError> {
    match state
        .services
        .sign_in_limited(
            &super::classroom::limit_key(client),
            &form.name,
            &form.password,
        )
        .await
        .map_err(AppError::from)
    {
        Ok(id) => {
            browser_session::sign_in_teacher(&session, id).await?;
            Ok(axum::response::IntoResponse::into_response(Redirect::to(
                "/teacher",
            )))
        }
        Err(e) => Ok(failed(
            render(&SignInPage {
                css: css(),
                error: Some(e.message.clone()),
            })?,
            &e,
        )),
    }
}

async fn sign_out(session: BrowserSession) -> Result<Response, AppError> {
    browser_session::sign_out_teacher(&session).await?;
    Ok(axum::response::IntoResponse::into_response(Redirect::to(
        "/teacher/sign-in",
    )))
}

#[derive(Template)]
#[template(path = "teacher.html")]
struct TeacherPage {
    css: String,
    error: Option<String>,
    classes: Vec<ClassView>,
}

struct ClassView {
    id: String,
    name: String,
    code: String,
    /// Every exercise, and whether this class sees it.
    exercises: Vec<(String, String, bool)>,
}

async fn teacher_home(
    State(state): State<AppState>,
    session: BrowserSession,
) -> Result<Response, AppError> {
    let Some(t) = browser_session::teacher_id(&session).await? else {
        return Ok(axum::response::IntoResponse::into_response(Redirect::to(
            "/teacher/sign-in",
        )));
    };
    let mut classes = Vec::new();
    for c in state.services.classroom.classes_of(&t).await? {
        let seen = state.services.classroom.assigned(&c.id).await?;
        classes.push(ClassView {
            exercises: state
                .services
                .exercises
                .values()
                .map(|x| (x.id.clone(), x.title.clone(), seen.sees(&x.id)))
                .collect(),
            id: c.id,
            name: c.name,
            code: c.code,
        });
    }
    render(&TeacherPage {
        css: css(),
        error: None,
        classes,
    })
}

/// The teacher's form: the ticked exercises (`exercise=` once each) are
/// what the class sees. Read by hand: a repeated key is a list, which
/// axum's `Form` (serde_urlencoded) cannot take.
async fn choose(
    State(state): State<AppState>,
    session: BrowserSession,
    Path(class): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let c = match own_class(&state, &session, &class).await? {
        Ok(c) => c,
        Err(redirect) => return Ok(redirect),
    };
    let chosen: Vec<String> = form_urlencoded::parse(&body)
        .filter(|(k, _)| k == "exercise")
        .map(|(_, v)| v.into_owned())
        .collect();
    state.services.choose_exercises(&c.id, &chosen).await?;
    Ok(axum::response::IntoResponse::into_response(Redirect::to(
        "/teacher",
    )))
}

/// A new code for the class (the form beside its code), then the class list.
async fn new_code(
    State(state): State<AppState>,
    session: BrowserSession,
    Path(class): Path<String>,
) -> Result<Response, AppError> {
    let c = match own_class(&state, &session, &class).await? {
        Ok(c) => c,
        Err(redirect) => return Ok(redirect),
    };
    state.services.classroom.new_class_code(&c.id).await?;
    Ok(axum::response::IntoResponse::into_response(Redirect::to(
        "/teacher",
    )))
}

#[derive(Deserialize)]
struct ClassForm {
    name: String,
}

async fn new_class(
    State(state): State<AppState>,
    session: BrowserSession,
    Form(form): Form<ClassForm>,
) -> Result<Response, AppError> {
    let Some(t) = browser_session::teacher_id(&session).await? else {
        return Ok(axum::response::IntoResponse::into_response(Redirect::to(
            "/teacher/sign-in",
        )));
    };
    state
        .services
        .classroom
        .create_class(&t, &form.name)
        .await?;
    Ok(axum::response::IntoResponse::into_response(Redirect::to(
        "/teacher",
    )))
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

/// The signed-in teacher's class, or what to answer instead.
async fn own_class(
    state: &AppState,
    session: &BrowserSession,
    class: &str,
) -> Result<Result<crate::classroom::Class, Response>, AppError> {
    let Some(t) = browser_session::teacher_id(session).await? else {
        return Ok(Err(axum::response::IntoResponse::into_response(
            Redirect::to("/teacher/sign-in"),
        )));
    };
    Ok(state.services.class_of(&t, class).await.map(Ok)?)
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

#[derive(Deserialize)]
struct RenameForm {
    name: String,
    /// The dashboard to return to.
    exercise: String,
}

/// The teacher's form renames a student.
async fn rename_student(
    State(state): State<AppState>,
    session: BrowserSession,
    Path((class, student)): Path<(String, String)>,
    Form(form): Form<RenameForm>,
) -> Result<Response, AppError> {
    let c = match own_class(&state, &session, &class).await? {
        Ok(c) => c,
        Err(redirect) => return Ok(redirect),
    };
    state
        .services
        .classroom
        .rename_student(&c.id, &student, &form.name)
        .await?;
    Ok(back_to_dashboard(&c.id, &form.exercise))
}

#[derive(Deserialize)]
struct RemoveForm {
    exercise: String,
}

/// The teacher's form removes a student.
async fn remove_student(
    State(state): State<AppState>,
    session: BrowserSession,
    Path((class, student)): Path<(String, String)>,
    Form(form): Form<RemoveForm>,
) -> Result<Response, AppError> {
    let c = match own_class(&state, &session, &class).await? {
        Ok(c) => c,
        Err(redirect) => return Ok(redirect),
    };
    state.services.forget_student(&c.id, &student).await?;
    Ok(back_to_dashboard(&c.id, &form.exercise))
}

fn back_to_dashboard(class: &str, exercise: &str) -> Response {
    let exercise: String = form_urlencoded::byte_serialize(exercise.as_bytes()).collect();
    axum::response::IntoResponse::into_response(Redirect::to(&format!(
        "/teacher/classes/{class}/{exercise}"
    )))
}
