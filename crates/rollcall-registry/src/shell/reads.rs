//! Reads for the HTTP API: the catalog with the change count it was read
//! at, the shared cache of serialized answers, and the revision as it
//! moves (blocking reads).

use super::*;

/// Most answers the read cache keeps (past it, it starts again empty).
pub const READ_CACHE: usize = 256;

/// A catalog read, serialized once and shared by every reader until the
/// catalog changes.
#[derive(Debug, Clone)]
pub struct CachedRead {
    /// The change count it was read at.
    pub changes: u64,
    pub revision: u64,
    /// The JSON, shared (a clone is a reference count).
    pub body: bytes::Bytes,
    /// Where the next page starts, if one follows.
    pub next: Option<String>,
}

impl Registry {
    /// Reads the catalog, with the change count it was read at.
    pub fn read_counted<T>(&self, f: impl FnOnce(&Catalog) -> T) -> (T, u64) {
        // Under the lock: the count moves under it, at the end of every
        // command.
        self.read(|catalog| {
            let changes = self
                .inner
                .changes
                .load(std::sync::atomic::Ordering::Acquire);
            (f(catalog), changes)
        })
    }

    /// The answer cached for `query`, if nothing changed since it was read
    /// (checked without the catalog's lock: the count moves under it, at
    /// the end of every command, so a read never gets an answer older than
    /// a change that finished before it began).
    pub fn cached_read(&self, query: &str) -> Option<CachedRead> {
        let now = self
            .inner
            .changes
            .load(std::sync::atomic::Ordering::Acquire);
        let cache = self
            .inner
            .read_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let hit = cache.get(query).filter(|c| c.changes == now).cloned();
        drop(cache);
        let metrics = &self.inner.metrics;
        if hit.is_some() {
            metrics.read_cache_hits.inc();
        } else {
            metrics.read_cache_misses.inc();
        }
        hit
    }

    /// Keeps `read` as the answer to `query` (unless a newer one is kept).
    pub fn cache_read(&self, query: String, read: CachedRead) {
        let mut cache = self
            .inner
            .read_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // An answer older than this one can never be served again.
        cache.retain(|_, kept| kept.changes >= read.changes);
        if cache.len() >= READ_CACHE && !cache.contains_key(&query) {
            cache.clear();
        }
        match cache.get(&query) {
            Some(kept) if kept.changes >= read.changes => {}
            _ => {
                cache.insert(query, read);
            }
        }
    }

    /// How many answers the cache holds, and their bytes.
    pub fn cached_answers(&self) -> (usize, usize) {
        let cache = self
            .inner
            .read_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (cache.len(), cache.values().map(|c| c.body.len()).sum())
    }

    /// Drops the answers the catalog has moved past (they can never be
    /// served again), so a large one does not stay in memory once its
    /// instances are gone. Called by the ticker.
    pub fn forget_stale_reads(&self) {
        let now = self
            .inner
            .changes
            .load(std::sync::atomic::Ordering::Acquire);
        self.inner
            .read_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, kept| kept.changes == now);
    }

    /// The catalog revision as it moves (for blocking reads).
    pub fn revision_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.revision.subscribe()
    }
}
