//! The shell around the catalog: the clock, the lock, the store writer, the
//! background tasks, and the code that carries out [`Effects`].
//!
//! Every change goes through [`Registry::run`]: reserve a place in the store's
//! queue, lock the catalog, apply one command at the current time, hand the
//! records to the store writer (still under the lock, so the store sees changes
//! in catalog order), publish the events, unlock, then start workers and wake
//! the checker. The lock is a plain `std` mutex and is never held across an
//! `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rollcall_proto::time::MonotonicClock;
use rollcall_proto::{Registration, ServiceUrl, Timestamp};
use tokio::sync::{Notify, broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::{Catalog, Effects, Event, EventKind, PatchTicket};
use crate::config::RegistryConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::memory::MemoryStore;
use crate::store::sqlite::SqliteStore;
use crate::store::writer::{Batch, StoreWriter};
use crate::store::{Store, StoreError};
use crate::{checker, notifier};

/// How many recent events are kept for `/v1/events` and the dashboard.
pub const RECENT_EVENTS: usize = 1000;
/// How many events a slow watch stream may fall behind before it is told it
/// lagged (and resynced).
pub const EVENT_BUFFER: usize = 4096;
/// Room in the store writer's queue, in batches.
pub const STORE_QUEUE: usize = 8192;

/// A cheap, cloneable handle to a running registry.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    core: Mutex<Core>,
    clock: MonotonicClock,
    pub(crate) config: RegistryConfig,
    store: StoreWriter,
    store_description: String,
    pub(crate) client: reqwest::Client,
    pub(crate) metrics: Metrics,
    events: broadcast::Sender<Event>,
    pub(crate) check_wake: Notify,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
}

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) catalog: Catalog,
    /// Registrations waiting for their initial patch to be delivered.
    pub(crate) waiters: HashMap<PatchTicket, oneshot::Sender<bool>>,
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
    ) -> Result<(Self, Background), StartError> {
        let store: Arc<dyn Store> = if config.in_memory {
            Arc::new(MemoryStore::default())
        } else {
            Arc::new(SqliteStore::open(&config.data_dir, config.sync)?)
        };
        let state = store.load()?;
        let store_description = store.describe();
        let clock = MonotonicClock::new();
        let restored = state.instances.len();
        let (catalog, effects) = Catalog::restore(config.catalog(), state, clock.now());
        let (writer, writer_thread) = StoreWriter::spawn(store, STORE_QUEUE)?;
        let client = reqwest::Client::builder()
            .connect_timeout(config.check_timeout.max(config.delivery_timeout))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .tcp_nodelay(true)
            .user_agent(concat!("rollcall-registry/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let registry = Registry {
            inner: Arc::new(Inner {
                core: Mutex::new(Core {
                    catalog,
                    waiters: HashMap::new(),
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
                check_wake: Notify::new(),
                tasks: TaskTracker::new(),
                shutdown,
            }),
        };
        tracing::info!(
            store = %registry.inner.store_description,
            instances = restored,
            "catalog loaded"
        );
        registry.execute(effects);
        let inner = &registry.inner;
        inner.tasks.spawn(checker::run_checker(registry.clone()));
        inner.tasks.spawn(checker::run_ticker(registry.clone()));
        Ok((
            registry,
            Background {
                writer: Some(writer_thread),
            },
        ))
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
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

    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock would be a bug; the catalog's
        // commands leave it consistent at every step, so carry on.
        self.inner
            .core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the catalog.
    pub fn read<T>(&self, f: impl FnOnce(&Catalog) -> T) -> T {
        f(&self.lock().catalog)
    }

    /// Recent events, oldest first.
    pub fn recent_events(&self, limit: usize) -> Vec<Event> {
        let core = self.lock();
        let skip = core.recent.len().saturating_sub(limit);
        core.recent.iter().skip(skip).cloned().collect()
    }

    /// Subscribes to events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Applies one command and carries out its effects. With `ack`, returns a
    /// receiver that says when the records were committed.
    pub(crate) async fn run<T>(
        &self,
        ack: bool,
        command: impl FnOnce(&mut Core, Timestamp) -> (T, Effects),
    ) -> Result<(T, Option<oneshot::Receiver<Result<(), String>>>), StoreError> {
        let permit = self.inner.store.reserve().await?;
        let (value, effects, done) = {
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
            (value, effects, done)
        };
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
        let (value, effects) = {
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
                        self.inner.metrics.store_dropped.add(ops.len() as u64);
                        tracing::error!(ops = ops.len(), "store queue full: records dropped");
                    }
                }
            }
            self.publish(&mut core, &effects.events);
            (value, effects)
        };
        self.execute(effects);
        value
    }

    /// Records events in the recent list and on the broadcast channel, under
    /// the lock so every subscriber sees catalog order.
    fn publish(&self, core: &mut Core, events: &[Event]) {
        for event in events {
            if core.recent.len() == RECENT_EVENTS {
                core.recent.pop_front();
            }
            core.recent.push_back(event.clone());
            // No subscribers is fine.
            let _ = self.inner.events.send(event.clone());
        }
    }

    /// Carries out what a command asked for (everything but persistence).
    fn execute(&self, effects: Effects) {
        let metrics = &self.inner.metrics;
        metrics.patches_queued.add(effects.patches_queued);
        metrics.patches_coalesced.add(effects.patches_coalesced);
        metrics.patches_dropped.add(effects.patches_dropped);
        for event in &effects.events {
            metrics.count_event(event.kind);
            log_event(event);
        }
        if effects.schedule_changed {
            self.inner.check_wake.notify_one();
        }
        for start in effects.start_workers {
            if self.inner.shutdown.is_cancelled() {
                break;
            }
            self.inner
                .tasks
                .spawn(notifier::run_worker(self.clone(), start));
        }
    }

    // ----- the operations behind the HTTP API -----------------------------

    /// Registers an instance: stores it, answers once its initial patch is
    /// delivered or the delivery timeout passes.
    pub async fn register(&self, registration: Registration) -> Result<(), ApiError> {
        let url = registration.url.clone();
        let (waiter, committed) = self
            .run(true, |core, now| {
                let registered = core.catalog.register(registration, now);
                let waiter = registered.initial_patch.map(|ticket| {
                    let (tx, rx) = oneshot::channel();
                    core.waiters.insert(ticket.clone(), tx);
                    (ticket, rx)
                });
                (waiter, registered.effects)
            })
            .await
            .map_err(|_| ApiError::ShuttingDown)?;
        if let Some(committed) = committed
            && !matches!(committed.await, Ok(Ok(())))
        {
            // Leave nothing behind: take the registration back out.
            let _ = self
                .run(false, |core, now| {
                    ((), core.catalog.deregister(&url, now).unwrap_or_default())
                })
                .await;
            return Err(ApiError::StoreUnavailable);
        }
        self.inner.metrics.registrations.inc();
        if let Some((ticket, delivered)) = waiter {
            let timeout = self.inner.config.delivery_timeout;
            if !matches!(tokio::time::timeout(timeout, delivered).await, Ok(Ok(true))) {
                self.lock().waiters.remove(&ticket);
                tracing::debug!(%url, "initial patch not delivered before answering; it will be retried");
            }
        }
        Ok(())
    }

    /// Deregisters an instance.
    pub async fn deregister(&self, url: &ServiceUrl) -> Result<(), ApiError> {
        let (found, committed) = self
            .run(true, |core, now| match core.catalog.deregister(url, now) {
                Some(effects) => (true, effects),
                None => (false, Effects::default()),
            })
            .await
            .map_err(|_| ApiError::ShuttingDown)?;
        if !found {
            return Err(ApiError::NotRegistered(url.to_string()));
        }
        if let Some(committed) = committed
            && !matches!(committed.await, Ok(Ok(())))
        {
            return Err(ApiError::StoreUnavailable);
        }
        self.inner.metrics.deregistrations.inc();
        Ok(())
    }

    /// Switches an instance's maintenance on or off.
    pub async fn set_maintenance(&self, url: &ServiceUrl, on: bool) -> Result<(), ApiError> {
        let (found, committed) = self
            .run(true, |core, now| {
                match core.catalog.set_maintenance(url, on, now) {
                    Some(effects) => (true, effects),
                    None => (false, Effects::default()),
                }
            })
            .await
            .map_err(|_| ApiError::ShuttingDown)?;
        if !found {
            return Err(ApiError::NotRegistered(url.to_string()));
        }
        if let Some(committed) = committed
            && !matches!(committed.await, Ok(Ok(())))
        {
            return Err(ApiError::StoreUnavailable);
        }
        Ok(())
    }

    /// Whether a watch stream bound to `url` is open (a running SDK service).
    pub fn holds_stream(&self, url: &ServiceUrl) -> bool {
        self.lock().bound_streams.get(url).is_some_and(|n| *n > 0)
    }

    /// A watch stream bound to `url` opened.
    pub(crate) fn watch_opened(&self, url: &ServiceUrl) {
        *self.lock().bound_streams.entry(url.clone()).or_default() += 1;
    }

    /// An instance's watch stream closed.
    pub fn watch_closed(&self, url: &ServiceUrl) {
        {
            let mut core = self.lock();
            if let Some(n) = core.bound_streams.get_mut(url) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    core.bound_streams.remove(url);
                }
            }
        }
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        self.run_now(|core, now| ((), core.catalog.watch_closed(url, now)));
    }

    /// Waits until everything handed to the store so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let permit = self.inner.store.reserve().await?;
        let (tx, rx) = oneshot::channel();
        permit.send(Batch {
            ops: Vec::new(),
            done: Some(tx),
        });
        match rx.await {
            Ok(Ok(())) => Ok(()),
            _ => Err(StoreError::Stopped),
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
