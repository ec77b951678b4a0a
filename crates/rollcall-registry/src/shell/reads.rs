//! Reads of the catalog for the HTTP API, the dashboard and DNS: the catalog
//! with the change count it was read at, large reads a chunk per hold of the
//! lock that still form one moment ([`Registry::read_views`]), the shared
//! cache of serialized answers, and the revision as it moves (blocking
//! reads).

use rollcall_proto::ServiceName;
use rollcall_proto::views::InstanceView;

use super::*;
use crate::catalog::Instance;

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

    /// Every instance in discovery (passing, or not checked yet; never critical
    /// or in maintenance), of one service or all, sorted by name then URL: what
    /// Prometheus discovery and DNS answer. Read a chunk per hold of the lock,
    /// like every large read.
    pub async fn discovered(&self, service: Option<&ServiceName>) -> Vec<InstanceView> {
        self.read_views(service, Instance::in_discovery, usize::MAX, None)
            .await
            .views
    }

    /// Up to `want` views after `after`, a [`CHUNK`] per hold of the lock. The
    /// answer is one moment of the catalog all the same: the registry's count
    /// of commands must be the same at every chunk (a command ran in between
    /// otherwise, and the read starts again); a catalog that keeps changing is
    /// read in one hold after [`CHUNKED_TRIES`].
    pub async fn read_views(
        &self,
        service: Option<&ServiceName>,
        keep: impl Fn(&Instance) -> bool,
        want: usize,
        after: Option<&(ServiceName, ServiceUrl)>,
    ) -> Views {
        let keep = &keep;
        let mut tries = 0;
        'read: loop {
            tries += 1;
            // Past the tries, one hold: nothing can come between chunks.
            let chunk_size = if tries > CHUNKED_TRIES {
                usize::MAX
            } else {
                CHUNK
            };
            let mut views: Vec<InstanceView> = Vec::new();
            let mut start = after.cloned();
            let mut first = None;
            loop {
                let room = want - views.len();
                let ((chunk, more, revision), changes) = self.read_counted(|c| {
                    let (page, more) = c.page(
                        service,
                        start.as_ref().map(|(n, u)| (n, u)),
                        room.min(chunk_size),
                        keep,
                    );
                    let chunk: Vec<InstanceView> = page.into_iter().map(Instance::view).collect();
                    (chunk, more, c.revision())
                });
                if *first.get_or_insert(changes) != changes {
                    continue 'read;
                }
                views.extend(chunk);
                if !more || views.len() == want {
                    return Views {
                        views,
                        more,
                        revision,
                        changes,
                    };
                }
                start = views.last().map(|v| (v.name.clone(), v.url.clone()));
                // Writers waiting for the lock get it now, not after the
                // whole read.
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Instances whose views one hold of the catalog's lock builds: a large
/// read takes the lock once per chunk, never for the whole catalog.
pub const CHUNK: usize = 1_000;
/// Times a chunked read starts again because the catalog changed between
/// its chunks, before it reads in one hold of the lock.
const CHUNKED_TRIES: usize = 3;

/// What [`Registry::read_views`] read: one moment of the catalog.
#[derive(Debug)]
pub struct Views {
    pub views: Vec<InstanceView>,
    /// Whether more instances follow the last one.
    pub more: bool,
    pub revision: u64,
    /// The registry's count of commands it was read at.
    pub changes: u64,
}
