//! The rollcall log service (`rollcall log`).
//!
//! Collects every service's logs in one place: the classic `POST /log` (one
//! text message), structured batches at `POST /v1/logs`, queries at
//! `GET /v1/logs` and a live tail at `GET /v1/logs/tail`. Records are appended
//! to rotating NDJSON segment files under `{data-dir}/logs/` with a stated
//! durability policy (see [`store`]). It registers itself as `LogService`
//! through the SDK, so services find it through the registry.
//!
//! - [`record`]: what a record is, and validation of what clients send.
//! - [`segment`]: segment files, crash repair, line readers.
//! - [`store`]: the writer (group commit, fsync policy, duplicate ids),
//!   retention, queries, the tail broadcast.
//! - [`query`]: filters and pagination.
//! - [`http`]: routes; [`error`]: the error type; [`config`]: flags.

pub mod config;
pub mod error;
pub mod explorer;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod otlp;
pub mod query;
pub mod record;
pub mod search;
pub mod segment;
pub mod state;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use rollcall_sdk::Service;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::LogConfig;
pub use record::{Level, LogRecord};
pub use store::{FsyncPolicy, LogStore, StoreError};

/// How often retention runs (it also runs at every segment rotation).
pub const RETENTION_EVERY: Duration = Duration::from_secs(30);

/// Why the service stopped with an error.
pub type RunError = rollcall_sdk::RunError<StoreError>;

/// Runs the log service on `listener` until `shutdown` fires: deregisters,
/// drains requests and tails, writes and syncs what is queued.
/// With a `forwarder` and a registry (a log service that is part of a system),
/// the log service's own records are stored too: shipped to itself over its
/// own ingestion route, like any service's. A standalone log service stores
/// only what it is sent.
/// `ready` is called once the store is open, just before requests are served
/// (one that cannot open its store never calls it).
pub async fn run(
    config: LogConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
    forwarder: Option<rollcall_sdk::logs::LogForwarder>,
    ready: impl FnOnce(),
) -> Result<(), RunError> {
    if let Ok(addr) = listener.local_addr() {
        rollcall_http::access::warn_if_exposed(addr, &config.access.policy());
    }
    let store_config = config.store();
    let (store, threads) = tokio::task::spawn_blocking(move || LogStore::open(store_config))
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))
        .and_then(|opened| opened)
        .map_err(RunError::Store)?;
    ready();
    let state = http::AppState {
        store: store.clone(),
        config: Arc::new(config.clone()),
        metrics: Arc::default(),
        shutdown: shutdown.clone(),
    };
    let metrics_state = state.clone();
    let builder = Service::builder(config.name.as_str())
        .listener(listener)
        .router(http::router(state))
        .handle_signals(false)
        .membership(&config.membership)
        .shutdown_on(shutdown.clone())
        .metrics(move |r| http::register_metrics(&metrics_state, r));
    let service = builder.start().await?;
    if let Some(forwarder) = forwarder
        && config.membership.url().is_some()
    {
        let myself = service.name().clone();
        let providers = std::sync::Arc::new(rollcall_sdk::Providers::new(vec![myself.clone()]));
        providers.apply(&rollcall_proto::Patch {
            added: vec![rollcall_proto::PatchEntry::new(
                myself.clone(),
                service.url().clone(),
            )],
            removed: Vec::new(),
            revision: None,
            resync: true,
        });
        let shipping = forwarder.ship_through(
            providers,
            service.client().clone(),
            myself,
            service.url().to_string(),
        );
        service.on_shutdown(move || shipping.finish(std::time::Duration::from_secs(2)));
    }
    let retention_store = store.clone();
    let retention_stop = shutdown.clone();
    let retention = tokio::spawn(async move {
        let mut every = tokio::time::interval(RETENTION_EVERY);
        loop {
            tokio::select! {
                () = retention_stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let store = retention_store.clone();
            let _ = tokio::task::spawn_blocking(move || {
                store.enforce_retention(rollcall_proto::Timestamp::system_now())
            })
            .await;
        }
    });
    service.wait().await;
    retention.abort();
    store.close(threads).await;
    Ok(())
}
