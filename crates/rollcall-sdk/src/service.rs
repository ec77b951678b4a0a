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
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use rollcall_http::RawBody;
use rollcall_proto::jitter;
use rollcall_proto::prom::{Counter, PromText};
use rollcall_proto::{Patch, Registration, ServiceName, ServiceUrl};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::SdkError;
use crate::providers::{FAILURE_COOL_DOWN, Providers};

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

type ShutdownHook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;
type RouterFn = Box<dyn FnOnce(&Service) -> Router + Send>;
type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Configures and starts a service.
pub struct ServiceBuilder {
    name: String,
    bind: SocketAddr,
    listener: Option<TcpListener>,
    advertise: Option<String>,
    requires: Vec<String>,
    registry: Option<String>,
    router: Router,
    router_fn: Option<RouterFn>,
    handle_signals: bool,
    watch_stream: bool,
    classic_silence: Duration,
    shutdown_deadline: Duration,
    extra_metrics: Option<MetricsFn>,
    shutdown_on: Option<CancellationToken>,
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("name", &self.name)
            .field("bind", &self.bind)
            .field("requires", &self.requires)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl ServiceBuilder {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener: None,
            advertise: None,
            requires: Vec::new(),
            registry: None,
            router: Router::new(),
            router_fn: None,
            handle_signals: true,
            watch_stream: true,
            classic_silence: CLASSIC_SILENCE,
            shutdown_deadline: Duration::from_secs(10),
            extra_metrics: None,
            shutdown_on: None,
        }
    }

    /// Address to listen on (default `127.0.0.1:0`: any free port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Serve on this already-bound listener instead of binding.
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// The URL other services reach this one at (default `http://` + the bound
    /// address, with `127.0.0.1` for an unspecified IP).
    pub fn advertise(mut self, url: impl Into<String>) -> Self {
        self.advertise = Some(url.into());
        self
    }

    /// Names of the services this one requires.
    pub fn requires<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.requires.extend(names.into_iter().map(Into::into));
        self
    }

    /// The registry's base URL (`http://127.0.0.1:3000`). Without one the
    /// service runs standalone.
    pub fn registry(mut self, url: impl Into<String>) -> Self {
        self.registry = Some(url.into());
        self
    }

    /// The service's own routes.
    pub fn router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    /// Builds the service's routes from its own handle (for handlers that need
    /// the providers or the client); replaces [`ServiceBuilder::router`].
    pub fn router_with(mut self, build: impl FnOnce(&Service) -> Router + Send + 'static) -> Self {
        self.router_fn = Some(Box::new(build));
        self
    }

    /// Whether Ctrl-C and SIGTERM start the shutdown (default yes; tests turn
    /// it off and call [`Service::shutdown`]).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Whether to hold a watch stream to the registry (default yes). Without
    /// it the service behaves like a classic client: webhook and heartbeat
    /// only, and a crash is noticed at the next health check.
    pub fn watch_stream(mut self, on: bool) -> Self {
        self.watch_stream = on;
        self
    }

    /// Against a registry without watch streams: how long without a heartbeat
    /// from it before registering again (default [`CLASSIC_SILENCE`]).
    pub fn classic_silence(mut self, silence: Duration) -> Self {
        self.classic_silence = silence;
        self
    }

    /// Starts the shutdown when `token` is cancelled (for a service run by a
    /// library `run(config, listener, shutdown)` function).
    pub fn shutdown_on(mut self, token: CancellationToken) -> Self {
        self.shutdown_on = Some(token);
        self
    }

    /// The most the whole shutdown may take (default 10 s).
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// Extra Prometheus text appended to `GET /metrics`.
    pub fn metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.extra_metrics = Some(Arc::new(render));
        self
    }

    /// Binds, starts serving, then registers in the background.
    pub async fn start(self) -> Result<Service, SdkError> {
        let name = ServiceName::parse(&self.name).map_err(|e| SdkError::Config(e.to_string()))?;
        let required = self
            .requires
            .iter()
            .map(|n| ServiceName::parse(n).map_err(|e| SdkError::Config(format!("{n:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let registry = self
            .registry
            .as_deref()
            .filter(|r| !r.trim().is_empty())
            .map(ServiceUrl::parse)
            .transpose()
            .map_err(|e| SdkError::Config(format!("registry URL: {e}")))?;
        let listener = match self.listener {
            Some(l) => l,
            None => TcpListener::bind(self.bind)
                .await
                .map_err(|source| SdkError::Bind {
                    addr: self.bind,
                    source,
                })?,
        };
        let local = listener.local_addr().map_err(|source| SdkError::Bind {
            addr: self.bind,
            source,
        })?;
        let url = match &self.advertise {
            Some(a) => {
                ServiceUrl::parse(a).map_err(|e| SdkError::Config(format!("advertise URL: {e}")))?
            }
            None => {
                let ip = if local.ip().is_unspecified() {
                    std::net::IpAddr::from([127, 0, 0, 1])
                } else {
                    local.ip()
                };
                ServiceUrl::parse(&format!("http://{}", SocketAddr::new(ip, local.port())))
                    .map_err(|e| SdkError::Config(e.to_string()))?
            }
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .user_agent(concat!("rollcall-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SdkError::Config(format!("HTTP client: {e}")))?;
        let (registered, _) = watch::channel(false);
        let (stopped, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            name,
            url,
            registry,
            providers: Arc::new(Providers::new(required)),
            client,
            shutdown: CancellationToken::new(),
            registered,
            stopped,
            metrics: SdkMetrics::default(),
            extra_metrics: Mutex::new(self.extra_metrics.into_iter().collect()),
            hooks: Mutex::new(Vec::new()),
            tasks: TaskTracker::new(),
            shutdown_deadline: self.shutdown_deadline,
            watch_stream: self.watch_stream,
            classic_silence: self.classic_silence,
            last_heard: Mutex::new(Instant::now()),
        });
        let sdk_routes = Router::new()
            .route("/heartbeat", get(heartbeat))
            .route("/services", post(receive_patch))
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .with_state(inner.clone());
        let handle = Service {
            inner: inner.clone(),
        };
        let user_router = match self.router_fn {
            Some(build) => build(&handle),
            None => self.router,
        };
        let router = user_router.merge(sdk_routes);
        let http_stop = CancellationToken::new();
        let server = tokio::spawn(rollcall_http::serve(
            listener,
            router,
            http_stop.clone(),
            self.shutdown_deadline,
        ));
        tracing::info!(service = %inner.name, url = %inner.url, "listening");
        let registration_stop = CancellationToken::new();
        if inner.registry.is_some() {
            inner
                .tasks
                .spawn(registration_loop(inner.clone(), registration_stop.clone()));
        }
        if let Some(external) = self.shutdown_on {
            let trigger = inner.shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = external.cancelled() => trigger.cancel(),
                    () = trigger.cancelled() => {}
                }
            });
        }
        if self.handle_signals {
            let trigger = inner.shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = rollcall_http::wait_for_signal() => trigger.cancel(),
                    () = trigger.cancelled() => {}
                }
            });
        }
        tokio::spawn(lifecycle(
            inner.clone(),
            registration_stop,
            http_stop,
            server,
        ));
        Ok(Service { inner })
    }
}

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
    registry: Option<ServiceUrl>,
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

    pub fn registry(&self) -> Option<&ServiceUrl> {
        self.inner.registry.as_ref()
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

    /// Adds Prometheus text to `GET /metrics` (rendered on every scrape).
    pub fn add_metrics(&self, render: impl Fn() -> String + Send + Sync + 'static) {
        self.inner
            .extra_metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::new(render));
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
    if inner.registry.is_some() {
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

fn registration(inner: &Inner) -> Result<Registration, SdkError> {
    let parse = |path: &str| {
        ServiceUrl::parse(&inner.url.join(path)).map_err(|e| SdkError::Config(e.to_string()))
    };
    Ok(Registration {
        name: inner.name.clone(),
        url: inner.url.clone(),
        required: inner.providers.required().to_vec(),
        update_url: Some(parse("/services")?),
        heartbeat_url: Some(parse("/heartbeat")?),
    })
}

async fn register_once(inner: &Inner, registry: &ServiceUrl) -> Result<(), SdkError> {
    let reg = registration(inner)?;
    let url = registry.join("/services");
    let response = inner
        .client
        .post(&url)
        .timeout(REGISTER_TIMEOUT)
        .json(&reg)
        .send()
        .await
        .map_err(|e| SdkError::from_reqwest(&url, e))?;
    expect_success(&url, response).await
}

async fn deregister(inner: &Inner) -> Result<(), SdkError> {
    let Some(registry) = &inner.registry else {
        return Ok(());
    };
    let url = registry.join("/services");
    let response = inner
        .client
        .delete(&url)
        .timeout(DEREGISTER_TIMEOUT)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(inner.url.to_string())
        .send()
        .await
        .map_err(|e| SdkError::from_reqwest(&url, e))?;
    if response.status() == StatusCode::NOT_FOUND {
        return Ok(());
    }
    expect_success(&url, response).await
}

/// `Ok` for a 2xx answer; otherwise a `Rejected` with (the start of) the body.
pub(crate) async fn expect_success(url: &str, response: reqwest::Response) -> Result<(), SdkError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(SdkError::Rejected {
        url: url.to_owned(),
        status: status.as_u16(),
        body: body.chars().take(300).collect(),
    })
}

/// Why a watch stream ended.
enum WatchEnd {
    /// The registry has no watch stream (an original registry).
    Unsupported,
    /// The registry removed this instance (deregistered or expired).
    Removed(String),
    Closed(String),
}

/// Finds `event: removed` in an SSE stream split into arbitrary chunks.
#[derive(Default)]
struct RemovedScanner {
    line: Vec<u8>,
    removed: bool,
}

impl RemovedScanner {
    /// Feeds a chunk; the `data:` line of a `removed` event once it is seen.
    fn feed(&mut self, chunk: &[u8]) -> Option<String> {
        for &byte in chunk {
            if byte != b'\n' {
                // Only the start of a line matters; bound what is kept.
                if self.line.len() < 256 {
                    self.line.push(byte);
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.line).trim_end().to_owned();
            self.line.clear();
            if line == "event: removed" || line == "event:removed" {
                self.removed = true;
            } else if self.removed && line.starts_with("data:") {
                return Some(line["data:".len()..].trim().to_owned());
            } else if line.is_empty() && self.removed {
                return Some(String::new());
            }
        }
        None
    }
}

async fn hold_watch(inner: &Inner, registry: &ServiceUrl) -> WatchEnd {
    let url = registry.join("/v1/watch");
    let request = inner
        .client
        .get(&url)
        .query(&[
            ("instance", inner.url.as_str()),
            ("service", inner.name.as_str()),
        ])
        .send();
    let response = match tokio::time::timeout(REGISTER_TIMEOUT, request).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return WatchEnd::Closed(SdkError::from_reqwest(&url, e).to_string()),
        Err(_) => return WatchEnd::Closed("timed out opening the stream".into()),
    };
    if response.status() == StatusCode::NOT_FOUND {
        return WatchEnd::Unsupported;
    }
    if !response.status().is_success() {
        return WatchEnd::Closed(format!("HTTP {}", response.status().as_u16()));
    }
    let mut body = response.bytes_stream();
    let mut scanner = RemovedScanner::default();
    loop {
        match tokio::time::timeout(WATCH_SILENCE, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                if let Some(data) = scanner.feed(&chunk) {
                    return WatchEnd::Removed(data);
                }
            }
            Ok(Some(Err(e))) => {
                return WatchEnd::Closed(format!("the stream broke: {}", root_cause(&e)));
            }
            Ok(None) => return WatchEnd::Closed("the registry closed the stream".into()),
            Err(_) => return WatchEnd::Closed("the stream went silent".into()),
        }
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

async fn registration_loop(inner: Arc<Inner>, stop: CancellationToken) {
    let Some(registry) = inner.registry.clone() else {
        return;
    };
    let seed = jitter::stable_hash(inner.url.as_str());
    let mut failures: u32 = 0;
    loop {
        let result = tokio::select! {
            () = stop.cancelled() => return,
            r = register_once(&inner, &registry) => r,
        };
        match result {
            Ok(()) => {
                failures = 0;
                inner.metrics.registrations.inc();
                inner.registered.send_replace(true);
                tracing::info!(service = %inner.name, url = %inner.url, %registry, "registered");
                if !inner.watch_stream {
                    if !wait_for_silence(&inner, &registry, &stop).await {
                        return;
                    }
                    continue;
                }
                let ended = tokio::select! {
                    () = stop.cancelled() => return,
                    e = hold_watch(&inner, &registry) => e,
                };
                match ended {
                    WatchEnd::Unsupported => {
                        tracing::info!(%registry, "the registry has no watch stream; registering again if it stops checking us");
                        if !wait_for_silence(&inner, &registry, &stop).await {
                            return;
                        }
                    }
                    WatchEnd::Removed(detail) => {
                        inner.metrics.watch_reconnects.inc();
                        inner.registered.send_replace(false);
                        tracing::warn!(%registry, %detail, "the registry removed this instance while it runs; registering again (use maintenance to hold a running instance out of discovery)");
                    }
                    WatchEnd::Closed(reason) => {
                        inner.metrics.watch_reconnects.inc();
                        inner.registered.send_replace(false);
                        tracing::warn!(%registry, %reason, "lost the registry; registering again");
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                inner.metrics.registration_failures.inc();
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(%registry, error = %e, attempts = failures, "cannot register yet; retrying");
                }
                let wait =
                    jitter::backoff(RETRY_MIN, RETRY_MAX, failures, seed ^ u64::from(failures));
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Stays registered until the registry stops calling us for
/// `classic_silence` (true: register again) or `stop` fires (false).
async fn wait_for_silence(inner: &Inner, registry: &ServiceUrl, stop: &CancellationToken) -> bool {
    inner.heard_from_registry();
    tokio::select! {
        () = stop.cancelled() => return false,
        () = registry_silent(inner) => {}
    }
    inner.registered.send_replace(false);
    tracing::warn!(
        %registry,
        silence_s = inner.classic_silence.as_secs_f64(),
        "no heartbeat from the registry: it may have restarted; registering again"
    );
    true
}

/// Returns once the registry has not called us for `classic_silence`.
async fn registry_silent(inner: &Inner) {
    loop {
        let silence = inner.silence();
        if silence >= inner.classic_silence {
            return;
        }
        let left = inner.classic_silence - silence;
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
}

// ----- the SDK's routes ----------------------------------------------------

async fn heartbeat(State(inner): State<Arc<Inner>>) -> StatusCode {
    inner.heard_from_registry();
    StatusCode::OK
}

async fn receive_patch(
    State(inner): State<Arc<Inner>>,
    RawBody(body): RawBody<MAX_PATCH_BODY>,
) -> Response {
    match serde_json::from_slice::<Patch>(&body) {
        Ok(patch) => {
            inner.heard_from_registry();
            inner.providers.apply(&patch);
            inner.metrics.patches_received.inc();
            tracing::debug!(
                added = patch.added.len(),
                removed = patch.removed.len(),
                resync = patch.resync,
                revision = ?patch.revision,
                "patch applied"
            );
            StatusCode::OK.into_response()
        }
        Err(e) => {
            inner.metrics.patches_rejected.inc();
            rollcall_http::error_response(StatusCode::BAD_REQUEST, "invalid_patch", e.to_string())
        }
    }
}

async fn healthz(State(inner): State<Arc<Inner>>) -> Response {
    axum::Json(serde_json::json!({
        "status": "ok",
        "service": inner.name,
        "url": inner.url,
        "registered": *inner.registered.borrow(),
    }))
    .into_response()
}

async fn metrics(State(inner): State<Arc<Inner>>) -> Response {
    let m = &inner.metrics;
    let mut p = PromText::new();
    p.counter(
        "rollcall_sdk_patches_received_total",
        "Patches applied to the providers table.",
        m.patches_received.get(),
    )
    .counter(
        "rollcall_sdk_patches_rejected_total",
        "Patch bodies that did not parse.",
        m.patches_rejected.get(),
    )
    .counter(
        "rollcall_sdk_registrations_total",
        "Successful registrations (the first and every re-registration).",
        m.registrations.get(),
    )
    .counter(
        "rollcall_sdk_registration_failures_total",
        "Failed registration attempts.",
        m.registration_failures.get(),
    )
    .counter(
        "rollcall_sdk_watch_reconnects_total",
        "Times the watch stream to the registry broke.",
        m.watch_reconnects.get(),
    )
    .gauge(
        "rollcall_sdk_registered",
        "1 while registered.",
        if *inner.registered.borrow() { 1.0 } else { 0.0 },
    );
    let providers: Vec<(String, f64)> = inner
        .providers
        .snapshot()
        .into_iter()
        .map(|(name, urls)| (name.to_string(), urls.len() as f64))
        .collect();
    let samples: Vec<(&str, f64)> = providers.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    p.labelled(
        "gauge",
        "rollcall_sdk_providers",
        "Known providers per required service.",
        "service",
        &samples,
    );
    let extras: Vec<MetricsFn> = inner
        .extra_metrics
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for extra in extras {
        p.raw(&extra());
    }
    (
        [(header::CONTENT_TYPE, rollcall_proto::prom::CONTENT_TYPE)],
        p.finish(),
    )
        .into_response()
}
