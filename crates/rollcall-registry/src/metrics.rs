//! The registry's figures, rendered at `GET /metrics` in the Prometheus text
//! format. Counters live here; gauges about the catalog are computed when
//! rendering.

use rollcall_proto::prom::{self, Counter, Gauge, Histogram, Registry};

use crate::catalog::health::CheckOutcome;
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
    pub read_lock: Histogram,
    pub patches_queued: Counter,
    pub patches_delivered: Counter,
    pub patches_coalesced: Counter,
    pub patches_dropped: Counter,
    pub delivery_attempt_failures: Counter,
    pub delivery_seconds: Histogram,
    pub watch_streams: Gauge,
    pub watch_streams_silent: Counter,
    pub held_connections: Gauge,
    pub held_connections_lost: Counter,
    pub lost_contact_reported: Counter,
    pub cluster_joins: Counter,
    pub dns_tcp_refused: Counter,
    pub dns_queries: Counter,
    pub dns_nxdomain: Counter,
    pub lost_contact_reports_dropped: Counter,
    pub held_connections_over_cap: Counter,
    pub watch_events_lagged: Counter,
    pub read_cache_hits: Counter,
    pub read_cache_misses: Counter,
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

/// The catalog's gauges, taken under its lock.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatalogFigures {
    pub passing: u64,
    pub critical: u64,
    pub revision: u64,
    pub owing: u64,
    /// Cluster mode: the live replicas this one knows of.
    pub members: Option<u64>,
}

