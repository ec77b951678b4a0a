//! The grading service's HTTP API: the classic routes of `PROTOCOL.md` §1.7
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
use axum::routing::{get, post, put};
use rollcall_http::RawBody;
use rollcall_proto::prom::{Counter, Registry};
use serde_json::Value;
use std::sync::Arc;

use crate::error::GradesError;
use crate::model::{NewGrade, NewStudent};
use crate::store::GradeStore;

/// Largest request body.
pub const MAX_BODY: usize = 64 * 1024;

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

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

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/students", get(list).post(add_student))
        .route(
            "/students/{id}",
            get(one).put(rename_student).delete(delete_student),
        )
        .route("/students/{id}/grades", post(add_grade))
        .route(
            "/students/{id}/grades/{grade}",
            put(update_grade).delete(delete_grade),
        )
        .route("/openapi.json", get(openapi));
    rollcall_http::with_fallbacks(api)
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

async fn list(State(state): State<AppState>) -> Result<Response, GradesError> {
    Ok(axum::Json(state.store.students().await?).into_response())
}

/// Most grades one page holds.
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<usize>,
    cursor: Option<i64>,
}

/// `GET /students/{id}`: every grade, oldest first (classic); with `limit`
/// (1–1000), one page newest first, older than `cursor`, with `NextCursor`
/// when more follow.
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

/// `PUT /students/{id}`: rename (`FirstName`, `LastName`).
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

/// `DELETE /students/{id}`: remove a student and their grades.
async fn delete_student(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, GradesError> {
    let id = student_id(&id)?;
    state.store.delete_student(id).await?;
    tracing::info!(student = id, "student removed");
    Ok(StatusCode::NO_CONTENT)
}

async fn add_student(
    State(state): State<AppState>,
    RawBody(body): RawBody<MAX_BODY>,
) -> Result<Response, GradesError> {
    let new = new_student(&state, &body)?;
    let student = state.store.add_student(new).await?;
    state.metrics.students_added.inc();
    let location = format!("/students/{}", student.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(student),
    )
        .into_response())
}

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
    let location = format!("/students/{id}/grades/{}", grade.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(grade),
    )
        .into_response())
}

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

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Registers the grading service's figures in a `/metrics` answer.
pub fn register_metrics(state: &AppState, r: &mut Registry) {
    let m = &state.metrics;
    r.register(
        "rollcall_grades_requests",
        "API requests answered",
        m.requests.clone(),
    );
    r.register(
        "rollcall_grades_students_added",
        "Students added",
        m.students_added.clone(),
    );
    r.register(
        "rollcall_grades_grades_added",
        "Grades added",
        m.grades_added.clone(),
    );
    r.register(
        "rollcall_grades_grades_updated",
        "Grades corrected",
        m.grades_updated.clone(),
    );
    r.register(
        "rollcall_grades_grades_deleted",
        "Grades deleted",
        m.grades_deleted.clone(),
    );
    r.register(
        "rollcall_grades_rejected",
        "Requests refused for invalid input",
        m.rejected.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::OPENAPI;

    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = &doc["paths"];
        for (path, method) in [
            ("/students", "get"),
            ("/students", "post"),
            ("/students/{id}", "get"),
            ("/students/{id}/grades", "post"),
            ("/students/{id}/grades/{grade}", "put"),
            ("/students/{id}/grades/{grade}", "delete"),
            ("/healthz", "get"),
            ("/metrics", "get"),
            ("/openapi.json", "get"),
        ] {
            assert!(paths[path].get(method).is_some(), "{method} {path}");
        }
    }
}
