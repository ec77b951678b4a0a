//! The grading service (`rollcall grades`): students and grades over REST,
//! kept in SQLite, registered as `GradingService` through the SDK.
//!
//! - [`model`]: the domain — validated scores, titles, names, grade types.
//! - [`store`]: the SQLite grade book.
//! - [`http`]: the routes; [`error`]: the error type; [`config`]: flags.

pub mod config;
pub mod error;
pub mod http;
pub use rollcall_grading_model as model;
pub mod store;

use std::sync::Arc;

use rollcall_sdk::Service;
use rollcall_sdk::logs::LogForwarder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::GradesConfig;
pub use store::{GradeStore, StoreError};

/// Why the service stopped with an error.
pub type RunError = rollcall_sdk::RunError<StoreError>;

/// Runs the grading service on `listener` until `shutdown` fires. With a
/// `forwarder`, its logs are shipped to the log service. `ready` is called
/// once the grade book is open (one that cannot be opened never calls it).
pub async fn run(
    config: GradesConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
    forwarder: Option<LogForwarder>,
    ready: impl FnOnce(),
) -> Result<(), RunError> {
    let data_dir = config.data_dir.clone();
    let demo = !config.no_demo_data;
    let store = tokio::task::spawn_blocking(move || GradeStore::open(&data_dir, demo))
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))
        .and_then(|opened| opened)
        .map_err(RunError::Store)?;
    ready();
    tracing::info!(path = %store.path().display(), "grade book open");
    let state = http::AppState {
        store,
        metrics: Arc::default(),
    };
    let metrics_state = state.clone();
    let health_store = state.store.clone();
    let mut builder = Service::builder(config.name.as_str())
        .listener(listener)
        .router(http::router(state))
        .handle_signals(false)
        .membership(&config.membership)
        .shutdown_on(shutdown)
        .metrics(move |r| http::register_metrics(&metrics_state, r))
        .health(move || {
            let store = health_store.clone();
            async move {
                store
                    .check()
                    .await
                    .map_err(|e| format!("the grade book cannot be read: {e}"))
            }
        });
    if config.membership.url().is_some() {
        builder = builder.requires([config.log_service.as_str()]);
    }
    let service = builder.start().await?;
    if let Some(forwarder) = forwarder {
        forwarder.attach_to(&service, config.log_service.as_str());
    }
    service.wait().await;
    Ok(())
}
