//! The class list, adding a student, renaming and removing one.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::forms::*;
use super::not_saved::*;
use super::student::{load_student, student_page_for};
use super::*;
use crate::grading::{GradingError, StudentView};

pub(super) struct StudentRow {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) grades: u64,
    pub(super) average: String,
    pub(super) average_class: &'static str,
}

#[derive(Template)]
#[template(path = "students.html")]
pub(super) struct StudentsPage<'a> {
    pub(super) portal: &'a str,
    pub(super) rows: Vec<StudentRow>,
    pub(super) class_average: String,
    pub(super) sform: StudentForm,
    pub(super) serrors: StudentErrors,
}

pub(super) fn students_page<'a>(
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

pub(super) async fn class_list(State(state): State<AppState>) -> Response {
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

pub(super) async fn add_student(
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

pub(super) async fn rename_student(
    State(state): State<AppState>,
    Ids([student_id]): Ids<1>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let sform = Fields::from(form).student();
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
pub(super) struct ConfirmRemove<'a> {
    pub(super) portal: &'a str,
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) count: u64,
}

pub(super) async fn confirm_remove(
    State(state): State<AppState>,
    Ids([student]): Ids<1>,
) -> Response {
    let result = load_student(&state, student, None).await;
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

pub(super) async fn remove_student(
    State(state): State<AppState>,
    Ids([student_id]): Ids<1>,
) -> Response {
    match state.grading.delete_student(student_id).await {
        Ok(()) => Redirect::to("/students").into_response(),
        Err(e) => removal_not_saved(&state, &e, "removal", student_id),
    }
}
