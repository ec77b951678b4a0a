//! The registry's own logs, shipped into the log store like every service's.
//!
//! The registry is not an SDK service (it is the thing SDK services register
//! with), so nobody sends it patches: it keeps the log service's providers
//! table itself, from its own catalog, and hands it to the SDK's shipper. Until
//! a log service is registered and passing, records wait in the forwarder's
//! bounded buffer (the oldest go to stderr when it is full, counted).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rollcall_proto::{Patch, PatchEntry, ServiceName};
use rollcall_sdk::Providers;
use rollcall_sdk::logs::LogForwarder;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::shell::Registry;

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
    let mut events = registry.subscribe();
    providers.apply(&log_providers(registry, &name));
    let shipping = forwarder.ship_through(
        providers.clone(),
        registry.inner().client.clone(),
        name.clone(),
        own_url,
    );
    let registry = registry.clone();
    tokio::spawn(async move {
        let mut held: BTreeSet<PatchEntry> = BTreeSet::new();
        loop {
            let changed = tokio::select! {
                () = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Ok(event) => event.service == name,
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => break,
                },
            };
            if changed {
                let patch = log_providers(&registry, &name);
                let now: BTreeSet<PatchEntry> = patch.added.iter().cloned().collect();
                if now != held {
                    providers.apply(&patch);
                    held = now;
                }
            }
        }
        shipping.finish(FLUSH).await;
    })
}
