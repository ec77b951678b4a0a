//! The portal's pages: server-rendered, autoescaped (askama), no JavaScript.
//!
//! | route | page |
//! | --- | --- |
//! | `GET /` | redirect to `/students` |
//! | `GET /students` | the class list with each student's average and the class average |
//! | `POST /students` | add a student (errors shown inline) |
//! | `GET /students/{id}` | grade history and the "Add a Grade" form |
//! | `POST /students/{id}/grades` | add a grade: 303 back on success; on error the page again, 422, the message next to its field and the typed values kept |
//! | `GET /students/{id}/grades/{grade}/edit`, `POST /students/{id}/grades/{grade}` | correct a grade |
//! | `POST /students/{id}/grades/{grade}/delete` | delete a grade |
//!
//! With no grading service the pages answer 503 with a page that refreshes
//! itself every 5 seconds, so it recovers when one registers.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rollcall_grades::model::{FieldError, GradeType, NewGrade, PersonName};
use serde::Deserialize;

use crate::grading::{GradeBody, GradeView, Grading, GradingError, StudentView};

/// The stylesheet, served at `/static/style.css`.
pub const STYLE: &str = include_str!("../static/style.css");
/// Seconds after which the "unavailable" page reloads itself.
pub const RETRY_SECONDS: u32 = 5;

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
        .route("/students/{id}", get(student_page))
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
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    portal: &'a str,
    heading: &'a str,
    message: &'a str,
    refresh: Option<u32>,
}

fn error_page(state: &AppState, error: &GradingError) -> Response {
    let (status, heading, message, refresh) = match error {
        GradingError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The grading service is unavailable",
            "The portal finds the grading service through the registry, and no healthy instance is registered right now. Nothing you entered was lost.",
            Some(RETRY_SECONDS),
        ),
        GradingError::NotFound => (
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such student or grade.",
            None,
        ),
        GradingError::Invalid { .. } | GradingError::Bad(_) => (
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

/// A path segment that is not a number names nothing.
fn id(text: &str) -> Result<i64, GradingError> {
    text.parse().map_err(|_| GradingError::NotFound)
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

// ----- the class list --------------------------------------------------------

struct StudentRow {
    id: i64,
    name: String,
    grades: usize,
    average: String,
    average_class: &'static str,
}

#[derive(Debug, Default, Deserialize)]
struct StudentForm {
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
}

#[derive(Debug, Default)]
struct StudentErrors {
    first_name: Option<String>,
    last_name: Option<String>,
    general: Option<String>,
}

#[derive(Template)]
#[template(path = "students.html")]
struct StudentsPage<'a> {
    portal: &'a str,
    rows: Vec<StudentRow>,
    class_average: String,
    form: StudentForm,
    errors: StudentErrors,
}

fn students_page<'a>(
    state: &'a AppState,
    students: &[StudentView],
    form: StudentForm,
    errors: StudentErrors,
) -> StudentsPage<'a> {
    let averages: Vec<f64> = students.iter().filter_map(StudentView::average).collect();
    StudentsPage {
        portal: &state.portal,
        rows: students
            .iter()
            .map(|s| StudentRow {
                id: s.id,
                name: s.name(),
                grades: s.grades.len(),
                average: format_average(s.average()),
                average_class: score_class(s.average()),
            })
            .collect(),
        class_average: format_average(rollcall_grades::model::average(averages.into_iter())),
        form,
        errors,
    }
}

async fn class_list(State(state): State<AppState>) -> Response {
    match state.grading.students().await {
        Ok(students) => render(
            StatusCode::OK,
            &students_page(
                &state,
                &students,
                StudentForm::default(),
                StudentErrors::default(),
            ),
        ),
        Err(e) => error_page(&state, &e),
    }
}

async fn add_student(
    State(state): State<AppState>,
    form: Result<Form<StudentForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let mut errors = StudentErrors::default();
    let first = PersonName::parse(&form.first_name);
    let last = PersonName::parse(&form.last_name);
    if first.is_err() {
        errors.first_name = Some("Enter a first name (1 to 100 characters).".into());
    }
    if last.is_err() {
        errors.last_name = Some("Enter a last name (1 to 100 characters).".into());
    }
    if let (Ok(first), Ok(last)) = (first, last) {
        match state
            .grading
            .add_student(first.as_str(), last.as_str())
            .await
        {
            Ok(student) => {
                return Redirect::to(&format!("/students/{}", student.id)).into_response();
            }
            Err(GradingError::Invalid { field, message }) => match field.as_deref() {
                Some("FirstName") => errors.first_name = Some(message),
                Some("LastName") => errors.last_name = Some(message),
                _ => errors.general = Some(message),
            },
            Err(e) => return error_page(&state, &e),
        }
    }
    match state.grading.students().await {
        Ok(students) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &students_page(&state, &students, form, errors),
        ),
        Err(e) => error_page(&state, &e),
    }
}

