//! The rollcall registry.
//!
//! Services register here, say which services they require, are told where
//! those are and told again whenever one comes or goes, and are health-checked
//! so dead instances drop out. The classic protocol of `docs/PROTOCOL.md` §1 works
//! unchanged; `/v1/...` adds a watch stream and an event log.
//!
//! Layout, from the core out:
//! - [`catalog`]: the functional core, its own crate (`rollcall-catalog`):
//!   commands in, effects out; no I/O, no clock.
//! - [`shell`]: the [`Registry`] handle that owns lock, clock, store and
//!   tasks and carries out the catalog's effects; its reads are what the API,
//!   the dashboard and DNS read through. It runs no worker itself.
//! - [`store`]: durable state (SQLite by default, or memory) and its writer.
//! - [`workers`]: health checks, patch delivery, held connections and every
//!   call to another service.
//! - [`cluster`]: a replica over etcd (`--etcd`): the lease, the feed, the
//!   etcd store ([`etcd`] is the client, its own crate).
//! - [`api`]: the HTTP API (the only layer that knows HTTP status codes);
//!   [`callbacks`]: the guard every write naming an instance passes;
//!   [`dashboard`]: the page at `GET /`; [`dns`]: `NAME.service.rollcall`.
//!
//! [`start`] wires a registry to its workers (the composition root); [`run`]
//! serves it all on an already-bound listener until a `CancellationToken`
//! fires.

pub mod api;
pub mod callbacks;
/// The functional core, its own crate (`rollcall-catalog`).
pub use rollcall_catalog as catalog;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod dns;
/// The etcd client, its own crate (`rollcall-etcd`).
pub use rollcall_etcd as etcd;
pub mod metrics;
pub mod shell;
pub mod store;
pub mod workers;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use workers::{checker, held, notifier, outbound};

pub use api::error::ApiError;
pub use config::RegistryConfig;
pub use shell::{Registry, StartError};

/// Starts a registry with its workers: the check loop, the ticker and the
/// delivery dispatcher, each calling other services through [`outbound`].
/// Background work stops when `shutdown` fires.
pub fn start(
    config: RegistryConfig,
    shutdown: CancellationToken,
) -> Result<(Registry, shell::Background), StartError> {
    let started = Registry::start(config, shutdown)?;
    Ok(with_workers(started))
}

/// Like [`start`], for any store: in cluster mode (`--etcd`) the catalog is
/// read from etcd first (asynchronously).
pub async fn start_any(
    config: RegistryConfig,
    shutdown: CancellationToken,
    own_url: &str,
) -> Result<(Registry, shell::Background), StartError> {
    if config.etcd.is_empty() {
        return start(config, shutdown);
    }
    let client = outbound::client(&config)?;
    let etcd = etcd::Etcd::new(config.etcd.clone(), client, config.etcd_timeout)
        .map_err(|e| StartError::Store(store::StoreError::Etcd(e)))?;
    let store = std::sync::Arc::new(cluster::store::EtcdStore::new(
        std::sync::Arc::new(etcd),
        &config.etcd_prefix,
        tokio::runtime::Handle::current(),
    ));
    let loaded = store.load_all().await?;
    let ttl = config.lease_ttl;
    let started = Registry::start_with(
        config,
        shutdown.clone(),
        store.clone(),
        loaded.state.clone(),
    )?;
    let (registry, background) = with_workers(started);
    cluster::Replica::start(
        registry.clone(),
        store,
        &loaded,
        own_url.to_owned(),
        ttl,
        shutdown,
    )
    .await;
    Ok((registry, background))
}

