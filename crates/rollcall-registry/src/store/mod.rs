//! Durable storage for the catalog.
//!
//! [`Store`] is the contract: load everything at start, apply a batch of
//! [`StoreOp`]s atomically and in order. Three backends implement it:
//! [`sqlite::SqliteStore`] (the default, one file under the data dir),
//! [`memory::MemoryStore`] (`--in-memory`: keeps nothing on disk) and
//! [`crate::cluster::store::EtcdStore`] (cluster mode: the records live in
//! etcd, beside the rest of cluster mode). One contract test suite (`tests`)
//! runs against all three (etcd as real processes).
//! [`writer::StoreWriter`] is the shell around a store: one thread that
//! commits whatever is waiting in one transaction (group commit).

pub mod memory;
pub mod sqlite;
pub mod writer;

#[cfg(test)]
mod tests;

use crate::catalog::records::{StoreOp, StoredState};

/// What went wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("a stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("the store writer has stopped")]
    Stopped,
    #[error("cannot start the store writer thread: {0}")]
    Thread(String),
    /// etcd's own kind survives: unavailable (down, no quorum, timed out),
    /// refused, unreadable.
    #[error(transparent)]
    Etcd(#[from] rollcall_etcd::EtcdError),
    #[error(
        "this replica holds no etcd lease (it lapsed, or the replica has not joined yet); it writes nothing until it holds one"
    )]
    NoLease,
    #[error("the keys of a batch kept changing under it ({0} attempts)")]
    Contended(usize),
}

/// A durable home for the catalog.
pub trait Store: Send + Sync + 'static {
    /// Everything stored, to rebuild the catalog from.
    fn load(&self) -> Result<StoredState, StoreError>;
    /// Applies `ops` atomically: all or none.
    fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError>;
    /// A short description for logs ("sqlite:/path", "memory").
    fn describe(&self) -> String;
}
