//! The log store against real files in a temporary directory.

use std::io::Write as _;

use super::*;
use crate::query::{Filter, Order, Query};
use crate::record::Level;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir.to_owned())
}

fn record(service: &str, message: &str, id: Option<&str>) -> NewRecord {
    let mut r =
        NewRecord::classic(&format!("[{service}] - {message}"), Timestamp::system_now()).unwrap();
    r.id = id.map(str::to_owned);
    r
}

fn all(store: &LogStore, order: Order) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query_blocking(&Query {
                order,
                limit: 7,
                cursor,
                ..Query::default()
            })
            .unwrap();
        out.extend(page.records);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test]
async fn appends_are_numbered_and_pages_walk_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (store, threads) = LogStore::open(config(dir.path())).unwrap();
    for i in 0..50 {
        let a = store
            .append(vec![record("A", &format!("m{i}"), None)])
            .await
            .unwrap();
        assert_eq!(a.first_seq, Some(i + 1));
    }
    let desc: Vec<u64> = all(&store, Order::Desc).iter().map(|r| r.seq).collect();
    assert_eq!(desc, (1..=50).rev().collect::<Vec<_>>());
    let asc: Vec<u64> = all(&store, Order::Asc).iter().map(|r| r.seq).collect();
    assert_eq!(asc, (1..=50).collect::<Vec<_>>());
    store.close(threads).await;
}

#[tokio::test]
async fn retried_ids_are_stored_once_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, threads) = LogStore::open(config(dir.path())).unwrap();
    let batch = vec![
        record("A", "one", Some("p-1")),
        record("A", "two", Some("p-2")),
    ];
    let first = store.append(batch.clone()).await.unwrap();
    assert_eq!((first.stored, first.duplicates), (2, 0));
    let again = store.append(batch.clone()).await.unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 2));
    // Duplicates inside one batch too.
    let inner = store
        .append(vec![
            record("A", "x", Some("p-3")),
            record("A", "x", Some("p-3")),
        ])
        .await
        .unwrap();
    assert_eq!((inner.stored, inner.duplicates), (1, 1));
    store.close(threads).await;
    let (store, threads) = LogStore::open(config(dir.path())).unwrap();
    let after = store.append(batch).await.unwrap();
    assert_eq!((after.stored, after.duplicates), (0, 2));
    assert_eq!(all(&store, Order::Asc).len(), 3);
    store.close(threads).await;
}

#[tokio::test]
async fn a_torn_record_is_cut_at_start_and_appending_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (store, threads) = LogStore::open(config(dir.path())).unwrap();
    store
        .append(
            (0..10)
                .map(|i| record("A", &format!("m{i}"), None))
                .collect(),
        )
        .await
        .unwrap();
    store.close(threads).await;
    // A crash mid-write leaves half a line.
    let segment = segment::segment_path(dir.path(), 1);
    let mut f = OpenOptions::new().append(true).open(&segment).unwrap();
    f.write_all(b"{\"seq\":11,\"ts\":\"2026-11-2").unwrap();
    drop(f);
    let (store, threads) = LogStore::open(config(dir.path())).unwrap();
    assert_eq!(store.metrics().truncated_bytes.get(), 25);
    let a = store
        .append(vec![record("A", "after", None)])
        .await
        .unwrap();
    assert_eq!(a.first_seq, Some(11));
    let records = all(&store, Order::Asc);
    assert_eq!(records.len(), 11);
    assert_eq!(records[10].message, "after");
    // Every line of the file parses.
    let text = std::fs::read_to_string(&segment).unwrap();
    for line in text.lines() {
        serde_json::from_str::<LogRecord>(line).unwrap();
    }
    store.close(threads).await;
}

#[tokio::test]
async fn segments_rotate_by_size_and_retention_deletes_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        segment_size: 4 * 1024,
        retention_size: 16 * 1024,
        ..config(dir.path())
    };
    let (store, threads) = LogStore::open(cfg).unwrap();
    for i in 0..400 {
        store
            .append(vec![record(
                "A",
                &format!("message number {i:04} {}", "x".repeat(40)),
                None,
            )])
            .await
            .unwrap();
    }
    let (segments, bytes) = store.usage();
    assert!(segments >= 4, "{segments} segments");
    assert!(bytes <= 16 * 1024 + 4 * 1024, "{bytes} bytes kept");
    assert!(store.metrics().segments_deleted.get() > 0);
    // What is left is the newest, contiguous, ending at the last record.
    let kept: Vec<u64> = all(&store, Order::Asc).iter().map(|r| r.seq).collect();
    assert_eq!(*kept.last().unwrap(), 400);
    assert!(kept.windows(2).all(|w| w[1] == w[0] + 1));
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != super::STORE_ID_FILE)
        .count();
    assert_eq!(files, segments, "the segments and the store's identity");
    store.close(threads).await;
}

