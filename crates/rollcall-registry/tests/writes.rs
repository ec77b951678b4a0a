//! A write the store refuses is undone to exactly what was there, and the
//! commit and its undo run to completion even when the client hangs up while
//! the commit is pending: afterwards the live catalog equals the store.
//!
//! The store is made to refuse for real: the test holds SQLite's write lock
//! (`BEGIN EXCLUSIVE` from another connection), so the registry's commit waits
//! for its busy timeout and fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use rollcall_registry::RegistryConfig;
use rollcall_testkit::{TestRegistry, eventually, register_raw};

const WAIT: Duration = Duration::from_secs(60);

fn registration(name: &str, url: &str, requires: &[&str]) -> serde_json::Value {
    serde_json::json!({"ServiceName": name, "ServiceURL": url, "RequiredServices": requires})
}

/// URL → (name, requirements) as the live catalog has them.
async fn live(registry: &TestRegistry) -> BTreeMap<String, (String, Vec<String>)> {
    registry
        .services()
        .await
        .iter()
        .map(|i| {
            let required = i["RequiredServices"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            (
                i["ServiceURL"].as_str().unwrap().to_owned(),
                (i["ServiceName"].as_str().unwrap().to_owned(), required),
            )
        })
        .collect()
}

/// The same, as `registry.db` has it.
fn stored(db: &rusqlite::Connection) -> BTreeMap<String, (String, Vec<String>)> {
    let mut query = db
        .prepare("SELECT url, registration FROM instances")
        .unwrap();
    query
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .unwrap()
        .map(|row| {
            let (url, registration) = row.unwrap();
            let r: serde_json::Value = serde_json::from_str(&registration).unwrap();
            let required = r["RequiredServices"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            (
                url,
                (r["ServiceName"].as_str().unwrap().to_owned(), required),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_whose_clients_hang_up_mid_commit_are_undone_to_what_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RegistryConfig::for_tests();
    config.in_memory = false;
    config.data_dir = dir.path().to_owned();
    let registry = TestRegistry::start(config).await;
    let known = "http://127.0.0.1:9/known";
    let kept = "http://127.0.0.1:9/kept";
    for url in [known, kept] {
        let answer = register_raw(&registry.url, &registration("Known", url, &["A"])).await;
        assert_eq!(answer.status(), 200);
    }
    let before = live(&registry).await;
    let db = rusqlite::Connection::open(dir.path().join("registry.db")).unwrap();
    assert_eq!(stored(&db), before);

    // The store cannot write; each client gives up long before its commit
    // fails.
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let writes = [
        // A known instance registering again, changed.
        impatient
            .post(format!("{}/services", registry.url))
            .json(&registration("Known", known, &["B"])),
        // A new one.
        impatient
            .post(format!("{}/services", registry.url))
            .json(&registration("New", "http://127.0.0.1:9/new", &[])),
        // A deregistration.
        impatient
            .delete(format!("{}/services", registry.url))
            .body(kept),
    ];
    for write in writes {
        let sent = write.send().await;
        assert!(sent.is_err(), "the client hung up before the answer");
    }
    // Every write's commit fails and is undone: the live catalog is back
    // to what it was.
    eventually(WAIT, "the live catalog to be as it was", || async {
        (live(&registry).await == before).then_some(())
    })
    .await;
    db.execute_batch("ROLLBACK").unwrap();
    // And the store says the same once whatever was queued is written.
    eventually(WAIT, "the store to equal the live catalog", || async {
        (stored(&db) == before).then_some(())
    })
    .await;
    assert_eq!(live(&registry).await, before);
    registry.stop().await;
}
