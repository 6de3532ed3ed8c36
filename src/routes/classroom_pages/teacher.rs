//! A teacher's pages: sign-in and out, the classes, and the forms that
//! change a class or a student.

use super::{css, failed, own_class};
use crate::error::AppError;
use crate::routes::browser_session::{self, BrowserSession};
use crate::routes::client_addr::ClientAddr;
use crate::routes::pages::render;
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
            &crate::routes::client_addr::guess_key(client),
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
