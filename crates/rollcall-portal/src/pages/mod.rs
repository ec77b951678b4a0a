//! The portal's pages: server-rendered, autoescaped (askama), no JavaScript.
//!
//! | route | page |
//! | --- | --- |
//! | `GET /` | redirect to `/students` |
//! | `GET /students` | the class list with each student's average and the class average |
//! | `POST /students` | add a student (errors shown inline) |
//! | `GET /students/{id}?before=C` | grade history, newest first, a page at a time, and the "Add a Grade" form |
//! | `POST /students/{id}` | rename the student |
//! | `GET`/`POST /students/{id}/remove` | confirm, then remove the student and their grades |
//! | `POST /students/{id}/grades` | add a grade: 303 back on success; on error the page again, 422, the message next to its field and the typed values kept |
//! | `GET /students/{id}/grades/{grade}/edit`, `POST /students/{id}/grades/{grade}` | correct a grade |
//! | `POST /students/{id}/grades/{grade}/delete` | delete a grade |
//!
//! Form field names match ignoring case and `_` (`Title`, `title`;
//! `FirstName`, `first_name`), as the classic API's do.
//!
//! A page that could not be read because no grading service is available
//! answers 503 and reloads itself every 5 seconds (a `GET`, so reloading is
//! safe). A write that could not be made never claims otherwise: the form
//! comes back with what was typed and says it was not saved and why — or, when
//! the grading service took the request but did not answer, that it may or
//! may not have been saved — and nothing reloads by itself.
//!
//! Against a classic grading service (grades without IDs, no student routes)
//! the pages offer only what it can do, and say so.
//!
//! Here: the router, rendering, the error page and what shared formatting
//! there is; `students` (class list, add, rename, remove), `student` (a
//! student's page and the grade forms), `forms` (fields read ignoring case,
//! messages), `not_saved` (the page for a write that was not made).

use askama::Template;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::grading::{Grading, GradingError};

mod forms;
mod not_saved;
mod student;
mod students;

use student::{add_grade, delete_grade, edit_page, student_page, update_grade};
use students::{add_student, class_list, confirm_remove, remove_student, rename_student};

/// The stylesheet, served at `/static/style.css`.
pub const STYLE: &str = include_str!("../../static/style.css");
/// Seconds after which the "unavailable" page reloads itself.
pub const RETRY_SECONDS: u32 = 5;
/// Grades on one page of a student's history.
pub const GRADES_PER_PAGE: usize = 50;

#[derive(Debug, Clone)]
pub struct AppState {
    pub grading: Grading,
    /// How the footer names this service.
    pub portal: String,
}

pub fn router(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(|| async { Redirect::to("/students") }))
        .route("/students", get(class_list).post(add_student))
        .route("/students/{id}", get(student_page).post(rename_student))
        .route(
            "/students/{id}/remove",
            get(confirm_remove).post(remove_student),
        )
        .route("/students/{id}/grades", post(add_grade))
        .route("/students/{id}/grades/{grade}", post(update_grade))
        .route("/students/{id}/grades/{grade}/edit", get(edit_page))
        .route("/students/{id}/grades/{grade}/delete", post(delete_grade))
        .route("/static/style.css", get(style));
    rollcall_http::with_fallbacks(pages).with_state(state)
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        STYLE,
    )
        .into_response()
}

fn render(status: StatusCode, template: &impl Template) -> Response {
    rollcall_http::html_page(status, template.render())
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    portal: &'a str,
    heading: &'a str,
    message: &'a str,
    refresh: Option<u32>,
}

/// The page for a read (`GET`) that failed. Only a read reloads itself.
fn error_page(state: &AppState, error: &GradingError) -> Response {
    let (status, heading, message, refresh) = match error {
        GradingError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The grading service is unavailable",
            "The portal finds the grading service through the registry, and no healthy instance is registered right now.",
            Some(RETRY_SECONDS),
        ),
        GradingError::Unsupported(_) => (
            StatusCode::NOT_IMPLEMENTED,
            "Not possible here",
            "The grading service in use does not offer this.",
            None,
        ),
        GradingError::NotFound => (
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such student or grade.",
            None,
        ),
        GradingError::Invalid { .. } | GradingError::Bad(_) | GradingError::Uncertain => (
            StatusCode::BAD_GATEWAY,
            "Something went wrong",
            "The grading service gave an answer the portal did not understand. Please try again.",
            None,
        ),
    };
    let mut response = render(
        status,
        &ErrorPage {
            portal: &state.portal,
            heading,
            message,
            refresh,
        },
    );
    if let Some(seconds) = refresh
        && let Ok(value) = seconds.to_string().parse()
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Why a write was not made, in words for the teacher (and the status).
fn not_saved_reason(error: &GradingError, what: &str) -> (StatusCode, String) {
    match error {
        GradingError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Not saved: no grading service is available right now, so the {what} was not stored. \
                 What you typed is below; submit it again once the grading service is back."
            ),
        ),
        GradingError::Uncertain => (
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "The grading service took the {what} but did not answer in time: it may or may not \
                 have been saved. Check before submitting it again."
            ),
        ),
        GradingError::Unsupported(what) => (
            StatusCode::NOT_IMPLEMENTED,
            format!("Not saved: the grading service in use cannot {what}."),
        ),
        GradingError::NotFound => (
            StatusCode::NOT_FOUND,
            "Not saved: there is no such student or grade (any more).".to_owned(),
        ),
        GradingError::Invalid { message, .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Not saved: {message}"),
        ),
        GradingError::Bad(_) => (
            StatusCode::BAD_GATEWAY,
            format!(
                "Not saved: the grading service gave an answer the portal did not understand, \
                 so the {what} may not have been stored. Check before submitting it again."
            ),
        ),
    }
}

/// A path segment that is not a number names nothing.
fn id(text: &str) -> Result<i64, GradingError> {
    text.parse().map_err(|_| GradingError::NotFound)
}

/// The `N` IDs in the path (the student's, then the grade's), in order; a
/// segment that is not a number answers the "not found" page.
struct Ids<const N: usize>([i64; N]);

impl<const N: usize> axum::extract::FromRequestParts<AppState> for Ids<N> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        let not_found = || error_page(state, &GradingError::NotFound);
        let axum::extract::Path(texts) =
            axum::extract::Path::<Vec<String>>::from_request_parts(parts, state)
                .await
                .map_err(|_| not_found())?;
        let ids: Vec<i64> = texts
            .iter()
            .map(|t| id(t))
            .collect::<Result<_, _>>()
            .map_err(|_| not_found())?;
        ids.try_into().map(Ids).map_err(|_| not_found())
    }
}

fn format_average(average: Option<f64>) -> String {
    average.map_or_else(|| "—".to_owned(), |a| format!("{a:.1}"))
}

fn format_score(score: f64) -> String {
    if score.fract() == 0.0 {
        format!("{}", score as i64)
    } else {
        format!("{}", (score * 100.0).round() / 100.0)
    }
}

fn score_class(score: Option<f64>) -> &'static str {
    match score {
        Some(s) if s >= 85.0 => "score-good",
        Some(s) if s >= 70.0 => "score-mid",
        Some(_) => "score-low",
        None => "",
    }
}
