//! The log store: append-only segments, one writer, queries, retention.
//!
//! **Writes.** Every append goes through one writer thread, over a bounded
//! queue. The writer takes everything waiting (group commit), numbers the
//! records, drops ones whose `id` it stored recently (so a retried batch is not
//! stored twice), writes them with one `write`, and acknowledges them according
//! to the fsync policy:
//!
//! - `always`: after `fdatasync` — an acknowledged record survives a killed
//!   process *and* a power loss. One fsync covers every append in the group,
//!   so this stays fast under load.
//! - `interval` (default): after the write; a second thread fsyncs the active
//!   segment every `--fsync-interval` (100 ms) when something was written. An
//!   acknowledged record survives a killed process; a power loss may lose the
//!   last interval.
//! - `never`: after the write; the OS decides when to flush. Survives a killed
//!   process; a power loss may lose what the OS had not written yet (typically
//!   up to ~30 s).
//!
//! **Reads** run on blocking threads against a snapshot of segment metadata,
//! and only read bytes the writer has completed, so they never see half a line.
//!
//! **Retention.** Whole segments are deleted, oldest first, while the total size
//! is over `--retention-size` or a segment's newest record arrived before
//! `now - retention_age`. The segment being written is never deleted.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rollcall_proto::Timestamp;
use rollcall_proto::prom::{Counter, Gauge, Histogram};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::query::{Page, Query};
use crate::record::{LogRecord, NewRecord};
use crate::segment::{self, SegmentMeta};

/// When an acknowledged write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FsyncPolicy {
    /// fsync before acknowledging (grouped across concurrent appends).
    Always,
    /// Acknowledge after the write; fsync every `--fsync-interval`.
    #[default]
    Interval,
    /// Acknowledge after the write; never fsync (the OS flushes).
    Never,
}

/// How the store behaves.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    pub segment_size: u64,
    pub retention_size: u64,
    pub retention_age: Duration,
    /// How many recent record ids are remembered to drop retried duplicates.
    pub dedupe_window: usize,
}

impl StoreConfig {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            fsync: FsyncPolicy::Interval,
            fsync_interval: Duration::from_millis(100),
            segment_size: 64 << 20,
            retention_size: 1 << 30,
            retention_age: Duration::from_secs(7 * 86_400),
            dedupe_window: 100_000,
        }
    }
}

/// Room in the writer's queue, in appends.
pub const QUEUE: usize = 1024;
/// Most appends written in one group.
const MAX_GROUP: usize = 512;
/// Live-tail subscribers that fall this far behind are told they lagged.
pub const TAIL_BUFFER: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the log directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("log storage failed: {0}")]
    Io(#[from] io::Error),
    #[error("the log store has stopped")]
    Stopped,
    #[error(transparent)]
    Write(#[from] AppendError),
}

/// Why an append was not stored. Cloneable: one failed group write answers
/// every request in the group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("the write failed: {0}")]
    Io(Arc<io::Error>),
    /// A failed write could not be cut off the log; nothing is written
    /// until the service restarts.
    #[error("a failed write could not be undone ({0}); restart the log service")]
    Stuck(Arc<io::Error>),
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    pub stored: usize,
    pub duplicates: usize,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

#[derive(Debug, Default)]
pub struct StoreMetrics {
    pub records: Counter,
    pub bytes: Counter,
    pub appends: Counter,
    pub groups: Counter,
    pub duplicates: Counter,
    pub fsyncs: Counter,
    pub fsync_seconds: Histogram,
    pub write_errors: Counter,
    pub segments_deleted: Counter,
    pub truncated_bytes: Counter,
    pub tail_subscribers: Gauge,
    pub tail_lagged: Counter,
}

struct Request {
    records: Vec<NewRecord>,
    done: oneshot::Sender<Result<Appended, AppendError>>,
}

enum Msg {
    Append(Request),
    /// Write what is queued, sync, stop.
    Close,
}

/// Most service names the store remembers for hints.
pub const MAX_KNOWN_SERVICES: usize = 10_000;

#[derive(Debug)]
struct Shared {
    config: StoreConfig,
    /// This store's identity ([`STORE_ID_FILE`]): a store that started over
    /// (its directory emptied) has another one.
    id: String,
    /// Names of the services with records (at most [`MAX_KNOWN_SERVICES`]),
    /// to say which exist when a query names one that does not.
    services: Mutex<std::collections::BTreeSet<String>>,
    segments: RwLock<Vec<SegmentMeta>>,
    /// A handle on the active segment, for the interval syncer.
    active: Mutex<Option<File>>,
    dirty: AtomicBool,
    metrics: StoreMetrics,
    tail: broadcast::Sender<Arc<LogRecord>>,
    /// Queries running at once (the read budget): more wait their turn
    /// instead of each holding a page's records in memory and a core busy.
    reads: Arc<tokio::sync::Semaphore>,
}

/// Queries a store runs at once.
pub const CONCURRENT_QUERIES: usize = 4;

/// A handle to the store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
}

