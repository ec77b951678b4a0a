//! The log service's state, shared by every route: the store, the settings,
//! the HTTP metrics and the shutdown signal.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::LogConfig;
use crate::metrics::HttpMetrics;
use crate::store::LogStore;

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: LogStore,
    pub config: Arc<LogConfig>,
    pub metrics: Arc<HttpMetrics>,
    pub shutdown: CancellationToken,
}
