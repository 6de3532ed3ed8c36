//! Classes over HTTP (JSON; the pages come later): students join with a
//! code and a name and check their work; teachers sign in, make classes and
//! read the results. A student's session never reaches a teacher's routes,
//! nor another student's files.

use super::client_addr::ClientAddr;
use super::{browser_session, AppState};
use crate::classroom::{standings_csv, ClassroomError};
use crate::error::AppError;
use crate::exercises::Exercise;
use crate::sessions::{NewSession, OwnerKind, Session};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// What a check reads of a workspace at most.
const CHECK_MAX_FILES: usize = 500;
const CHECK_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Containers one Check runs at once (a grader and the student's program).
const GRADING_CONTAINERS: usize = 2;

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

impl From<ClassroomError> for AppError {
    fn from(e: ClassroomError) -> Self {
        match e {
            ClassroomError::TeacherExists(_) => {
                AppError::new(StatusCode::CONFLICT, "already_exists", e.to_string())
            }
            ClassroomError::BadLogin => {
                AppError::new(StatusCode::UNAUTHORIZED, "bad_login", e.to_string())
            }
            ClassroomError::NoSuchClass => {
                AppError::new(StatusCode::NOT_FOUND, "no_such_class", e.to_string())
            }
            ClassroomError::NameTaken(_) => {
                AppError::new(StatusCode::CONFLICT, "name_taken", e.to_string())
            }
            ClassroomError::Invalid(_) => AppError::bad_request("invalid", e.to_string()),
            ClassroomError::BadRecoveryCode => {
                AppError::new(StatusCode::NOT_FOUND, "bad_recovery_code", e.to_string())
            }
            ClassroomError::AlreadyJoined => {
                AppError::new(StatusCode::CONFLICT, "already_joined", e.to_string())
            }
            ClassroomError::NoSuchStudent => AppError::not_found(e.to_string()),
            ClassroomError::Busy => AppError {
                retry_after: Some(5),
                ..AppError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
            },
            ClassroomError::Store(e) => e.into(),
        }
    }
}

pub(super) fn find_exercise(state: &AppState, id: &str) -> Result<Arc<Exercise>, AppError> {
    state
        .exercises
        .get(id)
        .cloned()
        .ok_or_else(|| AppError::not_found(format!("There is no exercise {id:?}.")))
}

/// The exercises a class sees (its teacher's choice, or every one), in
/// the order of their ids.
pub(super) async fn class_exercises(
    state: &AppState,
    class_id: &str,
) -> Result<Vec<Arc<Exercise>>, AppError> {
    let assigned = state.classroom.assigned(class_id).await?;
    Ok(state
        .exercises
        .values()
        .filter(|x| assigned.sees(&x.id))
        .cloned()
        .collect())
}

/// An exercise of the student's class, or 404 (`not_assigned` when it
/// exists but the teacher has not given it to this class).
pub(super) async fn student_exercise(
    state: &AppState,
    student: &crate::classroom::Student,
    id: &str,
) -> Result<Arc<Exercise>, AppError> {
    let x = find_exercise(state, id)?;
    if !state.classroom.assigned(&student.class_id).await?.sees(id) {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_assigned",
            format!("{:?} is not one of your class's exercises.", x.title),
        ));
    }
    Ok(x)
}

async fn student(
    state: &AppState,
    session: &tower_sessions::Session,
) -> Result<crate::classroom::Student, AppError> {
    let owner = browser_session::existing_owner(session).await?;
    joined(state, &owner).await
}

/// The student this browser is, or 403 when it has not joined a class.
pub(super) async fn joined(
    state: &AppState,
    owner: &str,
) -> Result<crate::classroom::Student, AppError> {
    state
        .classroom
        .student_by_owner(owner)
        .await?
        .ok_or_else(|| {
            AppError::new(
                StatusCode::FORBIDDEN,
                "not_joined",
                "Join a class first, with the code your teacher gave you.",
            )
        })
}

/// The student's own workspace for one exercise (starter files on first use).
pub async fn exercise_session(
    state: &AppState,
    owner: &str,
    x: &Exercise,
) -> Result<Arc<Session>, AppError> {
    let key = format!("{owner}.x.{}", x.id);
    let fresh = state.registry.get(&key).is_none();
    let session = state
        .registry
        .get_or_create(&key, OwnerKind::Browser, NewSession::default())
        .await?;
    if fresh {
        let handle = session.ensure().await?;
        if let replbox_protocol::FileReply::Listing(list) = handle
            .file(replbox_protocol::FileOp::List {
                path: String::new(),
            })
            .await?
        {
            if list.is_empty() {
                for (path, data) in &x.starter {
                    handle.write_file(path.clone(), data.clone()).await?;
                }
            }
        }
    }
    Ok(session)
}

#[derive(Deserialize)]
struct JoinRequest {
    code: String,
    name: String,
}

async fn join(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: tower_sessions::Session,
    super::api::JsonBody(req): super::api::JsonBody<JoinRequest>,
) -> Result<Response, AppError> {
    let owner = browser_session::existing_owner(&session).await?;
    let joined = join_limited(&state, client, &req.code, &req.name, &owner).await?;
    Ok((StatusCode::OK, Json(joined)).into_response())
}

