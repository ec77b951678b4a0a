//! The log service against real processes: classic and batched ingestion,
//! bad input, rotation and retention, queries, live tail, SIGKILL in the
//! middle of acknowledged writes, and SDK services forwarding their logs
//! through a log service that starts late or dies mid-stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::*;
use serde_json::json;

const SOON: Duration = Duration::from_secs(20);

async fn standalone(extra: &[&str]) -> (tempfile::TempDir, ChildProcess) {
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", "", extra).await;
    (dir, log)
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
}

async fn error_code(response: reqwest::Response) -> (u16, String, serde_json::Value) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
        body,
    )
}

#[tokio::test]
async fn classic_post_log_stores_one_entry_with_its_service_and_arrival_time() {
    let (_dir, log) = standalone(&[]).await;
    let before = rollcall_proto::Timestamp::system_now();
    // Exactly what the original Go client sends: text, prefixed, newline.
    let r = post(
        &format!("{}/log", log.url),
        "[GradingService] - added student 3\n",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    let records = query_logs(&log.url, "").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["service"], "GradingService");
    assert_eq!(records[0]["message"], "added student 3");
    assert_eq!(records[0]["level"], "info");
    let ts = rollcall_proto::Timestamp::parse_rfc3339(records[0]["ts"].as_str().unwrap()).unwrap();
    assert!(ts >= before.minus(Duration::from_secs(1)));
    // The segment file is plain NDJSON.
    let text =
        std::fs::read_to_string(_dir.path().join("logs/segment-00000000000000000001.ndjson"))
            .unwrap();
    assert_eq!(text.lines().count(), 1);
}

