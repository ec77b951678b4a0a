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
pub mod http;
pub mod query;
pub mod record;
pub mod segment;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use rollcall_sdk::{SdkError, Service};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::LogConfig;
pub use record::{Level, LogRecord};
pub use store::{FsyncPolicy, LogStore, StoreError};

/// How often retention runs (it also runs at every segment rotation).
pub const RETENTION_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Service(#[from] SdkError),
}

/// Runs the log service on `listener` until `shutdown` fires: deregisters,
/// drains requests and tails, writes and syncs what is queued.
pub async fn run(
    config: LogConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let store_config = config.store();
    let (store, threads) = tokio::task::spawn_blocking(move || LogStore::open(store_config))
        .await
        .map_err(|e| StoreError::WriteFailed(e.to_string()))??;
    let state = http::AppState {
        store: store.clone(),
        config: Arc::new(config.clone()),
        metrics: Arc::default(),
        shutdown: shutdown.clone(),
    };
    let metrics_state = state.clone();
    let mut builder = Service::builder(&config.name)
        .listener(listener)
        .router(http::router(state))
        .handle_signals(false)
        .shutdown_on(shutdown.clone())
        .metrics(move || http::render_metrics(&metrics_state));
    if !config.registry.trim().is_empty() {
        builder = builder.registry(&config.registry);
    }
    let service = builder.start().await?;
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
