//! Health checking: the loop that hands out due checks, and one check.
//!
//! The catalog decides *when* (its schedule) and *what it means* (thresholds);
//! this module only runs HTTP `GET`s. A semaphore bounds checks in flight; each
//! check has its own timeout, so a hung instance holds one permit for at most
//! `--check-timeout` and never delays the checks of others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rollcall_proto::ServiceUrl;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::catalog::CheckRequest;
use crate::catalog::health::CheckOutcome;
use crate::shell::Registry;

/// How often the ticker runs (expiry, resync back-offs).
pub const TICK: Duration = Duration::from_millis(250);
/// The longest the check loop sleeps without looking at the schedule.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// Most bytes of a heartbeat answer read (to keep the connection reusable).
const MAX_HEARTBEAT_BODY: usize = 16 * 1024;

/// Hands out due checks until shutdown.
pub(crate) async fn run_checker(registry: Registry) {
    let inner = registry.inner();
    let permits = Arc::new(Semaphore::new(inner.config.max_checks_in_flight as usize));
    loop {
        let wait = check_step(&registry, &permits);
        tokio::select! {
            () = inner.shutdown.cancelled() => return,
            () = inner.check_wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
            // Saturated: wake when a check finishes.
            permit = permits.clone().acquire_owned(), if permits.available_permits() == 0 => drop(permit),
        }
    }
}

/// One step of the check loop: starts every check due now (as many as there
/// are permits for) and says how long to wait before the next step.
pub fn check_step(registry: &Registry, permits: &Arc<Semaphore>) -> Duration {
    let available = permits.available_permits();
    let now = registry.now();
    let (due, next) = {
        let mut core = registry.lock();
        let due = core.catalog.take_due_checks(now, available);
        (due, core.catalog.next_check_due())
    };
    let inner = registry.inner();
    for request in due {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            break;
        };
        inner
            .metrics
            .check_lag
            .observe(request.started.since(request.due));
        inner
            .tasks
            .spawn(run_check(registry.clone(), request, permit));
    }
    match next {
        Some(at) => at.since(registry.now()).min(MAX_IDLE),
        None => MAX_IDLE,
    }
}

async fn run_check(registry: Registry, request: CheckRequest, _permit: OwnedSemaphorePermit) {
    let inner = registry.inner();
    inner.metrics.checks_in_flight.inc();
    let outcome = probe(
        &inner.client,
        &request.heartbeat_url,
        inner.config.check_timeout,
    )
    .await;
    inner.metrics.checks_in_flight.dec();
    inner.metrics.count_check(&outcome);
    let result = registry
        .run(false, |core, now| {
            ((), core.catalog.check_result(&request, &outcome, now))
        })
        .await;
    if result.is_err() {
        tracing::debug!("check result not recorded: the registry is stopping");
    }
}

/// `GET`s a heartbeat URL: any 2xx within `timeout` passes.
pub async fn probe(client: &reqwest::Client, url: &ServiceUrl, timeout: Duration) -> CheckOutcome {
    let started = Instant::now();
    let attempt = async {
        let response = client.get(url.as_str()).send().await.map_err(describe)?;
        let status = response.status();
        drain(response).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    };
    let result = match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "timed out after {}",
            humantime::format_duration(timeout)
        )),
    };
    let latency = started.elapsed();
    match result {
        Ok(()) => CheckOutcome::pass(latency),
        Err(error) => CheckOutcome::fail(latency, error),
    }
}

/// Reads a small answer to the end so the connection can be reused; a large
/// one is abandoned (and its connection closed).
pub(crate) async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > MAX_HEARTBEAT_BODY {
            break;
        }
    }
}

/// A short description of a client error: its innermost cause
/// ("Connection refused (os error 111)").
pub(crate) fn describe(error: reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = &error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if error.is_connect() {
        format!("connection failed: {cause}")
    } else if error.is_timeout() {
        "timed out".to_owned()
    } else {
        cause.to_string()
    }
}

/// Expires instances critical for too long and restarts resyncs whose back-off
/// has passed, every [`TICK`], until shutdown.
pub(crate) async fn run_ticker(registry: Registry) {
    let inner = registry.inner();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = inner.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let ticked = registry
            .run(false, |core, now| ((), core.catalog.tick(now)))
            .await;
        if ticked.is_err() {
            return;
        }
    }
}
