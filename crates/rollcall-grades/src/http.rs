//! The grading service's HTTP API: the classic routes of `docs/PROTOCOL.md` §1.7
//! plus what a teacher needs beyond them.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /students` | 200, every student with grades |
//! | `POST /students` | `{"FirstName","LastName"}` → 201, the student |
//! | `GET /students/{id}` | 200, or 404 |
//! | `POST /students/{id}/grades` | one grade → 201, the stored grade (with `ID`) |
//! | `PUT /students/{id}/grades/{grade}` | a corrected grade → 200 |
//! | `DELETE /students/{id}/grades/{grade}` | 204 |
//!
//! Invalid input is a 400 whose JSON error names the field (`"field":
//! "Score"`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollcall_http::RawBody;
use rollcall_proto::prom::{self, Counter, Registry};
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::GradesError;
use crate::model::{NewGrade, NewStudent};
use crate::store::GradeStore;
use rollcall_grading_model::wire::{GradeBody, StudentBody};
use rollcall_grading_model::{Grade, Student};

/// Largest request body.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct GradesMetrics {
    pub requests: Counter,
    pub students_added: Counter,
    pub grades_added: Counter,
    pub grades_updated: Counter,
    pub grades_deleted: Counter,
    pub rejected: Counter,
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: GradeStore,
    pub metrics: Arc<GradesMetrics>,
}

/// The document's front matter; the paths come from the handlers' own
/// `#[utoipa::path]` attributes through [`api`], and the SDK's routes from
/// [`rollcall_sdk::service::openapi`].
#[derive(OpenApi)]
#[openapi(info(
    title = "rollcall grading service",
    description = "Students and grades. The classic routes keep their shapes (docs/PROTOCOL.md 1.7); \
field names in request bodies match case-insensitively. Errors are JSON: \
{\"error\": {\"code\", \"message\", \"field\"?}}."
))]
struct Doc;

/// The grading service's own routes with their documentation: the router
/// and the OpenAPI document come from this one list.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(Doc::openapi())
        .routes(routes!(list, add_student))
        .routes(routes!(one, rename_student, delete_student))
        .routes(routes!(add_grade))
        .routes(routes!(update_grade, delete_grade))
        .routes(routes!(rollcall_http::openapi::document))
}

/// The whole document the service serves: its own routes and the SDK's.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    rollcall_http::openapi::whole(api(), Some(rollcall_sdk::service::openapi()))
}

pub fn router(state: AppState) -> Router {
    rollcall_http::openapi::router(api(), Some(rollcall_sdk::service::openapi()))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn count(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    state.metrics.requests.inc();
    next.run(req).await
}

/// A student ID from the path; anything that is not one names no student.
fn student_id(text: &str) -> Result<i64, GradesError> {
    text.parse()
        .map_err(|_| GradesError::NoSuchStudent(text.to_owned()))
}

fn grade_id(student: i64, text: &str) -> Result<i64, GradesError> {
    text.parse().map_err(|_| GradesError::NoSuchGrade {
        student,
        grade: text.to_owned(),
    })
}

fn json_body(body: &[u8]) -> Result<Value, GradesError> {
    serde_json::from_slice(body).map_err(|e| GradesError::MalformedJson(e.to_string()))
}

/// A student from a JSON body (refusals counted).
fn new_student(state: &AppState, body: &[u8]) -> Result<NewStudent, GradesError> {
    rejected(
        state,
        json_body(body).and_then(|v| Ok(NewStudent::from_json(&v)?)),
    )
}

/// A grade from a JSON body (refusals counted).
fn new_grade(state: &AppState, body: &[u8]) -> Result<NewGrade, GradesError> {
    rejected(
        state,
        json_body(body).and_then(|v| Ok(NewGrade::from_json(&v)?)),
    )
}

fn rejected<T>(state: &AppState, result: Result<T, GradesError>) -> Result<T, GradesError> {
    if matches!(
        result,
        Err(GradesError::Invalid(_) | GradesError::MalformedJson(_))
    ) {
        state.metrics.rejected.inc();
    }
    result
}

/// Every student with grades
#[utoipa::path(get, path = "/students", tag = "classic",
    responses((status = 200, description = "The students", body = Vec<Student>)))]
async fn list(State(state): State<AppState>) -> Result<Response, GradesError> {
    Ok(axum::Json(state.store.students().await?).into_response())
}

/// `{id}` in a path (documentation: handlers read it as text, so anything
/// that is not an ID is a 404).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct StudentPath {
    /// The student's ID.
    id: i64,
}

/// `{id}` and `{grade}` in a path.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct GradePath {
    /// The student's ID.
    id: i64,
    /// The grade's ID.
    grade: i64,
}

/// 201 Created with a `Location` and the stored thing.
fn created(location: String, body: impl serde::Serialize) -> Response {
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(body),
    )
        .into_response()
}

/// Most grades one page holds.
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Page size, 1 to 1000: asks for a page of grades, newest first.
    limit: Option<usize>,
    /// `NextCursor` of the previous page: grades older than it.
    cursor: Option<i64>,
}

/// One student
///
/// Every grade, oldest first (classic); with `limit` (1–1000), one page
/// newest first, older than `cursor`, with `NextCursor` when more follow.
#[utoipa::path(get, path = "/students/{id}", tag = "classic", params(StudentPath, PageQuery),
    responses(
        (status = 200, description = "The student", body = Student),
        rollcall_http::openapi::BadQuery,
        rollcall_http::openapi::NotFound,
    ))]
