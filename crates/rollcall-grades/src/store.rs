//! Students and grades in SQLite (`grades.db` under the data dir).
//!
//! WAL mode with a busy timeout, so several grading instances can share one
//! file (that is how two instances serve the same class). One connection
//! writes, a few read; every call runs on a blocking thread. Demo students are
//! inserted once, when the database is created (unless `--no-demo-data`),
//! inside an immediate transaction so two instances starting together do not
//! both insert them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::model::{Grade, GradeType, NewGrade, NewStudent, PersonName, Score, Student, Title};

/// The file name under the data dir.
pub const FILE_NAME: &str = "grades.db";
const READERS: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS students (
    id         INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS grades (
    id         INTEGER PRIMARY KEY,
    student_id INTEGER NOT NULL REFERENCES students(id) ON DELETE CASCADE,
    title      TEXT NOT NULL,
    type       TEXT NOT NULL CHECK (type IN ('Quiz', 'Test', 'Exam', 'Homework')),
    score      REAL NOT NULL CHECK (score >= 0 AND score <= 100)
);
CREATE INDEX IF NOT EXISTS grades_by_student ON grades (student_id, id);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// A demo grade: title, type, score.
pub type DemoGrade = (&'static str, GradeType, f64);

/// Demo students like the original system's: (first, last, grades).
pub const DEMO: &[(&str, &str, &[DemoGrade])] = &[
    (
        "Zhang",
        "San",
        &[
            ("Quiz 1", GradeType::Quiz, 85.0),
            ("Final Exam", GradeType::Exam, 94.0),
            ("Quiz 2", GradeType::Quiz, 82.0),
        ],
    ),
    (
        "Li",
        "Si",
        &[
            ("Quiz 1", GradeType::Quiz, 80.0),
            ("Final Exam", GradeType::Exam, 88.0),
            ("Quiz 2", GradeType::Quiz, 91.0),
            ("Homework 1", GradeType::Homework, 77.0),
        ],
    ),
    (
        "Wang",
        "Wu",
        &[
            ("Quiz 1", GradeType::Quiz, 72.0),
            ("Midterm Test", GradeType::Test, 79.0),
            ("Quiz 2", GradeType::Quiz, 68.0),
        ],
    ),
    (
        "Zhao",
        "Liu",
        &[
            ("Quiz 1", GradeType::Quiz, 95.0),
            ("Final Exam", GradeType::Exam, 97.0),
            ("Quiz 2", GradeType::Quiz, 99.0),
        ],
    ),
    (
        "Sun",
        "Qi",
        &[
            ("Quiz 1", GradeType::Quiz, 65.0),
            ("Final Exam", GradeType::Exam, 73.0),
            ("Homework 1", GradeType::Homework, 88.0),
        ],
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no student with ID {0}")]
    NoSuchStudent(i64),
    #[error("student {student} has no grade with ID {grade}")]
    NoSuchGrade { student: i64, grade: i64 },
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("a stored value is invalid: {0}")]
    Corrupt(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// The grade book. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GradeStore {
    inner: Arc<Inner>,
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl GradeStore {
    /// Opens (creating) `grades.db` under `data_dir`; seeds the demo students
    /// if the database is new and `demo` is set. Blocking.
    ///
    /// Another instance opening the same file at the same moment can make
    /// SQLite answer "busy" at once (switching to WAL, or two transactions
    /// that would deadlock), without waiting: opening is retried for up to
    /// about 10 s.
    pub fn open(data_dir: &Path, demo: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Dir {
            path: data_dir.to_owned(),
            source,
        })?;
        let mut attempt = 0u32;
        loop {
            match Self::try_open(data_dir, demo) {
                Err(StoreError::Sqlite(e)) if is_busy(&e) && attempt < 100 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20 + u64::from(attempt % 5) * 20));
                }
                other => return other,
            }
        }
    }

    fn try_open(data_dir: &Path, demo: bool) -> Result<Self, StoreError> {
        let path = data_dir.join(FILE_NAME);
        let mut writer = open_connection(&path)?;
        writer.execute_batch(SCHEMA)?;
        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let initialized: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'initialized'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if initialized.is_none() {
            if demo {
                for (first, last, grades) in DEMO {
                    tx.execute(
                        "INSERT INTO students (first_name, last_name) VALUES (?1, ?2)",
                        params![first, last],
                    )?;
                    let student = tx.last_insert_rowid();
                    for (title, kind, score) in grades.iter() {
                        tx.execute(
                            "INSERT INTO grades (student_id, title, type, score) VALUES (?1, ?2, ?3, ?4)",
                            params![student, title, kind.as_str(), score],
                        )?;
                    }
                }
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('initialized', ?1)",
                params![if demo { "demo" } else { "empty" }],
            )?;
        }
        tx.commit()?;
        let readers = (0..READERS)
            .map(|_| open_connection(&path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` with a reading connection on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let conn = lock(&inner.readers[i]);
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    /// Runs `f` in a write transaction on a blocking thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    pub async fn students(&self) -> Result<Vec<Student>, StoreError> {
        self.read(|conn| {
            let mut students = Vec::new();
            let mut stmt =
                conn.prepare_cached("SELECT id, first_name, last_name FROM students ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (id, first, last) = row?;
                students.push(student_row(id, &first, &last)?);
            }
            let mut stmt = conn.prepare_cached(
                "SELECT id, student_id, title, type, score FROM grades ORDER BY student_id, id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, f64>(4)?,
                ))
            })?;
            let mut by_id: std::collections::HashMap<i64, usize> = students
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id, i))
                .collect();
            for row in rows {
                let (id, student, title, kind, score) = row?;
                if let Some(i) = by_id.get_mut(&student) {
                    students[*i]
                        .grades
                        .push(grade_row(id, &title, &kind, score)?);
                }
            }
            for student in &mut students {
                student.grade_count = student.grades.len() as u64;
                student.average = student.average();
            }
            Ok(students)
        })
        .await
    }

    pub async fn student(&self, id: i64) -> Result<Student, StoreError> {
        self.read(move |conn| load_student(conn, id)).await
    }

    /// A student with one page of their grades, newest first.
    pub async fn student_page(
        &self,
        id: i64,
        limit: usize,
        cursor: Option<i64>,
    ) -> Result<Student, StoreError> {
        self.read(move |conn| load_student_page(conn, id, limit, cursor))
            .await
    }

    /// Renames a student.
    pub async fn rename_student(&self, id: i64, new: NewStudent) -> Result<Student, StoreError> {
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE students SET first_name = ?2, last_name = ?3 WHERE id = ?1",
                params![id, new.first_name.as_str(), new.last_name.as_str()],
            )?;
            if changed == 0 {
                return Err(StoreError::NoSuchStudent(id));
            }
            load_student(tx, id)
        })
        .await
    }

    /// Removes a student and all their grades.
    pub async fn delete_student(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute("DELETE FROM grades WHERE student_id = ?1", params![id])?;
            let changed = tx.execute("DELETE FROM students WHERE id = ?1", params![id])?;
            if changed == 0 {
                return Err(StoreError::NoSuchStudent(id));
            }
            Ok(())
        })
        .await
    }

    pub async fn add_student(&self, new: NewStudent) -> Result<Student, StoreError> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO students (first_name, last_name) VALUES (?1, ?2)",
                params![new.first_name.as_str(), new.last_name.as_str()],
            )?;
            load_student(tx, tx.last_insert_rowid())
        })
        .await
    }

    pub async fn add_grade(&self, student: i64, new: NewGrade) -> Result<Grade, StoreError> {
        self.write(move |tx| {
            ensure_student(tx, student)?;
            tx.execute(
                "INSERT INTO grades (student_id, title, type, score) VALUES (?1, ?2, ?3, ?4)",
                params![
                    student,
                    new.title.as_str(),
                    new.kind.as_str(),
                    new.score.value()
                ],
            )?;
            Ok(Grade {
                id: tx.last_insert_rowid(),
                title: new.title,
                kind: new.kind,
                score: new.score,
            })
        })
        .await
    }

    pub async fn update_grade(
        &self,
        student: i64,
        grade: i64,
        new: NewGrade,
    ) -> Result<Grade, StoreError> {
        self.write(move |tx| {
            ensure_student(tx, student)?;
            let changed = tx.execute(
                "UPDATE grades SET title = ?3, type = ?4, score = ?5 WHERE id = ?2 AND student_id = ?1",
                params![student, grade, new.title.as_str(), new.kind.as_str(), new.score.value()],
            )?;
            if changed == 0 {
                return Err(StoreError::NoSuchGrade { student, grade });
            }
            Ok(Grade {
                id: grade,
                title: new.title,
                kind: new.kind,
                score: new.score,
            })
        })
        .await
    }

    pub async fn delete_grade(&self, student: i64, grade: i64) -> Result<(), StoreError> {
        self.write(move |tx| {
            ensure_student(tx, student)?;
            let changed = tx.execute(
                "DELETE FROM grades WHERE id = ?2 AND student_id = ?1",
                params![student, grade],
            )?;
            if changed == 0 {
                return Err(StoreError::NoSuchGrade { student, grade });
            }
            Ok(())
        })
        .await
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn ensure_student(conn: &Connection, id: i64) -> Result<(), StoreError> {
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
fn student_head(conn: &Connection, id: i64) -> Result<Student, StoreError> {
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
fn grade_rows(
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

fn load_student(conn: &Connection, id: i64) -> Result<Student, StoreError> {
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
fn load_student_page(
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

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn student_row(id: i64, first: &str, last: &str) -> Result<Student, StoreError> {
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

fn grade_row(id: i64, title: &str, kind: &str, score: f64) -> Result<Grade, StoreError> {
    Ok(Grade {
        id,
        title: Title::parse(title).map_err(|_| corrupt(format!("title of grade {id}")))?,
        kind: GradeType::parse(kind).ok_or_else(|| corrupt(format!("type of grade {id}")))?,
        score: Score::try_from(score).map_err(|_| corrupt(format!("score of grade {id}")))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grade(title: &str, score: f64) -> NewGrade {
        NewGrade::from_form(title, "Quiz", &score.to_string()).unwrap()
    }

    #[tokio::test]
    async fn demo_data_is_seeded_once_and_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = GradeStore::open(dir.path(), true).unwrap();
        let students = store.students().await.unwrap();
        assert_eq!(students.len(), DEMO.len());
        assert_eq!(students[0].first_name.as_str(), "Zhang");
        assert_eq!(students[0].grades.len(), 3);
        drop(store);
        let again = GradeStore::open(dir.path(), true).unwrap();
        assert_eq!(
            again.students().await.unwrap().len(),
            DEMO.len(),
            "not seeded twice"
        );
        let empty_dir = tempfile::tempdir().unwrap();
        let empty = GradeStore::open(empty_dir.path(), false).unwrap();
        assert!(empty.students().await.unwrap().is_empty());
        drop(empty);
        let later = GradeStore::open(empty_dir.path(), true).unwrap();
        assert!(
            later.students().await.unwrap().is_empty(),
            "a database started empty stays empty"
        );
    }

    #[tokio::test]
    async fn grades_are_added_corrected_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = GradeStore::open(dir.path(), false).unwrap();
        let s = store
            .add_student(NewStudent {
                first_name: PersonName::parse("Ada").unwrap(),
                last_name: PersonName::parse("Lovelace").unwrap(),
            })
            .await
            .unwrap();
        let g = store.add_grade(s.id, grade("Quiz 1", 70.0)).await.unwrap();
        let fixed = store
            .update_grade(s.id, g.id, grade("Quiz 1", 75.5))
            .await
            .unwrap();
        assert_eq!(fixed.score.value(), 75.5);
        assert_eq!(store.student(s.id).await.unwrap().grades, vec![fixed]);
        store.delete_grade(s.id, g.id).await.unwrap();
        assert!(store.student(s.id).await.unwrap().grades.is_empty());
        assert!(matches!(
            store.delete_grade(s.id, g.id).await,
            Err(StoreError::NoSuchGrade { .. })
        ));
        assert!(matches!(
            store.add_grade(999, grade("Q", 1.0)).await,
            Err(StoreError::NoSuchStudent(999))
        ));
        assert!(matches!(
            store.student(999).await,
            Err(StoreError::NoSuchStudent(999))
        ));
    }

    #[test]
    fn many_instances_can_open_one_new_file_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let start = std::sync::Arc::new(std::sync::Barrier::new(8));
        let opened: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    GradeStore::open(&path, true).map(|_| ())
                })
            })
            .collect();
        for handle in opened {
            handle.join().unwrap().unwrap();
        }
        let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        let students: i64 = conn
            .query_row("SELECT count(*) FROM students", [], |r| r.get(0))
            .unwrap();
        assert_eq!(students, DEMO.len() as i64, "seeded exactly once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_are_all_stored_even_from_two_stores_on_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = GradeStore::open(dir.path(), true).unwrap();
        let b = GradeStore::open(dir.path(), true).unwrap();
        let mut tasks = Vec::new();
        for i in 0..100 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                store
                    .add_grade(1, grade(&format!("Quiz {i}"), f64::from(i % 101)))
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(a.student(1).await.unwrap().grades.len(), 3 + 100);
        assert_eq!(b.students().await.unwrap().len(), DEMO.len());
    }
}
