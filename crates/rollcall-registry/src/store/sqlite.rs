//! The SQLite store: one file, `registry.db`, under the data dir.
//!
//! WAL journal with `synchronous=NORMAL`: a committed batch survives the
//! registry being killed (SIGKILL, a panic, OOM) because it is in the WAL
//! before `apply` returns; only a power loss or kernel crash can lose the last
//! commits. `--sync full` (`synchronous=FULL`) closes that gap at the cost of an
//! fsync per batch. Registrations are stored as the JSON the registry would send,
//! so the file can be read with the `sqlite3` shell.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rollcall_proto::{PatchEntry, Registration, ServiceName, ServiceUrl, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoreError};
use crate::catalog::health::Health;
use crate::catalog::records::{StoreOp, StoredInstance, StoredState, ViewChange};

/// The file name under the data dir.
pub const FILE_NAME: &str = "registry.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instances (
    url           TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    registration  TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('passing', 'critical')),
    status_since  INTEGER NOT NULL,
    maintenance   INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS views (
    receiver TEXT NOT NULL,
    name     TEXT NOT NULL,
    provider TEXT NOT NULL,
    PRIMARY KEY (receiver, name, provider)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Sync {
    /// Survives a killed process; a power loss may lose the last commits.
    #[default]
    Normal,
    /// fsync on every commit: survives a power loss too.
    Full,
}

/// A catalog stored in SQLite.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) `registry.db` under `data_dir`.
    pub fn open(data_dir: &Path, sync: Sync) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(FILE_NAME);
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match sync {
            Sync::Normal => "NORMAL",
            Sync::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // The page cache stays within 2 MiB however large the catalog (the
        // catalog itself is in memory; the file is written, rarely read).
        conn.pragma_update(None, "cache_size", -2048)?;
        conn.execute_batch(SCHEMA)?;
        // Files written before the maintenance switch existed lack its column.
        if conn
            .prepare("SELECT maintenance FROM instances LIMIT 0")
            .is_err()
        {
            conn.execute_batch("ALTER TABLE instances ADD COLUMN maintenance INTEGER")?;
        }
        Ok(Self {
            path,
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Stopped)
    }
}

fn apply_op(tx: &rusqlite::Transaction<'_>, op: &StoreOp) -> Result<(), StoreError> {
    match op {
        StoreOp::PutInstance {
            instance: i,
            replaced,
        } => {
            let url = i.registration.url.as_str();
            let json = serde_json::to_string(&i.registration)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if *replaced {
                tx.prepare_cached("DELETE FROM views WHERE receiver = ?1")?
                    .execute(params![url])?;
            }
            tx.prepare_cached(
                "INSERT INTO instances (url, name, registration, registered_at, status, status_since, maintenance)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (url) DO UPDATE SET name = excluded.name,
                    registration = excluded.registration, registered_at = excluded.registered_at,
                    status = excluded.status, status_since = excluded.status_since,
                    maintenance = excluded.maintenance",
            )?
            .execute(params![
                url,
                i.registration.name.as_str(),
                json,
                sql_int(i.registered_at.as_millis()),
                i.status.as_str(),
                sql_int(i.status_since.as_millis()),
                i.maintenance.map(|t| sql_int(t.as_millis()))
            ])?;
        }
        StoreOp::SetMaintenance { url, since } => {
            tx.prepare_cached("UPDATE instances SET maintenance = ?2 WHERE url = ?1")?
                .execute(params![url.as_str(), since.map(|t| sql_int(t.as_millis()))])?;
        }
        StoreOp::SetStatus { url, status, since } => {
            tx.prepare_cached(
                "UPDATE instances SET status = ?2, status_since = ?3 WHERE url = ?1",
            )?
            .execute(params![
                url.as_str(),
                status.as_str(),
                sql_int(since.as_millis())
            ])?;
        }
        StoreOp::DeleteInstance(url) => {
            tx.prepare_cached("DELETE FROM instances WHERE url = ?1")?
                .execute(params![url.as_str()])?;
            tx.prepare_cached("DELETE FROM views WHERE receiver = ?1")?
                .execute(params![url.as_str()])?;
        }
        StoreOp::ApplyView(ViewChange {
            receiver,
            added,
            removed,
            replace,
        }) => {
            let exists = tx
                .prepare_cached("SELECT 1 FROM instances WHERE url = ?1")?
                .query_row(params![receiver.as_str()], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok(());
            }
            if *replace {
                tx.prepare_cached("DELETE FROM views WHERE receiver = ?1")?
                    .execute(params![receiver.as_str()])?;
            }
            let mut delete = tx.prepare_cached(
                "DELETE FROM views WHERE receiver = ?1 AND name = ?2 AND provider = ?3",
            )?;
            for e in removed {
                delete.execute(params![receiver.as_str(), e.name.as_str(), e.url.as_str()])?;
            }
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO views (receiver, name, provider) VALUES (?1, ?2, ?3)",
            )?;
            for e in added {
                insert.execute(params![receiver.as_str(), e.name.as_str(), e.url.as_str()])?;
            }
        }
        StoreOp::SetRevision(revision) => {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('revision', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![sql_int(*revision)])?;
        }
    }
    Ok(())
}

/// SQLite integers are signed 64-bit; our counters and times never reach 2^63.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_sql_int(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

impl Store for SqliteStore {
    fn load(&self) -> Result<StoredState, StoreError> {
        let conn = self.conn()?;
        let mut instances = Vec::new();
        let mut stmt = conn.prepare(
            "SELECT url, registration, registered_at, status, status_since, maintenance FROM instances",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, Option<i64>>(5)?,
            ))
        })?;
        for row in rows {
            let (url, json, registered_at, status, since, maintenance) = row?;
            let registration = Registration::from_json(json.as_bytes())
                .map_err(|e| corrupt(format!("registration of {url}: {e}")))?;
            let status =
                Health::parse(&status).ok_or_else(|| corrupt(format!("status of {url}")))?;
            instances.push(StoredInstance {
                registration,
                registered_at: Timestamp(from_sql_int(registered_at)),
                status,
                status_since: Timestamp(from_sql_int(since)),
                maintenance: maintenance.map(|m| Timestamp(from_sql_int(m))),
            });
        }
        let mut views = Vec::new();
        let mut stmt = conn.prepare("SELECT receiver, name, provider FROM views")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (receiver, name, provider) = row?;
            let receiver = ServiceUrl::parse(&receiver).map_err(corrupt)?;
            let entry = PatchEntry::new(
                ServiceName::parse(&name).map_err(corrupt)?,
                ServiceUrl::parse(&provider).map_err(corrupt)?,
            );
            views.push((receiver, entry));
        }
        let revision = conn
            .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |row| {
                row.get::<_, i64>(0)
            })
            .optional()?
            .map_or(0, from_sql_int);
        Ok(StoredState {
            instances,
            views,
            revision,
        })
    }

    fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        for op in ops {
            apply_op(&tx, op)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}
