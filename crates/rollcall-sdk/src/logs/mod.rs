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
use std::time::Duration;

use rollcall_proto::prom::{self, Counter, Registry};
use rollcall_proto::{ServiceName, Timestamp};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

use crate::providers::Providers;
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
        self.metrics.dropped.inc_by(records.len() as u64);
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
        service.add_metrics(move |r| register(&metrics, r));
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
            token: crate::args::token_from_env(),
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

    /// Records waiting to be shipped.
    pub fn buffered(&self) -> usize {
        self.shared.lock().len()
    }

    pub fn metrics(&self) -> &ForwardMetrics {
        &self.shared.metrics
    }
}

fn register(shared: &Shared, r: &mut Registry) {
    let m = &shared.metrics;
    prom::counters(
        r,
        &[
            (
                "rollcall_sdk_log_records_forwarded",
                "Log records acknowledged by the log service",
                &m.forwarded,
            ),
            (
                "rollcall_sdk_log_records_dropped",
                "Log records that could not be forwarded (written to stderr instead)",
                &m.dropped,
            ),
            (
                "rollcall_sdk_log_batches_failed",
                "Log batches that failed and were retried",
                &m.failed_batches,
            ),
        ],
    );
    prom::gauge_now(
        r,
        "rollcall_sdk_log_records_buffered",
        "Log records waiting to be forwarded",
        i64::try_from(shared.lock().len()).unwrap_or(i64::MAX),
    );
}

mod shipper;

use shipper::Shipper;
pub use shipper::Shipping;

#[cfg(test)]
mod tests;
