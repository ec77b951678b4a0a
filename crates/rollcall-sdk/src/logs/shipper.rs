//! The shipper: batches from the buffer to a log service provider, with
//! failover, back-off, and one line per record for classic log services.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rollcall_proto::{ServiceName, ServiceUrl, jitter};
use serde_json::Value;

use super::*;
use crate::providers::{FAILURE_COOL_DOWN, Providers};

/// A running shipper; [`Shipping::finish`] flushes and stops it.
#[derive(Debug)]
pub struct Shipping {
    pub(super) shipper: Shipper,
    pub(super) stop: tokio_util::sync::CancellationToken,
    pub(super) task: tokio::task::JoinHandle<()>,
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
pub(super) struct Shipper {
    pub(super) shared: Arc<Shared>,
    pub(super) providers: Arc<Providers>,
    pub(super) client: reqwest::Client,
    pub(super) log_service: ServiceName,
    pub(super) instance: String,
    /// Sent to the log service (`ROLLCALL_TOKEN`).
    pub(super) token: Option<rollcall_http::access::Secret>,
    /// Providers that answered `/v1/logs` with 404 or 405: classic log
    /// services, which take one line per `POST /log`.
    pub(super) classic: Arc<Mutex<std::collections::HashSet<ServiceUrl>>>,
}

/// What one attempt to ship did.
pub(super) enum Shipped {
    Nothing,
    Sent,
    /// No provider, or it failed: wait before trying again.
    Failed,
}

impl Shipper {
    pub(super) async fn run(self, stop: tokio_util::sync::CancellationToken) {
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
                            jitter::stable_hash(&self.instance),
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
            let request = self.client.post(&url).timeout(REQUEST_TIMEOUT).json(&batch);
            let sent = crate::args::bearer(request, self.token.as_ref())
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
            let request = self
                .client
                .post(&url)
                .timeout(REQUEST_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(classic_line(record));
            let sent = crate::args::bearer(request, self.token.as_ref())
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
        self.shared.metrics.forwarded.inc_by(sent as u64);
    }

    /// Ships everything buffered, for at most `deadline`; what is left goes to
    /// stderr.
    pub(super) async fn flush(&self, deadline: Duration) {
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
pub(super) fn classic_line(record: &OutgoingRecord) -> String {
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
