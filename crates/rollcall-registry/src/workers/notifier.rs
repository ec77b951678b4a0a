//! Delivering patches: a dispatcher that starts one worker per receiver with
//! work, and the worker.
//!
//! The catalog keeps each receiver's queue and decides what to send; a worker
//! asks it for the next patch, has it delivered (one POST per attempt, with a
//! timeout, retried with back-off), then reports the outcome. One receiver has
//! at most one worker (the catalog hands out `WorkerStart`s only for receivers
//! without one), so patches arrive in order; workers of different receivers
//! share nothing, so a receiver that hangs delays only itself.
//!
//! [`deliver`] is the attempts-and-back-off step, and takes the one POST as a
//! function, so it is tested under paused time against fake receivers.

use std::future::Future;
use std::time::Duration;

use rollcall_proto::ServiceUrl;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Delivery, WorkerStart};
use crate::shell::{Registry, WorkerStarts};
use crate::workers::outbound::CallError;

/// First wait between attempts at one patch; doubles per attempt (±20 %).
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts at one patch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Starts a worker for every `WorkerStart` until shutdown; `post` sends one
/// patch body once (the real one is [`crate::workers::outbound::post_patch`]).
pub async fn run_dispatcher<P, F>(registry: Registry, mut starts: WorkerStarts, post: P)
where
    P: Fn(ServiceUrl, Vec<u8>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), CallError>> + Send + 'static,
{
    let shutdown = registry.shutdown_token().clone();
    loop {
        let start = tokio::select! {
            () = shutdown.cancelled() => return,
            start = starts.0.recv() => start,
        };
        let Some(start) = start else {
            return;
        };
        registry.spawn(run_worker(registry.clone(), start, post.clone()));
    }
}

/// Sends `start.receiver` its patches until it has none (or a newer worker
/// took over, or the registry stops).
pub async fn run_worker<P, F>(registry: Registry, start: WorkerStart, post: P)
where
    P: Fn(ServiceUrl, Vec<u8>) -> F,
    F: Future<Output = Result<(), CallError>>,
{
    let attempts = Attempts::from(registry.config());
    loop {
        if registry.shutdown_token().is_cancelled() {
            return;
        }
        registry.settle_own_writes().await;
        let next = registry.run_now(|core, now| {
            let next = core
                .catalog
                .next_delivery(&start.receiver, start.generation, now)
                .map(|d| (d, core.catalog.ownership_epoch()));
            (next, Default::default())
        });
        let Some((delivery, epoch)) = next else {
            return;
        };
        let current = || {
            registry.read(|c| {
                c.ownership_epoch() == epoch
                    && c.get(&delivery.ticket.receiver).is_some_and(|i| {
                        i.receiver()
                            .is_some_and(|r| r.generation == delivery.ticket.generation)
                    })
            })
        };
        let started = tokio::time::Instant::now();
        let delivered = deliver(
            &delivery,
            &attempts,
            &post,
            current,
            registry.shutdown_token(),
        )
        .await;
        let metrics = registry.metrics();
        metrics
            .delivery_attempt_failures
            .inc_by(u64::from(delivered.failed_attempts));
        if delivered.result.is_ok() {
            metrics.delivery_seconds.observe(started.elapsed());
            metrics.patches_delivered.inc();
        }
        let never_sent = delivered.failed_attempts == 0;
        let outcome = delivered.result;
        let ticket = delivery.ticket.clone();
        let recorded = registry
            .run(false, |core, now| {
                let effects = match &outcome {
                    // Started before who owns what last changed: whoever
                    // owns the receiver now has settled it from the recorded
                    // view (or will), and a late answer must not overwrite
                    // what it recorded since.
                    _ if core.catalog.ownership_epoch() != epoch => {
                        core.catalog.delivery_abandoned(&ticket)
                    }
                    Ok(()) => core.catalog.delivery_succeeded(&ticket, now),
                    // Never sent: the receiver's owner settles it.
                    Err(DeliveryError::Call(CallError::NotSent)) if never_sent => {
                        core.catalog.delivery_abandoned(&ticket)
                    }
                    Err(error) => core
                        .catalog
                        .delivery_failed(&ticket, &error.to_string(), now),
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

/// How a patch is attempted.
#[derive(Debug, Clone)]
pub struct Attempts {
    /// Attempts in all (at least one).
    pub count: u32,
    /// The first wait between attempts; doubled each time.
    pub backoff: Duration,
}

impl From<&crate::config::RegistryConfig> for Attempts {
    fn from(config: &crate::config::RegistryConfig) -> Self {
        Self {
            count: config.delivery_attempts.max(1),
            backoff: RETRY_BACKOFF,
        }
    }
}

/// Why a patch was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The last attempt's error. A `post` answers [`CallError::NotSent`],
    /// without sending anything, when this replica's lease may have lapsed
    /// (cluster mode): the receiver may have another owner by now.
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("registry stopping")]
    Stopping,
    #[error("the receiver re-registered or left")]
    Superseded,
    #[error("the patch could not be encoded: {0}")]
    Encode(String),
}

/// What [`deliver`] came to.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivered {
    pub result: Result<(), DeliveryError>,
    pub failed_attempts: u32,
}

/// Delivers one patch: `post` once per attempt (it has its own timeout),
/// retried after about 100, 200, 400 ms (±20 %, spread per receiver) while `still_current` says the receiver
/// is the one the patch was for, until `stop` fires.
pub async fn deliver<P, F>(
    delivery: &Delivery,
    attempts: &Attempts,
    post: &P,
    still_current: impl Fn() -> bool,
    stop: &CancellationToken,
) -> Delivered
where
    P: Fn(ServiceUrl, Vec<u8>) -> F,
    F: Future<Output = Result<(), CallError>>,
{
    let body = match serde_json::to_vec(&delivery.patch) {
        Ok(body) => body,
        Err(e) => {
            return Delivered {
                result: Err(DeliveryError::Encode(e.to_string())),
                failed_attempts: 0,
            };
        }
    };
    let mut last_error = None;
    let mut failed_attempts = 0;
    for attempt in 0..attempts.count.max(1) {
        if attempt > 0 {
            let backoff = rollcall_proto::jitter::backoff(
                attempts.backoff,
                MAX_BACKOFF,
                attempt,
                rollcall_proto::jitter::stable_hash(delivery.ticket.receiver.as_str()),
            );
            tokio::select! {
                () = stop.cancelled() => {
                    last_error = Some(DeliveryError::Stopping);
                    break;
                }
                () = tokio::time::sleep(backoff) => {}
            }
            if !still_current() {
                last_error = Some(DeliveryError::Superseded);
                break;
            }
        }
        match post(delivery.update_url.clone(), body.clone()).await {
            Ok(()) => {
                return Delivered {
                    result: Ok(()),
                    failed_attempts,
                };
            }
            // Nothing was sent, and nothing more will be from here.
            Err(CallError::NotSent) => {
                return Delivered {
                    result: Err(CallError::NotSent.into()),
                    failed_attempts,
                };
            }
            Err(error) => {
                failed_attempts += 1;
                last_error = Some(error.into());
            }
        }
    }
    Delivered {
        // At least one attempt ran unless stopped or superseded first.
        result: Err(last_error.unwrap_or(DeliveryError::Stopping)),
        failed_attempts,
    }
}