/// Joins a class, within the limit on wrong codes per client address.
pub(super) async fn join_limited(
    state: &AppState,
    client: std::net::IpAddr,
    code: &str,
    name: &str,
    owner: &str,
) -> Result<crate::classroom::Joined, AppError> {
    let key = limit_key(client);
    state.limits.class_code.check(&key)?;
    match state.classroom.join(code, name, owner).await {
        Err(ClassroomError::NoSuchClass) => {
            state.limits.class_code.spend(&key);
            Err(ClassroomError::NoSuchClass.into())
        }
        other => Ok(other?),
    }
}

/// Signs a teacher in, within the limits on wrong passwords per client
/// address and per teacher name.
pub(super) async fn sign_in_limited(
    state: &AppState,
    client: std::net::IpAddr,
    name: &str,
    password: &str,
) -> Result<String, AppError> {
    let client_key = limit_key(client);
    let account_key = name.trim().to_lowercase();
    state.limits.sign_in_client.check(&client_key)?;
    state.limits.sign_in_account.check(&account_key)?;
    match state.classroom.login(name, password).await {
        Err(ClassroomError::BadLogin) => {
            state.limits.sign_in_client.spend(&client_key);
            state.limits.sign_in_account.spend(&account_key);
            Err(ClassroomError::BadLogin.into())
        }
        other => Ok(other?),
    }
}

/// This browser becomes the student a recovery code names (within the
/// limit on wrong codes per client address).
pub(super) async fn recover_limited(
    state: &AppState,
    client: std::net::IpAddr,
    session: &tower_sessions::Session,
    code: &str,
) -> Result<crate::classroom::Student, AppError> {
    let key = limit_key(client);
    state.limits.recovery.check(&key)?;
    let owner = browser_session::existing_owner(session).await?;
    match state.classroom.recover(code, &owner).await {
        Err(ClassroomError::BadRecoveryCode) => {
            state.limits.recovery.spend(&key);
            Err(ClassroomError::BadRecoveryCode.into())
        }
        Err(e) => Err(e.into()),
        Ok(student) => {
            browser_session::become_owner(session, &student.owner).await?;
            Ok(student)
        }
    }
}

fn limit_key(client: std::net::IpAddr) -> String {
    super::client_addr::limit_key(client).to_string()
}

#[derive(Deserialize)]
struct RecoverRequest {
    code: String,
}

async fn recover(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: tower_sessions::Session,
    super::api::JsonBody(req): super::api::JsonBody<RecoverRequest>,
) -> Result<Response, AppError> {
    let student = recover_limited(&state, client, &session, &req.code).await?;
    Ok(Json(student).into_response())
}

async fn me(
    State(state): State<AppState>,
    session: tower_sessions::Session,
) -> Result<Response, AppError> {
    let student = student(&state, &session).await?;
    let class = state.classroom.class(&student.class_id).await?;
    let progress = state.classroom.progress(&student.id).await?;
    let exercises: Vec<_> = class_exercises(&state, &student.class_id)
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
    session: tower_sessions::Session,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let student = student(&state, &session).await?;
    let x = student_exercise(&state, &student, &id).await?;
    Ok(Json(json!({"id": x.id, "title": x.title, "language": x.language, "entry": x.entry,
                   "points": x.points(), "prompt": x.prompt,
                   "tests": x.tests.iter().map(|t| json!({"name": t.name, "points": t.points})).collect::<Vec<_>>()}))
    .into_response())
}

async fn check(
    State(state): State<AppState>,
    session: tower_sessions::Session,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let student = student(&state, &session).await?;
    let x = student_exercise(&state, &student, &id).await?;
    let language = state
        .languages
        .get(&x.language)
        .ok_or_else(AppError::internal)?
        .clone();
    // One Check in flight per student, a few per minute.
    let turn = state.limits.begin_check(&student.id)?;
    let workspace = exercise_session(&state, &student.owner, &x).await?;
    let handle = workspace.ensure().await?;
    workspace.touch().await;
    let files = super::pages::workspace_files(&handle, CHECK_MAX_FILES, CHECK_MAX_BYTES)
        .await?
        .ok_or_else(|| {
            AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "workspace_too_large",
                "The workspace is too large to check.",
            )
        })?;
    // The grader's container and the student's, within the same cap as
    // every sandbox.
    let room = state.registry.reserve(GRADING_CONTAINERS).await?;
    // Grading runs in a task of its own that holds the turn and the room:
    // a client that goes away mid-Check drops this request, not the Check,
    // so its containers are always removed and counted until they are.
    let graded = tokio::spawn(async move {
        let _held = (turn, room);
        let report =
            crate::exercises::grade::grade(state.registry.sandboxes(), &x, &language, &files)
                .await?;
        let check_id = state
            .classroom
            .record_check(&student.id, &x.id, &report, &files)
            .await?;
        Ok::<_, AppError>(json!({"checkId": check_id, "report": report}))
    });
    let body = graded.await.map_err(|_| AppError::internal())??;
    Ok(Json(body).into_response())
}