impl CatalogFigures {
    /// Without walking the catalog: a scrape of a large catalog must not
    /// hold its lock for long.
    pub fn of(c: &Catalog) -> Self {
        let critical = c.critical_count() as u64;
        Self {
            revision: c.revision(),
            passing: (c.len() as u64).saturating_sub(critical),
            critical,
            owing: c.owed_resyncs() as u64,
            members: c
                .ownership()
                .is_clustered()
                .then(|| c.ownership().members().len() as u64),
        }
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
        members,
    } = figures;
    let writer = &store.metrics;
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let events: Vec<(&str, u64)> = KINDS
        .iter()
        .zip(&m.events)
        .map(|(k, c)| (k.as_str(), c.get()))
        .collect();
    let mut r = Registry::default();
    prom::labelled_now(
        &mut r,
        "rollcall_registry_instances",
        "Registered instances by health status",
        "status",
        &[("passing", as_i64(passing)), ("critical", as_i64(critical))],
    );
    prom::gauge_now(
        &mut r,
        "rollcall_registry_revision",
        "Catalog revision: grows with every change of membership or health",
        as_i64(revision),
    );
    if let Some(members) = members {
        prom::gauge_now(
            &mut r,
            "rollcall_registry_cluster_members",
            "Live replicas this one knows of (cluster mode), itself included while its lease holds",
            as_i64(members),
        );
    }
    prom::counters(
        &mut r,
        &[
            (
                "rollcall_registry_registrations",
                "Registrations accepted",
                &m.registrations,
            ),
            (
                "rollcall_registry_deregistrations",
                "Deregistrations accepted",
                &m.deregistrations,
            ),
            (
                "rollcall_registry_rejected_requests",
                "Requests answered with a 4xx",
                &m.rejected_requests,
            ),
        ],
    );
    prom::labelled_counts_now(
        &mut r,
        "rollcall_registry_checks",
        "Health checks completed, by result",
        "result",
        &[
            ("pass", m.checks_passed.get()),
            ("fail", m.checks_failed.get()),
        ],
    );
    r.register(
        "rollcall_registry_checks_in_flight",
        "Health checks running now",
        m.checks_in_flight.clone(),
    );
    m.check_seconds.register(
        &mut r,
        "rollcall_registry_check_duration_seconds",
        "Health check latency",
    );
    m.check_lag.register(
        &mut r,
        "rollcall_registry_check_lag_seconds",
        "How late checks started relative to when they were due",
    );
    m.read_lock.register(
        &mut r,
        "rollcall_registry_read_lock_seconds",
        "How long one read (an answer's chunk, a dashboard view, a watch diff) held the catalog's lock",
    );
    prom::counters(
        &mut r,
        &[
            (
                "rollcall_registry_patches_queued",
                "Patches queued for delivery",
                &m.patches_queued,
            ),
            (
                "rollcall_registry_patches_delivered",
                "Patches acknowledged by their receivers",
                &m.patches_delivered,
            ),
            (
                "rollcall_registry_patches_coalesced",
                "Queued patches merged into one because a receiver's queue was full (nothing is lost)",
                &m.patches_coalesced,
            ),
            (
                "rollcall_registry_patches_dropped",
                "Queued patches discarded after a failed delivery; each is covered by a resync",
                &m.patches_dropped,
            ),
            (
                "rollcall_registry_delivery_attempt_failures",
                "Failed patch delivery attempts (including ones retried successfully)",
                &m.delivery_attempt_failures,
            ),
        ],
    );
    m.delivery_seconds.register(
        &mut r,
        "rollcall_registry_delivery_duration_seconds",
        "Latency of successful patch deliveries",
    );
    prom::gauge_now(
        &mut r,
        "rollcall_registry_receivers_owed_resync",
        "Receivers that missed patches and wait for a resync",
        as_i64(owing),
    );
    prom::labelled_counts_now(
        &mut r,
        "rollcall_registry_events",
        "Catalog events by kind",
        "kind",
        &events,
    );
    r.register(
        "rollcall_registry_watch_streams",
        "Open watch streams",
        m.watch_streams.clone(),
    );
    r.register(
        "rollcall_registry_held_connections",
        "Keep-alive connections to instances held open by the checker between checks",
        m.held_connections.clone(),
    );
    prom::counters(
        &mut r,
        &[
            (
                "rollcall_registry_dns_queries",
                "DNS queries answered (over UDP and TCP); they are counted, not logged",
                &m.dns_queries,
            ),
            (
                "rollcall_registry_dns_nxdomain",
                "DNS queries answered NXDOMAIN (no such service)",
                &m.dns_nxdomain,
            ),
            (
                "rollcall_registry_dns_tcp_refused",
                "DNS over TCP connections closed at once: as many as allowed were open",
                &m.dns_tcp_refused,
            ),
            (
                "rollcall_registry_cluster_joins",
                "Leases this replica took and joined the cluster on: one at start, one more after every lapse (cluster mode)",
                &m.cluster_joins,
            ),
            (
                "rollcall_registry_lost_contact_reported",
                "Instances this replica lost contact with and told the replica that checks them about (cluster mode)",
                &m.lost_contact_reported,
            ),
            (
                "rollcall_registry_lost_contact_reports_dropped",
                "Lost contacts not told to the replica that checks them: the queue was full or etcd refused",
                &m.lost_contact_reports_dropped,
            ),
            (
                "rollcall_registry_held_connections_lost",
                "Held connections an instance closed between checks (each made it suspect and checked at once)",
                &m.held_connections_lost,
            ),
            (
                "rollcall_registry_held_connections_over_cap",
                "Checks made without a held connection because --max-held-connections were held already",
                &m.held_connections_over_cap,
            ),
            (
                "rollcall_registry_watch_streams_silent",
                "Times an instance's watch stream missed its liveness beats (each made it suspect and checked at once)",
                &m.watch_streams_silent,
            ),
            (
                "rollcall_registry_watch_events_lagged",
                "Events a slow watch stream missed (it was resynced instead)",
                &m.watch_events_lagged,
            ),
            (
                "rollcall_registry_read_cache_hits",
                "Catalog reads answered from an answer already serialized (nothing changed since)",
                &m.read_cache_hits,
            ),
            (
                "rollcall_registry_read_cache_misses",
                "Catalog reads that had to be built",
                &m.read_cache_misses,
            ),
            (
                "rollcall_registry_store_commits",
                "Store transactions committed",
                &writer.commits,
            ),
            (
                "rollcall_registry_store_batches",
                "Batches of records written (several share one commit under load)",
                &writer.batches,
            ),
            (
                "rollcall_registry_store_errors",
                "Batches the store failed to write",
                &writer.errors,
            ),
            (
                "rollcall_registry_store_dropped",
                "Records dropped because the store queue was full",
                &m.store_dropped,
            ),
        ],
    );
    prom::gauge_now(
        &mut r,
        "rollcall_registry_store_queue",
        "Batches waiting for the store writer",
        i64::try_from(store.queued()).unwrap_or(i64::MAX),
    );
    writer.commit_seconds.register(
        &mut r,
        "rollcall_registry_store_commit_seconds",
        "Store commit latency",
    );
    prom::encode(&r)
}
