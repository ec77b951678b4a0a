//! A classic-style service: raw axum routes, no SDK. It keeps its providers
//! the way the original Go client did (a list per name; `Added` appends,
//! `Removed` deletes), records every patch with the time it arrived, and can be
//! told to misbehave.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use rollcall_proto::Patch;
use tokio_util::sync::CancellationToken;

/// How an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// Answer with this status.
    Status(u16),
    /// Accept the request and never answer.
    Hang,
    /// Answer after this delay.
    Delay(Duration),
    /// Answer 307 with `Location` at the same path on this address.
    Redirect(std::net::SocketAddr),
}

#[derive(Debug)]
struct Inner {
    heartbeat: Mode,
    patch: Mode,
    patches: Vec<(Instant, Patch)>,
    table: BTreeMap<String, Vec<String>>,
    heartbeats: u64,
}

/// A fake classic service on port 0.
#[derive(Debug, Clone)]
pub struct FakeService {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    stop: CancellationToken,
}

async fn answer(mode: Mode, path: &str) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if let Mode::Redirect(to) = mode {
        let location = format!("http://{to}{path}");
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, location)],
        )
            .into_response();
    }
    status_of(mode).await.into_response()
}

async fn status_of(mode: Mode) -> StatusCode {
    match mode {
        Mode::Ok | Mode::Redirect(_) => StatusCode::OK,
        Mode::Status(s) => StatusCode::from_u16(s).unwrap(),
        Mode::Hang => {
            std::future::pending::<()>().await;
            StatusCode::OK
        }
        Mode::Delay(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
    }
}

async fn heartbeat(State(inner): State<Arc<Mutex<Inner>>>) -> axum::response::Response {
    let mode = {
        let mut i = inner.lock().unwrap();
        i.heartbeats += 1;
        i.heartbeat
    };
    answer(mode, "/heartbeat").await
}

async fn patch(State(inner): State<Arc<Mutex<Inner>>>, body: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mode = inner.lock().unwrap().patch;
    if matches!(mode, Mode::Redirect(_)) {
        return answer(mode, "/services").await;
    }
    let status = status_of(mode).await;
    if status == StatusCode::OK {
        let Ok(p) = serde_json::from_slice::<Patch>(&body) else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let mut i = inner.lock().unwrap();
        for e in &p.added {
            i.table
                .entry(e.name.to_string())
                .or_default()
                .push(e.url.to_string());
        }
        for e in &p.removed {
            if let Some(list) = i.table.get_mut(e.name.as_str()) {
                list.retain(|u| u != e.url.as_str());
            }
        }
        i.patches.push((Instant::now(), p));
    }
    status.into_response()
}

impl FakeService {
    /// Starts one on a free port.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts one serving `https` with `tls`.
    pub async fn start_tls(tls: rollcall_http::tls::Acceptor) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<rollcall_http::tls::Acceptor>) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            heartbeat: Mode::Ok,
            patch: Mode::Ok,
            patches: Vec::new(),
            table: BTreeMap::new(),
            heartbeats: 0,
        }));
        let app = Router::new()
            .route("/heartbeat", get(heartbeat))
            .route("/services", post(patch))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let token = stop.clone();
        match tls {
            // Over TLS, the way every rollcall service serves.
            Some(tls) => drop(tokio::spawn(rollcall_http::server::serve_with(
                listener,
                app,
                token,
                Duration::from_secs(1),
                rollcall_http::server::Limits::default(),
                Some(tls),
            ))),
            None => drop(tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await;
            })),
        }
        Self { url, inner, stop }
    }

    /// The classic registration body for this service (Go field casing,
    /// `null` when nothing is required).
    pub fn registration(&self, name: &str, requires: &[&str]) -> serde_json::Value {
        serde_json::json!({
            "ServiceName": name,
            "ServiceURL": self.url,
            "RequiredServices": if requires.is_empty() { serde_json::Value::Null } else { serde_json::json!(requires) },
            "ServiceUpdateURL": format!("{}/services", self.url),
            "HeartbeatURL": format!("{}/heartbeat", self.url),
        })
    }

    pub fn set_heartbeat(&self, mode: Mode) {
        self.inner.lock().unwrap().heartbeat = mode;
    }

    pub fn set_patch(&self, mode: Mode) {
        self.inner.lock().unwrap().patch = mode;
    }

    /// Stops listening: its port refuses connections from now on. (Requests
    /// already hanging stay open, as with a process that stopped accepting.)
    pub fn close(&self) {
        self.stop.cancel();
    }

    /// The providers it holds for `name`.
    pub fn providers(&self, name: &str) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .table
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Every patch received, with when it arrived.
    pub fn patches(&self) -> Vec<(Instant, Patch)> {
        self.inner.lock().unwrap().patches.clone()
    }

    pub fn heartbeats(&self) -> u64 {
        self.inner.lock().unwrap().heartbeats
    }
}
