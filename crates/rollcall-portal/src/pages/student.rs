//! A student's page (grades newest first, a page at a time) and the grade
//! forms: add, correct, delete.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::forms::*;
use super::not_saved::*;
use super::*;
use crate::grading::{GradeBody, GradeView, GradingError, StudentView};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    /// Show grades older than this grade ID.
    pub(super) before: Option<i64>,
}

#[derive(Template)]
#[template(path = "student.html")]
pub(super) struct StudentPage<'a> {
    pub(super) portal: &'a str,
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) first_name: String,
    pub(super) last_name: String,
    pub(super) average: String,
    pub(super) average_class: &'static str,
    pub(super) count: u64,
    pub(super) grades: Vec<GradeRow>,
    /// Some grades have no ID (a classic grading service).
    pub(super) id_less: bool,
    /// Link to the next (older) page, and whether this is not the first.
    pub(super) older: Option<String>,
    pub(super) paged: bool,
    pub(super) form: GradeForm,
    pub(super) errors: GradeErrors,
    pub(super) rename_error: Option<String>,
    pub(super) options: Vec<TypeOption>,
    pub(super) action: String,
    pub(super) button: &'static str,
}

pub(super) fn student_page_for<'a>(
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

pub(super) async fn load_student(
    state: &AppState,
    id: i64,
    before: Option<i64>,
) -> Result<StudentView, GradingError> {
    state
        .grading
        .student_page(id, GRADES_PER_PAGE, before)
        .await
}

pub(super) async fn student_page(
    State(state): State<AppState>,
    Ids([student]): Ids<1>,
    query: Result<axum::extract::Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let before = query.ok().and_then(|q| q.0.before);
    let result = load_student(&state, student, before).await;
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

/// What saving a grade form came to.
pub(super) enum Saved {
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
pub(super) async fn save_grade<F, Fut>(form: &GradeForm, send: F) -> Saved
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

pub(super) async fn add_grade(
    State(state): State<AppState>,
    Ids([student_id]): Ids<1>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = Fields::from(form).grade();
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

#[derive(Template)]
#[template(path = "edit_grade.html")]
pub(super) struct EditPage<'a> {
    pub(super) portal: &'a str,
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) form: GradeForm,
    pub(super) errors: GradeErrors,
    pub(super) options: Vec<TypeOption>,
    pub(super) action: String,
    pub(super) button: &'static str,
}

pub(super) fn edit_page_for<'a>(
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

pub(super) fn find_grade(student: &StudentView, grade: i64) -> Result<&GradeView, GradingError> {
    student
        .grades
        .iter()
        .find(|g| g.id == Some(grade))
        .ok_or(GradingError::NotFound)
}

pub(super) async fn edit_page(
    State(state): State<AppState>,
    Ids([student_id, grade_id]): Ids<2>,
) -> Response {
    let result = async {
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

pub(super) async fn update_grade(
    State(state): State<AppState>,
    Ids([student_id, grade_id]): Ids<2>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = Fields::from(form).grade();
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

pub(super) async fn delete_grade(
    State(state): State<AppState>,
    Ids([student_id, grade_id]): Ids<2>,
) -> Response {
    match state.grading.delete_grade(student_id, grade_id).await {
        Ok(()) => Redirect::to(&format!("/students/{student_id}")).into_response(),
        Err(e) => removal_not_saved(&state, &e, "deletion", student_id),
    }
}
