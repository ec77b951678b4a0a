//! Metrics through `prometheus-client`: the counters, gauges and histograms
//! services keep their figures in, and the one way they are rendered.
//!
//! Every service owns its metrics in its app state (no global recorder), so
//! several services in one test process never mix figures. A `/metrics`
//! answer builds a [`Registry`], registers the service's metrics in it (each
//! declared once with its name and help next to it, in a `register` method of
//! the struct that holds them) plus gauges computed at that moment, and
//! [`encode`]s it in the OpenMetrics text format. Counters are registered
//! without their `_total` suffix; the encoder adds it.

use std::time::Duration;

pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::registry::Registry;

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bucket upper bounds, in seconds, for request and check latencies:
/// 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Labels of a family: `(name, value)` pairs.
pub type Labels = Vec<(String, String)>;

/// A histogram of durations, in seconds, with [`LATENCY_BUCKETS`].
#[derive(Debug, Clone)]
pub struct Histogram(prometheus_client::metrics::histogram::Histogram);

impl Default for Histogram {
    fn default() -> Self {
        Self(prometheus_client::metrics::histogram::Histogram::new(
            LATENCY_BUCKETS.iter().copied(),
        ))
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }

    /// Registers it under `name`.
    pub fn register(&self, registry: &mut Registry, name: &str, help: &str) {
        registry.register(name, help, self.0.clone());
    }
}

/// Registers a gauge holding `value` now (a figure computed when rendering).
pub fn gauge_now(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let gauge: Gauge = Gauge::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}

/// Registers counters, each `(name, help, counter)`: the counters keep
/// counting where they live; the registry shows them.
pub fn counters(registry: &mut Registry, list: &[(&str, &str, &Counter)]) {
    for (name, help, counter) in list {
        registry.register(*name, *help, (*counter).clone());
    }
}

/// Registers a gauge family with one label, one sample per `(label value,
/// value)`, computed now.
pub fn labelled_now(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &str,
    samples: &[(&str, i64)],
) {
    let family: Family<Labels, Gauge> = Family::default();
    for (value, sample) in samples {
        family
            .get_or_create(&vec![(label.to_owned(), (*value).to_owned())])
            .set(*sample);
    }
    registry.register(name, help, family);
}

/// Registers a counter family with one label, one sample per `(label value,
/// count)` — counts kept in separate counters, shown as one metric.
pub fn labelled_counts_now(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &str,
    samples: &[(&str, u64)],
) {
    let family: Family<Labels, Counter> = Family::default();
    for (value, count) in samples {
        family
            .get_or_create(&vec![(label.to_owned(), (*value).to_owned())])
            .inc_by(*count);
    }
    registry.register(name, help, family);
}

/// Renders `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        // Writing to a String cannot fail; say so rather than half a page.
        return "# EOF\n".to_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_families_and_histograms_render_with_their_names() {
        let mut registry = Registry::default();
        let requests: Counter = Counter::default();
        requests.inc_by(3);
        registry.register("demo_requests", "Requests.", requests.clone());
        let latency = Histogram::default();
        latency.observe(Duration::from_millis(2));
        latency.register(&mut registry, "demo_latency_seconds", "Latency.");
        gauge_now(&mut registry, "demo_open", "Open things.", 2);
        labelled_now(
            &mut registry,
            "demo_instances",
            "Instances by status.",
            "status",
            &[("passing", 4), ("critical", 1)],
        );
        let text = encode(&registry);
        assert!(text.contains("demo_requests_total 3"), "{text}");
        assert!(text.contains("demo_open 2"), "{text}");
        assert!(
            text.contains(r#"demo_instances{status="passing"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(r#"demo_latency_seconds_bucket{le="0.0025"} 1"#),
            "{text}"
        );
        assert!(text.contains("demo_latency_seconds_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
