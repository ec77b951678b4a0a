//! A running service: its HTTP server, its registration, its providers, its
//! shutdown.
//!
//! Lifecycle: [`ServiceBuilder::start`] binds (port 0 allowed), starts serving
//! the user's router plus the SDK's routes, and only then registers. The
//! registration loop retries with back-off while the registry is down, holds a
//! watch stream to the registry once registered (so the registry notices at
//! once if this process dies), and registers again whenever that stream breaks
//! (the registry restarted and may have forgotten us) or the registry says it
//! removed this instance (an operator deregistered it: a running service comes
//! back; maintenance is the way to hold it out). Against a registry without
//! watch streams (the classic Go one) the sign of a forgotten registration is
//! silence: no heartbeat from it for [`CLASSIC_SILENCE`], and the service
//! registers again. Shutdown — Ctrl-C,
//! SIGTERM or [`Service::shutdown`] — deregisters first, runs the shutdown
//! hooks (log flushing), then drains in-flight requests, all within one
//! deadline.
//!
//! Routes the SDK serves (do not define them in your router):
//! `GET /heartbeat` (empty 200), `POST /services` (patches from the registry),
//! `GET /healthz`, `GET /metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use rollcall_proto::prom::{Counter, Registry};
use rollcall_proto::{ServiceName, ServiceUrl};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::SdkError;

mod builder;
mod registration;
mod routes;

use crate::providers::{FAILURE_COOL_DOWN, Providers};
pub use builder::ServiceBuilder;
use registration::deregister;
pub use routes::openapi;

/// How long one registration request may take (the registry answers after
/// delivering our initial patch, bounded by its delivery timeout).
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the deregistration at shutdown may take.
pub const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);
/// A watch stream silent this long (the registry sends a comment every 15 s)
/// is considered dead.
pub const WATCH_SILENCE: Duration = Duration::from_secs(45);
/// Registration back-off: first wait, and the longest.
pub const RETRY_MIN: Duration = Duration::from_millis(100);
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// Largest patch accepted.
pub const MAX_PATCH_BODY: usize = 1024 * 1024;
/// Against a registry without watch streams: no heartbeat for this long means
/// it forgot us (restarted), so register again. The classic registry checks
/// every 3 s; rollcall's every second.
pub const CLASSIC_SILENCE: Duration = Duration::from_secs(10);
/// Against a registry that had no watch stream: the first wait before asking
/// for it again, and the longest.
pub const CLASSIC_PROBE_MIN: Duration = Duration::from_secs(30);
pub const CLASSIC_PROBE_MAX: Duration = Duration::from_secs(600);

type ShutdownHook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;
type RouterFn = Box<dyn FnOnce(&Service) -> Router + Send>;
/// A service's own health check: `Err(why)` makes its heartbeat a 503.
pub type HealthFn = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;
/// The registry's replicas: one is used until it stops answering, then the
/// next; services start at different ones, so they spread over them.
#[derive(Debug)]
pub(crate) struct Registries {
    urls: Vec<ServiceUrl>,
    current: std::sync::atomic::AtomicUsize,
}

impl Registries {
    pub(crate) fn new(urls: Vec<ServiceUrl>, spread_by: &str) -> Self {
        let start = if urls.is_empty() {
            0
        } else {
            (rollcall_proto::jitter::stable_hash(spread_by) % urls.len() as u64) as usize
        };
        Self {
            urls,
            current: std::sync::atomic::AtomicUsize::new(start),
        }
    }

    pub(crate) fn any(&self) -> bool {
        !self.urls.is_empty()
    }

    pub(crate) fn current(&self) -> Option<ServiceUrl> {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        self.urls.get(i % self.urls.len().max(1)).cloned()
    }

