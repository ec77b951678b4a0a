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

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rollcall_grading_model::{FieldError, GradeType, NewGrade, PersonName};
use serde::Deserialize;

use crate::grading::{GradeBody, GradeView, Grading, GradingError, StudentView};

/// The stylesheet, served at `/static/style.css`.
pub const STYLE: &str = include_str!("../static/style.css");
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

/// A form's fields by name, ignoring case, `_` and `-` (`Title`, `title`;
/// `FirstName`, `first_name`): the classic API's names and the portal's own.
#[derive(Debug, Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn from(form: Result<Form<Vec<(String, String)>>, FormRejection>) -> Self {
        Self(form.map(|Form(f)| f).unwrap_or_default())
    }

    fn get(&self, name: &str) -> String {
        let wanted = Self::key(name);
        self.0
            .iter()
            .find(|(k, _)| Self::key(k) == wanted)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn key(name: &str) -> String {
        name.chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    }

    fn grade(&self) -> GradeForm {
        GradeForm {
            title: self.get("title"),
            kind: self.get("type"),
            score: self.get("score"),
        }
    }

    fn student(&self) -> StudentForm {
        StudentForm {
            first_name: self.get("first_name"),
            last_name: self.get("last_name"),
        }
    }
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
    grades: u64,
    average: String,
    average_class: &'static str,
}

#[derive(Debug, Default)]
struct StudentForm {
    first_name: String,
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
    sform: StudentForm,
    serrors: StudentErrors,
}

fn students_page<'a>(
    state: &'a AppState,
    students: &[StudentView],
    sform: StudentForm,
    serrors: StudentErrors,
) -> StudentsPage<'a> {
    let averages: Vec<f64> = students.iter().filter_map(StudentView::average).collect();
    StudentsPage {
        portal: &state.portal,
        rows: students
            .iter()
            .map(|s| StudentRow {
                id: s.id,
                name: s.name(),
                grades: s.count(),
                average: format_average(s.average()),
                average_class: score_class(s.average()),
            })
            .collect(),
        class_average: format_average(rollcall_grading_model::average(averages.into_iter())),
        sform,
        serrors,
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

/// Checks a student form with the grading service's own rules.
fn check_student(form: &StudentForm) -> Result<(PersonName, PersonName), StudentErrors> {
    let mut errors = StudentErrors::default();
    let first = PersonName::parse(&form.first_name);
    let last = PersonName::parse(&form.last_name);
    if first.is_err() {
        errors.first_name = Some("Enter a first name (1 to 100 characters).".into());
    }
    if last.is_err() {
        errors.last_name = Some("Enter a last name (1 to 100 characters).".into());
    }
    match (first, last) {
        (Ok(first), Ok(last)) => Ok((first, last)),
        _ => Err(errors),
    }
}

fn refused_student(field: Option<&str>, message: String) -> StudentErrors {
    let mut errors = StudentErrors::default();
    match field {
        Some("FirstName") => errors.first_name = Some(message),
        Some("LastName") => errors.last_name = Some(message),
        _ => errors.general = Some(message),
    }
    errors
}

async fn add_student(
    State(state): State<AppState>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = Fields::from(form).student();
    let errors = match check_student(&form) {
        Err(errors) => errors,
        Ok((first, last)) => match state
            .grading
            .add_student(first.as_str(), last.as_str())
            .await
        {
            Ok(student) => {
                return Redirect::to(&format!("/students/{}", student.id)).into_response();
            }
            Err(GradingError::Invalid { field, message }) => {
                refused_student(field.as_deref(), message)
            }
            Err(e) => {
                let (status, message) = not_saved_reason(&e, "student");
                return not_saved(
                    &state,
                    status,
                    message,
                    ("/students".into(), "All students".into()),
                    NotSavedForm::Student {
                        sform: form,
                        action: "/students".into(),
                        button: "Add student",
                    },
                );
            }
        },
    };
    match state.grading.students().await {
        Ok(students) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &students_page(&state, &students, form, errors),
        ),
        Err(e) => error_page(&state, &e),
    }
}