async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    rollcall_http::QueryParams(page): rollcall_http::QueryParams<PageQuery>,
) -> Result<Response, GradesError> {
    let id = student_id(&id)?;
    let student = match (page.limit, page.cursor) {
        (None, None) => state.store.student(id).await?,
        (limit, cursor) => {
            let limit = limit.unwrap_or(100);
            if limit == 0 || limit > MAX_PAGE {
                return Err(GradesError::InvalidQuery(format!(
                    "`limit` must be 1 to {MAX_PAGE}"
                )));
            }
            state.store.student_page(id, limit, cursor).await?
        }
    };
    Ok(axum::Json(student).into_response())
}

/// Rename a student
#[utoipa::path(put, path = "/students/{id}", tag = "rollcall", params(StudentPath),
    request_body = StudentBody,
    responses(
        (status = 200, description = "Renamed", body = Student),
        rollcall_http::openapi::WriteRefused,
    ))]
async fn rename_student(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody<MAX_BODY>,
) -> Result<Response, GradesError> {
    let id = student_id(&id)?;
    let new = new_student(&state, &body)?;
    let student = state.store.rename_student(id, new).await?;
    tracing::info!(student = id, "student renamed");
    Ok(axum::Json(student).into_response())
}

/// Remove a student and their grades
#[utoipa::path(delete, path = "/students/{id}", tag = "rollcall", params(StudentPath),
    responses(
        (status = 204, description = "Removed"),
        rollcall_http::openapi::NotFound,
    ))]
async fn delete_student(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, GradesError> {
    let id = student_id(&id)?;
    state.store.delete_student(id).await?;
    tracing::info!(student = id, "student removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Add a student
#[utoipa::path(post, path = "/students", tag = "classic",
    request_body = StudentBody,
    responses(
        (status = 201, description = "Added (Location: /students/{id})", body = Student),
        rollcall_http::openapi::WriteRefused,
    ))]
async fn add_student(
    State(state): State<AppState>,
    RawBody(body): RawBody<MAX_BODY>,
) -> Result<Response, GradesError> {
    let new = new_student(&state, &body)?;
    let student = state.store.add_student(new).await?;
    state.metrics.students_added.inc();
    Ok(created(format!("/students/{}", student.id), student))
}

/// Add a grade
#[utoipa::path(post, path = "/students/{id}/grades", tag = "classic", params(StudentPath),
    request_body = GradeBody,
    responses(
        (status = 201, description = "Stored (Location: /students/{id}/grades/{grade})", body = Grade),
        rollcall_http::openapi::WriteRefused,
    ))]
async fn add_grade(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody<MAX_BODY>,
) -> Result<Response, GradesError> {
    let id = student_id(&id)?;
    let new = new_grade(&state, &body)?;
    let grade = state.store.add_grade(id, new).await?;
    state.metrics.grades_added.inc();
    tracing::info!(student = id, grade = grade.id, score = %grade.score, "grade added");
    Ok(created(
        format!("/students/{id}/grades/{}", grade.id),
        grade,
    ))
}

/// Correct a grade
#[utoipa::path(put, path = "/students/{id}/grades/{grade}", tag = "rollcall", params(GradePath),
    request_body = GradeBody,
    responses(
        (status = 200, description = "Stored", body = Grade),
        rollcall_http::openapi::WriteRefused,
    ))]
async fn update_grade(
    State(state): State<AppState>,
    Path((id, grade)): Path<(String, String)>,
    RawBody(body): RawBody<MAX_BODY>,
) -> Result<Response, GradesError> {
    let id = student_id(&id)?;
    let grade = grade_id(id, &grade)?;
    let new = new_grade(&state, &body)?;
    let stored = state.store.update_grade(id, grade, new).await?;
    state.metrics.grades_updated.inc();
    tracing::info!(student = id, grade, score = %stored.score, "grade corrected");
    Ok(axum::Json(stored).into_response())
}

/// Delete a grade
#[utoipa::path(delete, path = "/students/{id}/grades/{grade}", tag = "rollcall", params(GradePath),
    responses(
        (status = 204, description = "Deleted"),
        rollcall_http::openapi::NotFound,
    ))]
async fn delete_grade(
    State(state): State<AppState>,
    Path((id, grade)): Path<(String, String)>,
) -> Result<StatusCode, GradesError> {
    let id = student_id(&id)?;
    let grade = grade_id(id, &grade)?;
    state.store.delete_grade(id, grade).await?;
    state.metrics.grades_deleted.inc();
    tracing::info!(student = id, grade, "grade deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Registers the grading service's figures in a `/metrics` answer.
pub fn register_metrics(state: &AppState, r: &mut Registry) {
    let m = &state.metrics;
    prom::counters(
        r,
        &[
            (
                "rollcall_grades_requests",
                "API requests answered",
                &m.requests,
            ),
            (
                "rollcall_grades_students_added",
                "Students added",
                &m.students_added,
            ),
            (
                "rollcall_grades_grades_added",
                "Grades added",
                &m.grades_added,
            ),
            (
                "rollcall_grades_grades_updated",
                "Grades corrected",
                &m.grades_updated,
            ),
            (
                "rollcall_grades_grades_deleted",
                "Grades deleted",
                &m.grades_deleted,
            ),
            (
                "rollcall_grades_rejected",
                "Requests refused for invalid input",
                &m.rejected,
            ),
        ],
    );
}