    /// Moves on to the next replica (the current one stopped answering).
    pub(crate) fn fail_over(&self) {
        if self.urls.len() > 1 {
            self.current
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Every replica, the current one first.
    pub(crate) fn in_order(&self) -> Vec<ServiceUrl> {
        let n = self.urls.len();
        let first = self.current.load(std::sync::atomic::Ordering::Relaxed);
        (0..n).map(|k| self.urls[(first + k) % n].clone()).collect()
    }
}

/// Registers a component's metrics in a `/metrics` answer's registry.
type MetricsFn = Arc<dyn Fn(&mut Registry) + Send + Sync>;

/// A running service. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.inner.name)
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

struct Inner {
    name: ServiceName,
    url: ServiceUrl,
    /// Sent with every registration.
    meta: rollcall_proto::Meta,
    /// The registry's replicas (none: standalone), and which one is used.
    registries: Registries,
    /// What the heartbeat asks before it answers 200 (`None`: nothing).
    health: Option<HealthFn>,
    /// Verifies what the registry sends (`ROLLCALL_SIGNING_KEY`).
    signing: Option<rollcall_http::signing::SigningKey>,
    /// Signed patches already applied (replays are refused).
    seen: rollcall_http::signing::SeenSignatures,
    /// Sent to the registry (`ROLLCALL_TOKEN`).
    token: Option<rollcall_http::access::Secret>,
    providers: Arc<Providers>,
    client: reqwest::Client,
    shutdown: CancellationToken,
    registered: watch::Sender<bool>,
    stopped: watch::Sender<bool>,
    metrics: SdkMetrics,
    extra_metrics: Mutex<Vec<MetricsFn>>,
    hooks: Mutex<Vec<ShutdownHook>>,
    tasks: TaskTracker,
    shutdown_deadline: Duration,
    watch_stream: bool,
    classic_silence: Duration,
    /// When the registry last called us (a heartbeat or a patch).
    last_heard: Mutex<Instant>,
}

impl Inner {
    fn heard_from_registry(&self) {
        *self
            .last_heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    fn silence(&self) -> Duration {
        self.last_heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }
}

#[derive(Debug, Default)]
struct SdkMetrics {
    patches_received: Counter,
    patches_rejected: Counter,
    registrations: Counter,
    registration_failures: Counter,
    watch_reconnects: Counter,
    classic_fallbacks: Counter,
    signatures_rejected: Counter,
}

impl Service {
    /// Starts configuring a service called `name`.
    pub fn builder(name: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder::new(name)
    }

    pub fn name(&self) -> &ServiceName {
        &self.inner.name
    }

    /// Where this service is reachable (its `ServiceURL`).
    pub fn url(&self) -> &ServiceUrl {
        &self.inner.url
    }

    /// The registry replica this service talks to now (none: standalone).
    pub fn registry(&self) -> Option<ServiceUrl> {
        self.inner.registries.current()
    }

    pub fn providers(&self) -> &Arc<Providers> {
        &self.inner.providers
    }

    /// The next provider of `name` (see [`Providers::pick`]).
    pub fn pick(&self, name: &ServiceName) -> Option<ServiceUrl> {
        self.inner.providers.pick(name)
    }

    /// Reports a failed call so `pick` skips `url` for a few seconds.
    pub fn report_failure(&self, name: &ServiceName, url: &ServiceUrl) {
        self.inner
            .providers
            .report_failure(name, url, FAILURE_COOL_DOWN);
    }

    /// Waits until a provider of `name` is known, at most `timeout`.
    pub async fn wait_for(
        &self,
        name: &ServiceName,
        timeout: Duration,
    ) -> Result<ServiceUrl, SdkError> {
        self.inner
            .providers
            .wait_for(name, timeout)
            .await
            .ok_or_else(|| SdkError::NoProvider {
                name: name.to_string(),
            })
    }

    /// An HTTP client for calling other services (connect timeout set; set a
    /// per-request `.timeout()` on every call).
    pub fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    /// Whether the registry has acknowledged the registration (and, with a watch
    /// stream, not lost it since).
    pub fn is_registered(&self) -> bool {
        *self.inner.registered.borrow()
    }

    /// Waits until registered, at most `timeout`; `false` on timeout.
    pub async fn wait_registered(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.registered.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The token that starts the shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Runs `hook` during shutdown, after deregistering and before the HTTP
    /// server stops (used to flush logs).
    pub fn on_shutdown<F, Fut>(&self, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let boxed: ShutdownHook = Box::new(move || Box::pin(hook()));
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(boxed);
    }

    /// Adds metrics to `GET /metrics`: `register` is called on every scrape
    /// with the answer's registry.
    pub fn add_metrics(&self, register: impl Fn(&mut Registry) + Send + Sync + 'static) {
        self.inner
            .extra_metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::new(register));
    }

    /// Starts the shutdown and waits for it to finish.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the service has shut down (after a signal or
    /// [`Service::shutdown`]).
    pub async fn wait(&self) {
        let mut rx = self.inner.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Waits for the shutdown signal, then: stop registering, deregister, run the
/// hooks, drain HTTP — within the shutdown deadline.
async fn lifecycle(
    inner: Arc<Inner>,
    registration_stop: CancellationToken,
    http_stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
) {
    inner.shutdown.cancelled().await;
    let deadline = Instant::now() + inner.shutdown_deadline;
    tracing::info!(service = %inner.name, "shutting down");
    registration_stop.cancel();
    inner.tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), inner.tasks.wait()).await;
    if inner.registries.any() {
        match deregister(&inner).await {
            Ok(()) => tracing::info!(service = %inner.name, "deregistered"),
            Err(e) => tracing::warn!(service = %inner.name, error = %e, "could not deregister"),
        }
        inner.registered.send_replace(false);
    }
    let hooks: Vec<ShutdownHook> = std::mem::take(
        &mut *inner
            .hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for hook in hooks {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, hook()).await.is_err() {
            tracing::warn!("a shutdown hook did not finish before the deadline");
        }
    }
    http_stop.cancel();
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left + Duration::from_millis(100), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server failed"),
        _ => tracing::warn!("HTTP server did not stop before the deadline"),
    }
    tracing::info!(service = %inner.name, "stopped");
    inner.stopped.send_replace(true);
}
