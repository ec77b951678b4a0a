//! Log forwarding: a `tracing` layer that ships a service's records to the log
//! service the registry told it about — no address configured.
//!
//! ```no_run
//! # async fn demo(router: axum::Router) -> Result<(), rollcall_sdk::SdkError> {
//! use tracing_subscriber::prelude::*;
//! let (layer, forwarder) = rollcall_sdk::logs::layer("GradingService");
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(layer)
//!     .init();
//! let service = rollcall_sdk::Service::builder("GradingService")
//!     .registry("http://127.0.0.1:3000")
//!     .requires(["LogService"])
//!     .router(router)
//!     .start()
//!     .await?;
//! forwarder.attach(&service); // ships from now on; flushes at shutdown
//! # Ok(()) }
//! ```
//!
//! Guarantees:
//! - **Bounded buffer.** Records wait in a buffer of `buffer` records (10,000
//!   by default) until a `LogService` provider acknowledges them — including
//!   records emitted before the service knows where the log service is. When
//!   the buffer is full the oldest record is evicted, **written to stderr**,
//!   and counted in `rollcall_sdk_log_records_dropped_total`.
//! - **At least once, de-duplicated.** Every record carries a unique `id`; a
//!   batch whose answer was lost is sent again, and the log service stores it
//!   once.
//! - **Retry and failover.** A failed batch marks that provider as failing and
//!   goes to the next one at once; with none left, it waits with back-off
//!   (100 ms doubling to 5 s) while records keep buffering.
//! - **Flush on shutdown.** [`LogForwarder::attach`] adds a shutdown hook that
//!   ships what is buffered before the service exits; what cannot be shipped
//!   by the deadline goes to stderr and is counted as dropped.
//!
//! Events from the HTTP stack (`hyper`, `reqwest`, `h2`, `rustls`, `tower`)
//! and from this module are not forwarded, so shipping never logs about
//! itself.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rollcall_proto::prom::{Counter, PromText};
use rollcall_proto::{ServiceName, ServiceUrl, Timestamp, jitter};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

use crate::providers::{FAILURE_COOL_DOWN, Providers};
use crate::service::Service;

/// Default buffer size, in records.
pub const DEFAULT_BUFFER: usize = 10_000;
/// Most records per batch.
pub const BATCH: usize = 500;
/// Longest a record waits before its batch is sent.
pub const LINGER: Duration = Duration::from_millis(200);
/// Timeout of one batch request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest message forwarded; longer ones are cut (and say so).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Longest field value forwarded.
pub const MAX_FIELD: usize = 4 * 1024;

const SKIPPED_TARGETS: &[&str] = &[
    "hyper",
    "reqwest",
    "h2",
    "rustls",
    "tower",
    "rollcall_sdk::logs",
];

/// One record as sent to `POST /v1/logs`.
#[derive(Debug, Clone, Serialize)]
pub struct OutgoingRecord {
    pub timestamp: Timestamp,
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub level: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
    pub id: String,
}

#[derive(Debug)]
struct Pending {
    local: u64,
    record: OutgoingRecord,
}

#[derive(Debug, Default)]
pub struct ForwardMetrics {
    pub forwarded: Counter,
    pub dropped: Counter,
    pub failed_batches: Counter,
}

#[derive(Debug)]
struct Shared {
    service: String,
    capacity: usize,
    buffer: Mutex<VecDeque<Pending>>,
    next_local: AtomicU64,
    nonce: String,
    wake: Notify,
    metrics: ForwardMetrics,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Buffers a record, giving it its unique id.
    fn push(&self, mut record: OutgoingRecord) {
        let local = self.next_local.fetch_add(1, Ordering::Relaxed);
        record.id = format!("{}-{local}", self.nonce);
        let evicted = {
            let mut buffer = self.lock();
            let evicted = if buffer.len() >= self.capacity {
                buffer.pop_front()
            } else {
                None
            };
            buffer.push_back(Pending { local, record });
            evicted
        };
        if let Some(old) = evicted {
            self.drop_to_stderr(&[old.record], "log buffer full");
        }
        self.wake.notify_one();
    }

    fn drop_to_stderr(&self, records: &[OutgoingRecord], why: &str) {
        use std::io::Write as _;
        if records.is_empty() {
            return;
        }
        self.metrics.dropped.add(records.len() as u64);
        let mut err = std::io::stderr().lock();
        for r in records {
            let _ = writeln!(
                err,
                "{} {:5} [{}] {} (not forwarded: {why})",
                r.timestamp,
                r.level.to_uppercase(),
                r.service,
                r.message
            );
        }
    }
}

/// The `tracing` layer. Install it at start-up, before anything logs.
#[derive(Debug, Clone)]
pub struct ForwardLayer {
    shared: Arc<Shared>,
}

