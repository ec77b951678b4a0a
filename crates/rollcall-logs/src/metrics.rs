//! The log service's figures: its HTTP counters and everything the store
//! counts, registered on each `/metrics` answer (appended to the SDK's).

use rollcall_proto::prom::{self, Counter, Registry};

use crate::state::AppState;

#[derive(Debug, Default)]
pub struct HttpMetrics {
    pub classic_messages: Counter,
    pub batches_accepted: Counter,
    pub batches_rejected: Counter,
    pub records_rejected: Counter,
    pub queries: Counter,
}

/// Everything the handlers share.
/// The log service's figures (appended to the SDK's `/metrics`).
pub fn register_metrics(state: &AppState, r: &mut Registry) {
    let m = &state.metrics;
    let s = state.store.metrics();
    let (segments, bytes) = state.store.usage();
    prom::counters(
        r,
        &[
            ("rollcall_logs_records_stored", "Records stored", &s.records),
            (
                "rollcall_logs_bytes_written",
                "Bytes appended to segments",
                &s.bytes,
            ),
            (
                "rollcall_logs_appends",
                "Append requests written",
                &s.appends,
            ),
            (
                "rollcall_logs_write_groups",
                "Writes (one per group of appends)",
                &s.groups,
            ),
            (
                "rollcall_logs_duplicates",
                "Records dropped because their id was already stored",
                &s.duplicates,
            ),
            ("rollcall_logs_fsyncs", "fsync calls", &s.fsyncs),
            (
                "rollcall_logs_write_errors",
                "Failed writes or fsyncs",
                &s.write_errors,
            ),
            (
                "rollcall_logs_segments_deleted",
                "Segments deleted by retention",
                &s.segments_deleted,
            ),
            (
                "rollcall_logs_truncated_bytes",
                "Bytes of torn records cut off at start",
                &s.truncated_bytes,
            ),
        ],
    );
    s.fsync_seconds
        .register(r, "rollcall_logs_fsync_seconds", "fsync latency");
    prom::gauge_now(
        r,
        "rollcall_logs_segments",
        "Segment files",
        i64::try_from(segments).unwrap_or(i64::MAX),
    );
    prom::gauge_now(
        r,
        "rollcall_logs_disk_bytes",
        "Bytes in segment files",
        i64::try_from(bytes).unwrap_or(i64::MAX),
    );
    r.register(
        "rollcall_logs_tail_subscribers",
        "Open live tails",
        s.tail_subscribers.clone(),
    );
    prom::counters(
        r,
        &[
            (
                "rollcall_logs_tail_lagged",
                "Records slow tails missed",
                &s.tail_lagged,
            ),
            (
                "rollcall_logs_classic_messages",
                "Classic POST /log messages stored",
                &m.classic_messages,
            ),
            (
                "rollcall_logs_batches_accepted",
                "Batches stored",
                &m.batches_accepted,
            ),
            (
                "rollcall_logs_batches_rejected",
                "Batches refused (nothing stored)",
                &m.batches_rejected,
            ),
            (
                "rollcall_logs_records_rejected",
                "Invalid records in refused batches",
                &m.records_rejected,
            ),
            ("rollcall_logs_queries", "Queries answered", &m.queries),
        ],
    );
}
