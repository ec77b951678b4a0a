//! Health checking: the loop that hands out due checks, one check, and the
//! ticker.
//!
//! The catalog decides *when* (its schedule) and *what it means* (thresholds);
//! this module only runs the checks. A semaphore bounds checks in flight; each
//! check has its own timeout, so a hung instance holds one permit for at most
//! `--check-timeout` and never delays the checks of others.
//!
//! [`check_step`] is one step of the loop and does no I/O: it takes the due
//! checks out of the catalog and says how long to sleep. The loop wakes when
//! that time comes, when a check finishes while saturated, or when the
//! schedule gains an earlier entry — a fast recheck scheduled by a failed
//! check included.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::catalog::CheckRequest;
use crate::catalog::health::CheckOutcome;
use crate::shell::Registry;

/// How often the ticker runs (expiry, resync back-offs).
pub const TICK: Duration = Duration::from_millis(250);
/// The longest the check loop sleeps without looking at the schedule.
pub const MAX_IDLE: Duration = Duration::from_secs(1);

/// What one step of the check loop did.
#[derive(Debug)]
pub struct Step {
    /// Checks to run now, each holding its permit.
    pub started: Vec<(CheckRequest, OwnedSemaphorePermit)>,
    /// How long to wait before the next step (unless woken earlier).
    pub wait: Duration,
}

/// One step of the check loop: takes every check due now (as many as there
/// are permits for) and says how long to wait before the next step.
pub fn check_step(registry: &Registry, permits: &Arc<Semaphore>) -> Step {
    let available = permits.available_permits();
    let (due, next) = registry.run_now(|core, now| {
        let due = core.catalog.take_due_checks(now, available);
        ((due, core.catalog.next_check_due()), Default::default())
    });
    let mut started = Vec::with_capacity(due.len());
    for request in due {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            break;
        };
        registry
            .metrics()
            .check_lag
            .observe(request.started.since(request.due));
        started.push((request, permit));
    }
    let wait = match next {
        Some(at) => at.since(registry.now()).min(MAX_IDLE),
        None => MAX_IDLE,
    };
    Step { started, wait }
}

/// Runs checks until shutdown; `probe` performs one (the real one is
/// [`crate::workers::outbound::probe`]; tests pass their own).
pub async fn run_checker<P, F>(registry: Registry, probe: P)
where
    P: Fn(CheckRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = CheckOutcome> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(
        registry.config().max_checks_in_flight as usize,
    ));
    let shutdown = registry.shutdown_token().clone();
    loop {
        let step = check_step(&registry, &permits);
        for (request, permit) in step.started {
            let probe = probe.clone();
            registry.spawn(run_check(registry.clone(), request, permit, probe));
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = registry.schedule_changed() => {}
            () = tokio::time::sleep(step.wait) => {}
            // Saturated: wake when a check finishes.
            permit = permits.clone().acquire_owned(), if permits.available_permits() == 0 => drop(permit),
        }
    }
}

/// Runs one check and records its result.
pub async fn run_check<P, F>(
    registry: Registry,
    request: CheckRequest,
    _permit: OwnedSemaphorePermit,
    probe: P,
) where
    P: Fn(CheckRequest) -> F,
    F: Future<Output = CheckOutcome>,
{
    let metrics = registry.metrics();
    metrics.checks_in_flight.inc();
    let outcome = probe(request.clone()).await;
    metrics.checks_in_flight.dec();
    metrics.count_check(&outcome);
    if registry.record_check(&request, &outcome).await.is_err() {
        tracing::debug!("check result not recorded: the registry is stopping");
    }
}

/// Expires instances critical for too long, restarts resyncs whose back-off
/// has passed and drops cached answers the catalog moved past, every
/// [`TICK`], until shutdown.
pub async fn run_ticker(registry: Registry) {
    let shutdown = registry.shutdown_token().clone();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let ticked = registry
            .run(false, |core, now| ((), core.catalog.tick(now)))
            .await;
        if ticked.is_err() {
            return;
        }
        registry.forget_stale_reads();
    }
}
