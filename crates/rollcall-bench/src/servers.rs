//! Servers the bench runs itself: the trivial ceiling server (in a child
//! process), and fake receivers and heartbeat endpoints (in this process) that
//! record when each patch arrived.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The ceiling: answers every request with `ok`. Runs until killed.
pub async fn serve_trivial(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    serve(listener, |_req| async {
        Response::new(Full::new(Bytes::from_static(b"ok")))
    })
    .await;
    Ok(())
}

/// One patch as a receiver got it.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Fake receivers (`POST /r/{id}`) and heartbeats (`GET /hb/...`), on several
/// ports so that, like real instances, they are not all one host to the
/// registry's connection pool.
#[derive(Debug, Clone)]
pub struct Receivers {
    pub addrs: Vec<SocketAddr>,
    patches: Arc<Mutex<HashMap<u64, Vec<Arrival>>>>,
    /// When each instance's heartbeat was asked for.
    heartbeats: Arc<Mutex<HashMap<u64, Vec<Instant>>>>,
    changed: watch::Sender<u64>,
}

fn urls(value: &serde_json::Value, key: &str) -> Vec<String> {
    value[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["URL"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Receivers {
    pub async fn start(ports: usize) -> anyhow::Result<Receivers> {
        let (changed, _) = watch::channel(0);
        let receivers = Receivers {
            addrs: Vec::new(),
            patches: Arc::default(),
            heartbeats: Arc::default(),
            changed,
        };
        let mut addrs = Vec::new();
        for _ in 0..ports.max(1) {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(listener.local_addr()?);
            let this = receivers.clone();
            tokio::spawn(serve(listener, move |req| {
                let this = this.clone();
                async move { this.handle(req).await }
            }));
        }
        Ok(Receivers { addrs, ..receivers })
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        if let Some(id) = path
            .strip_prefix("/hb/")
            .and_then(|id| id.parse::<u64>().ok())
        {
            if let Ok(mut heartbeats) = self.heartbeats.lock() {
                heartbeats.entry(id).or_default().push(Instant::now());
            }
            self.changed.send_modify(|n| *n += 1);
            return Response::new(Full::new(Bytes::new()));
        }
        if let Some(id) = path
            .strip_prefix("/r/")
            .and_then(|id| id.parse::<u64>().ok())
        {
            let at = Instant::now();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let arrival = Arrival {
                at,
                added: urls(&value, "Added"),
                removed: urls(&value, "Removed"),
            };
            if let Ok(mut patches) = self.patches.lock() {
                patches.entry(id).or_default().push(arrival);
            }
            self.changed.send_modify(|n| *n += 1);
        }
        Response::new(Full::new(Bytes::new()))
    }

    /// The base URL of the `i`-th instance (spread over the ports).
    pub fn base(&self, i: u64) -> String {
        format!("http://{}", self.addrs[(i as usize) % self.addrs.len()])
    }

    /// A classic registration for receiver `id` requiring `requires`.
    pub fn registration(&self, id: u64, name: &str, requires: &str) -> String {
        let base = self.base(id);
        serde_json::json!({
            "ServiceName": name,
            "ServiceURL": format!("{base}/i/{id}"),
            "RequiredServices": [requires],
            "ServiceUpdateURL": format!("{base}/r/{id}"),
            "HeartbeatURL": format!("{base}/hb/{id}"),
        })
        .to_string()
    }

    /// The first heartbeat of instance `id` asked for after `t`.
    pub fn heartbeat_after(&self, id: u64, t: Instant) -> Option<Instant> {
        let heartbeats = self.heartbeats.lock().ok()?;
        heartbeats.get(&id)?.iter().find(|at| **at > t).copied()
    }

    /// When receiver `id` first held `url` (an `Added`), if it has.
    pub fn added_at(&self, id: u64, url: &str) -> Option<Instant> {
        self.first(id, |a| a.added.iter().any(|u| u == url))
    }

    /// When receiver `id` first was told `url` left (a `Removed`).
    pub fn removed_at(&self, id: u64, url: &str) -> Option<Instant> {
        self.first(id, |a| a.removed.iter().any(|u| u == url))
    }

    fn first(&self, id: u64, matches: impl Fn(&Arrival) -> bool) -> Option<Instant> {
        let patches = self.patches.lock().ok()?;
        patches.get(&id)?.iter().find(|a| matches(a)).map(|a| a.at)
    }

    /// Waits until `done` holds or `timeout` passes; `true` if it held.
    pub async fn wait_until(
        &self,
        timeout: std::time::Duration,
        done: impl Fn(&Self) -> bool,
    ) -> bool {
        let mut changes = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return done(self);
            }
        }
    }
}

/// Watch streams held open against a registry, each read as it arrives,
/// from several loopback source addresses (as from several hosts); dropped,
/// they close.
#[derive(Debug)]
pub struct WatchStreams {
    _readers: tokio::task::JoinSet<()>,
}

impl WatchStreams {
    /// Opens `n` streams to `addr`, `GET /v1/watch?service=NAME{i}`, spread
    /// over `127.0.0.2` … `127.0.0.{sources + 1}`.
    pub async fn open(addr: SocketAddr, n: usize, sources: u8, name: &str) -> anyhow::Result<Self> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut readers = tokio::task::JoinSet::new();
        for i in 0..n {
            let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(sources)) as u8);
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((source, 0)))?;
            let mut stream = socket.connect(addr).await?;
            let request = format!(
                "GET /v1/watch?service={name}{i} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await?;
            readers.spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
        Ok(Self { _readers: readers })
    }
}