/// The shipping side: [`LogForwarder::attach`] it to a started service.
#[derive(Debug, Clone)]
pub struct LogForwarder {
    shared: Arc<Shared>,
}

/// A layer and its forwarder for `service`, with the default buffer.
pub fn layer(service: &str) -> (ForwardLayer, LogForwarder) {
    layer_with_buffer(service, DEFAULT_BUFFER)
}

/// A layer and its forwarder for `service`, buffering at most `capacity`
/// records.
pub fn layer_with_buffer(service: &str, capacity: usize) -> (ForwardLayer, LogForwarder) {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let nonce = format!("{:x}{:x}", std::process::id(), started & 0xffff_ffff_ffff);
    let shared = Arc::new(Shared {
        service: service.to_owned(),
        capacity: capacity.max(1),
        buffer: Mutex::new(VecDeque::new()),
        next_local: AtomicU64::new(0),
        nonce,
        wake: Notify::new(),
        metrics: ForwardMetrics::default(),
    });
    (
        ForwardLayer {
            shared: shared.clone(),
        },
        LogForwarder { shared },
    )
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("…[truncated]");
    }
    text
}

struct Collect {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields.insert(
                field.name().to_owned(),
                Value::String(truncate(value.to_owned(), MAX_FIELD)),
            );
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.insert(
                field.name().to_owned(),
                Value::String(truncate(text, MAX_FIELD)),
            );
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ForwardLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if SKIPPED_TARGETS.iter().any(|t| meta.target().starts_with(t)) {
            return;
        }
        let mut collect = Collect {
            message: String::new(),
            fields: Map::new(),
        };
        event.record(&mut collect);
        if collect.message.is_empty() {
            collect.message = meta.name().to_owned();
        }
        collect
            .fields
            .insert("target".into(), Value::String(meta.target().to_owned()));
        let level = match *meta.level() {
            tracing::Level::TRACE => "trace",
            tracing::Level::DEBUG => "debug",
            tracing::Level::INFO => "info",
            tracing::Level::WARN => "warn",
            tracing::Level::ERROR => "error",
        };
        let shared = &self.shared;
        shared.push(OutgoingRecord {
            timestamp: Timestamp::system_now(),
            service: shared.service.clone(),
            instance: None,
            level,
            message: truncate(collect.message, MAX_MESSAGE),
            fields: collect.fields,
            id: String::new(),
        });
    }
}

impl LogForwarder {
    /// Starts shipping through `service`'s providers of `LogService`, adds the
    /// flush to its shutdown and the forwarding figures to its `/metrics`.
    pub fn attach(&self, service: &Service) {
        self.attach_to(service, rollcall_proto::names::well_known::LOG_SERVICE);
    }

    /// Like [`LogForwarder::attach`], for a log service registered under
    /// another name (`Log_Service`).
    pub fn attach_to(&self, service: &Service, log_service: &str) {
        let Ok(name) = ServiceName::parse(log_service) else {
            tracing::error!(
                log_service,
                "not a valid service name; logs are not forwarded"
            );
            return;
        };
        let shipping = self.ship_through(
            service.providers().clone(),
            service.client().clone(),
            name,
            service.url().to_string(),
        );
        service.on_shutdown(move || shipping.finish(Duration::from_secs(3)));
        let metrics = self.shared.clone();
        service.add_metrics(move || render(&metrics));
    }

    /// Starts shipping through a providers table kept current by someone
    /// other than an SDK service (the registry keeps one from its own
    /// catalog). `instance` is what records carry as their instance.
    pub fn ship_through(
        &self,
        providers: Arc<Providers>,
        client: reqwest::Client,
        log_service: ServiceName,
        instance: String,
    ) -> Shipping {
        let shipper = Shipper {
            shared: self.shared.clone(),
            providers,
            client,
            log_service,
            instance,
            classic: Arc::default(),
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(shipper.clone().run(stop.clone()));
        Shipping {
            shipper,
            stop,
            task,
        }
    }

    /// The forwarding figures in Prometheus text.
    pub fn render_metrics(&self) -> String {
        render(&self.shared)
    }

    /// Records waiting to be shipped.
    pub fn buffered(&self) -> usize {
        self.shared.lock().len()
    }

    pub fn metrics(&self) -> &ForwardMetrics {
        &self.shared.metrics
    }
}

fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    let mut p = PromText::new();
    p.counter(
        "rollcall_sdk_log_records_forwarded_total",
        "Log records acknowledged by the log service.",
        m.forwarded.get(),
    )
    .counter(
        "rollcall_sdk_log_records_dropped_total",
        "Log records that could not be forwarded (written to stderr instead).",
        m.dropped.get(),
    )
    .counter(
        "rollcall_sdk_log_batches_failed_total",
        "Log batches that failed and were retried.",
        m.failed_batches.get(),
    )
    .gauge(
        "rollcall_sdk_log_records_buffered",
        "Log records waiting to be forwarded.",
        shared.lock().len() as f64,
    );
    p.finish()
}

