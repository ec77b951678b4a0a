//! The registry's own logs, shipped into the log store like every service's
//! (wired here, in the binary: the registry library knows nothing of the SDK).
//!
//! The registry is not an SDK service (it is the thing SDK services register
//! with), so nobody sends it patches: it keeps the log service's providers
//! table itself, from its own catalog, and hands it to the SDK's shipper. Until
//! a log service is registered and passing, records wait in the forwarder's
//! bounded buffer (the oldest go to stderr when it is full, counted).

use std::sync::Arc;
use std::time::Duration;

use rollcall_proto::{Patch, PatchEntry, ServiceName};
use rollcall_sdk::Providers;
use rollcall_sdk::logs::LogForwarder;
use tokio_util::sync::CancellationToken;

use rollcall_registry::Registry;

/// How long the shipper may take to flush at shutdown.
pub const FLUSH: Duration = Duration::from_secs(2);

/// A complete list of the log service's passing instances, from the catalog.
pub fn log_providers(registry: &Registry, name: &ServiceName) -> Patch {
    let urls = registry.read(|c| c.healthy_providers(name));
    Patch {
        added: urls
            .into_iter()
            .map(|url| PatchEntry::new(name.clone(), url))
            .collect(),
        removed: Vec::new(),
        revision: None,
        resync: true,
    }
}

/// How often the registry looks its log service up in its own catalog. A
/// poll, not a subscription to every event: a registry under load sees tens of
/// thousands of events a second, and records wait in the buffer meanwhile.
pub const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Starts shipping the registry's records; the task ends (after a flush) when
/// `shutdown` fires.
pub fn start(
    registry: &Registry,
    forwarder: &LogForwarder,
    own_url: String,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let name = registry.config().log_service.clone();
    let providers = Arc::new(Providers::new(vec![name.clone()]));
    let shipping = forwarder.ship_through(
        providers.clone(),
        registry.client().clone(),
        name.clone(),
        own_url,
    );
    let registry = registry.clone();
    tokio::spawn(async move {
        let mut held = None;
        let mut every = tokio::time::interval(LOOK_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            let patch = log_providers(&registry, &name);
            if held.as_ref() != Some(&patch.added) {
                providers.apply(&patch);
                held = Some(patch.added);
            }
        }
        shipping.finish(FLUSH).await;
    })
}
