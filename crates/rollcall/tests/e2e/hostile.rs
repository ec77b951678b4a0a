//! The hostile suite: what a stranger who reaches a port can send, as a real
//! client against the real binary, each attack asserting its bound — the
//! answer, the memory the service reached (`VmHWM` from `/proc`), a second
//! client answered within a second throughout, nothing stored past the
//! limit. Floods are short and bounded, loopback only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::common::*;

/// A second client asking `url` every 50 ms until stopped: the slowest
/// answer, and how many did not come within a second.
struct Bystander {
    stop: CancellationToken,
    slowest_ms: Arc<AtomicU64>,
    missed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Bystander {
    fn start(url: String) -> Self {
        let stop = CancellationToken::new();
        let (slowest_ms, missed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, m, done) = (slowest_ms.clone(), missed.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !done.is_cancelled() {
                let asked = Instant::now();
                let answered = client
                    .get(&url)
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !answered {
                    m.fetch_add(1, Ordering::Relaxed);
                }
                s.fetch_max(asked.elapsed().as_millis() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self {
            stop,
            slowest_ms,
            missed,
            task,
        }
    }

    /// Stops it, asserting every answer came within a second.
    async fn answered_within_a_second(self) {
        self.stop.cancel();
        self.task.await.unwrap();
        let slowest = self.slowest_ms.load(Ordering::Relaxed);
        let missed = self.missed.load(Ordering::Relaxed);
        assert_eq!(
            missed, 0,
            "a second client went unanswered (slowest {slowest} ms)"
        );
        assert!(slowest < 1_000, "a second client waited {slowest} ms");
    }
}

/// A few KB of OTLP once took the log service past 1.5 GB: an export is
/// measured before it is decoded, and refused with a 413 when its records,
/// or its records with their resource's attributes copied in, pass the
/// batch limits. Nothing is stored; the service stays small and answers
/// others meanwhile.
#[tokio::test]
async fn otlp_bombs_are_refused_before_they_are_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", "", &[]).await;
    let bystander = Bystander::start(format!("{}/healthz", log.url));
    let client = reqwest::Client::new();
    let json_records = "{},".repeat(2_500_000);
    let bombs: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "4 M empty records",
            "application/x-protobuf",
            rollcall_testkit::otlp::export(0, 4_000_000),
            "too_many_records",
        ),
        (
            "1,000 resource attributes × 10,000 records",
            "application/x-protobuf",
            rollcall_testkit::otlp::export(1_000, 10_000),
            "export_too_large",
        ),
        (
            "300 resource attributes × 10,000 records",
            "application/x-protobuf",
            rollcall_testkit::otlp::export(300, 10_000),
            "export_too_large",
        ),
        (
            "2.5 M empty records in JSON",
            "application/json",
            format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{json_records}{{}}]}}]}}]}}"#
            )
            .into_bytes(),
            "too_many_records",
        ),
    ];
    for (what, content_type, body, code) in bombs {
        let packed = gzip(&body);
        assert!(
            packed.len() < 100_000,
            "{what}: {} bytes gzipped",
            packed.len()
        );
        let answer = client
            .post(format!("{}/v1/logs", log.url))
            .header("content-type", content_type)
            .header("content-encoding", "gzip")
            .body(packed)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 413, "{what}");
        if content_type == "application/json" {
            let body: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{what}: {body}");
        }
    }
    bystander.answered_within_a_second().await;
    let peak = memory_mb("VmHWM", log.pid());
    assert!(peak < 200.0, "the log service reached {peak:.0} MB");
    let page: serde_json::Value = get_json(&format!("{}/v1/logs?limit=10", log.url)).await;
    assert_eq!(page["records"].as_array().map(Vec::len), Some(0), "{page}");
}

