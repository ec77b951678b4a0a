//! The etcd client against a real three-member etcd cluster: every call the
//! registry relies on, and what it does when a member, the leader or the
//! whole cluster goes away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use rollcall_etcd::{Etcd, EtcdError, Event, Txn};
use rollcall_proto::ServiceUrl;
use rollcall_testproc::etcd::EtcdCluster;

fn client(endpoints: &[String]) -> Etcd {
    let endpoints = endpoints
        .iter()
        .map(|e| ServiceUrl::parse(e).unwrap())
        .collect();
    Etcd::new(endpoints, reqwest::Client::new(), Duration::from_secs(2)).unwrap()
}

/// Puts `key` until etcd takes it, failing the test after `within`.
async fn put_until_taken(etcd: &Etcd, key: &[u8], value: &[u8], within: Duration) {
    let started = Instant::now();
    while let Err(e) = etcd.put(key, value, None).await {
        assert!(started.elapsed() < within, "{e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn keys_transactions_leases_and_the_watch_work_against_a_real_cluster() {
    let cluster = EtcdCluster::start(3).await;
    let etcd = client(&cluster.endpoints());

    let first = etcd.put(b"/t/a", b"1", None).await.unwrap();
    let second = etcd.put(b"/t/b", b"2", None).await.unwrap();
    assert!(second > first, "revisions grow");
    etcd.put(b"/u/other", b"x", None).await.unwrap();
    let snapshot = etcd.get_prefix(b"/t/").await.unwrap();
    let keys: Vec<&[u8]> = snapshot.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, vec![b"/t/a".as_slice(), b"/t/b".as_slice()]);
    assert!(snapshot.revision >= second);

    // Create-if-absent succeeds once.
    let create = || {
        Txn::new()
            .if_absent(b"/t/leader")
            .then_put(b"/t/leader", b"me", None)
    };
    assert!(etcd.txn(create()).await.unwrap().succeeded);
    assert!(!etcd.txn(create()).await.unwrap().succeeded);

    // A key on a lease lives while the lease is renewed, and goes with it.
    let lease = etcd.grant(Duration::from_secs(5)).await.unwrap();
    etcd.put(b"/t/member", b"r1", Some(lease)).await.unwrap();
    assert!(etcd.keep_alive(lease).await.unwrap() > 0);
    let fenced = Txn::new()
        .if_lease(b"/t/member", lease)
        .then_put(b"/t/owned", b"yes", None);
    assert!(etcd.txn(fenced.clone()).await.unwrap().succeeded);
    etcd.revoke(lease).await.unwrap();
    assert_eq!(etcd.get(b"/t/member").await.unwrap(), None);
    assert!(
        !etcd.txn(fenced).await.unwrap().succeeded,
        "a holder whose lease is gone is fenced off"
    );
    assert!(matches!(
        etcd.keep_alive(lease).await,
        Err(EtcdError::Rejected(_))
    ));

    // The watch replays from a revision, then follows, in order.
    let mut watch = etcd.watch(b"/t/", first).await.unwrap();
    let deleted = etcd.delete(b"/t/a").await.unwrap();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e| matches!(e, Event::Delete { key, .. } if key == b"/t/a"))
    {
        let batch = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap();
        seen.extend(batch.events);
    }
    let Event::Put(first_seen) = &seen[0] else {
        panic!("{seen:?}")
    };
    assert_eq!(
        (first_seen.key.as_slice(), first_seen.mod_revision),
        (b"/t/a".as_slice(), first)
    );
    let revisions: Vec<i64> = seen
        .iter()
        .map(|e| match e {
            Event::Put(kv) => kv.mod_revision,
            Event::Delete { mod_revision, .. } => *mod_revision,
        })
        .collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    assert_eq!(*revisions.last().unwrap(), deleted);
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::Put(kv) if kv.key.starts_with(b"/u/")))
    );
}

#[tokio::test]
async fn members_going_away_are_skipped_and_no_quorum_is_unavailable_until_it_returns() {
    let mut cluster = EtcdCluster::start(3).await;
    let etcd = client(&cluster.endpoints());
    etcd.put(b"/f/a", b"1", None).await.unwrap();

    // The leader is SIGKILLed: writes go on through the others.
    let leader = cluster.leader().await.unwrap();
    cluster.kill(leader);
    put_until_taken(&etcd, b"/f/b", b"2", Duration::from_secs(20)).await;
    assert_eq!(etcd.get(b"/f/b").await.unwrap().unwrap().value, b"2");

    // A second member stopped: no quorum. Writes fail as unavailable, within
    // the per-member timeouts, never hang.
    let stopped = (0..3).find(|i| *i != leader).unwrap();
    cluster.signal(stopped, "STOP");
    let started = Instant::now();
    let failed = etcd.put(b"/f/c", b"3", None).await;
    assert!(
        matches!(failed, Err(EtcdError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // Quorum back: the same client works again by itself.
    cluster.signal(stopped, "CONT");
    cluster.restart(leader);
    put_until_taken(&etcd, b"/f/c", b"3", Duration::from_secs(30)).await;
    let snapshot = etcd.get_prefix(b"/f/").await.unwrap();
    assert_eq!(snapshot.kvs.len(), 3);
}