#[tokio::test]
async fn batches_are_stored_as_arrays_or_ndjson_with_their_fields() {
    let (_dir, log) = standalone(&[]).await;
    let array = json!([
        {"timestamp": "2026-11-21T10:00:00Z", "service": "Portal", "instance": "http://127.0.0.1:5000",
         "level": "warn", "message": "slow page", "fields": {"ms": 812, "path": "/students"}},
        {"service": "Portal", "message": "page served"},
    ]);
    let r = post(&format!("{}/v1/logs", log.url), array.to_string()).await;
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (answer["accepted"].clone(), answer["stored"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(answer["rejected"], json!([]));
    let ndjson = "{\"service\":\"Grades\",\"level\":\"error\",\"msg\":\"db locked\"}\n\n{\"service\":\"Grades\",\"message\":\"retry ok\",\"ts\":1763719200000}\n";
    let r = post(&format!("{}/v1/logs", log.url), ndjson).await;
    assert_eq!(r.status(), 200);
    let records = all_logs(&log.url, "").await;
    assert_eq!(records.len(), 4);
    assert_eq!(records[0]["fields"]["ms"], 812);
    assert_eq!(records[0]["instance"], "http://127.0.0.1:5000");
    assert_eq!(records[0]["ts"], "2026-11-21T10:00:00.000Z");
    assert_eq!(records[2]["level"], "error");
    assert_eq!(records[3]["ts"], "2025-11-21T10:00:00.000Z");
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_stores_nothing() {
    let (_dir, log) = standalone(&[
        "--max-batch-records",
        "100",
        "--max-record-bytes",
        "4KiB",
        "--max-batch-bytes",
        "1MiB",
    ])
    .await;
    let batch = format!("{}/v1/logs", log.url);
    let classic = format!("{}/log", log.url);

    let (status, code, _) = error_code(post(&classic, "").await).await;
    assert_eq!((status, code.as_str()), (400, "empty_message"));
    let (status, code, _) = error_code(post(&classic, "\n").await).await;
    assert_eq!((status, code.as_str()), (400, "empty_message"));
    let (status, code, _) = error_code(post(&classic, vec![0xff, 0xfe]).await).await;
    assert_eq!((status, code.as_str()), (400, "not_text"));
    let r = reqwest::get(&classic).await.unwrap();
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
    let (status, code, _) = error_code(post(&classic, "x".repeat(100 * 1024)).await).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));

    let (status, code, _) = error_code(post(&batch, "").await).await;
    assert_eq!((status, code.as_str()), (400, "empty_batch"));
    let (status, code, _) = error_code(post(&batch, "[{\"service\":").await).await;
    assert_eq!((status, code.as_str()), (400, "malformed_json"));
    // One bad record sinks the whole batch, and the answer says which and why.
    let mixed = json!([
        {"service": "A", "message": "fine"},
        {"service": "A", "message": "bad level", "level": "loud"},
        {"message": "no service"},
        {"service": "A", "message": "fine too"},
    ]);
    let (status, code, body) = error_code(post(&batch, mixed.to_string()).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_records"));
    assert_eq!(body["accepted"], 0);
    let rejected: Vec<(u64, &str)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(rejected, vec![(1, "unknown_level"), (2, "missing_service")]);
    // An oversize record: 413, and nothing stored.
    let huge = json!([{"service": "A", "message": "x".repeat(8 * 1024)}]);
    let (status, code, body) = error_code(post(&batch, huge.to_string()).await).await;
    assert_eq!((status, code.as_str()), (413, "invalid_records"));
    assert_eq!(body["rejected"][0]["code"], "record_too_large");
    // Too many records, or too many bytes: 413.
    let many: Vec<_> = (0..101)
        .map(|i| json!({"service": "A", "message": format!("m{i}")}))
        .collect();
    let (status, code, _) = error_code(post(&batch, json!(many).to_string()).await).await;
    assert_eq!((status, code.as_str()), (413, "too_many_records"));
    let big = format!(
        "[{}]",
        vec![json!({"service": "A", "message": "y".repeat(3000)}).to_string(); 400].join(",")
    );
    let (status, code, _) = error_code(post(&batch, big).await).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    // Bad queries are 400 too.
    let (status, code, _) = error_code(
        reqwest::get(format!("{}/v1/logs?level=loud", log.url))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_query"));

    assert!(
        query_logs(&log.url, "").await.is_empty(),
        "nothing was stored"
    );
    let text =
        std::fs::read_to_string(_dir.path().join("logs/segment-00000000000000000001.ndjson"))
            .unwrap_or_default();
    assert!(text.is_empty());
}

#[tokio::test]
async fn segments_rotate_by_size_and_retention_bounds_the_disk() {
    let (dir, log) = standalone(&["--segment-size", "8KiB", "--retention-size", "32KiB"]).await;
    for batch in 0..40 {
        let records: Vec<_> = (0..20)
            .map(|i| json!({"service": "A", "message": format!("batch {batch} record {i} {}", "z".repeat(30))}))
            .collect();
        assert_eq!(
            post(&format!("{}/v1/logs", log.url), json!(records).to_string())
                .await
                .status(),
            200
        );
    }
    let files: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    let bytes: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    assert!(files.len() >= 3, "{} segments", files.len());
    assert!(bytes <= 32 * 1024 + 16 * 1024, "{bytes} bytes on disk");
    let kept = all_logs(&log.url, "").await;
    assert!(kept.len() < 800, "old segments were deleted");
    assert_eq!(
        kept.last().unwrap()["seq"],
        800,
        "the newest records are kept"
    );
    assert!(
        metric(&log.url, "rollcall_logs_segments_deleted_total")
            .await
            .unwrap()
            > 0.0
    );
}

#[tokio::test]
async fn queries_filter_sort_and_page() {
    let (_dir, log) = standalone(&[]).await;
    let mut records = Vec::new();
    let levels = ["debug", "info", "warn", "error"];
    for i in 0..60u64 {
        let level = levels[(i % 4) as usize];
        records.push(json!({
            "service": if i % 2 == 0 { "Grades" } else { "Portal" },
            "level": level,
            "message": if i % 10 == 0 { format!("Student {i} ADDED") } else { format!("event {i}") },
            "timestamp": 1_700_000_000_000u64 + i * 1000,
        }));
    }
    post(&format!("{}/v1/logs", log.url), json!(records).to_string()).await;
    let newest = query_logs(&log.url, "limit=3").await;
    let seqs: Vec<u64> = newest.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![60, 59, 58], "newest first by default");
    let grades_errors = all_logs(&log.url, "service=Grades&level=error").await;
    assert!(
        grades_errors
            .iter()
            .all(|r| r["service"] == "Grades" && r["level"] == "error")
    );
    // i even and i % 4 == 3 never both hold: even i give debug (0) or warn (2).
    assert!(grades_errors.is_empty());
    let warn_up = all_logs(&log.url, "level=warn").await;
    assert_eq!(warn_up.len(), 30);
    let added = all_logs(&log.url, "contains=student%20").await;
    assert_eq!(added.len(), 6, "case-insensitive substring");
    let window = all_logs(&log.url, "since=1700000010000&until=1700000019000").await;
    assert_eq!(window.len(), 10);
    // Pages of 7, newest first, without gaps or repeats.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: serde_json::Value = reqwest::get(format!("{}/v1/logs?limit=7{cursor}", log.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["seq"].as_u64().unwrap()),
        );
        match page["next_cursor"].as_u64() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, (1..=60).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn the_tail_receives_records_as_they_arrive() {
    use futures_util::StreamExt as _;
    let (_dir, log) = standalone(&[]).await;
    post(&format!("{}/log", log.url), "[A] - before the tail").await;
    let response = reqwest::Client::new()
        .get(format!("{}/v1/logs/tail?service=A", log.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let url = log.url.clone();
    let writer = tokio::spawn(async move {
        for i in 0..5 {
            post(&format!("{url}/log"), format!("[A] - live {i}")).await;
            post(&format!("{url}/log"), format!("[B] - other {i}")).await;
        }
    });
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + SOON;
    while text.matches("event: record").count() < 5 {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    writer.await.unwrap();
    for i in 0..5 {
        assert!(text.contains(&format!("live {i}")), "{text}");
    }
    assert!(!text.contains("before the tail"), "a tail starts now");
    assert!(!text.contains("other"), "filtered by service");
}

/// With `--fsync always`, every record the log service acknowledged is there
/// after a SIGKILL, exactly once — also those whose acknowledgement was lost
/// in the crash and that the client sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_stream_loses_no_acknowledged_record_and_stores_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_service(dir.path(), "127.0.0.1:0", "", &["--fsync", "always"]).await;
    let url = log.url.clone();
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let url = url.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..300u64 {
                let id = format!("w{w}-{i}");
                let body =
                    json!([{"service": "Load", "message": format!("record {id}"), "id": id}]);
                // Retry until acknowledged: the service may be dead for a while.
                post_until_acknowledged(&client, &url, &body).await;
                acknowledged.lock().unwrap().insert(id.clone());
            }
        }));
    }
    // Kill it once a good part of the stream is acknowledged.
    eventually(SOON, "writes to be acknowledged", || {
        let n = acknowledged.lock().unwrap().len();
        async move { (n >= 300).then_some(()) }
    })
    .await;
    log.kill();
    let addr = format!("127.0.0.1:{}", port_of(&url));
    let log = log_service(dir.path(), &addr, "", &["--fsync", "always"]).await;
    for w in writers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .unwrap()
            .unwrap();
    }
    let stored = all_logs(&log.url, "service=Load").await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &stored {
        *counts
            .entry(r["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), 1200);
    let stored_ids: BTreeSet<String> = counts.keys().cloned().collect();
    assert_eq!(
        stored_ids, acknowledged,
        "every acknowledged record is there"
    );
    assert!(counts.values().all(|c| *c == 1), "and none twice");
}

async fn hello_with_logs(registry: &str, extra: &[&str]) -> ChildProcess {
    let mut args = vec!["--name", "Chatty", "--registry", registry, "--forward-logs"];
    args.extend_from_slice(extra);
    ChildProcess::start(&example_bin("hello"), &args, &[]).await
}

fn ticks(records: &[serde_json::Value]) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        if let Some(n) = r["fields"]["n"].as_u64() {
            *counts.entry(n).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn an_sdk_service_buffers_until_its_log_service_starts() {
    let reg = registry(&[]).await;
    let hello = hello_with_logs(&reg.url, &["--log-every", "2ms", "--log-count", "300"]).await;
    // Wait until everything was emitted while no log service exists.
    eventually(SOON, "all 300 records to be buffered", || async {
        let buffered = metric(&hello.url, "rollcall_sdk_log_records_buffered").await?;
        (buffered >= 300.0).then_some(())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", &reg.url, &[]).await;
    eventually(SOON, "the buffered records to arrive", || async {
        let got = ticks(&all_logs(&log.url, "service=Chatty").await);
        (got.len() == 300).then_some(())
    })
    .await;
    let got = ticks(&all_logs(&log.url, "service=Chatty").await);
    assert!(got.values().all(|c| *c == 1));
    assert_eq!(
        metric(&hello.url, "rollcall_sdk_log_records_dropped_total").await,
        Some(0.0)
    );
    // The records name their instance, found without any configured address.
    let one = query_logs(&log.url, "service=Chatty&limit=1").await;
    assert_eq!(one[0]["instance"], hello.url.as_str());
}

#[tokio::test]
async fn what_does_not_fit_the_buffer_is_counted_as_dropped() {
    let reg = registry(&[]).await;
    let hello = hello_with_logs(
        &reg.url,
        &[
            "--log-every",
            "2ms",
            "--log-count",
            "300",
            "--log-buffer",
            "50",
        ],
    )
    .await;
    eventually(SOON, "all 300 records to be emitted", || async {
        let dropped = metric(&hello.url, "rollcall_sdk_log_records_dropped_total").await?;
        (dropped >= 250.0).then_some(())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", &reg.url, &[]).await;
    eventually(SOON, "the buffered records to arrive", || async {
        let forwarded = metric(&hello.url, "rollcall_sdk_log_records_forwarded_total").await?;
        (forwarded >= 50.0).then_some(())
    })
    .await;
    let got = ticks(&all_logs(&log.url, "service=Chatty").await);
    let dropped = metric(&hello.url, "rollcall_sdk_log_records_dropped_total")
        .await
        .unwrap();
    // The oldest were evicted (the start-up lines among them), the newest 50
    // ticks kept: exactly 251..=300, none twice, and every eviction counted.
    assert_eq!(got.len(), 50, "the newest 50 were kept");
    let kept: Vec<u64> = got.keys().copied().collect();
    assert_eq!(kept, (251..=300).collect::<Vec<u64>>());
    assert!(dropped >= 250.0, "{dropped} evictions counted");
}

#[tokio::test]
async fn an_sdk_service_keeps_its_logs_while_the_log_service_is_killed_and_restarted() {
    let reg = registry(FAST_CHECKS).await;
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_service(dir.path(), "127.0.0.1:0", &reg.url, &[]).await;
    let hello = hello_with_logs(&reg.url, &["--log-every", "3ms", "--log-count", "600"]).await;
    eventually(SOON, "some records to arrive", || async {
        let got = ticks(&all_logs(&log.url, "service=Chatty").await);
        (got.len() >= 50).then_some(())
    })
    .await;
    log.kill();
    // Records keep coming while it is dead: the SDK buffers them.
    eventually(SOON, "records to pile up in the SDK's buffer", || async {
        let buffered = metric(&hello.url, "rollcall_sdk_log_records_buffered").await?;
        (buffered >= 30.0).then_some(())
    })
    .await;
    let addr = format!("127.0.0.1:{}", port_of(&log.url));
    let log = log_service(dir.path(), &addr, &reg.url, &[]).await;
    eventually(SOON, "all 600 records to arrive", || async {
        let got = ticks(&all_logs(&log.url, "service=Chatty").await);
        (got.len() == 600).then_some(())
    })
    .await;
    let got = ticks(&all_logs(&log.url, "service=Chatty").await);
    assert!(got.values().all(|c| *c == 1), "no record twice");
    assert_eq!(
        metric(&hello.url, "rollcall_sdk_log_records_dropped_total").await,
        Some(0.0)
    );
}

#[tokio::test]
async fn rollcall_logs_finds_the_service_prints_plain_text_when_piped_and_follows() {
    let reg = registry(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", &reg.url, &[]).await;
    eventually(SOON, "the log service to register", || async {
        instance(&reg.url, &log.url).await.map(|_| ())
    })
    .await;
    let batch = json!([
        {"service": "Grades", "level": "info", "message": "quiet"},
        {"service": "Grades", "level": "warn", "message": "slow", "fields": {"ms": 900}},
        {"service": "Grades", "level": "error", "message": "broken"},
    ]);
    post(&format!("{}/v1/logs", log.url), batch.to_string()).await;
    let (ok, text, stderr) =
        run_rollcall(&["logs", "--registry", &reg.url, "--level", "warn"]).await;
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("WARN")
            && lines[0].contains("[Grades] slow")
            && lines[0].contains("ms=900")
    );
    assert!(
        lines[1].contains("ERROR") && lines[1].contains("broken"),
        "oldest first"
    );
    assert!(!text.contains('\x1b'), "no colours when piped");

    // -f keeps printing what arrives.
    let (mut follow, mut rx, _) = spawn_rollcall(&[
        "logs",
        "--registry",
        &reg.url,
        "-f",
        "--service",
        "Grades",
        "-n",
        "1",
    ]);
    let first = tokio::time::timeout(SOON, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(first.contains("broken"), "{first}");
    post(&format!("{}/log", log.url), "[Grades] - arrived later").await;
    post(&format!("{}/log", log.url), "[Other] - not shown").await;
    post(&format!("{}/log", log.url), "[Grades] - and another").await;
    let next = tokio::time::timeout(SOON, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(next.contains("arrived later"), "{next}");
    let next = tokio::time::timeout(SOON, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(next.contains("and another"), "{next}");
    let _ = follow.kill();
    let _ = follow.wait();
}

async fn recv(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(SOON, rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn log_search_ignores_name_case_searches_fields_and_is_never_silent() {
    let (_dir, log) = standalone(&[]).await;
    let batch = json!([
        {"service": "Portal", "level": "info", "message": "grade saved",
         "fields": {"student": "Zhang San", "score": 85}},
        {"service": "GradingService", "level": "info", "message": "student added"},
    ]);
    post(&format!("{}/v1/logs", log.url), batch.to_string()).await;
    // The name as `up` prints it, in lower case.
    let (ok, out, err) = run_rollcall(&["logs", "--log-url", &log.url, "-s", "portal"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("grade saved"), "{out}");
    // `contains` looks into the fields too.
    let (ok, out, _) = run_rollcall(&["logs", "--log-url", &log.url, "-c", "zhang"]).await;
    assert!(
        ok && out.contains("grade saved") && !out.contains("student added"),
        "{out}"
    );
    let (_, out, _) = run_rollcall(&["logs", "--log-url", &log.url, "-c", "score=85"]).await;
    assert_eq!(out.lines().count(), 1, "{out}");
    // A service with no records: the answer says which ones have some.
    let (ok, out, err) = run_rollcall(&["logs", "--log-url", &log.url, "-s", "Portl"]).await;
    assert!(ok && out.is_empty(), "{out}");
    assert!(
        err.contains("no records from a service called `Portl`")
            && err.contains("GradingService, Portal"),
        "{err}"
    );
    // Part of a name, as everywhere on the command line: the one service
    // whose name contains it, said so; several are named back.
    let (ok, out, err) = run_rollcall(&["logs", "--log-url", &log.url, "-s", "grad"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("student added") && !out.contains("grade saved"),
        "{out}"
    );
    assert!(err.contains("showing GradingService"), "{err}");
    let (ok, _, err) = run_rollcall(&["logs", "--log-url", &log.url, "-s", "r"]).await;
    assert!(!ok && err.contains("matches several services"), "{err}");
    // A typo in a parameter is a 400 that lists the known ones.
    let answer = reqwest::get(format!("{}/v1/logs?servce=Portal", log.url))
        .await
        .unwrap();
    let (status, code, body) = error_code(answer).await;
    assert_eq!((status, code.as_str()), (400, "invalid_query"), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("servce") && message.contains("contains"),
        "{message}"
    );
}

#[tokio::test]
async fn logs_follow_resumes_from_its_cursor_across_a_log_service_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_service(dir.path(), "127.0.0.1:0", "", &[]).await;
    let addr = log.url.trim_start_matches("http://").to_owned();
    post(&format!("{}/log", log.url), "[A] - one").await;
    let (mut follow, mut out, mut err) =
        spawn_rollcall(&["logs", "--log-url", &log.url, "-f", "-n", "1"]);
    assert!(recv(&mut out).await.contains("one"));
    post(&format!("{}/log", log.url), "[A] - two").await;
    assert!(recv(&mut out).await.contains("two"));
    log.kill();
    let line = recv(&mut err).await;
    assert!(line.contains("reconnecting"), "{line}");
    let log = log_service(dir.path(), &addr, "", &[]).await;
    post(&format!("{}/log", log.url), "[A] - three").await;
    // Nothing twice, nothing missed.
    assert!(recv(&mut out).await.contains("three"));
    let _ = follow.kill();
    let _ = follow.wait();
    if let Ok(line) = out.try_recv() {
        panic!("unexpected line after `three`: {line}");
    }
}

#[tokio::test]
async fn logs_follow_notices_a_store_that_started_over_and_prints_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_service(dir.path(), "127.0.0.1:0", "", &[]).await;
    let addr = log.url.trim_start_matches("http://").to_owned();
    let many: Vec<_> = (0..50)
        .map(|i| json!({"service": "A", "message": format!("old {i}")}))
        .collect();
    post(&format!("{}/v1/logs", log.url), json!(many).to_string()).await;
    let (mut follow, mut out, mut err) =
        spawn_rollcall(&["logs", "--log-url", &log.url, "-f", "-n", "1"]);
    assert!(recv(&mut out).await.contains("old 49"));
    // The log service comes back on an empty store: its seqs start again
    // far below the follower's cursor.
    log.kill();
    let line = recv(&mut err).await;
    assert!(line.contains("reconnecting"), "{line}");
    let fresh = tempfile::tempdir().unwrap();
    let log = log_service(fresh.path(), &addr, "", &[]).await;
    post(&format!("{}/log", log.url), "[A] - new one").await;
    post(&format!("{}/log", log.url), "[A] - new two").await;
    crate::cli::next_with(&mut err, "started over").await;
    assert!(recv(&mut out).await.contains("new one"));
    assert!(recv(&mut out).await.contains("new two"));
    let _ = follow.kill();
    let _ = follow.wait();
}

#[tokio::test]
async fn the_registry_and_the_log_service_store_their_own_logs() {
    let reg = registry(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", &reg.url, &[]).await;
    wait_registered(&reg.url, &log.url).await;
    // Something the registry logs once the log service is known.
    let fake = FakeService::start().await;
    register_raw(&reg.url, &fake.registration("Newcomer", &[])).await;
    eventually(SOON, "the registry's record of the newcomer", || async {
        let records = query_logs(&log.url, "service=Registry&contains=Newcomer").await;
        (!records.is_empty()).then_some(())
    })
    .await;
    eventually(SOON, "the log service's own records", || async {
        let records = query_logs(&log.url, "service=LogService").await;
        records
            .iter()
            .any(|r| r["message"] == "registered")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_search_goes_on_past_one_scan_budget_and_never_ends_in_a_silent_nothing() {
    // A small scan budget stands in for a store far larger than one page
    // may read (256 MiB by default).
    let (_dir, log) = standalone(&["--scan-budget", "64KiB"]).await;
    let url = format!("{}/v1/logs", log.url);
    post(
        &url,
        json!([{"service": "Old", "message": "the needle", "fields": {"order": 7}}]).to_string(),
    )
    .await;
    for batch in 0..6 {
        let hay: Vec<_> = (0..500)
            .map(|i| json!({"service": "Hay", "message": format!("hay {batch}-{i} ..........")}))
            .collect();
        assert_eq!(post(&url, json!(hay).to_string()).await.status(), 200);
    }
    let total = 3001;
    // One API page cannot reach it, and says so.
    let page: serde_json::Value = reqwest::get(format!("{url}?contains=needle"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["records"], json!([]), "{page}");
    assert_eq!(page["reached_end"], false, "{page}");
    assert!(page["next_cursor"].is_u64(), "{page}");
    let scanned = page["scanned_records"].as_u64().unwrap();
    assert!(scanned > 0 && scanned < total, "{page}");

    // The CLI goes on until it finds it.
    let (ok, out, err) =
        run_rollcall(&["logs", "--log-url", &log.url, "--contains", "needle"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("[Old] the needle") && out.contains("order=7"),
        "{out}"
    );
    // Nothing anywhere: it says it searched everything.
    let (ok, out, err) =
        run_rollcall(&["logs", "--log-url", &log.url, "--contains", "no such thing"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains(&format!("searched all {total} records, nothing matched")),
        "{err}"
    );

    // The explorer too.
    let page = get_text(&format!("{}/?contains=needle", log.url))
        .await
        .unwrap();
    assert!(page.contains("the needle"), "the explorer found it");
    let page = get_text(&format!("{}/?contains=nothing+here", log.url))
        .await
        .unwrap();
    assert!(
        page.contains(&format!("Searched all {total} records: none match.")),
        "the explorer says it searched everything"
    );
}