/// Nothing a stranger registers or logs prints raw to a terminal: bidi
/// overrides and isolates, zero-width characters and C1 controls come out
/// of `ls`, `logs` and their `--json` escaped (the JSON still parses to the
/// same values). A URL cannot carry them at all, nor user information that
/// makes it read as another host (both a 400).
#[tokio::test]
async fn terminal_tricks_are_escaped_and_deceptive_urls_refused() {
    let reg = registry(&[]).await;
    let fake = FakeService::start().await;
    // (Metadata refuses control characters; format characters are text.)
    let tricks = "evil\u{202E}txt.exe\u{2066}\u{200B}";
    let mut body = fake.registration("Tricky", &[]);
    body["Meta"] = serde_json::json!({ "note": tricks });
    register_ok(&reg.url, &body).await;
    for url in [
        format!("{}/\u{202E}gnp", fake.url),
        format!("{}/a\u{200B}b", fake.url),
        "http://10.9.0.3@127.0.0.1:7300/".to_owned(),
        "http://user:pass@127.0.0.1:7300/".to_owned(),
    ] {
        let mut deceptive = fake.registration("Deceptive", &[]);
        deceptive["ServiceURL"] = serde_json::json!(url);
        let answer = register_raw(&reg.url, &deceptive).await;
        assert_eq!(answer.status(), 400, "{url:?}");
    }
    let hidden = |text: &str| {
        text.chars()
            .filter(|&c| rollcall_proto::text::is_hidden(c) && c != '\n')
            .count()
    };
    let (ok, out, err) = run_rollcall(&["ls", "--registry", &reg.url]).await;
    assert!(ok, "{err}");
    assert_eq!(hidden(&out), 0, "{out:?}");
    assert!(out.contains("\\u{202e}"), "{out}");
    let (ok, out, err) = run_rollcall(&["ls", "--registry", &reg.url, "--json"]).await;
    assert!(ok, "{err}");
    assert_eq!(hidden(&out), 0, "{out:?}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["Meta"]["note"], tricks, "the JSON means the same");

    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", "", &[]).await;
    let record =
        serde_json::json!([{"service": "Tricky", "message": tricks, "fields": {"k": tricks}}]);
    let stored = reqwest::Client::new()
        .post(format!("{}/v1/logs", log.url))
        .body(record.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    for json in [false, true] {
        let mut args = vec!["logs", "--log-url", &log.url];
        if json {
            args.push("--json");
        }
        let (ok, out, err) = run_rollcall(&args).await;
        assert!(ok, "{err}");
        assert_eq!(hidden(&out), 0, "{out:?}");
        assert!(out.contains("evil"), "{out}");
    }
}

/// Under `rollcall up` every service signs or verifies patches with a key
/// `up` made (kept in the data directory, readable by its owner only): a
/// local process that posts its own patch to the portal, naming itself the
/// grading service, is refused; the portal goes on reaching the real one.
#[tokio::test]
async fn under_up_a_local_process_cannot_post_a_patch_to_a_service() {
    use std::os::unix::fs::PermissionsExt as _;
    let up = Up::start(&[]).await;
    let key_file = up.data_dir.path().join("signing-key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(key.trim().len() >= 32, "{key:?}");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let portal = up.url("portal").to_owned();
    let impostor = FakeService::start().await;
    let patch = serde_json::json!({
        "Added": [{"Name": "GradingService", "URL": impostor.url}],
        "Removed": [],
        "Resync": true,
    });
    let answer = reqwest::Client::new()
        .post(format!("{portal}/services"))
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    // The class list still comes from the real grading service.
    let page = reqwest::get(format!("{portal}/students")).await.unwrap();
    assert_eq!(page.status(), 200);
}

/// Clients that ask for the biggest pages and never read them once pinned
/// a page each in the log service's memory (a thousand 60 KB records made a
/// 60 MB answer; 30 such readers took it down). A page ends at 1 MiB of
/// records and at most four queries run at once, so 100 of them hold little;
/// others are answered meanwhile.
#[tokio::test]
async fn readers_that_never_read_big_pages_hold_little() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", "", &[]).await;
    let client = reqwest::Client::new();
    let big = "x".repeat(60_000);
    for batch in 0..10 {
        let records: Vec<serde_json::Value> = (0..100)
            .map(|i| serde_json::json!({"service": "Big", "message": format!("{batch}-{i} {big}")}))
            .collect();
        let stored = client
            .post(format!("{}/v1/logs", log.url))
            .json(&records)
            .send()
            .await
            .unwrap();
        assert_eq!(stored.status(), 200);
    }
    let addr = log.url.trim_start_matches("http://").to_owned();
    let bystander = Bystander::start(format!("{}/healthz", log.url));
    let mut readers = Vec::new();
    for i in 0..100u8 {
        // From addresses of their own, as from several hosts.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(format!("127.0.3.{}:0", i + 1).parse().unwrap())
            .unwrap();
        let mut stream = socket.connect(addr.parse().unwrap()).await.unwrap();
        let request = format!("GET /v1/logs?limit=1000 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        readers.push(stream);
    }
    // Every answer built and being sent: its first bytes wait in each
    // reader's socket, which never reads them.
    for reader in &readers {
        tokio::time::timeout(Duration::from_secs(60), reader.readable())
            .await
            .expect("every answer is sent within a minute")
            .unwrap();
    }
    bystander.answered_within_a_second().await;
    let peak = memory_mb("VmHWM", log.pid());
    assert!(peak < 200.0, "the log service reached {peak:.0} MB");
    drop(readers);
}
