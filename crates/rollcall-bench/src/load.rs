//! The load generator: `connections` keep-alive HTTP/1.1 connections, each
//! sending one request after another, until a deadline or a request count.
//! Built on hyper's client connection directly, so the client costs as little
//! as possible and is the same for every target, the ceiling included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::stats::Samples;

/// What a load run measured.
#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    /// 2xx answers.
    pub ok: u64,
    /// Other answers.
    pub rejected: u64,
    /// Connection or protocol errors.
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies: Samples,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Builds the request with this sequence number (0, 1, 2, ...).
pub type MakeRequest = Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync>;

/// Runs load against `addr`.
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    max_requests: Option<u64>,
    make: MakeRequest,
) -> LoadResult {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let (next, make) = (next.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut result = LoadResult::default();
            let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                result.errors += 1;
                return result;
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                result.errors += 1;
                return result;
            };
            tokio::spawn(conn);
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if max_requests.is_some_and(|max| seq >= max) {
                    break;
                }
                let sent = Instant::now();
                let response = match sender.send_request(make(seq)).await {
                    Ok(r) => r,
                    Err(_) => {
                        result.errors += 1;
                        break;
                    }
                };
                let status = response.status();
                if response.into_body().collect().await.is_err() {
                    result.errors += 1;
                    break;
                }
                result.latencies.push(sent.elapsed());
                if status.is_success() {
                    result.ok += 1;
                } else {
                    result.rejected += 1;
                }
            }
            result
        }));
    }
    let mut total = LoadResult::default();
    for task in tasks {
        if let Ok(r) = task.await {
            total.ok += r.ok;
            total.rejected += r.rejected;
            total.errors += r.errors;
            total.latencies.0.extend(r.latencies.0);
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// A request with a body.
pub fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}
