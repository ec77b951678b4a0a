//! Students and grades: the domain, with no storage and no HTTP.
//!
//! Values are parsed at the edge into types that cannot hold anything invalid:
//! [`Score`] (a finite number from 0 to 100), [`Title`] (1–200 characters),
//! [`PersonName`] (1–100 characters), [`GradeType`] (one of four). The JSON
//! shapes are the classic ones (`docs/PROTOCOL.md` §1.7), field names matched
//! case-insensitively as Go's decoder does; grades gain an `ID`.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// Longest grade title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest first or last name, in characters.
pub const MAX_NAME: usize = 100;

/// The kind of a grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum GradeType {
    Quiz,
    Test,
    Exam,
    Homework,
}

impl GradeType {
    pub const ALL: [GradeType; 4] = [
        GradeType::Quiz,
        GradeType::Test,
        GradeType::Exam,
        GradeType::Homework,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GradeType::Quiz => "Quiz",
            GradeType::Test => "Test",
            GradeType::Exam => "Exam",
            GradeType::Homework => "Homework",
        }
    }

    /// Parses a type name, ignoring case.
    pub fn parse(text: &str) -> Option<GradeType> {
        GradeType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

impl fmt::Display for GradeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A score: a finite number from 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Score(f64);

impl Score {
    pub fn value(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Score {
    type Error = FieldError;

    fn try_from(v: f64) -> Result<Self, FieldError> {
        if v.is_finite() && (0.0..=100.0).contains(&v) {
            Ok(Score(v))
        } else {
            Err(FieldError::Score)
        }
    }
}

impl Serialize for Score {
    /// Whole scores as integers (`85`, as the originals wrote them), others
    /// as decimals (`87.5`).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 {
            serializer.serialize_i64(self.0 as i64)
        } else {
            serializer.serialize_f64(self.0)
        }
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.fract() == 0.0 {
            write!(f, "{}", self.0 as i64)
        } else {
            write!(f, "{}", (self.0 * 100.0).round() / 100.0)
        }
    }
}

macro_rules! bounded_text {
    ($name:ident, $max:expr, $err:expr) => {
        /// Non-blank text of at most the limit, surrounding white space trimmed.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, FieldError> {
                let text = text.trim();
                let len = text.chars().count();
                if len == 0 || len > $max || text.chars().any(char::is_control) {
                    Err($err)
                } else {
                    Ok(Self(text.to_owned()))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

bounded_text!(Title, MAX_TITLE, FieldError::Title);
bounded_text!(PersonName, MAX_NAME, FieldError::Name);

/// Which field is wrong, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("`Score` must be a number from 0 to 100")]
    Score,
    #[error("`Title` must be 1 to 200 characters")]
    Title,
    #[error("`Type` must be one of Quiz, Test, Exam, Homework")]
    Type,
    #[error("names must be 1 to 100 characters")]
    Name,
    #[error("`FirstName` must be 1 to 100 characters")]
    FirstName,
    #[error("`LastName` must be 1 to 100 characters")]
    LastName,
    #[error("`{0}` is required")]
    Missing(&'static str),
    #[error("the body must be a JSON object")]
    NotAnObject,
}

impl FieldError {
    /// The JSON field the error is about.
    pub fn field(self) -> Option<&'static str> {
        match self {
            FieldError::Score => Some("Score"),
            FieldError::Title => Some("Title"),
            FieldError::Type => Some("Type"),
            FieldError::Name => None,
            FieldError::FirstName => Some("FirstName"),
            FieldError::LastName => Some("LastName"),
            FieldError::Missing(f) => Some(f),
            FieldError::NotAnObject => None,
        }
    }
}

/// A stored grade.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Grade {
    #[serde(rename = "ID")]
    pub id: i64,
    #[serde(rename = "Title")]
    #[schema(value_type = String)]
    pub title: Title,
    #[serde(rename = "Type")]
    pub kind: GradeType,
    #[serde(rename = "Score")]
    #[schema(value_type = f64, minimum = 0, maximum = 100)]
    pub score: Score,
}

/// A student with their grades.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Student {
    #[serde(rename = "ID")]
    pub id: i64,
    #[serde(rename = "FirstName")]
    #[schema(value_type = String)]
    pub first_name: PersonName,
    #[serde(rename = "LastName")]
    #[schema(value_type = String)]
    pub last_name: PersonName,
    /// All grades, oldest first (the classic shape); with a page asked for,
    /// one page of them, newest first.
    #[serde(rename = "Grades")]
    pub grades: Vec<Grade>,
    /// How many grades the student has in all (additive: classic clients
    /// ignore it).
    #[serde(rename = "GradeCount")]
    pub grade_count: u64,
    /// The mean of all their grades, if any.
    #[serde(rename = "Average", skip_serializing_if = "Option::is_none")]
    pub average: Option<f64>,
    /// Set on a page that has older grades after it: pass it as `cursor`.
    #[serde(rename = "NextCursor", skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

impl Student {
    /// The mean score, if there are grades.
    pub fn average(&self) -> Option<f64> {
        average(self.grades.iter().map(|g| g.score.value()))
    }
}

/// The mean of some scores.
pub fn average(scores: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = scores.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

/// A grade to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewGrade {
    pub title: Title,
    pub kind: GradeType,
    pub score: Score,
}

/// A student to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStudent {
    pub first_name: PersonName,
    pub last_name: PersonName,
}

/// Finds a field by name, ignoring ASCII case (Go's rule).
fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn text_field<'a>(map: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, FieldError> {
    match field(map, name) {
        None | Some(Value::Null) => Err(FieldError::Missing(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(match name {
            "Title" => FieldError::Title,
            "Type" => FieldError::Type,
            "FirstName" => FieldError::FirstName,
            _ => FieldError::LastName,
        }),
    }
}

impl NewGrade {
    /// Parses a grade from a JSON object: `{"Title", "Type", "Score"}`.
    pub fn from_json(value: &Value) -> Result<Self, FieldError> {
        let map = value.as_object().ok_or(FieldError::NotAnObject)?;
        let title = Title::parse(text_field(map, "Title")?)?;
        let kind = GradeType::parse(text_field(map, "Type")?).ok_or(FieldError::Type)?;
        let score = match field(map, "Score") {
            None | Some(Value::Null) => return Err(FieldError::Missing("Score")),
            Some(Value::Number(n)) => n.as_f64().ok_or(FieldError::Score)?,
            Some(_) => return Err(FieldError::Score),
        };
        Ok(NewGrade {
            title,
            kind,
            score: Score::try_from(score)?,
        })
    }

    /// Parses a grade from form text (the portal's "Add a Grade" form), with
    /// the same rules. Every field error is reported, not just the first.
    pub fn from_form(title: &str, kind: &str, score: &str) -> Result<Self, Vec<FieldError>> {
        let title = Title::parse(title);
        let kind = GradeType::parse(kind).ok_or(FieldError::Type);
        let score = score
            .trim()
            .parse::<f64>()
            .map_err(|_| FieldError::Score)
            .and_then(Score::try_from);
        match (title, kind, score) {
            (Ok(title), Ok(kind), Ok(score)) => Ok(NewGrade { title, kind, score }),
            (t, k, s) => Err([t.err(), k.err(), s.err()].into_iter().flatten().collect()),
        }
    }
}

impl NewStudent {
    /// Parses `{"FirstName", "LastName"}`.
    pub fn from_json(value: &Value) -> Result<Self, FieldError> {
        let map = value.as_object().ok_or(FieldError::NotAnObject)?;
        let first_name =
            PersonName::parse(text_field(map, "FirstName")?).map_err(|_| FieldError::FirstName)?;
        let last_name =
            PersonName::parse(text_field(map, "LastName")?).map_err(|_| FieldError::LastName)?;
        Ok(NewStudent {
            first_name,
            last_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn the_classic_shape_round_trips() {
        let g =
            NewGrade::from_json(&json!({"Title": "Quiz 1", "Type": "Quiz", "Score": 85})).unwrap();
        let grade = Grade {
            id: 3,
            title: g.title,
            kind: g.kind,
            score: g.score,
        };
        assert_eq!(
            serde_json::to_value(&grade).unwrap(),
            json!({"ID": 3, "Title": "Quiz 1", "Type": "Quiz", "Score": 85})
        );
        let half = Score::try_from(87.5).unwrap();
        assert_eq!(serde_json::to_string(&half).unwrap(), "87.5");
    }

    #[test]
    fn field_names_match_case_insensitively() {
        let g = NewGrade::from_json(&json!({"title": "T", "TYPE": "exam", "score": 91.5})).unwrap();
        assert_eq!((g.kind, g.score.value()), (GradeType::Exam, 91.5));
    }

    #[test]
    fn every_bad_value_names_its_field() {
        let bad = |v: Value| NewGrade::from_json(&v).unwrap_err();
        assert_eq!(
            bad(json!({"Title": "T", "Type": "Quiz"})),
            FieldError::Missing("Score")
        );
        assert_eq!(
            bad(json!({"Title": "T", "Type": "Quiz", "Score": 101})),
            FieldError::Score
        );
        assert_eq!(
            bad(json!({"Title": "T", "Type": "Quiz", "Score": -1})),
            FieldError::Score
        );
        assert_eq!(
            bad(json!({"Title": "T", "Type": "Quiz", "Score": "85"})),
            FieldError::Score
        );
        assert_eq!(
            bad(json!({"Title": "T", "Type": "Essay", "Score": 5})),
            FieldError::Type
        );
        assert_eq!(
            bad(json!({"Title": "", "Type": "Quiz", "Score": 5})),
            FieldError::Title
        );
        assert_eq!(
            bad(json!({"Title": "x".repeat(201), "Type": "Quiz", "Score": 5})),
            FieldError::Title
        );
        assert_eq!(bad(json!([1])), FieldError::NotAnObject);
        assert_eq!(FieldError::Score.field(), Some("Score"));
        let s = |v: Value| NewStudent::from_json(&v).unwrap_err();
        assert_eq!(
            s(json!({"FirstName": " ", "LastName": "X"})),
            FieldError::FirstName
        );
        assert_eq!(
            s(json!({"FirstName": "A"})),
            FieldError::Missing("LastName")
        );
    }

    #[test]
    fn forms_report_every_error() {
        let errors = NewGrade::from_form("", "Essay", "abc").unwrap_err();
        assert_eq!(
            errors,
            vec![FieldError::Title, FieldError::Type, FieldError::Score]
        );
        assert!(NewGrade::from_form("Quiz 3", "quiz", " 99.5 ").is_ok());
        assert_eq!(
            NewGrade::from_form("Q", "Quiz", "NaN").unwrap_err(),
            vec![FieldError::Score]
        );
        assert_eq!(
            NewGrade::from_form("Q", "Quiz", "inf").unwrap_err(),
            vec![FieldError::Score]
        );
    }

    #[test]
    fn averages() {
        assert_eq!(average([80.0, 90.0].into_iter()), Some(85.0));
        assert_eq!(average(std::iter::empty()), None);
    }

    proptest! {
        #[test]
        fn a_score_exists_only_in_range(v in proptest::num::f64::ANY) {
            let ok = Score::try_from(v).is_ok();
            prop_assert_eq!(ok, v.is_finite() && (0.0..=100.0).contains(&v));
        }
    }
}