// ----- a student's page ------------------------------------------------------

struct GradeRow {
    id: i64,
    title: String,
    kind: String,
    score: String,
    score_class: &'static str,
}

struct TypeOption {
    value: &'static str,
    selected: bool,
}

#[derive(Debug, Default, Deserialize)]
struct GradeForm {
    #[serde(default)]
    title: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    score: String,
}

#[derive(Debug, Default)]
struct GradeErrors {
    title: Option<String>,
    kind: Option<String>,
    score: Option<String>,
    general: Option<String>,
}

impl GradeErrors {
    fn set(&mut self, field: Option<&str>, message: String) {
        match field {
            Some("Title") => self.title = Some(message),
            Some("Type") => self.kind = Some(message),
            Some("Score") => self.score = Some(message),
            _ => self.general = Some(message),
        }
    }

    fn from_fields(errors: &[FieldError]) -> Self {
        let mut out = Self::default();
        for e in errors {
            let message = match e {
                FieldError::Score => "Enter a score from 0 to 100.".to_owned(),
                FieldError::Title => "Enter a title of 1 to 200 characters.".to_owned(),
                FieldError::Type => "Choose Quiz, Test, Exam or Homework.".to_owned(),
                other => other.to_string(),
            };
            out.set(e.field(), message);
        }
        out
    }
}

fn options(selected: &str) -> Vec<TypeOption> {
    GradeType::ALL
        .iter()
        .map(|t| TypeOption {
            value: t.as_str(),
            selected: t.as_str() == selected,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "student.html")]
struct StudentPage<'a> {
    portal: &'a str,
    id: i64,
    name: String,
    average: String,
    average_class: &'static str,
    grades: Vec<GradeRow>,
    form: GradeForm,
    errors: GradeErrors,
    options: Vec<TypeOption>,
    action: String,
    button: &'static str,
}

fn student_page_for<'a>(
    state: &'a AppState,
    student: &StudentView,
    form: GradeForm,
    errors: GradeErrors,
) -> StudentPage<'a> {
    let options = options(if form.kind.is_empty() {
        "Quiz"
    } else {
        &form.kind
    });
    StudentPage {
        portal: &state.portal,
        id: student.id,
        name: student.name(),
        average: format_average(student.average()),
        average_class: score_class(student.average()),
        grades: student
            .grades
            .iter()
            .map(|g| GradeRow {
                id: g.id,
                title: g.title.clone(),
                kind: g.kind.clone(),
                score: format_score(g.score),
                score_class: score_class(Some(g.score)),
            })
            .collect(),
        form,
        errors,
        options,
        action: format!("/students/{}/grades", student.id),
        button: "Add grade",
    }
}

async fn student_page(State(state): State<AppState>, Path(student): Path<String>) -> Response {
    let result = async { state.grading.student(id(&student)?).await }.await;
    match result {
        Ok(s) => render(
            StatusCode::OK,
            &student_page_for(&state, &s, GradeForm::default(), GradeErrors::default()),
        ),
        Err(e) => error_page(&state, &e),
    }
}

/// Validates a grade form with the grading service's own rules.
fn parse_grade(form: &GradeForm) -> Result<NewGrade, GradeErrors> {
    NewGrade::from_form(&form.title, &form.kind, &form.score)
        .map_err(|e| GradeErrors::from_fields(&e))
}

/// What saving a grade form came to.
enum Saved {
    /// Stored: redirect to the student's page (so a reload stores nothing twice).
    Done,
    /// Refused: show the form again with these errors.
    Refused(GradeErrors),
    /// The grading service could not be used: show this page.
    Failed(Response),
}

