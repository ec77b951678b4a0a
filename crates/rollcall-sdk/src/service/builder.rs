//! Configuring and starting a service: bind, serve, then register.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use rollcall_proto::{ServiceName, ServiceUrl};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::registration::registration_loop;
use super::*;
use crate::error::SdkError;
use crate::providers::Providers;

/// Configures and starts a service.
pub struct ServiceBuilder {
    name: String,
    bind: SocketAddr,
    listener: Option<TcpListener>,
    advertise: Option<String>,
    requires: Vec<String>,
    meta: std::collections::BTreeMap<String, String>,
    registry: Option<String>,
    router: Router,
    router_fn: Option<RouterFn>,
    handle_signals: bool,
    browsers: Arc<rollcall_http::browser::Browsers>,
    limits: rollcall_http::server::Limits,
    tls: rollcall_http::tls::TlsArgs,
    health: Option<HealthFn>,
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
            meta: std::collections::BTreeMap::new(),
            registry: None,
            router: Router::new(),
            router_fn: None,
            handle_signals: true,
            browsers: Arc::default(),
            limits: rollcall_http::server::Limits::default(),
            tls: rollcall_http::tls::TlsArgs::from_env(),
            health: None,
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

    /// A metadata pair sent with the registration (`version`, `zone`, …):
    /// shown by `rollcall ls` and the dashboard, a filter of `GET /services`
    /// (`?meta=version=2`), a label in Prometheus discovery. Keys are 1 to
    /// 128 of `A-Z a-z 0-9 _ . -`; at most 64 pairs; checked by `start`.
    /// The SDK adds `rollcall.metrics_path` (`/metrics`) itself.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// The registry's base URL (`http://127.0.0.1:3000`), or several
    /// replicas' comma-separated. Without one the service runs standalone.
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

    /// The settings every service built on the SDK shares, from its command
    /// line ([`crate::args::Membership`]): the registry (none: standalone),
    /// `--classic`, host names, connection limits and TLS.
    pub fn membership(mut self, membership: &crate::args::Membership) -> Self {
        self.registry = membership.url();
        self.watch_stream = !membership.classic;
        self.browsers = membership.serving.hosts.policy();
        self.limits = membership.serving.limits;
        self.tls = membership.serving.tls.clone();
        self
    }

    /// Whether Ctrl-C and SIGTERM start the shutdown (default yes; tests turn
    /// it off and call [`Service::shutdown`]).
    /// The host names the service answers for besides IP addresses and
    /// `localhost` (`--allowed-hosts`); cross-site writes are refused either
    /// way.
    pub fn browsers(mut self, rules: Arc<rollcall_http::browser::Browsers>) -> Self {
        self.browsers = rules;
        self
    }

    /// The service's own health check, asked by every heartbeat: an error
    /// answers 503 with the reason, so the registry takes the instance out
    /// of discovery while, say, its store cannot be read.
    pub fn health<F, Fut>(mut self, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        self.health = Some(Arc::new(move || Box::pin(check())));
        self
    }

    /// Connection limits (`--max-connections`, per client, header timeout).
    pub fn limits(mut self, limits: rollcall_http::server::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// TLS: serve `https` with a certificate and key, and verify the
    /// registry and providers against a CA file (default: from
    /// `ROLLCALL_TLS_CERT`, `ROLLCALL_TLS_KEY`, `ROLLCALL_CA_FILE`).
    pub fn tls(mut self, tls: rollcall_http::tls::TlsArgs) -> Self {
        self.tls = tls;
        self
    }

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

    /// The service's own metrics in `GET /metrics`: `register` is called on
    /// every scrape with the answer's registry.
    pub fn metrics(mut self, register: impl Fn(&mut Registry) + Send + Sync + 'static) -> Self {
        self.extra_metrics = Some(Arc::new(register));
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
        let registries = crate::args::RegistryUrl::parse(self.registry.as_deref().unwrap_or(""))
            .map_err(SdkError::Config)?;
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
                let scheme = self.tls.scheme();
                ServiceUrl::parse(&format!("{scheme}://{}", SocketAddr::new(ip, local.port())))
                    .map_err(|e| SdkError::Config(e.to_string()))?
            }
        };
        let mut meta = self.meta.clone();
        meta.insert(
            rollcall_proto::meta::METRICS_PATH.to_owned(),
            "/metrics".to_owned(),
        );
        let meta = rollcall_proto::Meta::new(meta)
            .map_err(|e| SdkError::Config(format!("metadata: {e}")))?;
        let acceptor = self
            .tls
            .acceptor()
            .map_err(|e| SdkError::Config(e.to_string()))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .user_agent(concat!("rollcall-sdk/", env!("CARGO_PKG_VERSION")))
            // A redirect is an answer, not an address to call next: an
            // instance cannot send the registry's calls somewhere else.
            .redirect(reqwest::redirect::Policy::none());
        let client = self
            .tls
            .client(client)
            .map_err(|e| SdkError::Config(e.to_string()))?
            .build()
            .map_err(|e| SdkError::Config(format!("HTTP client: {e}")))?;
        let (registered, _) = watch::channel(false);
        let (stopped, _) = watch::channel(false);
        let registries = super::Registries::new(registries.urls().to_vec(), url.as_str());
        let inner = Arc::new(Inner {
            name,
            url,
            meta,
            registries,
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
            token: crate::args::token_from_env(),
            health: self.health.clone(),
            signing: rollcall_http::signing::SigningKey::from_env(),
            seen: rollcall_http::signing::SeenSignatures::new(10_000),
            last_heard: Mutex::new(Instant::now()),
        });
        let sdk_routes = super::routes::api()
            .split_for_parts()
            .0
            .with_state(inner.clone());
        let handle = Service {
            inner: inner.clone(),
        };
        let user_router = match self.router_fn {
            Some(build) => build(&handle),
            None => self.router,
        };
        let router = user_router
            .merge(sdk_routes)
            .layer(axum::middleware::from_fn_with_state(
                self.browsers.clone(),
                rollcall_http::browser::guard,
            ));
        let http_stop = CancellationToken::new();
        let server = tokio::spawn(rollcall_http::server::serve_with(
            listener,
            router,
            http_stop.clone(),
            self.shutdown_deadline,
            self.limits,
            acceptor,
        ));
        tracing::info!(service = %inner.name, url = %inner.url, "listening");
        let registration_stop = CancellationToken::new();
        if inner.registries.any() {
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
