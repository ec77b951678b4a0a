//! The page for a write that was not made: why, and the form again with what
//! was typed. It never reloads itself.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;

use super::forms::*;
use super::*;
use crate::grading::GradingError;

/// The form a "not saved" page gives back, filled with what was typed.
pub(super) enum NotSavedForm {
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
pub(super) struct NotSavedPage<'a> {
    pub(super) portal: &'a str,
    pub(super) message: String,
    pub(super) back: String,
    pub(super) back_label: String,
    pub(super) grade_form: bool,
    pub(super) student_form: bool,
    pub(super) form: GradeForm,
    pub(super) errors: GradeErrors,
    pub(super) options: Vec<TypeOption>,
    pub(super) sform: StudentForm,
    pub(super) serrors: StudentErrors,
    pub(super) action: String,
    pub(super) button: &'static str,
}

/// An honest page for a write that was not made: why, and the form again
/// with what was typed. It never reloads itself.
/// A change to a student's things (`what`) that was not made, with the way
/// back to the student and the form, if any, to send again.
fn student_not_saved(
    state: &AppState,
    student_id: i64,
    error: &GradingError,
    what: &str,
    form: NotSavedForm,
) -> Response {
    let (status, message) = not_saved_reason(error, what);
    not_saved(
        state,
        status,
        message,
        (
            format!("/students/{student_id}"),
            "Back to the student".into(),
        ),
        form,
    )
}

/// A removal (`what`) that was not made.
pub(super) fn removal_not_saved(
    state: &AppState,
    error: &GradingError,
    what: &str,
    student_id: i64,
) -> Response {
    student_not_saved(state, student_id, error, what, NotSavedForm::None)
}

pub(super) fn not_saved(
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

pub(super) fn grade_not_saved(
    state: &AppState,
    student_id: i64,
    error: &GradingError,
    form: GradeForm,
    action: String,
    button: &'static str,
) -> Response {
    student_not_saved(
        state,
        student_id,
        error,
        "grade",
        NotSavedForm::Grade {
            form,
            action,
            button,
        },
    )
}