/// Validates `form` with the grading service's own rules and, if it passes,
/// sends it with `send`; a refusal by the grading service is shown next to the
/// field it names.
async fn save_grade<F, Fut>(state: &AppState, form: &GradeForm, send: F) -> Saved
where
    F: FnOnce(GradeBody) -> Fut,
    Fut: std::future::Future<Output = Result<GradeView, GradingError>>,
{
    let grade = match parse_grade(form) {
        Ok(grade) => grade,
        Err(errors) => return Saved::Refused(errors),
    };
    match send(GradeBody::from(&grade)).await {
        Ok(_) => Saved::Done,
        Err(GradingError::Invalid { field, message }) => {
            let mut errors = GradeErrors::default();
            errors.set(field.as_deref(), message);
            Saved::Refused(errors)
        }
        Err(e) => Saved::Failed(error_page(state, &e)),
    }
}

async fn add_grade(
    State(state): State<AppState>,
    Path(student): Path<String>,
    form: Result<Form<GradeForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let student_id = match id(&student) {
        Ok(i) => i,
        Err(e) => return error_page(&state, &e),
    };
    let grading = state.grading.clone();
    let errors = match save_grade(&state, &form, |body| async move {
        grading.add_grade(student_id, &body).await
    })
    .await
    {
        Saved::Done => return Redirect::to(&format!("/students/{student_id}")).into_response(),
        Saved::Refused(errors) => errors,
        Saved::Failed(page) => return page,
    };
    match state.grading.student(student_id).await {
        Ok(s) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &student_page_for(&state, &s, form, errors),
        ),
        Err(e) => error_page(&state, &e),
    }
}

#[derive(Template)]
#[template(path = "edit_grade.html")]
struct EditPage<'a> {
    portal: &'a str,
    id: i64,
    name: String,
    form: GradeForm,
    errors: GradeErrors,
    options: Vec<TypeOption>,
    action: String,
    button: &'static str,
}

fn edit_page_for<'a>(
    state: &'a AppState,
    student: &StudentView,
    grade: i64,
    form: GradeForm,
    errors: GradeErrors,
) -> EditPage<'a> {
    let options = options(&form.kind);
    EditPage {
        portal: &state.portal,
        id: student.id,
        name: student.name(),
        form,
        errors,
        options,
        action: format!("/students/{}/grades/{grade}", student.id),
        button: "Save",
    }
}

fn find_grade(student: &StudentView, grade: i64) -> Result<&GradeView, GradingError> {
    student
        .grades
        .iter()
        .find(|g| g.id == grade)
        .ok_or(GradingError::NotFound)
}

async fn edit_page(
    State(state): State<AppState>,
    Path((student, grade)): Path<(String, String)>,
) -> Response {
    let result = async {
        let (student_id, grade_id) = (id(&student)?, id(&grade)?);
        let s = state.grading.student(student_id).await?;
        let g = find_grade(&s, grade_id)?;
        let form = GradeForm {
            title: g.title.clone(),
            kind: g.kind.clone(),
            score: format_score(g.score),
        };
        Ok::<_, GradingError>(
            edit_page_for(&state, &s, grade_id, form, GradeErrors::default()).render(),
        )
    }
    .await;
    match result {
        Ok(Ok(html)) => Html(html).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "a page failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(e) => error_page(&state, &e),
    }
}

async fn update_grade(
    State(state): State<AppState>,
    Path((student, grade)): Path<(String, String)>,
    form: Result<Form<GradeForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let (student_id, grade_id) = match (id(&student), id(&grade)) {
        (Ok(s), Ok(g)) => (s, g),
        _ => return error_page(&state, &GradingError::NotFound),
    };
    let grading = state.grading.clone();
    let errors = match save_grade(&state, &form, |body| async move {
        grading.update_grade(student_id, grade_id, &body).await
    })
    .await
    {
        Saved::Done => return Redirect::to(&format!("/students/{student_id}")).into_response(),
        Saved::Refused(errors) => errors,
        Saved::Failed(page) => return page,
    };
    match state.grading.student(student_id).await {
        Ok(s) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &edit_page_for(&state, &s, grade_id, form, errors),
        ),
        Err(e) => error_page(&state, &e),
    }
}

async fn delete_grade(
    State(state): State<AppState>,
    Path((student, grade)): Path<(String, String)>,
) -> Response {
    let result = async {
        let (student_id, grade_id) = (id(&student)?, id(&grade)?);
        state.grading.delete_grade(student_id, grade_id).await?;
        Ok::<_, GradingError>(student_id)
    }
    .await;
    match result {
        Ok(student_id) => Redirect::to(&format!("/students/{student_id}")).into_response(),
        Err(e) => error_page(&state, &e),
    }
}
