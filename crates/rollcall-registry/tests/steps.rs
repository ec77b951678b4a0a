//! The check loop and the delivery step under paused time, against fake
//! heartbeats and fake receivers (functions, no sockets): timings are exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollcall_proto::{Patch, PatchEntry, Registration, ServiceName, ServiceUrl};
use rollcall_registry::callbacks::Claimed;
use rollcall_registry::catalog::health::CheckOutcome;
use rollcall_registry::catalog::{Delivery, PatchTicket};
use rollcall_registry::workers::checker;
use rollcall_registry::workers::notifier::{Attempts, Delivered, DeliveryError, deliver};
use rollcall_registry::workers::outbound::CallError;
use rollcall_registry::{Registry, RegistryConfig};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A registration as the API hands it on: in process there is no address
/// for the callback guard to compare with.
fn claimed(registration: Registration) -> Claimed<Registration> {
    let in_process = rollcall_http::access::Peer {
        addr: None,
        authenticated: false,
    };
    rollcall_registry::callbacks::claim_registration(registration, in_process, &[], None).unwrap()
}

fn registration(port: u16) -> Registration {
    Registration::from_json(
        format!(
            r#"{{"ServiceName":"S","ServiceURL":"http://127.0.0.1:{port}",
                 "HeartbeatURL":"http://127.0.0.1:{port}/heartbeat"}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

fn started() -> (Registry, CancellationToken) {
    let shutdown = CancellationToken::new();
    let (registry, _background, _starts) =
        Registry::start(RegistryConfig::for_tests(), shutdown.clone()).unwrap();
    (registry, shutdown)
}

#[tokio::test(start_paused = true)]
async fn a_failed_check_is_rechecked_on_time_not_at_the_next_idle_wake() {
    let (registry, shutdown) = started();
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = times.clone();
    let probe = move |_request| {
        seen.lock().unwrap().push(Instant::now());
        async { CheckOutcome::fail(Duration::from_millis(1), "connection refused") }
    };
    tokio::spawn(checker::run_checker(registry.clone(), probe));
    registry.register(claimed(registration(1))).await.unwrap();
    // Paused time: the deadline is virtual, and passes only if checks stop.
    tokio::time::timeout(Duration::from_secs(30), async {
        while times.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("three checks within 30 s");
    let times = times.lock().unwrap().clone();
    // Registered: checked at once. Failed: rechecked 250 ms later — the loop
    // wakes for its own recheck; otherwise it would sleep up to a second.
    let recheck = times[1] - times[0];
    assert!(
        recheck >= Duration::from_millis(250) && recheck < Duration::from_millis(260),
        "recheck after {recheck:?}"
    );
    // Critical after the second failure: then the normal interval (±10 %).
    let settled = times[2] - times[1];
    assert!(
        settled >= Duration::from_millis(900) && settled < Duration::from_millis(1110),
        "next check after {settled:?}"
    );
    let shown = registry.read(|c| c.get(&registration(1).url).unwrap().shown());
    assert_eq!(shown.as_str(), "critical");
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_check_step_hands_out_only_what_the_permits_allow() {
    let (registry, shutdown) = started();
    for port in 1..=3 {
        registry
            .register(claimed(registration(port)))
            .await
            .unwrap();
    }
    let permits = Arc::new(Semaphore::new(2));
    let step = checker::check_step(&registry, &permits);
    assert_eq!(step.started.len(), 2, "two permits, two checks");
    assert_eq!(step.wait, Duration::ZERO, "the third is due already");
    let second = checker::check_step(&registry, &permits);
    assert!(second.started.is_empty(), "no permit left");
    drop(step);
    shutdown.cancel();
}

fn delivery() -> Delivery {
    let url = ServiceUrl::parse("http://127.0.0.1:9").unwrap();
    Delivery {
        ticket: PatchTicket {
            receiver: url.clone(),
            generation: 1,
            seq: 1,
        },
        update_url: ServiceUrl::parse("http://127.0.0.1:9/services").unwrap(),
        patch: Patch {
            added: vec![PatchEntry::new(ServiceName::parse("Log").unwrap(), url)],
            ..Patch::default()
        },
    }
}

type Posted = Pin<Box<dyn Future<Output = Result<(), CallError>>>>;
/// When each attempt started.
type Calls = Arc<Mutex<Vec<Instant>>>;

/// A receiver that fails `failures` times (each attempt taking `takes`),
/// then answers; it records when each attempt started.
fn receiver(failures: usize, takes: Duration) -> (impl Fn(ServiceUrl, Vec<u8>) -> Posted, Calls) {
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    let post = move |_url: ServiceUrl, body: Vec<u8>| {
        let n = {
            let mut calls = seen.lock().unwrap();
            calls.push(Instant::now());
            calls.len()
        };
        assert!(serde_json::from_slice::<Patch>(&body).is_ok());
        Box::pin(async move {
            tokio::time::sleep(takes).await;
            if n <= failures {
                Err(CallError::Status(500))
            } else {
                Ok(())
            }
        }) as Posted
    };
    (post, calls)
}

fn attempts() -> Attempts {
    Attempts {
        count: 4,
        backoff: Duration::from_millis(100),
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_receiver_is_retried_after_about_100_then_200_ms() {
    let (post, calls) = receiver(2, Duration::ZERO);
    let stop = CancellationToken::new();
    let done = deliver(&delivery(), &attempts(), &post, || true, &stop).await;
    assert_eq!(
        done,
        Delivered {
            result: Ok(()),
            failed_attempts: 2
        }
    );
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    let about = |d: Duration, ms: u64| {
        d >= Duration::from_millis(ms * 8 / 10) && d < Duration::from_millis(ms * 12 / 10)
    };
    assert!(about(calls[1] - calls[0], 100), "{:?}", calls[1] - calls[0]);
    assert!(about(calls[2] - calls[1], 200), "{:?}", calls[2] - calls[1]);
}

#[tokio::test(start_paused = true)]
async fn a_hung_receiver_is_given_up_on_after_four_timeouts_and_the_back_offs() {
    // Each attempt takes the whole delivery timeout (1 s) and fails.
    let (post, calls) = receiver(usize::MAX, Duration::from_secs(1));
    let stop = CancellationToken::new();
    let began = Instant::now();
    let done = deliver(&delivery(), &attempts(), &post, || true, &stop).await;
    assert_eq!(
        done.result,
        Err(DeliveryError::Call(CallError::Status(500)))
    );
    assert_eq!(done.failed_attempts, 4);
    assert_eq!(calls.lock().unwrap().len(), 4);
    // README: "a dead receiver is given up on within about 4.7 s": four
    // attempts of 1 s, and back-offs of about 100, 200 and 400 ms (±20 %).
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(4_560) && took <= Duration::from_millis(4_840),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_receiver_that_re_registered_is_not_sent_the_old_patch_again() {
    let (post, calls) = receiver(usize::MAX, Duration::ZERO);
    let stop = CancellationToken::new();
    let done = deliver(&delivery(), &attempts(), &post, || false, &stop).await;
    assert_eq!(done.result, Err(DeliveryError::Superseded));
    assert_eq!(calls.lock().unwrap().len(), 1);
}
