//! The registry's figures, rendered at `GET /metrics` in the Prometheus text
//! format. Counters live here; gauges about the catalog are computed when
//! rendering.

use rollcall_proto::prom::{Counter, Gauge, Histogram, PromText};

use crate::catalog::health::{CheckOutcome, Health};
use crate::catalog::{Catalog, EventKind};
use crate::store::writer::StoreWriter;

#[derive(Debug, Default)]
pub struct Metrics {
    pub registrations: Counter,
    pub deregistrations: Counter,
    pub rejected_requests: Counter,
    pub checks_passed: Counter,
    pub checks_failed: Counter,
    pub checks_in_flight: Gauge,
    pub check_seconds: Histogram,
    pub check_lag: Histogram,
    pub patches_queued: Counter,
    pub patches_delivered: Counter,
    pub patches_coalesced: Counter,
    pub patches_dropped: Counter,
    pub delivery_attempt_failures: Counter,
    pub delivery_seconds: Histogram,
    pub watch_streams: Gauge,
    pub watch_events_lagged: Counter,
    pub store_dropped: Counter,
    events: [Counter; 10],
}

const KINDS: [EventKind; 10] = [
    EventKind::Registered,
    EventKind::Reregistered,
    EventKind::Deregistered,
    EventKind::Critical,
    EventKind::Recovered,
    EventKind::Expired,
    EventKind::DeliveryFailed,
    EventKind::Resynced,
    EventKind::MaintenanceOn,
    EventKind::MaintenanceOff,
];

impl Metrics {
    pub fn count_event(&self, kind: EventKind) {
        if let Some(i) = KINDS.iter().position(|k| *k == kind) {
            self.events[i].inc();
        }
    }

    pub fn count_check(&self, outcome: &CheckOutcome) {
        if outcome.passed {
            self.checks_passed.inc();
        } else {
            self.checks_failed.inc();
        }
        self.check_seconds.observe(outcome.latency);
    }
}

/// Renders every figure.
/// The catalog's gauges, taken under its lock.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatalogFigures {
    pub passing: u64,
    pub critical: u64,
    pub revision: u64,
    pub owing: u64,
}

impl CatalogFigures {
    pub fn of(c: &Catalog) -> Self {
        let mut figures = Self {
            revision: c.revision(),
            ..Self::default()
        };
        for i in c.instances() {
            match i.status() {
                Health::Passing => figures.passing += 1,
                Health::Critical => figures.critical += 1,
            }
            if i.receiver().is_some_and(|r| r.resync.is_some()) {
                figures.owing += 1;
            }
        }
        figures
    }
}

/// The whole page: the counters in `m`, the catalog's gauges, the store
/// writer's figures.
pub fn render(m: &Metrics, figures: CatalogFigures, store: &StoreWriter) -> String {
    let CatalogFigures {
        passing,
        critical,
        revision,
        owing,
    } = figures;
    let writer = &store.metrics;
    let events: Vec<(&str, f64)> = KINDS
        .iter()
        .zip(&m.events)
        .map(|(k, c)| (k.as_str(), c.get() as f64))
        .collect();
    let mut p = PromText::new();
    p.labelled(
        "gauge",
        "rollcall_registry_instances",
        "Registered instances by health status.",
        "status",
        &[("passing", passing as f64), ("critical", critical as f64)],
    )
    .gauge(
        "rollcall_registry_revision",
        "Catalog revision: grows with every change of membership or health.",
        revision as f64,
    )
    .counter(
        "rollcall_registry_registrations_total",
        "Registrations accepted.",
        m.registrations.get(),
    )
    .counter(
        "rollcall_registry_deregistrations_total",
        "Deregistrations accepted.",
        m.deregistrations.get(),
    )
    .counter(
        "rollcall_registry_rejected_requests_total",
        "Requests answered with a 4xx.",
        m.rejected_requests.get(),
    )
    .labelled(
        "counter",
        "rollcall_registry_checks_total",
        "Health checks completed, by result.",
        "result",
        &[
            ("pass", m.checks_passed.get() as f64),
            ("fail", m.checks_failed.get() as f64),
        ],
    )
    .gauge(
        "rollcall_registry_checks_in_flight",
        "Health checks running now.",
        m.checks_in_flight.get() as f64,
    )
    .histogram(
        "rollcall_registry_check_duration_seconds",
        "Health check latency.",
        &m.check_seconds,
    )
    .histogram(
        "rollcall_registry_check_lag_seconds",
        "How late checks started relative to when they were due.",
        &m.check_lag,
    )
    .counter(
        "rollcall_registry_patches_queued_total",
        "Patches queued for delivery.",
        m.patches_queued.get(),
    )
    .counter(
        "rollcall_registry_patches_delivered_total",
        "Patches acknowledged by their receivers.",
        m.patches_delivered.get(),
    )
    .counter(
        "rollcall_registry_patches_coalesced_total",
        "Queued patches merged into one because a receiver's queue was full (nothing is lost).",
        m.patches_coalesced.get(),
    )
    .counter(
        "rollcall_registry_patches_dropped_total",
        "Queued patches discarded after a failed delivery; each is covered by a resync.",
        m.patches_dropped.get(),
    )
    .counter(
        "rollcall_registry_delivery_attempt_failures_total",
        "Failed patch delivery attempts (including ones retried successfully).",
        m.delivery_attempt_failures.get(),
    )
    .histogram(
        "rollcall_registry_delivery_duration_seconds",
        "Latency of successful patch deliveries.",
        &m.delivery_seconds,
    )
    .gauge(
        "rollcall_registry_receivers_owed_resync",
        "Receivers that missed patches and wait for a resync.",
        owing as f64,
    )
    .labelled(
        "counter",
        "rollcall_registry_events_total",
        "Catalog events by kind.",
        "kind",
        &events,
    )
    .gauge(
        "rollcall_registry_watch_streams",
        "Open watch streams.",
        m.watch_streams.get() as f64,
    )
    .counter(
        "rollcall_registry_watch_events_lagged_total",
        "Events a slow watch stream missed (it was resynced instead).",
        m.watch_events_lagged.get(),
    )
    .counter(
        "rollcall_registry_store_commits_total",
        "Store transactions committed.",
        writer.commits.get(),
    )
    .counter(
        "rollcall_registry_store_batches_total",
        "Batches of records written (several share one commit under load).",
        writer.batches.get(),
    )
    .counter(
        "rollcall_registry_store_errors_total",
        "Batches the store failed to write.",
        writer.errors.get(),
    )
    .counter(
        "rollcall_registry_store_dropped_total",
        "Records dropped because the store queue was full.",
        m.store_dropped.get(),
    )
    .gauge(
        "rollcall_registry_store_queue",
        "Batches waiting for the store writer.",
        store.queued() as f64,
    )
    .histogram(
        "rollcall_registry_store_commit_seconds",
        "Store commit latency.",
        &writer.commit_seconds,
    );
    p.finish()
}