/// The store's threads, to join at shutdown.
#[derive(Debug)]
pub struct StoreThreads {
    writer: std::thread::JoinHandle<()>,
    syncer: Option<std::thread::JoinHandle<()>>,
    stop_syncer: Arc<AtomicBool>,
}

/// The file in the store's directory that holds its identity.
pub const STORE_ID_FILE: &str = "store-id";

/// The store's identity, made (16 hex digits, from the time and the process)
/// the first time the directory is opened and kept in [`STORE_ID_FILE`].
fn store_id(dir: &Path) -> Result<String, StoreError> {
    use std::hash::{BuildHasher as _, Hasher as _};
    let path = dir.join(STORE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(StoreError::Dir { path, source }),
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    let id = format!("{:016x}", hasher.finish());
    let partial = dir.join(format!("{STORE_ID_FILE}.partial"));
    std::fs::write(&partial, &id)
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|source| StoreError::Dir { path, source })?;
    Ok(id)
}

impl LogStore {
    /// Opens the directory: scans every segment, repairs a torn tail, and
    /// starts the writer (and the syncer for `interval`).
    pub fn open(config: StoreConfig) -> Result<(LogStore, StoreThreads), StoreError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Dir {
            path: dir.clone(),
            source,
        })?;
        let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
            .map_err(|source| StoreError::Dir {
                path: dir.clone(),
                source,
            })?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                segment::parse_name(&name).map(|first| (first, e.path()))
            })
            .collect();
        names.sort();
        let metrics = StoreMetrics::default();
        let mut segments = Vec::with_capacity(names.len() + 1);
        let mut ids: VecDeque<String> = VecDeque::new();
        let mut services = std::collections::BTreeSet::new();
        let last_index = names.len().saturating_sub(1);
        for (i, (first, path)) in names.into_iter().enumerate() {
            let scanned = segment::scan(&path, first, i == last_index)?;
            if scanned.truncated > 0 {
                tracing::warn!(
                    segment = %path.display(),
                    bytes = scanned.truncated,
                    "cut a torn record off the end of the log (it was never acknowledged)"
                );
                metrics.truncated_bytes.inc_by(scanned.truncated);
            }
            if scanned.corrupt > 0 {
                tracing::warn!(segment = %path.display(), lines = scanned.corrupt, "unreadable lines skipped");
            }
            for service in scanned.services {
                if services.len() < MAX_KNOWN_SERVICES {
                    services.insert(service);
                }
            }
            for id in scanned.ids {
                ids.push_back(id);
                if ids.len() > config.dedupe_window {
                    ids.pop_front();
                }
            }
            segments.push(scanned.meta);
        }
        let next_seq = segments
            .iter()
            .rev()
            .find_map(|s| s.last_seq)
            .map_or(1, |s| s + 1);
        // Write into the newest segment, or start one.
        if segments.last().is_none_or(|s| s.len >= config.segment_size) {
            segments.push(SegmentMeta::empty(&dir, next_seq));
        }
        let active_meta = segments
            .last()
            .cloned()
            .ok_or_else(|| io::Error::other("the log has no segment to write to"))?;
        let file = open_append(&active_meta.path)?;
        let sync_handle = file.try_clone()?;
        let (tail, _) = broadcast::channel(TAIL_BUFFER);
        let id = store_id(&dir)?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            id,
            services: Mutex::new(services),
            segments: RwLock::new(segments),
            active: Mutex::new(Some(sync_handle)),
            dirty: AtomicBool::new(false),
            metrics,
            tail,
            reads: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_QUERIES)),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let seen: HashSet<String> = ids.iter().cloned().collect();
        let writer_state = Writer {
            shared: shared.clone(),
            file,
            next_seq,
            recent_ids: ids,
            seen,
            buf: Vec::with_capacity(1 << 20),
            stuck: None,
        };
        let writer = std::thread::Builder::new()
            .name("rollcall-log-writer".into())
            .spawn(move || writer_state.run(rx))?;
        let stop_syncer = Arc::new(AtomicBool::new(false));
        let syncer = if config.fsync == FsyncPolicy::Interval {
            let shared = shared.clone();
            let stop = stop_syncer.clone();
            Some(
                std::thread::Builder::new()
                    .name("rollcall-log-sync".into())
                    .spawn(move || sync_loop(&shared, &stop))?,
            )
        } else {
            None
        };
        tracing::info!(
            dir = %dir.display(),
            next_seq,
            fsync = ?config.fsync,
            "log store open"
        );
        Ok((
            LogStore { shared, tx },
            StoreThreads {
                writer,
                syncer,
                stop_syncer,
            },
        ))
    }

    /// The services with records, sorted (at most [`MAX_KNOWN_SERVICES`]).
    pub fn services(&self) -> Vec<String> {
        self.shared
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    pub fn metrics(&self) -> &StoreMetrics {
        &self.shared.metrics
    }

    /// Appends records; returns once they are acknowledged under the policy.
    pub async fn append(&self, records: Vec<NewRecord>) -> Result<Appended, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Msg::Append(Request { records, done }))
            .await
            .map_err(|_| StoreError::Stopped)?;
        match rx.await {
            Ok(Ok(appended)) => Ok(appended),
            Ok(Err(e)) => Err(StoreError::Write(e)),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// Subscribes to records as they are stored.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.shared.tail.subscribe()
    }

    /// This store's identity: readers that keep a cursor (`rollcall logs
    /// -f`) compare it to notice a store that started over.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Segment count and total bytes.
    pub fn usage(&self) -> (usize, u64) {
        let segments = read(&self.shared.segments);
        (segments.len(), segments.iter().map(|s| s.len).sum())
    }

    /// The next seq to be assigned (records stored so far + 1, retention aside).
    pub fn last_seq(&self) -> Option<u64> {
        read(&self.shared.segments)
            .iter()
            .rev()
            .find_map(|s| s.last_seq)
    }

    /// Answers a query (blocking file I/O: call from a blocking thread).
    /// A turn to run a query (see [`CONCURRENT_QUERIES`]); held while it runs.
    pub async fn read_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.shared.reads.clone().acquire_owned().await.ok()
    }

    pub fn query_blocking(&self, query: &Query) -> io::Result<Page> {
        let segments: Vec<SegmentMeta> = read(&self.shared.segments).clone();
        run_query(&segments, query)
    }

    /// Deletes segments beyond the retention limits. Returns how many.
    pub fn enforce_retention(&self, now: Timestamp) -> usize {
        enforce_retention(&self.shared, now)
    }

    /// Stops accepting appends, writes what is queued, syncs, and ends the
    /// threads. Other handles answer `Stopped` from then on.
    pub async fn close(self, threads: StoreThreads) {
        let _ = self.tx.send(Msg::Close).await;
        let _ = tokio::task::spawn_blocking(move || {
            let _ = threads.writer.join();
            threads.stop_syncer.store(true, Ordering::Relaxed);
            if let Some(syncer) = threads.syncer {
                let _ = syncer.join();
            }
        })
        .await;
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn sync(shared: &Shared, file: &File) -> io::Result<()> {
    let started = Instant::now();
    let result = file.sync_data();
    shared.metrics.fsync_seconds.observe(started.elapsed());
    shared.metrics.fsyncs.inc();
    result
}

mod read;
#[cfg(test)]
mod tests;
mod writer;

use read::{enforce_retention, run_query};
use writer::{Writer, sync_loop};