/// A running shipper; [`Shipping::finish`] flushes and stops it.
#[derive(Debug)]
pub struct Shipping {
    shipper: Shipper,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Shipping {
    /// Ships what is buffered for at most `deadline` (the rest goes to
    /// stderr), then stops.
    pub async fn finish(self, deadline: Duration) {
        self.shipper.flush(deadline).await;
        self.stop.cancel();
        let _ = self.task.await;
    }
}

#[derive(Debug, Clone)]
struct Shipper {
    shared: Arc<Shared>,
    providers: Arc<Providers>,
    client: reqwest::Client,
    log_service: ServiceName,
    instance: String,
    /// Providers that answered `/v1/logs` with 404 or 405: classic log
    /// services, which take one line per `POST /log`.
    classic: Arc<Mutex<std::collections::HashSet<ServiceUrl>>>,
}

/// What one attempt to ship did.
enum Shipped {
    Nothing,
    Sent,
    /// No provider, or it failed: wait before trying again.
    Failed,
}

impl Shipper {
    async fn run(self, stop: tokio_util::sync::CancellationToken) {
        let mut failures: u32 = 0;
        let mut providers_changed = self.providers.changes();
        loop {
            // Wait for records (or a periodic look), then let a batch fill up.
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.shared.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if self.shared.lock().len() < BATCH {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(LINGER) => {}
                }
            }
            loop {
                match self.ship_one().await {
                    Shipped::Nothing => {
                        failures = 0;
                        break;
                    }
                    Shipped::Sent => failures = 0,
                    Shipped::Failed => {
                        failures = failures.saturating_add(1);
                        let wait = jitter::backoff(
                            Duration::from_millis(100),
                            Duration::from_secs(5),
                            failures,
                            // Seeded per instance, so services that lost the
                            // log service together do not retry in step.
                            jitter::stable_hash(&self.instance) ^ u64::from(failures),
                        );
                        // A new provider ends the wait early.
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(wait) => {}
                            _ = providers_changed.changed() => {}
                        }
                    }
                }
            }
        }
    }

    /// Sends the oldest batch to one provider; on failure tries the others
    /// at once.
    async fn ship_one(&self) -> Shipped {
        let (batch, locals) = {
            let buffer = self.shared.lock();
            if buffer.is_empty() {
                return Shipped::Nothing;
            }
            let (batch, locals): (Vec<OutgoingRecord>, Vec<u64>) = buffer
                .iter()
                .take(BATCH)
                .map(|p| {
                    let mut r = p.record.clone();
                    r.instance.get_or_insert_with(|| self.instance.clone());
                    (r, p.local)
                })
                .unzip();
            (batch, locals)
        };
        let last_local = locals.last().copied().unwrap_or(0);
        let providers = self.providers.all(&self.log_service).len().max(1);
        for _ in 0..providers {
            let Some(provider) = self.providers.pick(&self.log_service) else {
                return Shipped::Failed;
            };
            if self.is_classic(&provider) {
                match self.ship_classic(&provider, &batch, &locals).await {
                    Shipped::Failed => {
                        self.shared.metrics.failed_batches.inc();
                        self.report_failure(&provider);
                        continue;
                    }
                    other => return other,
                }
            }
            let url = provider.join("/v1/logs");
            let sent = self
                .client
                .post(&url)
                .timeout(REQUEST_TIMEOUT)
                .json(&batch)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    self.acknowledge(last_local, batch.len());
                    return Shipped::Sent;
                }
                Ok(r) if matches!(r.status().as_u16(), 404 | 405) => {
                    // A classic log service: it only has `POST /log`.
                    tracing::info!(target: "rollcall_sdk::logs", %provider, "the log service has no /v1/logs; sending it one line per record to /log");
                    self.classic_lock().insert(provider.clone());
                    return self.ship_classic(&provider, &batch, &locals).await;
                }
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    // The log service will never take this batch: do not let it
                    // block everything after it.
                    let status = r.status().as_u16();
                    let removed = self.remove_through(last_local);
                    self.shared
                        .drop_to_stderr(&removed, &format!("refused with HTTP {status}"));
                    return Shipped::Sent;
                }
                _ => {
                    self.shared.metrics.failed_batches.inc();
                    self.report_failure(&provider);
                }
            }
        }
        Shipped::Failed
    }

    fn report_failure(&self, provider: &ServiceUrl) {
        self.providers
            .report_failure(&self.log_service, provider, FAILURE_COOL_DOWN);
    }

    fn classic_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<ServiceUrl>> {
        self.classic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_classic(&self, provider: &ServiceUrl) -> bool {
        self.classic_lock().contains(provider)
    }

    /// Sends a batch to a classic log service, one `POST /log` per record with
    /// the `[Name] - ` prefix the originals use; each record is removed from the
    /// buffer as soon as it is acknowledged, so a failure part-way resends
    /// nothing twice.
    async fn ship_classic(
        &self,
        provider: &ServiceUrl,
        batch: &[OutgoingRecord],
        locals: &[u64],
    ) -> Shipped {
        let url = provider.join("/log");
        for (record, local) in batch.iter().zip(locals) {
            let sent = self
                .client
                .post(&url)
                .timeout(REQUEST_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(classic_line(record))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => self.acknowledge(*local, 1),
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    let status = r.status().as_u16();
                    let removed = self.remove_through(*local);
                    self.shared
                        .drop_to_stderr(&removed, &format!("refused with HTTP {status}"));
                }
                _ => return Shipped::Failed,
            }
        }
        Shipped::Sent
    }

    fn remove_through(&self, last_local: u64) -> Vec<OutgoingRecord> {
        let mut buffer = self.shared.lock();
        let mut removed = Vec::new();
        while buffer.front().is_some_and(|p| p.local <= last_local) {
            if let Some(p) = buffer.pop_front() {
                removed.push(p.record);
            }
        }
        removed
    }

    /// Removes acknowledged records (some may have been evicted meanwhile).
    fn acknowledge(&self, last_local: u64, sent: usize) {
        self.remove_through(last_local);
        self.shared.metrics.forwarded.add(sent as u64);
    }

    /// Ships everything buffered, for at most `deadline`; what is left goes to
    /// stderr.
    async fn flush(&self, deadline: Duration) {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            match tokio::time::timeout(
                until.saturating_duration_since(Instant::now()),
                self.ship_one(),
            )
            .await
            {
                Ok(Shipped::Nothing) => return,
                Ok(Shipped::Sent) => {}
                Ok(Shipped::Failed) | Err(_) => break,
            }
        }
        let left: Vec<OutgoingRecord> = self.shared.lock().drain(..).map(|p| p.record).collect();
        self.shared
            .drop_to_stderr(&left, "the log service was unreachable at shutdown");
    }
}

