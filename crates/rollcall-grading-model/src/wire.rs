//! The shapes on the wire as a *client* of a grading service reads and sends
//! them: lenient where grading services differ (a classic one sends grades
//! without IDs and no counts), so the portal can work with either.

use serde::{Deserialize, Serialize};

/// The student and grade shapes as the grading service sends them.
#[derive(Debug, Clone, Deserialize)]
pub struct StudentView {
    #[serde(rename = "ID")]
    pub id: i64,
    #[serde(rename = "FirstName")]
    pub first_name: String,
    #[serde(rename = "LastName")]
    pub last_name: String,
    #[serde(rename = "Grades", default)]
    pub grades: Vec<GradeView>,
    /// All their grades, when the grading service says (rollcall's does; a
    /// classic one sends every grade and no count).
    #[serde(rename = "GradeCount", default)]
    pub grade_count: Option<u64>,
    #[serde(rename = "Average", default)]
    pub average_all: Option<f64>,
    #[serde(rename = "NextCursor", default)]
    pub next_cursor: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GradeView {
    /// Classic grading services keep no grade IDs: such grades can be shown
    /// but not corrected or deleted.
    #[serde(rename = "ID", default)]
    pub id: Option<i64>,
    #[serde(rename = "Title")]
    pub title: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Score")]
    pub score: f64,
}

impl StudentView {
    pub fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }

    /// The mean of all their grades: the grading service's figure when it
    /// sends one (a page holds only some grades), else computed.
    pub fn average(&self) -> Option<f64> {
        self.average_all
            .or_else(|| crate::average(self.grades.iter().map(|g| g.score)))
    }

    /// How many grades they have in all.
    pub fn count(&self) -> u64 {
        self.grade_count.unwrap_or(self.grades.len() as u64)
    }
}

/// A grade to send (the classic shape). Field names match
/// case-insensitively on the way in.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GradeBody {
    /// Non-blank, at most 200 characters.
    #[serde(rename = "Title")]
    pub title: String,
    /// Quiz, Test, Exam or Homework (any case).
    #[serde(rename = "Type")]
    pub kind: String,
    /// 0 to 100.
    #[serde(rename = "Score")]
    pub score: f64,
}

/// A student to add or rename (the classic shape). Field names match
/// case-insensitively on the way in.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StudentBody {
    /// Non-blank, at most 100 characters.
    #[serde(rename = "FirstName")]
    pub first_name: String,
    /// Non-blank, at most 100 characters.
    #[serde(rename = "LastName")]
    pub last_name: String,
}

impl From<&crate::NewGrade> for GradeBody {
    fn from(g: &crate::NewGrade) -> Self {
        Self {
            title: g.title.to_string(),
            kind: g.kind.to_string(),
            score: g.score.value(),
        }
    }
}