// ----- a write that was not made ---------------------------------------------

/// The form a "not saved" page gives back, filled with what was typed.
enum NotSavedForm {
    Grade {
        form: GradeForm,
        action: String,
        button: &'static str,
    },
    Student {
        sform: StudentForm,
        action: String,
        button: &'static str,
    },
    None,
}

#[derive(Template)]
#[template(path = "not_saved.html")]
struct NotSavedPage<'a> {
    portal: &'a str,
    message: String,
    back: String,
    back_label: String,
    grade_form: bool,
    student_form: bool,
    form: GradeForm,
    errors: GradeErrors,
    options: Vec<TypeOption>,
    sform: StudentForm,
    serrors: StudentErrors,
    action: String,
    button: &'static str,
}

/// An honest page for a write that was not made: why, and the form again
/// with what was typed. It never reloads itself.
fn not_saved(
    state: &AppState,
    status: StatusCode,
    message: String,
    (back, back_label): (String, String),
    form: NotSavedForm,
) -> Response {
    let mut page = NotSavedPage {
        portal: &state.portal,
        message,
        back,
        back_label,
        grade_form: false,
        student_form: false,
        form: GradeForm::default(),
        errors: GradeErrors::default(),
        options: options("Quiz"),
        sform: StudentForm::default(),
        serrors: StudentErrors::default(),
        action: String::new(),
        button: "",
    };
    match form {
        NotSavedForm::Grade {
            form,
            action,
            button,
        } => {
            page.grade_form = true;
            page.options = options(&form.kind);
            page.form = form;
            page.action = action;
            page.button = button;
        }
        NotSavedForm::Student {
            sform,
            action,
            button,
        } => {
            page.student_form = true;
            page.sform = sform;
            page.action = action;
            page.button = button;
        }
        NotSavedForm::None => {}
    }
    render(status, &page)
}

// ----- a student's page ------------------------------------------------------

struct GradeRow {
    /// `None` for a classic grading service's grades: no edit, no delete.
    id: Option<i64>,
    title: String,
    kind: String,
    score: String,
    score_class: &'static str,
}

struct TypeOption {
    value: &'static str,
    selected: bool,
}

#[derive(Debug, Default)]
struct GradeForm {
    title: String,
    kind: String,
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
            selected: t.as_str().eq_ignore_ascii_case(selected),
        })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    /// Show grades older than this grade ID.
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "student.html")]
struct StudentPage<'a> {
    portal: &'a str,
    id: i64,
    name: String,
    first_name: String,
    last_name: String,
    average: String,
    average_class: &'static str,
    count: u64,
    grades: Vec<GradeRow>,
    /// Some grades have no ID (a classic grading service).
    id_less: bool,
    /// Link to the next (older) page, and whether this is not the first.
    older: Option<String>,
    paged: bool,
    form: GradeForm,
    errors: GradeErrors,
    rename_error: Option<String>,
    options: Vec<TypeOption>,
    action: String,
    button: &'static str,
}

fn student_page_for<'a>(
    state: &'a AppState,
    student: &StudentView,
    before: Option<i64>,
    form: GradeForm,
    errors: GradeErrors,
) -> StudentPage<'a> {
    let options = options(if form.kind.is_empty() {
        "Quiz"
    } else {
        &form.kind
    });
    // rollcall's grading service sends a page, newest first; a classic one
    // every grade, oldest first.
    let classic = student.grade_count.is_none();
    let mut grades: Vec<GradeRow> = student
        .grades
        .iter()
        .map(|g| GradeRow {
            id: g.id,
            title: g.title.clone(),
            kind: g.kind.clone(),
            score: format_score(g.score),
            score_class: score_class(Some(g.score)),
        })
        .collect();
    if classic {
        grades.reverse();
    }
    StudentPage {
        portal: &state.portal,
        id: student.id,
        name: student.name(),
        first_name: student.first_name.clone(),
        last_name: student.last_name.clone(),
        average: format_average(student.average()),
        average_class: score_class(student.average()),
        count: student.count(),
        id_less: grades.iter().any(|g| g.id.is_none()),
        older: student
            .next_cursor
            .map(|c| format!("/students/{}?before={c}", student.id)),
        paged: before.is_some(),
        grades,
        form,
        errors,
        rename_error: None,
        options,
        action: format!("/students/{}/grades", student.id),
        button: "Add grade",
    }
}

