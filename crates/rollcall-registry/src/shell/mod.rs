//! The shell around the catalog: the clock, the lock, the store writer, the
//! event log, and the code that carries out [`Effects`].
//!
//! Every change goes through [`Registry::run`] (or [`Registry::run_now`] where
//! nothing may wait): reserve a place in the store's queue, lock the catalog,
//! apply one command at the current time, hand the records to the store writer
//! (still under the lock, so the store sees changes in catalog order), publish
//! the events, unlock, then hand out worker starts and say that the schedule
//! moved. Reads take the lock through [`Registry::read`]. The lock is a plain
//! `std` mutex and is never held across an `.await`.
//!
//! The shell runs no worker itself: delivery workers to start travel over a
//! channel ([`WorkerStarts`]) and the checker waits on
//! [`Registry::schedule_changed`]; the crate root wires the workers up.
//!
//! The clock is tokio's, so tests under paused time move it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rollcall_proto::{ServiceUrl, Timestamp};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::{Catalog, Effects, Event, EventKind, PatchTicket, WorkerStart};
use crate::config::RegistryConfig;
use crate::metrics::Metrics;
use crate::store::memory::MemoryStore;
use crate::store::sqlite::SqliteStore;
use crate::store::writer::{Batch, StoreWriter};
use crate::store::{Store, StoreError};

mod cluster;
pub mod fanout;
mod operations;
mod reads;

pub use operations::WriteError;
pub use reads::{CHUNK, CachedRead, READ_CACHE, Views};

/// How many recent events are kept for `/v1/events` and the dashboard.
pub const RECENT_EVENTS: usize = 1000;
pub use fanout::EVENT_BUFFER;
/// Room in the store writer's queue, in batches.
pub const STORE_QUEUE: usize = 8192;

/// A cheap, cloneable handle to a running registry.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    core: Mutex<Core>,
    clock: Clock,
    config: RegistryConfig,
    store: StoreWriter,
    store_description: String,
    client: reqwest::Client,
    metrics: Metrics,
    events: Arc<fanout::Fanout>,
    schedule_moved: Notify,
    worker_starts: mpsc::UnboundedSender<WorkerStart>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// In cluster mode, until when this replica's lease surely holds: past
    /// it, it sends nothing (a frozen replica that wakes up acts on nothing
    /// it owned before). `None`: not clustered.
    lease_until: Mutex<Option<tokio::time::Instant>>,
    /// Cluster mode: etcd has not answered lately, so what this replica
    /// reads out may be behind the others.
    stale: std::sync::atomic::AtomicBool,
    /// Cluster mode: the store this replica writes to etcd through, whose
    /// commits its deliveries wait to see come back through the feed.
    followed: std::sync::OnceLock<Arc<crate::cluster::store::EtcdStore>>,
    /// Cluster mode: instances to tell the replica that checks them about
    /// (this one lost contact with them), bounded.
    lost_elsewhere: std::sync::OnceLock<mpsc::Sender<ServiceUrl>>,
    /// Cluster mode: the etcd revision the catalog has followed to.
    fed: tokio::sync::watch::Sender<i64>,
    /// Commands run so far (each may change what a read shows): a cached
    /// read is good while this has not moved.
    changes: std::sync::atomic::AtomicU64,
    /// The catalog revision, for blocking reads.
    revision: tokio::sync::watch::Sender<u64>,
    /// Serialized answers to catalog reads, by query.
    read_cache: Mutex<HashMap<String, CachedRead>>,
}

/// Wall time at start plus tokio's monotonic time since (paused under test).
#[derive(Debug)]
struct Clock {
    start_wall: Timestamp,
    start: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            start_wall: Timestamp::system_now(),
            start: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> Timestamp {
        self.start_wall.plus(self.start.elapsed())
    }
}

/// Delivery workers the catalog asked for, in order. At most one is pending
/// per receiver (the catalog hands out a start only to a receiver without a
/// worker), so the channel holds at most as many as there are receivers.
#[derive(Debug)]
pub struct WorkerStarts(pub mpsc::UnboundedReceiver<WorkerStart>);

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) catalog: Catalog,
    /// Registrations waiting for their initial patch to be delivered.
    pub(crate) waiters: HashMap<PatchTicket, oneshot::Sender<bool>>,
    /// Registrations through this replica whose initial patch another
    /// replica delivers (cluster mode), by receiver: told when that
    /// replica's record of the delivery arrives.
    pub(crate) told_elsewhere: HashMap<ServiceUrl, oneshot::Sender<bool>>,
    pub(crate) recent: VecDeque<Event>,
    /// Open watch streams bound to an instance, by its URL.
    pub(crate) bound_streams: HashMap<ServiceUrl, u32>,
}

/// Why the registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Tls(#[from] rollcall_http::tls::TlsError),
}

