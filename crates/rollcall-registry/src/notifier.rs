//! Delivering patches: one worker per receiver with work.
//!
//! The catalog keeps each receiver's queue and decides what to send; a worker
//! asks it for the next patch, POSTs it with a per-attempt timeout and retries
//! with back-off, then reports the outcome. One receiver has at most one worker
//! (the catalog hands out `WorkerStart`s only for receivers without one), so
//! patches arrive in order; workers of different receivers share nothing, so a
//! receiver that hangs delays only itself.

use std::time::{Duration, Instant};

use crate::catalog::{Delivery, WorkerStart};
use crate::checker::{describe, drain};
use crate::shell::Registry;

/// First wait between attempts at one patch; doubles per attempt.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Sends `start.receiver` its patches until it has none (or a newer worker
/// took over, or the registry stops).
pub(crate) async fn run_worker(registry: Registry, start: WorkerStart) {
    let inner = registry.inner();
    loop {
        if inner.shutdown.is_cancelled() {
            return;
        }
        let next = {
            let now = registry.now();
            registry
                .lock()
                .catalog
                .next_delivery(&start.receiver, start.generation, now)
        };
        let Some(delivery) = next else {
            return;
        };
        let outcome = deliver(&registry, &delivery).await;
        let ticket = delivery.ticket.clone();
        let recorded = registry
            .run(false, |core, now| {
                let effects = match &outcome {
                    Ok(()) => core.catalog.delivery_succeeded(&ticket, now),
                    Err(error) => core.catalog.delivery_failed(&ticket, error, now),
                };
                if let Some(waiter) = core.waiters.remove(&ticket) {
                    let _ = waiter.send(outcome.is_ok());
                }
                ((), effects)
            })
            .await;
        if recorded.is_err() {
            return;
        }
    }
}

/// POSTs one patch, retrying with back-off. `Err` carries the last error.
pub async fn deliver(registry: &Registry, delivery: &Delivery) -> Result<(), String> {
    let inner = registry.inner();
    let config = &inner.config;
    let body = serde_json::to_vec(&delivery.patch).map_err(|e| e.to_string())?;
    let mut last_error = String::from("not attempted");
    for attempt in 0..config.delivery_attempts {
        if attempt > 0 {
            let backoff = RETRY_BACKOFF.saturating_mul(1 << (attempt - 1).min(10));
            tokio::select! {
                () = inner.shutdown.cancelled() => return Err("registry stopping".into()),
                () = tokio::time::sleep(backoff) => {}
            }
            let current = registry.read(|c| {
                c.get(&delivery.ticket.receiver).is_some_and(|i| {
                    i.receiver()
                        .is_some_and(|r| r.generation == delivery.ticket.generation)
                })
            });
            if !current {
                return Err("the receiver re-registered or left".into());
            }
        }
        let started = Instant::now();
        let request = inner
            .client
            .post(delivery.update_url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send();
        let result = match tokio::time::timeout(config.delivery_timeout, request).await {
            Ok(Ok(response)) if response.status().is_success() => {
                drain(response).await;
                Ok(())
            }
            Ok(Ok(response)) => Err(format!("HTTP {}", response.status().as_u16())),
            Ok(Err(error)) => Err(describe(error)),
            Err(_) => Err(format!(
                "timed out after {}",
                humantime::format_duration(config.delivery_timeout)
            )),
        };
        match result {
            Ok(()) => {
                inner.metrics.delivery_seconds.observe(started.elapsed());
                inner.metrics.patches_delivered.inc();
                return Ok(());
            }
            Err(error) => {
                inner.metrics.delivery_attempt_failures.inc();
                last_error = error;
            }
        }
    }
    Err(last_error)
}
