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

use crate::model::{Grade, GradeType, NewGrade, NewStudent, Student};

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

    /// Whether the grade book can be read: a fresh connection (no cached
    /// pages to hide a damaged file) reads the file's header and its first
    /// rows. For the heartbeat: a grading service that cannot read its
    /// grades is not healthy, whatever its HTTP server says.
    pub async fn check(&self) -> Result<(), StoreError> {
        let path = self.inner.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.query_row(
                "SELECT count(*) FROM (SELECT 1 FROM grades LIMIT 1)",
                [],
                |_| Ok(()),
            )?;
            conn.query_row(
                "SELECT count(*) FROM (SELECT 1 FROM students LIMIT 1)",
                [],
                |_| Ok(()),
            )?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
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

mod rows;

use rows::{ensure_student, grade_row, load_student, load_student_page, student_row};

#[cfg(test)]
mod tests;
