//! The forms: their fields read by name ignoring case and `_`, what was typed,
//! and the messages shown next to each field.

use axum::Form;
use axum::extract::rejection::FormRejection;
use rollcall_grading_model::{FieldError, GradeType, NewGrade, PersonName};

/// A form's fields by name, ignoring case, `_` and `-` (`Title`, `title`;
/// `FirstName`, `first_name`): the classic API's names and the portal's own.
#[derive(Debug, Default)]
pub(super) struct Fields(Vec<(String, String)>);

impl Fields {
    pub(super) fn from(form: Result<Form<Vec<(String, String)>>, FormRejection>) -> Self {
        Self(form.map(|Form(f)| f).unwrap_or_default())
    }

    pub(super) fn get(&self, name: &str) -> String {
        let wanted = Self::key(name);
        self.0
            .iter()
            .find(|(k, _)| Self::key(k) == wanted)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    pub(super) fn key(name: &str) -> String {
        name.chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    }

    pub(super) fn grade(&self) -> GradeForm {
        GradeForm {
            title: self.get("title"),
            kind: self.get("type"),
            score: self.get("score"),
        }
    }

    pub(super) fn student(&self) -> StudentForm {
        StudentForm {
            first_name: self.get("first_name"),
            last_name: self.get("last_name"),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct StudentForm {
    pub(super) first_name: String,
    pub(super) last_name: String,
}

#[derive(Debug, Default)]
pub(super) struct StudentErrors {
    pub(super) first_name: Option<String>,
    pub(super) last_name: Option<String>,
    pub(super) general: Option<String>,
}

pub(super) struct GradeRow {
    /// `None` for a classic grading service's grades: no edit, no delete.
    pub(super) id: Option<i64>,
    pub(super) title: String,
    pub(super) kind: String,
    pub(super) score: String,
    pub(super) score_class: &'static str,
}

pub(super) struct TypeOption {
    pub(super) value: &'static str,
    pub(super) selected: bool,
}

#[derive(Debug, Default)]
pub(super) struct GradeForm {
    pub(super) title: String,
    pub(super) kind: String,
    pub(super) score: String,
}

#[derive(Debug, Default)]
pub(super) struct GradeErrors {
    pub(super) title: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) score: Option<String>,
    pub(super) general: Option<String>,
}

impl GradeErrors {
    pub(super) fn set(&mut self, field: Option<&str>, message: String) {
        match field {
            Some("Title") => self.title = Some(message),
            Some("Type") => self.kind = Some(message),
            Some("Score") => self.score = Some(message),
            _ => self.general = Some(message),
        }
    }

    pub(super) fn from_fields(errors: &[FieldError]) -> Self {
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

pub(super) fn options(selected: &str) -> Vec<TypeOption> {
    GradeType::ALL
        .iter()
        .map(|t| TypeOption {
            value: t.as_str(),
            selected: t.as_str().eq_ignore_ascii_case(selected),
        })
        .collect()
}

/// Checks a student form with the grading service's own rules.
pub(super) fn check_student(form: &StudentForm) -> Result<(PersonName, PersonName), StudentErrors> {
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

pub(super) fn refused_student(field: Option<&str>, message: String) -> StudentErrors {
    let mut errors = StudentErrors::default();
    match field {
        Some("FirstName") => errors.first_name = Some(message),
        Some("LastName") => errors.last_name = Some(message),
        _ => errors.general = Some(message),
    }
    errors
}

/// Validates a grade form with the grading service's own rules.
pub(super) fn parse_grade(form: &GradeForm) -> Result<NewGrade, GradeErrors> {
    NewGrade::from_form(&form.title, &form.kind, &form.score)
        .map_err(|e| GradeErrors::from_fields(&e))
}
