//! One contract suite, run against every store backend.

use std::time::Duration;

use rollcall_proto::{PatchEntry, Registration, ServiceName, ServiceUrl, Timestamp};

use super::Store;
use super::memory::MemoryStore;
use super::sqlite::{SqliteStore, Sync};
use crate::catalog::health::Health;
use crate::catalog::records::{StoreOp, StoredInstance, ViewChange};

fn reg(name: &str, port: u16) -> Registration {
    Registration::from_json(
        format!(
            r#"{{"ServiceName":"{name}","ServiceURL":"http://127.0.0.1:{port}",
                "RequiredServices":["Log"],"ServiceUpdateURL":"http://127.0.0.1:{port}/services",
                "HeartbeatURL":"http://127.0.0.1:{port}/heartbeat",
                "Meta":{{"version":"{port}","zone":"eu-1"}}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

fn put(name: &str, port: u16) -> StoreOp {
    put_as(name, port, false)
}

fn put_as(name: &str, port: u16, replaced: bool) -> StoreOp {
    StoreOp::PutInstance {
        instance: StoredInstance {
            registration: reg(name, port),
            registered_at: Timestamp(1_000),
            status: Health::Passing,
            status_since: Timestamp(1_000),
            maintenance: None,
        },
        replaced,
    }
}

fn url(port: u16) -> ServiceUrl {
    ServiceUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap()
}

fn entry(name: &str, port: u16) -> PatchEntry {
    PatchEntry::new(ServiceName::parse(name).unwrap(), url(port))
}

/// The store's contract; `etcds_revision`: the store's revision is etcd's
/// own (it grows with every write), not the one the catalog numbers.
fn contract(store: &dyn Store, etcds_revision: bool) {
    assert_eq!(store.load().unwrap().instances.len(), 0);
    let before = store.load().unwrap().revision;

    store
        .apply(&[put("A", 1), put("B", 2), StoreOp::SetRevision(2)])
        .unwrap();
    let state = store.load().unwrap();
    assert_eq!(state.instances.len(), 2);
    if etcds_revision {
        assert_eq!(state.revision, before + 1, "one transaction, one revision");
    } else {
        assert_eq!(state.revision, 2);
    }
    let a = state
        .instances
        .iter()
        .find(|i| i.registration.url == url(1))
        .unwrap();
    assert_eq!(a.registration, reg("A", 1), "the registration round-trips");

    // Replacing keeps one row and resets the view.
    store
        .apply(&[StoreOp::ApplyView(ViewChange {
            receiver: url(1),
            added: vec![entry("Log", 9), entry("Log", 8)],
            removed: vec![],
            replace: false,
        })])
        .unwrap();
    assert_eq!(store.load().unwrap().views.len(), 2);
    store
        .apply(&[StoreOp::ApplyView(ViewChange {
            receiver: url(1),
            added: vec![],
            removed: vec![entry("Log", 8)],
            replace: false,
        })])
        .unwrap();
    assert_eq!(store.load().unwrap().views, vec![(url(1), entry("Log", 9))]);
    store
        .apply(&[StoreOp::ApplyView(ViewChange {
            receiver: url(1),
            added: vec![entry("Log", 7)],
            removed: vec![],
            replace: true,
        })])
        .unwrap();
    assert_eq!(store.load().unwrap().views, vec![(url(1), entry("Log", 7))]);
    store.apply(&[put_as("A2", 1, true)]).unwrap();
    let state = store.load().unwrap();
    assert_eq!(state.instances.len(), 2);
    assert!(state.views.is_empty());

    // Status changes.
    store
        .apply(&[StoreOp::SetStatus {
            url: url(2),
            status: Health::Critical,
            since: Timestamp(5_000),
        }])
        .unwrap();
    let state = store.load().unwrap();
    let b = state
        .instances
        .iter()
        .find(|i| i.registration.url == url(2))
        .unwrap();
    assert_eq!(
        (b.status, b.status_since),
        (Health::Critical, Timestamp(5_000))
    );

    // The maintenance switch, on and off.
    let maintenance_of = |store: &dyn Store| {
        store
            .load()
            .unwrap()
            .instances
            .iter()
            .find(|i| i.registration.url == url(2))
            .unwrap()
            .maintenance
    };
    store
        .apply(&[StoreOp::SetMaintenance {
            url: url(2),
            since: Some(Timestamp(6_000)),
        }])
        .unwrap();
    assert_eq!(maintenance_of(store), Some(Timestamp(6_000)));
    store
        .apply(&[StoreOp::SetMaintenance {
            url: url(2),
            since: None,
        }])
        .unwrap();
    assert_eq!(maintenance_of(store), None);

    // A view for an unknown receiver is ignored, deletion removes the view too.
    store
        .apply(&[
            StoreOp::ApplyView(ViewChange {
                receiver: url(3),
                added: vec![entry("Log", 9)],
                removed: vec![],
                replace: false,
            }),
            StoreOp::ApplyView(ViewChange {
                receiver: url(2),
                added: vec![entry("Log", 9)],
                removed: vec![],
                replace: false,
            }),
            StoreOp::DeleteInstance(url(2)),
        ])
        .unwrap();
    let state = store.load().unwrap();
    assert_eq!(state.instances.len(), 1);
    assert!(state.views.is_empty());
}

#[test]
fn memory_store_keeps_the_contract() {
    contract(&MemoryStore::default(), false);
}

#[test]
fn sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&SqliteStore::open(dir.path(), Sync::Normal).unwrap(), false);
}

fn etcd_store(
    cluster: &rollcall_testproc::etcd::EtcdCluster,
    prefix: &str,
) -> crate::cluster::store::EtcdStore {
    let endpoints = cluster
        .endpoints()
        .iter()
        .map(|e| ServiceUrl::parse(e).unwrap())
        .collect();
    let etcd =
        crate::etcd::Etcd::new(endpoints, reqwest::Client::new(), Duration::from_secs(2)).unwrap();
    crate::cluster::store::EtcdStore::new(
        std::sync::Arc::new(etcd),
        prefix,
        tokio::runtime::Handle::current(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_keeps_the_contract() {
    let cluster = rollcall_testproc::etcd::EtcdCluster::start(3).await;
    let store = etcd_store(&cluster, "/contract/");
    tokio::task::spawn_blocking(move || {
        contract(&store, true);
        // A group larger than one etcd transaction is written in parts.
        let many: Vec<StoreOp> = (100..400).map(|p| put("Many", p)).collect();
        store.apply(&many).unwrap();
        assert_eq!(store.load().unwrap().instances.len(), 301);
        // A new instance whose key another replica wrote meanwhile (the
        // unread write finds it there) is planned and written all the same:
        // the later registration wins, once.
        let moved = reg("Moved", 100);
        store
            .apply(&[StoreOp::PutInstance {
                instance: StoredInstance {
                    registration: moved.clone(),
                    registered_at: Timestamp(2_000),
                    status: Health::Passing,
                    status_since: Timestamp(2_000),
                    maintenance: None,
                },
                replaced: false,
            }])
            .unwrap();
        let state = store.load().unwrap();
        assert_eq!(state.instances.len(), 301);
        let held = state
            .instances
            .iter()
            .find(|i| i.registration.url == url(100))
            .unwrap();
        assert_eq!(held.registration, moved);
        // The same URL twice in one batch is planned too (etcd refuses a key
        // twice in one transaction).
        store
            .apply(&[put("Twice", 7), put_as("Twice", 7, false)])
            .unwrap();
        assert_eq!(store.load().unwrap().instances.len(), 302);
    })
    .await
    .unwrap();
}

/// Two replicas acknowledging patches of the same receiver at once: every
/// acknowledged entry is kept (a write planned on a stale read is planned
/// again), and a SIGKILLed etcd leader loses none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_writers_on_two_replicas_lose_no_update() {
    let mut cluster = rollcall_testproc::etcd::EtcdCluster::start(3).await;
    let stores = [
        etcd_store(&cluster, "/race/"),
        etcd_store(&cluster, "/race/"),
    ];
    let setup = etcd_store(&cluster, "/race/");
    tokio::task::spawn_blocking(move || setup.apply(&[put("R", 1)]).unwrap())
        .await
        .unwrap();
    let leader = cluster.leader().await.unwrap();
    let writers: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(w, store)| {
            tokio::task::spawn_blocking(move || {
                for i in 0..40u16 {
                    let op = StoreOp::ApplyView(ViewChange {
                        receiver: url(1),
                        added: vec![entry("Log", 1000 + 100 * w as u16 + i)],
                        removed: vec![],
                        replace: false,
                    });
                    // A write that found no quorum is tried again, as the
                    // writer's caller would.
                    while store.apply(std::slice::from_ref(&op)).is_err() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(leader);
    for writer in writers {
        writer.await.unwrap();
    }
    let check = etcd_store(&cluster, "/race/");
    let state = tokio::task::spawn_blocking(move || check.load().unwrap())
        .await
        .unwrap();
    assert_eq!(state.views.len(), 80, "every acknowledged entry is kept");
}

#[test]
fn sqlite_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path(), Sync::Full).unwrap();
        store
            .apply(&[put("A", 1), StoreOp::SetRevision(41)])
            .unwrap();
    }
    let store = SqliteStore::open(dir.path(), Sync::Normal).unwrap();
    let state = store.load().unwrap();
    assert_eq!(state.instances.len(), 1);
    assert_eq!(state.revision, 41);
}

#[test]
fn a_batch_is_all_or_nothing_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Sync::Normal).unwrap();
    store.apply(&[put("A", 1)]).unwrap();
    // Break the table under the store's feet so the second op fails.
    {
        let conn = rusqlite::Connection::open(dir.path().join("registry.db")).unwrap();
        conn.execute_batch("DROP TABLE meta").unwrap();
    }
    let result = store.apply(&[put("B", 2), StoreOp::SetRevision(2)]);
    assert!(result.is_err());
    let conn = rusqlite::Connection::open(dir.path().join("registry.db")).unwrap();
    let count = |url: &str| -> i64 {
        conn.query_row(
            "SELECT count(*) FROM instances WHERE url = ?1",
            [url],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(count("http://127.0.0.1:1"), 1, "earlier data is intact");
    assert_eq!(
        count("http://127.0.0.1:2"),
        0,
        "the failed batch left nothing behind"
    );
}

#[tokio::test]
async fn the_writer_commits_in_order_and_acknowledges() {
    use super::writer::{Batch, StoreWriter};
    let store = std::sync::Arc::new(MemoryStore::default());
    let (writer, handle) = StoreWriter::spawn(store.clone(), 16).unwrap();
    let mut acks = Vec::new();
    for port in 1..=50 {
        let permit = writer.reserve().await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        permit.send(Batch {
            ops: vec![put("S", port), StoreOp::SetRevision(u64::from(port))],
            done: Some(tx),
        });
        acks.push(rx);
    }
    for ack in acks {
        tokio::time::timeout(Duration::from_secs(5), ack)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    let state = store.load().unwrap();
    assert_eq!(state.instances.len(), 50);
    assert_eq!(state.revision, 50, "applied in order");
    assert!(writer.metrics.commits.get() >= 1);
    drop(writer);
    handle.join().unwrap();
}