async fn teacher(session: &tower_sessions::Session) -> Result<String, AppError> {
    browser_session::teacher_id(session).await?.ok_or_else(|| {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            "teacher_only",
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
    session: tower_sessions::Session,
    super::api::JsonBody(req): super::api::JsonBody<LoginRequest>,
) -> Result<Response, AppError> {
    let id = sign_in_limited(&state, client, &req.name, &req.password).await?;
    browser_session::sign_in_teacher(&session, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn logout(session: tower_sessions::Session) -> Result<Response, AppError> {
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
    session: tower_sessions::Session,
) -> Result<Response, AppError> {
    let t = teacher(&session).await?;
    let exercises: Vec<_> = state
        .exercises
        .values()
        .map(|x| json!({"id": x.id, "title": x.title}))
        .collect();
    let mut classes = Vec::new();
    for c in state.classroom.classes_of(&t).await? {
        let seen: Vec<_> = class_exercises(&state, &c.id)
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
    session: tower_sessions::Session,
    super::api::JsonBody(req): super::api::JsonBody<ClassRequest>,
) -> Result<Response, AppError> {
    let t = teacher(&session).await?;
    let class = state.classroom.create_class(&t, &req.name).await?;
    Ok((StatusCode::CREATED, Json(class)).into_response())
}

/// The teacher's own class, or 404 (never another teacher's).
pub(super) async fn class_of(
    state: &AppState,
    teacher: &str,
    class: &str,
) -> Result<crate::classroom::Class, AppError> {
    match state.classroom.class(class).await? {
        Some(c) if c.teacher_id == teacher => Ok(c),
        _ => Err(AppError::not_found("There is no such class of yours.")),
    }
}

/// The signed-in teacher's own class (401 without a teacher).
async fn own_class(
    state: &AppState,
    session: &tower_sessions::Session,
    class: &str,
) -> Result<crate::classroom::Class, AppError> {
    class_of(state, &teacher(session).await?, class).await
}

async fn standings(
    State(state): State<AppState>,
    session: tower_sessions::Session,
    Path((class, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    own_class(&state, &session, &class).await?;
    find_exercise(&state, &id)?;
    Ok(Json(json!({"rows": state.classroom.standings(&class, &id).await?})).into_response())
}

async fn standings_as_csv(
    State(state): State<AppState>,
    session: tower_sessions::Session,
    Path((class, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    own_class(&state, &session, &class).await?;
    find_exercise(&state, &id)?;
    let rows = state.classroom.standings(&class, &id).await?;
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
    session: tower_sessions::Session,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let (check, student) = state
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
    session: tower_sessions::Session,
    Path(class): Path<String>,
    super::api::JsonBody(req): super::api::JsonBody<AssignRequest>,
) -> Result<Response, AppError> {
    let c = own_class(&state, &session, &class).await?;
    choose_exercises(&state, &c.id, &req.exercises).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A new code for the teacher's class: the old one lets nobody in any more
/// (a leaked code, or a removed student who kept it).
async fn new_code(
    State(state): State<AppState>,
    session: tower_sessions::Session,
    Path(class): Path<String>,
) -> Result<Response, AppError> {
    let c = own_class(&state, &session, &class).await?;
    let code = state.classroom.new_class_code(&c.id).await?;
    Ok(Json(json!({"code": code})).into_response())
}

/// Sets a class's exercises after checking that each exists.
pub(super) async fn choose_exercises(
    state: &AppState,
    class_id: &str,
    exercises: &[String],
) -> Result<(), AppError> {
    if let Some(unknown) = exercises.iter().find(|x| !state.exercises.contains_key(*x)) {
        return Err(AppError::bad_request(
            "unknown_exercise",
            format!("There is no exercise {unknown:?}."),
        ));
    }
    state.classroom.assign(class_id, exercises).await?;
    Ok(())
}

#[derive(Deserialize)]
struct RenameRequest {
    name: String,
}

/// The teacher renames a student of their class.
async fn rename_student(
    State(state): State<AppState>,
    session: tower_sessions::Session,
    Path((class, student)): Path<(String, String)>,
    super::api::JsonBody(req): super::api::JsonBody<RenameRequest>,
) -> Result<Response, AppError> {
    let c = own_class(&state, &session, &class).await?;
    let s = state
        .classroom
        .rename_student(&c.id, &student, &req.name)
        .await?;
    Ok(Json(s).into_response())
}

/// The teacher removes a student of their class, their checks and their
/// exercise workspaces.
async fn remove_student(
    State(state): State<AppState>,
    session: tower_sessions::Session,
    Path((class, student)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let c = own_class(&state, &session, &class).await?;
    forget_student(&state, &c.id, &student).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes a student and the workspaces of their exercises.
pub(super) async fn forget_student(
    state: &AppState,
    class_id: &str,
    student: &str,
) -> Result<(), AppError> {
    let s = state.classroom.remove_student(class_id, student).await?;
    for x in state.exercises.keys() {
        let key = format!("{}.x.{x}", s.owner);
        if state.registry.get(&key).is_some() {
            let _ = state.registry.remove(&key).await;
        }
    }
    Ok(())
}
