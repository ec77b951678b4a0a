//! Nobody holds a service by its sockets: 20,000 idle connections from one
//! address and from many (more than the service may open at all) leave a
//! registration from elsewhere answering, a client that never finishes its
//! headers or its body (slowloris) is cut off, and answers from providers
//! are bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::*;

/// The registry, allowed only 4,096 file descriptors (a real limit, set by
/// the shell before it runs the binary).
async fn registry_with_few_descriptors(extra: &str) -> ChildProcess {
    let command = format!(
        "ulimit -n 4096 && exec '{}' registry --addr 127.0.0.1:0 --in-memory {extra}",
        rollcall_bin().display()
    );
    ChildProcess::start(std::path::Path::new("/bin/sh"), &["-c", &command], &[]).await
}

/// Idle connections held by another process (the `hold_connections`
/// example), so this test process's own descriptors are not spent: `count`
/// connections to `to` from `from` (used in turn). Killed when dropped.
struct Holder {
    child: std::process::Child,
    opened: usize,
}

impl Holder {
    async fn start(to: std::net::SocketAddr, count: usize, from: &[String]) -> Holder {
        let mut child = std::process::Command::new(example_bin("hold_connections"))
            .args(["--to", &to.to_string(), "--count", &count.to_string()])
            .args(["--from", &from.join(",")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = read_lines(child.stdout.take().unwrap());
        let line = tokio::time::timeout(Duration::from_secs(120), lines.recv())
            .await
            .expect("the connections are opened within two minutes")
            .expect("hold_connections runs");
        let opened = line
            .strip_prefix("opened ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected: {line}"));
        Holder { child, opened }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 20,000 idle connections: 10,000 from one address (past its per-client
/// limit), 10,000 from ten others (past the registry's limit in all, which
/// its 4,096 descriptors cap at 4,032). The per-client limit turns the
/// first away; for the others, each newcomer takes the place of the oldest
/// idle connection. A registration from elsewhere still answers within a
/// second, twice.
#[tokio::test]
async fn twenty_thousand_idle_connections_leave_a_registration_answering() {
    let reg = registry_with_few_descriptors("").await;
    let addr: std::net::SocketAddr = reg.url.trim_start_matches("http://").parse().unwrap();
    let one = Holder::start(addr, 10_000, &["127.0.0.2".to_owned()]).await;
    let many: Vec<String> = (3..13).map(|i| format!("127.0.0.{i}")).collect();
    let spread = Holder::start(addr, 10_000, &many).await;
    assert_eq!(
        one.opened + spread.opened,
        20_000,
        "every connection was made"
    );
    for fake in [FakeService::start().await, FakeService::start().await] {
        let answer = reqwest::Client::new()
            .post(format!("{}/services", reg.url))
            .timeout(Duration::from_secs(1))
            .json(&fake.registration("A", &[]))
            .send()
            .await
            .expect("an answer within a second");
        assert_eq!(answer.status(), 200);
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let reg = registry(&["--header-timeout", "500ms"]).await;
    let addr: std::net::SocketAddr = reg.url.trim_start_matches("http://").parse().unwrap();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /services HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    // The registry closes it (after perhaps a 408): the read ends within a
    // few seconds instead of waiting forever.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match slow.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the half-sent request was cut off");
    // An idle keep-alive connection is closed as well.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buffer)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_gets_a_408() {
    let reg = registry(&["--body-timeout", "500ms"]).await;
    let addr: std::net::SocketAddr = reg.url.trim_start_matches("http://").parse().unwrap();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /services HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 1024];
        loop {
            match slow.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
            if answer.windows(12).any(|w| w == b"body_timeout") {
                return;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "answered, not held");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
}

/// A fake provider whose every answer is an endless body, registered under
/// `name` (it passes its checks: `/heartbeat` answers 200).
async fn endless_provider(registry: &str, name: &str) -> String {
    use axum::routing::get;
    let endless = || async {
        let chunk = axum::body::Bytes::from(vec![b'['; 64 * 1024]);
        let stream = futures_util::stream::repeat_with(move || {
            Ok::<_, std::convert::Infallible>(chunk.clone())
        });
        axum::body::Body::from_stream(stream)
    };
    let app = axum::Router::new()
        .route("/heartbeat", get(|| async { "ok" }))
        .fallback(endless);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let registration = serde_json::json!({
        "ServiceName": name,
        "ServiceURL": url,
        "HeartbeatURL": format!("{url}/heartbeat"),
    });
    register_ok(registry, &registration).await;
    url
}

#[tokio::test]
async fn an_endless_answer_from_a_provider_does_not_grow_the_registry_or_the_portal() {
    let reg = registry(&[]).await;
    let _log = endless_provider(&reg.url, "LogService").await;
    let _grading = endless_provider(&reg.url, "GradingService").await;
    let portal = portal_service(&reg.url).await;
    let client = reqwest::Client::new();
    // The dashboard reads the log service; the portal's pages read grading.
    for _ in 0..4 {
        let _ = client
            .get(format!("{}/", reg.url))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let page = client
            .get(format!("{}/students", portal.url))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert!(
            !page.status().is_success(),
            "the endless answer is an error page"
        );
    }
    assert!(
        memory_mb("VmRSS", reg.pid()) < 100.0,
        "registry: {} MB",
        memory_mb("VmRSS", reg.pid())
    );
    assert!(
        memory_mb("VmRSS", portal.pid()) < 100.0,
        "portal: {} MB",
        memory_mb("VmRSS", portal.pid())
    );
}

#[tokio::test]
async fn the_catalog_and_the_watch_streams_have_caps() {
    let reg = registry(&["--max-instances", "2", "--max-watch-streams", "1"]).await;
    let fakes = [
        FakeService::start().await,
        FakeService::start().await,
        FakeService::start().await,
    ];
    register_ok(&reg.url, &fakes[0].registration("A", &[])).await;
    register_ok(&reg.url, &fakes[1].registration("B", &[])).await;
    let answer = register_raw(&reg.url, &fakes[2].registration("C", &[])).await;
    assert_eq!(answer.status(), 503);
    let error: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], "catalog_full");
    assert!(instance(&reg.url, &fakes[2].url).await.is_none());
    // Re-registering a known URL is not a new instance.
    register_ok(&reg.url, &fakes[0].registration("A", &[])).await;

    let first = reqwest::get(format!("{}/v1/watch", reg.url)).await.unwrap();
    assert_eq!(first.status(), 200);
    eventually(
        Duration::from_secs(10),
        "the stream to be counted",
        || async {
            (metric(&reg.url, "rollcall_registry_watch_streams").await? >= 1.0).then_some(())
        },
    )
    .await;
    let second = reqwest::get(format!("{}/v1/watch", reg.url)).await.unwrap();
    assert_eq!(second.status(), 503);
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_client_registers_while_a_neighbour_on_the_same_address_floods() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let reg = registry(&["--max-writes-per-client", "20"]).await;
    // The neighbour: four tasks writing as fast as they can over one
    // client's keep-alive connections, the whole time.
    let flooder = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (client, stop, refused, url) = (
            flooder.clone(),
            stop.clone(),
            refused.clone(),
            reg.url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let body = serde_json::json!({"ServiceName": "Flood",
                    "ServiceURL": format!("http://127.0.0.1:9/f{t}-{i}")});
                let answer = client
                    .post(format!("{url}/services"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                if answer.status() == 429 {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    eventually(
        Duration::from_secs(10),
        "the neighbour to spend the address's budget",
        || async { (refused.load(Ordering::Relaxed) > 100).then_some(()) },
    )
    .await;
    // An unmodified classic client: one registration on a connection of its
    // own (and it exits on anything but 200).
    let classic = FakeService::start().await;
    let answer = register_raw(&reg.url, &classic.registration("GradingService", &[])).await;
    assert_eq!(answer.status(), 200);
    // The neighbour is still held to its rate.
    let before = refused.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(10),
        "the neighbour still refused",
        || async { (refused.load(Ordering::Relaxed) > before + 100).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn a_client_writing_too_fast_is_told_to_wait() {
    let reg = registry(&["--max-writes-per-client", "5"]).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let answer = client
            .delete(format!("{}/services", reg.url))
            .body("http://127.0.0.1:9")
            .send()
            .await
            .unwrap();
        if answer.status() == 429 {
            assert!(answer.headers().contains_key("retry-after"));
        }
        statuses.push(answer.status().as_u16());
    }
    assert!(
        statuses.contains(&404),
        "the first writes are answered: {statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "then the client is told to wait: {statuses:?}"
    );
    // Reads are not writes.
    assert_eq!(
        reqwest::get(format!("{}/services", reg.url))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn an_endless_event_line_does_not_grow_the_cli() {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/v1/logs",
            get(|| async { axum::Json(serde_json::json!({"records": [], "scanned_bytes": 0})) }),
        )
        .route(
            "/v1/logs/tail",
            get(|| async {
                let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
                let head = futures_util::stream::once(async {
                    Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(b"data: "))
                });
                let endless = futures_util::stream::repeat_with(move || Ok(chunk.clone()));
                (
                    [("content-type", "text/event-stream")],
                    axum::body::Body::from_stream(futures_util::StreamExt::chain(head, endless)),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let (mut follow, _out, mut err) = spawn_rollcall(&["logs", "--log-url", &url, "-f"]);
    crate::cli::next_with(&mut err, "lost the stream").await;
    let rss = memory_mb("VmRSS", follow.id());
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(rss < 100.0, "the CLI holds {rss} MB");
}

#[tokio::test]
async fn a_client_logging_too_fast_is_told_to_wait() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(
        dir.path(),
        "127.0.0.1:0",
        "",
        &["--max-writes-per-client", "5"],
    )
    .await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..30 {
        let answer = client
            .post(format!("{}/log", log.url))
            .body(format!("[A] - line {i}"))
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    let stored = all_logs(&log.url, "service=A").await.len();
    assert_eq!(
        stored,
        statuses.iter().filter(|s| **s == 200).count(),
        "what was refused was not stored"
    );
}
