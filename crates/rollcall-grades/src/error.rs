//! The grading service's one error type, mapped to HTTP in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rollcall_http::{BodyError, error_body_response};
use rollcall_proto::ErrorBody;

use crate::model::FieldError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum GradesError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("no student with ID {0}")]
    NoSuchStudent(String),
    #[error("student {student} has no grade with ID {grade}")]
    NoSuchGrade { student: i64, grade: String },
    #[error("the query is invalid: {0}")]
    InvalidQuery(String),
    #[error("the grade book is unavailable")]
    Unavailable(StoreError),
}

impl From<StoreError> for GradesError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchStudent(id) => GradesError::NoSuchStudent(id.to_string()),
            StoreError::NoSuchGrade { student, grade } => GradesError::NoSuchGrade {
                student,
                grade: grade.to_string(),
            },
            other => GradesError::Unavailable(other),
        }
    }
}

impl GradesError {
    fn status(&self) -> StatusCode {
        match self {
            GradesError::Body(e) => e.status(),
            GradesError::MalformedJson(_)
            | GradesError::Invalid(_)
            | GradesError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            GradesError::NoSuchStudent(_) | GradesError::NoSuchGrade { .. } => {
                StatusCode::NOT_FOUND
            }
            GradesError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            GradesError::Body(e) => e.code(),
            GradesError::MalformedJson(_) => "malformed_json",
            GradesError::InvalidQuery(_) => "invalid_query",
            GradesError::Invalid(FieldError::Missing(_)) => "missing_field",
            GradesError::Invalid(_) => "invalid_field",
            GradesError::NoSuchStudent(_) => "no_such_student",
            GradesError::NoSuchGrade { .. } => "no_such_grade",
            GradesError::Unavailable(_) => "store_unavailable",
        }
    }
}

impl IntoResponse for GradesError {
    fn into_response(self) -> Response {
        if let GradesError::Unavailable(e) = &self {
            tracing::error!(error = %e, "grade store failure");
        }
        let mut body = ErrorBody::new(self.code(), self.to_string());
        if let GradesError::Invalid(e) = &self
            && let Some(field) = e.field()
        {
            body = body.with_field(field);
        }
        error_body_response(self.status(), &body)
    }
}
