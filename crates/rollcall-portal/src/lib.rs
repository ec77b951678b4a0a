//! The teacher portal (`rollcall portal`): web pages for the grade book.
//!
//! It registers as `Portal`, requiring `GradingService` (and `LogService`,
//! to forward its logs), and never has the grading service's address
//! configured: every call goes to a provider the registry announced, with
//! failover between providers (see [`grading`]).
//!
//! - [`pages`]: routes, templates (`templates/`), the stylesheet.
//! - [`grading`]: the client for the grading service.
//! - [`config`] holds the flags.

pub mod config;
pub mod grading;
pub mod pages;

use rollcall_sdk::logs::LogForwarder;
use rollcall_sdk::{SdkError, Service};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::PortalConfig;

/// Runs the portal on `listener` until `shutdown` fires.
pub async fn run(
    config: PortalConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
    forwarder: Option<LogForwarder>,
) -> Result<(), SdkError> {
    let grading_name = config.grading_service.clone();
    let portal_name = config.name.to_string();
    let grading = std::sync::Arc::new(std::sync::OnceLock::new());
    let grading_slot = grading.clone();
    let mut builder = Service::builder(config.name.as_str())
        .listener(listener)
        .router_with(move |service| {
            let client = grading::Grading::new(service.clone(), grading_name);
            let _ = grading_slot.set(client.clone());
            pages::router(pages::AppState {
                grading: client,
                portal: portal_name,
            })
        })
        .handle_signals(false)
        .membership(&config.membership)
        .shutdown_on(shutdown);
    if config.membership.url().is_some() {
        builder = builder.requires([config.grading_service.as_str(), config.log_service.as_str()]);
    }
    let service = builder.start().await?;
    let grading = grading.get().cloned();
    service.add_metrics(move |r| {
        let Some(grading) = &grading else {
            return;
        };
        let m = grading.metrics();
        rollcall_proto::prom::counters(
            r,
            &[
                (
                    "rollcall_portal_grading_calls",
                    "Calls to the grading service",
                    &m.calls,
                ),
                (
                    "rollcall_portal_grading_failovers",
                    "Calls retried on another grading instance",
                    &m.failovers,
                ),
                (
                    "rollcall_portal_grading_unavailable",
                    "Calls that found no working grading instance",
                    &m.unavailable,
                ),
            ],
        );
    });
    if let Some(forwarder) = forwarder {
        forwarder.attach_to(&service, config.log_service.as_str());
    }
    service.wait().await;
    Ok(())
}