/// One record as a classic log line: `[Name] - `, the level when it is not
/// INFO, the message, then the fields as `key=value`.
fn classic_line(record: &OutgoingRecord) -> String {
    let mut line = format!("[{}] - ", record.service);
    if !record.level.eq_ignore_ascii_case("info") {
        line.push_str(&record.level.to_ascii_uppercase());
        line.push(' ');
    }
    line.push_str(&record.message);
    for (key, value) in &record.fields {
        match value {
            Value::String(text) => line.push_str(&format!(" {key}={text}")),
            other => line.push_str(&format!(" {key}={other}")),
        }
    }
    // One record is one line.
    line.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn events_become_records_and_the_buffer_is_bounded() {
        let (layer, forwarder) = layer_with_buffer("Tester", 3);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            // (This module's own target is never forwarded: log as the app.)
            tracing::warn!(target: "app", student = 7, ok = true, "grade saved");
            tracing::info!(target: "hyper::proto", "not forwarded");
            for i in 0..4 {
                tracing::info!(target: "app", i, "filler");
            }
        });
        assert_eq!(forwarder.buffered(), 3);
        assert_eq!(
            forwarder.metrics().dropped.get(),
            2,
            "the oldest two were evicted"
        );
        let buffer = forwarder.shared.lock();
        let first = &buffer[0].record;
        assert_eq!(first.message, "filler");
        assert_eq!(first.fields["i"], 1);
        let ids: std::collections::HashSet<_> =
            buffer.iter().map(|p| p.record.id.clone()).collect();
        assert_eq!(ids.len(), 3, "ids are unique");
    }

    #[test]
    fn fields_and_messages_are_bounded() {
        let (layer, forwarder) = layer_with_buffer("Tester", 10);
        let subscriber = tracing_subscriber::registry().with(layer);
        let long = "x".repeat(MAX_MESSAGE * 2);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "app", detail = %long, "{long}");
        });
        let buffer = forwarder.shared.lock();
        let r = &buffer[0].record;
        assert!(r.message.len() < MAX_MESSAGE + 20);
        assert!(r.fields["detail"].as_str().unwrap().len() < MAX_FIELD + 20);
        assert_eq!(r.level, "error");
        assert_eq!(r.service, "Tester");
    }
}
