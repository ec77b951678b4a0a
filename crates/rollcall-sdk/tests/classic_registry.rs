//! An SDK service against registries that have no watch stream registers
//! once and carries on the classic way, whatever the registry does with the
//! stream: never answers it (Go's `net/http` answers a handler that did not
//! read the body only after reading that body, and the beats never end),
//! answers 404 or 405, or closes the connection.
//!
//! The fake registry is raw HTTP/1.1 on purpose: it must behave as the
//! original does, not as an axum router would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollcall_sdk::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake registry does with `GET /v1/watch`.
#[derive(Clone, Copy, Debug)]
enum Watch {
    /// Reads the request body until it ends (never), then would answer 404.
    ReadsTheBodyFirst,
    NotFound,
    MethodNotAllowed,
    /// Closes the connection without a word.
    Closes,
}

#[derive(Clone, Default)]
struct Seen {
    registrations: Arc<Mutex<Vec<serde_json::Value>>>,
}

/// Reads one request head; `None` if the connection ends first.
async fn read_head(socket: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Some((head, buf[end + 4..].to_vec()));
        }
        let n = socket.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn answer(socket: &mut TcpStream, status: &str) {
    let text = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = socket.write_all(text.as_bytes()).await;
}

async fn serve_one(mut socket: TcpStream, mode: Watch, seen: Seen, client: reqwest::Client) {
    let Some((head, mut body)) = read_head(&mut socket).await else {
        return;
    };
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    if request_line.starts_with("GET /v1/watch") {
        match mode {
            Watch::ReadsTheBodyFirst => {
                let mut sink = [0u8; 64];
                while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                answer(&mut socket, "404 Not Found").await;
            }
            Watch::NotFound => answer(&mut socket, "404 Not Found").await,
            Watch::MethodNotAllowed => answer(&mut socket, "405 Method Not Allowed").await,
            Watch::Closes => {}
        }
        return;
    }
    let want = content_length(&head);
    while body.len() < want {
        let mut more = [0u8; 4096];
        match socket.read(&mut more).await {
            Ok(n) if n > 0 => body.extend_from_slice(&more[..n]),
            _ => return,
        }
    }
    if request_line.starts_with("POST /services") {
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        // Like the original: it calls every registrant's heartbeat (every
        // second here) for as long as it runs.
        if let Some(heartbeat) = value["HeartbeatURL"].as_str() {
            let heartbeat = heartbeat.to_owned();
            tokio::spawn(async move {
                loop {
                    let _ = client.get(&heartbeat).send().await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        seen.registrations.lock().unwrap().push(value);
    }
    answer(&mut socket, "200 OK").await;
}

async fn classic_registry(mode: Watch) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Seen::default();
    let state = seen.clone();
    let client = reqwest::Client::new();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve_one(socket, mode, state.clone(), client.clone()));
        }
    });
    (url, seen)
}

/// Registers against a registry whose watch stream behaves as `mode` and
/// counts registrations over 30 s.
async fn registrations_in_30s(mode: Watch) -> (Watch, usize) {
    let (url, seen) = classic_registry(mode).await;
    let service = Service::builder("App")
        .registry(&url)
        .classic_silence(Duration::from_secs(4))
        .handle_signals(false)
        .start()
        .await
        .unwrap();
    assert!(service.wait_registered(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let count = seen.registrations.lock().unwrap().len();
    // Still registered the whole time, and told so.
    assert!(service.is_registered(), "{mode:?}: not registered");
    service.shutdown().await;
    (mode, count)
}

#[tokio::test]
async fn against_a_registry_without_a_watch_stream_an_sdk_service_registers_once() {
    let counts = futures_util::future::join_all(
        [
            Watch::ReadsTheBodyFirst,
            Watch::NotFound,
            Watch::MethodNotAllowed,
            Watch::Closes,
        ]
        .map(registrations_in_30s),
    )
    .await;
    for (mode, count) in counts {
        assert_eq!(count, 1, "{mode:?}: {count} registrations in 30 s");
    }
}