/// Wires the check loop, the ticker and the delivery dispatcher to a
/// started registry.
fn with_workers(
    (registry, background, starts): (Registry, shell::Background, shell::WorkerStarts),
) -> (Registry, shell::Background) {
    let client = registry.client().clone();
    let timeout = registry.config().check_timeout;
    let key = registry.config().signing_key.clone();
    let probe_client = client.clone();
    let probe_key = key.clone();
    let held = held::HeldConnections::new(registry.clone());
    registry.spawn(held::run_sweeper(held.clone(), registry.clone()));
    let probe = move |request: catalog::CheckRequest| {
        let client = probe_client.clone();
        let key = probe_key.clone();
        let held = held.clone();
        // A suspect has less time: contact was lost, and a hung process
        // would otherwise hold its removal for a whole timeout.
        let timeout = if request.suspect {
            timeout.min(SUSPECT_TIMEOUT)
        } else {
            timeout
        };
        async move {
            let (instance, heartbeat) = (&request.url, &request.heartbeat_url);
            if held.may_hold(instance, heartbeat) {
                held.probe(instance, heartbeat, timeout, key.as_ref()).await
            } else {
                outbound::probe(&client, heartbeat, timeout, key.as_ref()).await
            }
        }
    };
    let delivery_timeout = registry.config().delivery_timeout;
    let acting = registry.clone();
    let post = move |url: rollcall_proto::ServiceUrl, body: Vec<u8>| {
        let client = client.clone();
        let key = key.clone();
        // A replica whose lease may have lapsed sends nothing: the receiver
        // may belong to another replica by now.
        let may_act = acting.may_act();
        async move {
            if !may_act {
                return Err(outbound::CallError::NotSent);
            }
            outbound::post_patch(&client, &url, body, delivery_timeout, key.as_ref()).await
        }
    };
    registry.spawn(checker::run_checker(registry.clone(), probe));
    registry.spawn(checker::run_ticker(registry.clone()));
    registry.spawn(notifier::run_dispatcher(registry.clone(), starts, post));
    (registry, background)
}

/// The longest a suspect's check may take (less with a shorter
/// `--check-timeout`).
pub const SUSPECT_TIMEOUT: Duration = Duration::from_millis(250);

/// How long background work may take to stop after the HTTP server stopped.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Why the registry stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("the HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error("cannot answer DNS on {0}: {1}")]
    Dns(SocketAddr, std::io::Error),
}

/// A started registry, handed to `ready`: its handle (for work that runs
/// beside it, like shipping its own logs, which the binary wires) and what it
/// serves besides its HTTP listener.
#[derive(Debug, Clone)]
pub struct Started {
    pub registry: Registry,
    /// Its own URL (`http://ADDR` or `https://ADDR`).
    pub url: String,
    /// Where it answers DNS (UDP and TCP), when asked to.
    pub dns_addr: Option<SocketAddr>,
}

/// Runs the registry on `listener` until `shutdown` fires; then drains
/// requests, stops checks and deliveries, and commits what is queued.
/// `ready` is called once the store is open and DNS (if any) is bound, just
/// before requests are served (one that cannot open its store never calls it).
pub async fn run(
    config: RegistryConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
    ready: impl FnOnce(Started),
) -> Result<(), RunError> {
    let own_url = listener.local_addr().map_or_else(
        |_| "registry".to_owned(),
        |a| format!("{}://{a}", config.serving.tls.scheme()),
    );
    let tls = config.serving.tls.acceptor().map_err(StartError::from)?;
    let access = std::sync::Arc::new(config.access.policy());
    let browsers = config.serving.hosts.policy();
    let limits = config.serving.limits;
    if let Ok(addr) = listener.local_addr() {
        rollcall_http::access::warn_if_exposed(addr, &access);
    }
    let dns = config.dns_addr.map(|addr| (addr, config.dns_ttl));
    let (registry, background) = start_any(config, shutdown.clone(), &own_url).await?;
    let mut started = Started {
        registry: registry.clone(),
        url: own_url,
        dns_addr: None,
    };
    if let Some((addr, ttl)) = dns {
        let bound = dns::serve(registry.clone(), addr, ttl, shutdown.clone())
            .await
            .map_err(|e| RunError::Dns(addr, e))?;
        tracing::info!(addr = %bound, "answering DNS (NAME.service.rollcall)");
        started.dns_addr = Some(bound);
    }
    let router = api::guarded(registry.clone(), access, browsers);
    ready(started);
    let served = rollcall_http::server::serve_with(
        listener,
        router,
        shutdown.clone(),
        api::DRAIN,
        limits,
        tls,
    )
    .await;
    // Whatever ended the server ends the rest too.
    shutdown.cancel();
    background.finish(registry, SHUTDOWN_DEADLINE).await;
    served?;
    Ok(())
}