async fn load_student(
    state: &AppState,
    id: i64,
    before: Option<i64>,
) -> Result<StudentView, GradingError> {
    state
        .grading
        .student_page(id, GRADES_PER_PAGE, before)
        .await
}

async fn student_page(
    State(state): State<AppState>,
    Path(student): Path<String>,
    query: Result<axum::extract::Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let before = query.ok().and_then(|q| q.0.before);
    let result = async { load_student(&state, id(&student)?, before).await }.await;
    match result {
        Ok(s) => render(
            StatusCode::OK,
            &student_page_for(
                &state,
                &s,
                before,
                GradeForm::default(),
                GradeErrors::default(),
            ),
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
    /// Not made (or not known to be): say so, with the form.
    Unsaved(GradingError),
}

/// Validates `form` with the grading service's own rules and, if it passes,
/// sends it with `send`; a refusal by the grading service is shown next to the
/// field it names.
async fn save_grade<F, Fut>(form: &GradeForm, send: F) -> Saved
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
        Err(e) => Saved::Unsaved(e),
    }
}

fn grade_not_saved(
    state: &AppState,
    student_id: i64,
    error: &GradingError,
    form: GradeForm,
    action: String,
    button: &'static str,
) -> Response {
    let (status, message) = not_saved_reason(error, "grade");
    not_saved(
        state,
        status,
        message,
        (
            format!("/students/{student_id}"),
            "Back to the student".into(),
        ),
        NotSavedForm::Grade {
            form,
            action,
            button,
        },
    )
}

async fn add_grade(
    State(state): State<AppState>,
    Path(student): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = Fields::from(form).grade();
    let student_id = match id(&student) {
        Ok(i) => i,
        Err(e) => return error_page(&state, &e),
    };
    let grading = state.grading.clone();
    let errors = match save_grade(&form, |body| async move {
        grading.add_grade(student_id, &body).await
    })
    .await
    {
        Saved::Done => return Redirect::to(&format!("/students/{student_id}")).into_response(),
        Saved::Refused(errors) => errors,
        Saved::Unsaved(e) => {
            let action = format!("/students/{student_id}/grades");
            return grade_not_saved(&state, student_id, &e, form, action, "Add grade");
        }
    };
    match load_student(&state, student_id, None).await {
        Ok(s) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &student_page_for(&state, &s, None, form, errors),
        ),
        Err(e) => grade_not_saved(
            &state,
            student_id,
            &e,
            form,
            format!("/students/{student_id}/grades"),
            "Add grade",
        ),
    }
}

async fn rename_student(
    State(state): State<AppState>,
    Path(student): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let sform = Fields::from(form).student();
    let student_id = match id(&student) {
        Ok(i) => i,
        Err(e) => return error_page(&state, &e),
    };
    let error = match check_student(&sform) {
        Err(errors) => errors.first_name.or(errors.last_name).unwrap_or_default(),
        Ok((first, last)) => match state
            .grading
            .rename_student(student_id, first.as_str(), last.as_str())
            .await
        {
            Ok(_) => return Redirect::to(&format!("/students/{student_id}")).into_response(),
            Err(GradingError::Invalid { message, .. }) => message,
            Err(e) => {
                let (status, message) = not_saved_reason(&e, "new name");
                return not_saved(
                    &state,
                    status,
                    message,
                    (
                        format!("/students/{student_id}"),
                        "Back to the student".into(),
                    ),
                    NotSavedForm::Student {
                        sform,
                        action: format!("/students/{student_id}"),
                        button: "Rename",
                    },
                );
            }
        },
    };
    match load_student(&state, student_id, None).await {
        Ok(s) => {
            let mut page = student_page_for(
                &state,
                &s,
                None,
                GradeForm::default(),
                GradeErrors::default(),
            );
            page.rename_error = Some(error);
            page.first_name = sform.first_name;
            page.last_name = sform.last_name;
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => error_page(&state, &e),
    }
}

#[derive(Template)]
#[template(path = "confirm_remove.html")]
struct ConfirmRemove<'a> {
    portal: &'a str,
    id: i64,
    name: String,
    count: u64,
}

