//! Reading rows into the model: a student, their grades (all, or a page),
//! and the checks that turn a stored value back into a valid one.

use rusqlite::{Connection, OptionalExtension, params};

use super::*;
use crate::model::{Grade, GradeType, PersonName, Score, Student, Title};

pub(super) fn ensure_student(conn: &Connection, id: i64) -> Result<(), StoreError> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM students WHERE id = ?1")?
        .query_row(params![id], |_| Ok(()))
        .optional()?
        .is_some();
    if exists {
        Ok(())
    } else {
        Err(StoreError::NoSuchStudent(id))
    }
}

/// A student without grades yet; `NoSuchStudent` if there is none.
pub(super) fn student_head(conn: &Connection, id: i64) -> Result<Student, StoreError> {
    let row = conn
        .prepare_cached("SELECT first_name, last_name FROM students WHERE id = ?1")?
        .query_row(params![id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    let Some((first, last)) = row else {
        return Err(StoreError::NoSuchStudent(id));
    };
    student_row(id, &first, &last)
}

/// Grades of student `id` from a prepared `SELECT id, title, type, score`.
pub(super) fn grade_rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<Grade>, StoreError> {
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, f64>(3)?,
        ))
    })?;
    let mut grades = Vec::new();
    for row in rows {
        let (gid, title, kind, score) = row?;
        grades.push(grade_row(gid, &title, &kind, score)?);
    }
    Ok(grades)
}

pub(super) fn load_student(conn: &Connection, id: i64) -> Result<Student, StoreError> {
    let mut student = student_head(conn, id)?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, title, type, score FROM grades WHERE student_id = ?1 ORDER BY id",
    )?;
    student.grades = grade_rows(&mut stmt, params![id])?;
    student.grade_count = student.grades.len() as u64;
    student.average = student.average();
    Ok(student)
}

/// One page of a student's grades, newest first: at most `limit`, older than
/// grade `cursor` if given; the count and average are over all their grades.
pub(super) fn load_student_page(
    conn: &Connection,
    id: i64,
    limit: usize,
    cursor: Option<i64>,
) -> Result<Student, StoreError> {
    let mut student = student_head(conn, id)?;
    let (count, average) = conn
        .prepare_cached("SELECT COUNT(*), AVG(score) FROM grades WHERE student_id = ?1")?
        .query_row(params![id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<f64>>(1)?))
        })?;
    student.grade_count = u64::try_from(count).unwrap_or(0);
    student.average = average;
    let mut stmt = conn.prepare_cached(
        "SELECT id, title, type, score FROM grades WHERE student_id = ?1 AND id < ?2
         ORDER BY id DESC LIMIT ?3",
    )?;
    let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    student.grades = grade_rows(&mut stmt, params![id, cursor.unwrap_or(i64::MAX), fetch])?;
    if student.grades.len() > limit {
        student.grades.truncate(limit);
        student.next_cursor = student.grades.last().map(|g| g.id);
    }
    Ok(student)
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(super) fn student_row(id: i64, first: &str, last: &str) -> Result<Student, StoreError> {
    Ok(Student {
        id,
        first_name: PersonName::parse(first)
            .map_err(|_| corrupt(format!("name of student {id}")))?,
        last_name: PersonName::parse(last).map_err(|_| corrupt(format!("name of student {id}")))?,
        grades: Vec::new(),
        grade_count: 0,
        average: None,
        next_cursor: None,
    })
}

pub(super) fn grade_row(id: i64, title: &str, kind: &str, score: f64) -> Result<Grade, StoreError> {
    Ok(Grade {
        id,
        title: Title::parse(title).map_err(|_| corrupt(format!("title of grade {id}")))?,
        kind: GradeType::parse(kind).ok_or_else(|| corrupt(format!("type of grade {id}")))?,
        score: Score::try_from(score).map_err(|_| corrupt(format!("score of grade {id}")))?,
    })
}