/// The background of a started registry, to wait for at shutdown.
#[derive(Debug)]
pub struct Background {
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Registry {
    /// Opens the store, rebuilds the catalog and starts the checker, the ticker
    /// and any delivery owed since the last run. Background work stops when
    /// `shutdown` fires.
    pub fn start(
        config: RegistryConfig,
        shutdown: CancellationToken,
    ) -> Result<(Self, Background, WorkerStarts), StartError> {
        let store: Arc<dyn Store> = if config.in_memory {
            Arc::new(MemoryStore::default())
        } else {
            Arc::new(SqliteStore::open(&config.data_dir, config.sync)?)
        };
        let state = store.load()?;
        Self::start_with(config, shutdown, store, state)
    }

    /// Like [`Registry::start`], on a store already opened and loaded.
    pub fn start_with(
        config: RegistryConfig,
        shutdown: CancellationToken,
        store: Arc<dyn Store>,
        state: crate::catalog::records::StoredState,
    ) -> Result<(Self, Background, WorkerStarts), StartError> {
        let store_description = store.describe();
        let clock = Clock::new();
        let restored = state.instances.len();
        let (catalog, effects) = Catalog::restore(config.catalog(), state, clock.now());
        let revision = catalog.revision();
        let (writer, writer_thread) = StoreWriter::spawn(store, STORE_QUEUE)?;
        let client = crate::workers::outbound::client(&config)?;
        let events = Arc::new(fanout::Fanout::default());
        let (worker_starts, starts) = mpsc::unbounded_channel();
        let registry = Registry {
            inner: Arc::new(Inner {
                core: Mutex::new(Core {
                    catalog,
                    waiters: HashMap::new(),
                    told_elsewhere: HashMap::new(),
                    recent: VecDeque::with_capacity(RECENT_EVENTS),
                    bound_streams: HashMap::new(),
                }),
                clock,
                config,
                store: writer,
                store_description,
                client,
                metrics: Metrics::default(),
                events,
                schedule_moved: Notify::new(),
                worker_starts,
                tasks: TaskTracker::new(),
                shutdown,
                lease_until: Mutex::new(None),
                stale: std::sync::atomic::AtomicBool::new(false),
                followed: std::sync::OnceLock::new(),
                lost_elsewhere: std::sync::OnceLock::new(),
                fed: tokio::sync::watch::Sender::new(0),
                changes: std::sync::atomic::AtomicU64::new(0),
                revision: tokio::sync::watch::Sender::new(revision),
                read_cache: Mutex::new(HashMap::new()),
            }),
        };
        tracing::info!(
            store = %registry.inner.store_description,
            instances = restored,
            "catalog loaded"
        );
        registry.execute(effects);
        Ok((
            registry,
            Background {
                writer: Some(writer_thread),
            },
            WorkerStarts(starts),
        ))
    }

    /// The client for calls to other services (see [`crate::workers::outbound`]).
    pub fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    /// Fires when the registry stops.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Runs `task` as background work the registry waits for when stopping.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.tasks.spawn(task)
    }