async fn confirm_remove(State(state): State<AppState>, Path(student): Path<String>) -> Response {
    let result = async { load_student(&state, id(&student)?, None).await }.await;
    match result {
        Ok(s) => render(
            StatusCode::OK,
            &ConfirmRemove {
                portal: &state.portal,
                id: s.id,
                name: s.name(),
                count: s.count(),
            },
        ),
        Err(e) => error_page(&state, &e),
    }
}

async fn remove_student(State(state): State<AppState>, Path(student): Path<String>) -> Response {
    let student_id = match id(&student) {
        Ok(i) => i,
        Err(e) => return error_page(&state, &e),
    };
    match state.grading.delete_student(student_id).await {
        Ok(()) => Redirect::to("/students").into_response(),
        Err(e) => {
            let (status, message) = not_saved_reason(&e, "removal");
            not_saved(
                &state,
                status,
                message,
                (
                    format!("/students/{student_id}"),
                    "Back to the student".into(),
                ),
                NotSavedForm::None,
            )
        }
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
        .find(|g| g.id == Some(grade))
        .ok_or(GradingError::NotFound)
}

async fn edit_page(
    State(state): State<AppState>,
    Path((student, grade)): Path<(String, String)>,
) -> Response {
    let result = async {
        let (student_id, grade_id) = (id(&student)?, id(&grade)?);
        // The grade is on the page that starts right after it.
        let s = load_student(&state, student_id, grade_id.checked_add(1)).await?;
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
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = Fields::from(form).grade();
    let (student_id, grade_id) = match (id(&student), id(&grade)) {
        (Ok(s), Ok(g)) => (s, g),
        _ => return error_page(&state, &GradingError::NotFound),
    };
    let grading = state.grading.clone();
    let action = format!("/students/{student_id}/grades/{grade_id}");
    let errors = match save_grade(&form, |body| async move {
        grading.update_grade(student_id, grade_id, &body).await
    })
    .await
    {
        Saved::Done => return Redirect::to(&format!("/students/{student_id}")).into_response(),
        Saved::Refused(errors) => errors,
        Saved::Unsaved(e) => {
            return grade_not_saved(&state, student_id, &e, form, action, "Save");
        }
    };
    match load_student(&state, student_id, None).await {
        Ok(s) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &edit_page_for(&state, &s, grade_id, form, errors),
        ),
        Err(e) => grade_not_saved(&state, student_id, &e, form, action, "Save"),
    }
}

async fn delete_grade(
    State(state): State<AppState>,
    Path((student, grade)): Path<(String, String)>,
) -> Response {
    let (student_id, grade_id) = match (id(&student), id(&grade)) {
        (Ok(s), Ok(g)) => (s, g),
        _ => return error_page(&state, &GradingError::NotFound),
    };
    match state.grading.delete_grade(student_id, grade_id).await {
        Ok(()) => Redirect::to(&format!("/students/{student_id}")).into_response(),
        Err(e) => {
            let (status, message) = not_saved_reason(&e, "deletion");
            not_saved(
                &state,
                status,
                message,
                (
                    format!("/students/{student_id}"),
                    "Back to the student".into(),
                ),
                NotSavedForm::None,
            )
        }
    }
}
