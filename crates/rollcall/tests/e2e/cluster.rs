//! The registry over etcd (`--etcd`), with real etcd processes: the catalog
//! outlives the registry process and its machine (another registry on the
//! same etcd takes over with everything acknowledged), and when etcd has no
//! quorum writes answer 503 naming etcd while reads go on, until etcd is
//! back — with no restart of the registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rollcall_testkit::etcd::EtcdCluster;

use crate::common::*;

async fn registry_on(etcd: &EtcdCluster, prefix: &str) -> ChildProcess {
    let endpoints = etcd.endpoints_flag();
    let mut args = vec!["--etcd", &endpoints, "--etcd-prefix", prefix];
    args.extend_from_slice(FAST_CHECKS);
    let mut full = vec!["registry", "--addr", "127.0.0.1:0"];
    full.extend(args);
    ChildProcess::start(&rollcall_bin(), &full, &[]).await
}

#[tokio::test]
async fn the_catalog_lives_in_etcd_and_outlives_the_registry() {
    let etcd = EtcdCluster::start(3).await;
    let mut first = registry_on(&etcd, "/outlive/").await;
    let fakes = [FakeService::start().await, FakeService::start().await];
    register_ok(&first.url, &fakes[0].registration("Provider", &[])).await;
    register_ok(
        &first.url,
        &fakes[1].registration("Dependent", &["Provider"]),
    )
    .await;
    wait_providers(
        &fakes[1],
        "Provider",
        &[&fakes[0].url],
        Duration::from_secs(10),
    )
    .await;

    // The registry's machine is gone: another registry on the same etcd
    // has every instance, with its health, and keeps checking them.
    first.kill();
    let second = registry_on(&etcd, "/outlive/").await;
    for fake in &fakes {
        wait_status(&second.url, &fake.url, "passing").await;
    }
    // A change through the new registry reaches the dependent.
    fakes[0].set_heartbeat(Mode::Status(500));
    wait_providers(&fakes[1], "Provider", &[], Duration::from_secs(15)).await;
}

#[tokio::test]
async fn without_etcd_quorum_writes_are_503_naming_etcd_and_reads_go_on_until_it_returns() {
    let mut etcd = EtcdCluster::start(3).await;
    let reg = registry_on(&etcd, "/quorum/").await;
    let fakes = [FakeService::start().await, FakeService::start().await];
    register_ok(&reg.url, &fakes[0].registration("A", &[])).await;

    // Two of three members stopped: no quorum.
    let leader = etcd.leader().await.unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    etcd.kill(others[0]);
    etcd.signal(others[1], "STOP");
    let refused = register_raw(&reg.url, &fakes[1].registration("B", &[])).await;
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store_unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("etcd"), "{message}");
    assert!(message.contains("nothing was changed"), "{message}");
    // Reads answer from the registry's own catalog; the refused write is not
    // in it.
    assert!(instance(&reg.url, &fakes[0].url).await.is_some());
    assert!(instance(&reg.url, &fakes[1].url).await.is_none());

    // Quorum back: the same registry takes writes again by itself.
    etcd.signal(others[1], "CONT");
    etcd.restart(others[0]);
    eventually(
        Duration::from_secs(30),
        "a registration to be taken again",
        || async {
            let answer = register_raw(&reg.url, &fakes[1].registration("B", &[])).await;
            (answer.status() == 200).then_some(())
        },
    )
    .await;
    assert!(instance(&reg.url, &fakes[1].url).await.is_some());
}