#[tokio::test]
async fn retention_by_age_deletes_old_segments_but_never_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        segment_size: 1024,
        retention_age: Duration::from_secs(3600),
        ..config(dir.path())
    };
    let (store, threads) = LogStore::open(cfg).unwrap();
    for i in 0..60 {
        store
            .append(vec![record("A", &format!("m{i} {}", "y".repeat(40)), None)])
            .await
            .unwrap();
    }
    let (before, _) = store.usage();
    assert!(before > 2);
    // Nothing is an hour old yet.
    assert_eq!(store.enforce_retention(Timestamp::system_now()), 0);
    // Two hours from now, everything but the active segment is.
    let later = Timestamp::system_now().plus(Duration::from_secs(7200));
    assert_eq!(store.enforce_retention(later), before - 1);
    assert_eq!(store.usage().0, 1);
    store.close(threads).await;
}

#[tokio::test]
async fn always_fsyncs_before_acknowledging_and_groups_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        fsync: FsyncPolicy::Always,
        ..config(dir.path())
    };
    let (store, threads) = LogStore::open(cfg).unwrap();
    // 200 appends queued at once (polled together, so each is in the
    // writer's queue before any is acknowledged).
    let appends = (0..200).map(|i| store.append(vec![record("A", &format!("m{i}"), None)]));
    for outcome in futures_util::future::join_all(appends).await {
        assert_eq!(outcome.unwrap().stored, 1);
    }
    let fsyncs = store.metrics().fsyncs.get();
    let groups = store.metrics().groups.get();
    assert_eq!(store.metrics().appends.get(), 200);
    assert!(fsyncs >= 1);
    assert!(fsyncs <= groups, "at most one fsync per group");
    // Grouped: far fewer groups (each one write and one fsync) than appends.
    assert!(groups <= 100, "{groups} groups for 200 queued appends");
    store.close(threads).await;
}

#[tokio::test]
async fn the_tail_sees_records_as_they_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, threads) = LogStore::open(config(dir.path())).unwrap();
    let mut tail = store.subscribe();
    store
        .append(vec![
            record("A", "first", None),
            record("B", "second", None),
        ])
        .await
        .unwrap();
    assert_eq!(tail.recv().await.unwrap().message, "first");
    assert_eq!(tail.recv().await.unwrap().message, "second");
    store.close(threads).await;
}

#[tokio::test]
async fn queries_filter_and_respect_the_scan_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (store, threads) = LogStore::open(config(dir.path())).unwrap();
    let mut batch = Vec::new();
    for i in 0..300 {
        let mut r = record(
            if i % 3 == 0 { "A" } else { "B" },
            &format!("event {i}"),
            None,
        );
        r.level = if i % 10 == 0 {
            Level::Error
        } else {
            Level::Info
        };
        batch.push(r);
    }
    store.append(batch).await.unwrap();
    let q = |filter: Filter| Query {
        filter,
        limit: 1000,
        ..Query::default()
    };
    let errors_of_a = store
        .query_blocking(&q(Filter {
            service: Some(rollcall_proto::ServiceName::parse("A").unwrap()),
            min_level: Some(Level::Error),
            ..Filter::default()
        }))
        .unwrap();
    assert_eq!(errors_of_a.records.len(), 10, "i % 30 == 0");
    assert!(errors_of_a.next_cursor.is_none());
    let budgeted = store
        .query_blocking(&Query {
            filter: Filter {
                contains: Some("no such thing".into()),
                ..Filter::default()
            },
            scan_budget: 1000,
            ..Query::default()
        })
        .unwrap();
    assert!(budgeted.records.is_empty());
    let cursor = budgeted.next_cursor.expect("a cursor to continue from");
    assert!(cursor > 1 && cursor < 300);
    store.close(threads).await;
}