    /// Completes when the check schedule gained an earlier entry since the
    /// last time someone waited (one waiter: the check loop).
    pub async fn schedule_changed(&self) {
        self.inner.schedule_moved.notified().await;
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn store_writer(&self) -> &StoreWriter {
        &self.inner.store
    }

    pub fn store_description(&self) -> &str {
        &self.inner.store_description
    }

    /// The registry's clock: wall time at start plus monotonic time since.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock would be a bug; the catalog's
        // commands leave it consistent at every step, so carry on.
        self.inner
            .core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the catalog.
    pub fn read<T>(&self, f: impl FnOnce(&Catalog) -> T) -> T {
        let core = self.lock();
        let held = std::time::Instant::now();
        let out = f(&core.catalog);
        drop(core);
        self.inner.metrics.read_lock.observe(held.elapsed());
        out
    }

    /// Counts a command (under the lock); the catalog revision after it.
    fn changed(&self, core: &Core) -> u64 {
        self.inner
            .changes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        core.catalog.revision()
    }

    fn revision_moved(&self, revision: u64) {
        self.inner.revision.send_if_modified(|r| {
            let moved = revision > *r;
            *r = (*r).max(revision);
            moved
        });
    }

    /// Recent events, oldest first.
    pub fn recent_events(&self, limit: usize) -> Vec<Event> {
        let core = self.lock();
        let skip = core.recent.len().saturating_sub(limit);
        core.recent.iter().skip(skip).cloned().collect()
    }

    /// Subscribes to the events `interest` names, from now on.
    pub fn subscribe(&self, interest: fanout::Interest) -> fanout::Subscription {
        self.inner.events.subscribe(interest)
    }

    /// Applies one command and carries out its effects. With `ack`, returns a
    /// receiver that says when the records were committed.
    pub(crate) async fn run<T>(
        &self,
        ack: bool,
        command: impl FnOnce(&mut Core, Timestamp) -> (T, Effects),
    ) -> Result<(T, Option<oneshot::Receiver<Result<(), StoreError>>>), StoreError> {
        let permit = self.inner.store.reserve().await?;
        let (value, effects, done, revision) = {
            let mut core = self.lock();
            let now = self.now();
            let (value, mut effects) = command(&mut core, now);
            let ops = std::mem::take(&mut effects.persist);
            let done = if ops.is_empty() {
                drop(permit);
                None
            } else {
                let (tx, rx) = if ack {
                    let (tx, rx) = oneshot::channel();
                    (Some(tx), Some(rx))
                } else {
                    (None, None)
                };
                permit.send(Batch { ops, done: tx });
                rx
            };
            self.publish(&mut core, &effects.events);
            let revision = self.changed(&core);
            (value, effects, done, revision)
        };
        self.revision_moved(revision);
        self.execute(effects);
        Ok((value, done))
    }

    /// Like [`Registry::run`] for commands that persist nothing and from places
    /// that cannot wait (a `Drop`). Records, should there be any, are handed to
    /// the store only if it has room; otherwise they are counted as dropped.
    pub(crate) fn run_now<T>(
        &self,
        command: impl FnOnce(&mut Core, Timestamp) -> (T, Effects),
    ) -> T {
        let (value, effects, revision) = {
            let mut core = self.lock();
            let now = self.now();
            let (value, mut effects) = command(&mut core, now);
            let ops = std::mem::take(&mut effects.persist);
            if !ops.is_empty() {
                match self.inner.store.try_reserve() {
                    Some(permit) => {
                        permit.send(Batch { ops, done: None });
                    }
                    None => {
                        self.inner.metrics.store_dropped.inc_by(ops.len() as u64);
                        tracing::error!(ops = ops.len(), "store queue full: records dropped");
                    }
                }
            }
            self.publish(&mut core, &effects.events);
            let revision = self.changed(&core);
            (value, effects, revision)
        };
        self.revision_moved(revision);
        self.execute(effects);
        value
    }

    /// Records events in the recent list and hands them to the watch streams
    /// that want them, under the lock so every subscriber sees catalog
    /// order. Both keep the last few thousand events, with URLs of their
    /// own: sharing the instances' would pin a page of the allocator for each
    /// instance long gone.
    fn publish(&self, core: &mut Core, events: &[Event]) {
        for event in events {
            if core.recent.len() == RECENT_EVENTS {
                core.recent.pop_front();
            }
            let mut kept = event.clone();
            kept.url = kept.url.detached();
            self.inner.events.publish(kept.clone());
            core.recent.push_back(kept);
        }
    }

    /// Carries out what a command asked for (everything but persistence).
    fn execute(&self, effects: Effects) {
        let metrics = &self.inner.metrics;
        metrics.patches_queued.inc_by(effects.patches_queued);
        metrics.patches_coalesced.inc_by(effects.patches_coalesced);
        metrics.patches_dropped.inc_by(effects.patches_dropped);
        for event in &effects.events {
            metrics.count_event(event.kind);
            log_event(event);
        }
        if effects.schedule_changed {
            self.inner.schedule_moved.notify_one();
        }
        if let Some(queue) = self.inner.lost_elsewhere.get() {
            for url in effects.tell_checker {
                if queue.try_send(url).is_err() {
                    metrics.lost_contact_reports_dropped.inc();
                }
            }
        }
        for start in effects.start_workers {
            if self.inner.shutdown.is_cancelled() {
                break;
            }
            // The receiving end lives as long as the registry runs; after it
            // is gone nothing needs delivering.
            let _ = self.inner.worker_starts.send(start);
        }
    }
}

impl Background {
    /// Waits for background tasks to end (after the shutdown token fired), at
    /// most `deadline`, then for the store writer to commit what is queued.
    pub async fn finish(mut self, registry: Registry, deadline: Duration) {
        let inner = registry.inner.clone();
        inner.tasks.close();
        if tokio::time::timeout(deadline, inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?deadline,
                "background tasks did not stop before the deadline"
            );
        }
        if let Err(e) = registry.flush().await {
            tracing::warn!(error = %e, "could not flush the store");
        }
        drop(inner);
        drop(registry);
        if let Some(writer) = self.writer.take() {
            // The thread ends once every handle to the writer is gone; a watch
            // stream still being torn down may hold one briefly.
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::task::spawn_blocking(move || writer.join()),
            )
            .await;
        }
    }
}

fn log_event(event: &Event) {
    let service = event.service.as_str();
    let url = event.url.as_str();
    let detail = event.detail.as_deref().unwrap_or("");
    match event.kind {
        EventKind::Registered | EventKind::Reregistered => {
            tracing::info!(service, url, kind = event.kind.as_str(), "registered")
        }
        EventKind::Deregistered => tracing::info!(service, url, "deregistered"),
        EventKind::Critical => {
            tracing::warn!(service, url, reason = detail, "critical: out of discovery")
        }
        EventKind::Recovered => tracing::info!(service, url, "recovered: back in discovery"),
        EventKind::Expired => tracing::warn!(service, url, "expired: critical too long, removed"),
        EventKind::DeliveryFailed => {
            tracing::warn!(
                service,
                url,
                error = detail,
                "patch delivery failed; resync owed"
            )
        }
        EventKind::Resynced => tracing::info!(service, url, "receiver resynced"),
        EventKind::MaintenanceOn => {
            tracing::warn!(service, url, "maintenance on: out of discovery")
        }
        EventKind::MaintenanceOff => {
            tracing::info!(service, url, "maintenance off: back in discovery")
        }
    }
}
