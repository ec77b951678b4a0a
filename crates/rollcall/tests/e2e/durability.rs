//! Restarts: the registry killed with SIGKILL and started again on its data
//! dir; an SDK service that outlives an in-memory registry, or starts before
//! one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common::*;

const SOON: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_killed_registry_restarts_with_its_catalog_and_keeps_notifying() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = registry_on_disk(dir.path(), "127.0.0.1:0", &[]).await;
    let (log, grading) = log_and_grading(&reg.url).await;
    assert_eq!(grading.providers("LogService"), vec![log.url.clone()]);
    let before = catalog(&reg.url).await;

    reg.kill();
    let addr = format!("127.0.0.1:{}", port_of(&reg.url));
    let reg = registry_on_disk(dir.path(), &addr, &[]).await;
    let after = catalog(&reg.url).await;
    let urls = |c: &[serde_json::Value]| -> Vec<String> {
        c.iter()
            .map(|i| i["ServiceURL"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(urls(&after), urls(&before), "every registration survived");
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(a["RequiredServices"], b["RequiredServices"]);
        assert_eq!(a["ServiceUpdateURL"], b["ServiceUpdateURL"]);
        assert_eq!(a["RegisteredAt"], b["RegisteredAt"]);
    }
    // It carries on checking...
    let heartbeats = log.heartbeats();
    eventually(SOON, "checks after the restart", || {
        let more = log.heartbeats() > heartbeats;
        async move { more.then_some(()) }
    })
    .await;
    // ...and notifying, without telling the dependent what it already knows.
    let patches_before = grading.patches().len();
    let log2 = FakeService::start().await;
    register_raw(&reg.url, &log2.registration("LogService", &[])).await;
    wait_providers(&grading, "LogService", &[&log.url, &log2.url], SOON).await;
    deregister_raw(&reg.url, &log.url).await;
    wait_providers(&grading, "LogService", &[&log2.url], SOON).await;
    assert_eq!(grading.patches().len(), patches_before + 2);
}

#[tokio::test]
async fn an_sdk_service_registers_again_after_an_in_memory_registry_restarts() {
    let mut reg = registry(&[]).await;
    let hello = hello(&reg.url, "Hello", &[]).await;
    wait_registered(&reg.url, &hello.url).await;
    reg.kill();
    let addr = format!("127.0.0.1:{}", port_of(&reg.url));
    let reg = registry_at(&addr).await;
    // The new registry starts empty; the service notices its watch stream
    // broke and registers again by itself.
    eventually(SOON, "the service to register again", || async {
        instance(&reg.url, &hello.url).await.map(|_| ())
    })
    .await;
    let dependent = FakeService::start().await;
    register_raw(&reg.url, &dependent.registration("Portal", &["Hello"])).await;
    assert_eq!(dependent.providers("Hello"), vec![hello.url.clone()]);
}

#[tokio::test]
async fn an_sdk_service_started_before_the_registry_registers_once_it_is_up() {
    // A free port for the registry-to-be.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let registry_url = format!("http://127.0.0.1:{port}");
    let hello = hello(&registry_url, "Hello", &[]).await;
    // The service serves while it waits for the registry.
    let answer = get_text(&hello.url).await.unwrap();
    assert!(answer.contains("hello from Hello"), "{answer}");
    let addr = format!("127.0.0.1:{port}");
    let reg = registry_at(&addr).await;
    wait_registered(&reg.url, &hello.url).await;
}

#[tokio::test]
async fn a_stopped_sdk_service_deregisters_itself() {
    let reg = registry(&[]).await;
    let mut hello = hello(&reg.url, "Hello", &[]).await;
    wait_registered(&reg.url, &hello.url).await;
    let dependent = FakeService::start().await;
    register_raw(&reg.url, &dependent.registration("Portal", &["Hello"])).await;
    hello.signal("TERM");
    let status = hello.wait_exit(SOON).await.expect("it exits");
    assert!(status.success(), "{status:?}");
    // Gone from the catalog at once (deregistered, not expired), and the
    // dependent was told.
    assert!(instance(&reg.url, &hello.url).await.is_none());
    wait_providers(&dependent, "Hello", &[], SOON).await;
    let events = events(&reg.url).await;
    assert!(events.iter().any(|e| e["kind"] == "deregistered"));
    assert!(!events.iter().any(|e| e["kind"] == "critical"));
}
