//! Patch delivery under faults: receivers that hang or fail, registrants that
//! never answer, and many clients at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::*;

const SOON: Duration = Duration::from_secs(15);

/// Delivery attempts may take 5 s each here, so anything that waited behind a
/// hung receiver would visibly wait seconds.
const SLOW_DELIVERY: &[&str] = &["--delivery-timeout", "5s"];

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_delay_another_receivers_patch() {
    let reg = registry(SLOW_DELIVERY).await;
    let hung = FakeService::start().await;
    let healthy = FakeService::start().await;
    register_raw(&reg.url, &hung.registration("Hung", &["Log"])).await;
    register_raw(&reg.url, &healthy.registration("Healthy", &["Log"])).await;
    hung.set_patch(Mode::Hang);
    let log = FakeService::start().await;
    let started = Instant::now();
    register_raw(&reg.url, &log.registration("Log", &[])).await;
    wait_providers(&healthy, "Log", &[&log.url], SOON).await;
    let (arrived, _) = healthy.patches().last().cloned().unwrap();
    // The hung receiver's first attempt alone lasts 5 s; the healthy one got
    // its patch long before that attempt could have ended.
    assert!(
        arrived.duration_since(started) < Duration::from_millis(2500),
        "the healthy receiver waited {:?}",
        arrived.duration_since(started)
    );
    assert!(hung.providers("Log").is_empty());
}

#[tokio::test]
async fn a_registrant_that_never_answers_delays_no_other_registration() {
    let reg = registry(SLOW_DELIVERY).await;
    let hung = FakeService::start().await;
    hung.set_patch(Mode::Hang);
    let url = reg.url.clone();
    let body = hung.registration("Hung", &[]);
    // Its registration waits for its initial patch (up to the delivery timeout).
    let hung_registration = tokio::spawn(async move {
        let started = Instant::now();
        let status = register_raw(&url, &body).await.status();
        (status, started.elapsed())
    });
    // Let its request reach the registry first.
    eventually(SOON, "the hung registrant to be listed", || async {
        instance(&reg.url, &hung.url).await.map(|_| ())
    })
    .await;
    let others_started = Instant::now();
    for _ in 0..5 {
        let other = FakeService::start().await;
        let response = register_raw(&reg.url, &other.registration("Other", &["Hung"])).await;
        assert_eq!(response.status(), 200);
        assert_eq!(other.providers("Hung"), vec![hung.url.clone()]);
    }
    let others = others_started.elapsed();
    let (status, hung_took) = hung_registration.await.unwrap();
    assert_eq!(status, 200, "it is registered all the same");
    assert!(
        others < Duration::from_millis(2500) && hung_took >= Duration::from_secs(4),
        "five other registrations took {others:?}, the hung one {hung_took:?}"
    );
}

#[tokio::test]
async fn a_receiver_that_missed_patches_is_resynced_when_it_answers_again() {
    let reg = registry(&["--delivery-timeout", "200ms", "--delivery-attempts", "2"]).await;
    let receiver = FakeService::start().await;
    register_raw(&reg.url, &receiver.registration("Portal", &["Log"])).await;
    receiver.set_patch(Mode::Status(500));
    let a = FakeService::start().await;
    let b = FakeService::start().await;
    register_raw(&reg.url, &a.registration("Log", &[])).await;
    register_raw(&reg.url, &b.registration("Log", &[])).await;
    deregister_raw(&reg.url, &a.url).await;
    eventually(SOON, "the receiver to be owed a resync", || async {
        let e = instance(&reg.url, &receiver.url).await?;
        (e["Delivery"]["ResyncOwed"] == true).then_some(())
    })
    .await;
    assert!(receiver.providers("Log").is_empty(), "it missed everything");
    receiver.set_patch(Mode::Ok);
    // Its heartbeat never failed, so the resync comes after the back-off.
    wait_providers(&receiver, "Log", &[&b.url], SOON).await;
    let e = instance(&reg.url, &receiver.url).await.unwrap();
    assert_eq!(e["Delivery"]["ResyncOwed"], false);
    let events = events(&reg.url).await;
    assert!(events.iter().any(|e| e["kind"] == "delivery_failed"));
    assert!(events.iter().any(|e| e["kind"] == "resynced"));
}

/// The original registry appended to a slice under a lock it did not always
/// take and kept half-failed registrations; here many clients registering and
/// deregistering at once leave a consistent catalog, and a dependent that saw
/// every change holds exactly what the catalog holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_and_deregistrations_leave_a_consistent_catalog() {
    // Eight clients writing as fast as they can, all from 127.0.0.1: the
    // per-client write limit would answer most of them 429; it is off here
    // (it has its own test in `limits`).
    let reg = registry(&["--max-writes-per-client", "0"]).await;
    let watcher = FakeService::start().await;
    register_raw(&reg.url, &watcher.registration("Watcher", &["Worker"])).await;
    let run_for = Duration::from_secs(4);
    let mut clients = Vec::new();
    for client in 0..8u16 {
        let url = reg.url.clone();
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut mine: BTreeSet<String> = BTreeSet::new();
            let started = Instant::now();
            let mut n = 0u32;
            let mut ops = 0u32;
            while started.elapsed() < run_for {
                n += 1;
                // Unroutable-by-design URLs (port 9, the discard port): no
                // heartbeat, so only registration and deregistration matter.
                let instance = format!("http://127.0.0.{}:9/{client}/{}", 1 + client, n % 12);
                let register = !n.is_multiple_of(3);
                let response = if register {
                    http.post(format!("{url}/services"))
                        .body(
                            serde_json::json!({
                                "ServiceName": "Worker",
                                "ServiceURL": instance,
                                "RequiredServices": null,
                            })
                            .to_string(),
                        )
                        .send()
                        .await
                        .unwrap()
                } else {
                    http.delete(format!("{url}/services"))
                        .body(instance.clone())
                        .send()
                        .await
                        .unwrap()
                };
                let status = response.status().as_u16();
                if register {
                    assert_eq!(status, 200);
                    mine.insert(instance);
                } else if mine.remove(&instance) {
                    assert_eq!(status, 200);
                } else {
                    assert_eq!(status, 404);
                }
                ops += 1;
            }
            (mine, ops)
        }));
    }
    // Meanwhile the registry keeps answering promptly.
    let probe = {
        let url = reg.url.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let started = Instant::now();
            let mut probes = 0;
            while started.elapsed() < run_for {
                let r = http
                    .get(format!("{url}/healthz"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .expect("the registry answers during the storm");
                assert!(r.status().is_success());
                probes += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            probes
        })
    };
    let mut expected: BTreeSet<String> = BTreeSet::new();
    let mut total_ops = 0;
    for client in clients {
        let (mine, ops) = client.await.unwrap();
        expected.extend(mine);
        total_ops += ops;
    }
    assert!(probe.await.unwrap() > 10);
    assert!(total_ops > 200, "only {total_ops} operations ran");
    let listed: BTreeSet<String> = catalog(&reg.url)
        .await
        .into_iter()
        .filter(|i| i["ServiceName"] == "Worker")
        .map(|i| i["ServiceURL"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, expected);
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    wait_providers(&watcher, "Worker", &expected, SOON).await;
}
