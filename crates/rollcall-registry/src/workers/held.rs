//! Held connections: the checker keeps the keep-alive connection of each
//! `http` instance's last check open, uses it for the next check, and watches
//! it in between. A server that keeps idle connections open (Go's does,
//! forever) closes them only when it is told to or when its process dies —
//! and then the kernel tells the other end at once. So a connection that
//! closes while held makes its instance *suspect*: it is checked at once, and
//! one failure (a refused connection) takes it out. A classic service killed
//! with SIGKILL is out of discovery in milliseconds, without a check interval
//! and without anything in the service but an ordinary HTTP/1.1 server.
//!
//! Bounded: at most `--max-held-connections` are held; past it, an instance
//! is checked through the ordinary pooled client, as without held
//! connections (counted as not held). A connection not used by a check for a few
//! intervals (its instance left, or another replica checks it) is dropped by
//! [`HeldConnections::sweep`]. A server that answers `Connection: close` (or
//! HTTP/1.0) is checked on a fresh connection each time, as before; one that
//! closes idle connections after a while only causes an early check. `https`
//! heartbeat URLs are checked through the ordinary client (not held).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use rollcall_http::signing::SigningKey;
use rollcall_proto::ServiceUrl;
use tokio_util::sync::CancellationToken;

use crate::catalog::health::CheckOutcome;
use crate::shell::Registry;
use crate::workers::outbound::{CallError, MAX_ANSWER_READ};

/// The read buffer of a held connection (an answer's head must fit).
const READ_BUFFER: usize = 4096;

const AGENT: &str = concat!("rollcall-registry/", env!("CARGO_PKG_VERSION"));

/// The checker's held connections (cheap to clone).
#[derive(Clone)]
pub struct HeldConnections {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HeldConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldConnections")
            .field("held", &lock(&self.inner.idle).len())
            .field("cap", &self.inner.cap)
            .finish()
    }
}

struct Inner {
    /// Held connections by instance (at most `cap`).
    idle: Mutex<HashMap<ServiceUrl, Conn>>,
    cap: usize,
    registry: Registry,
}

impl Inner {
    fn set_gauge(&self, held: usize) {
        self.registry
            .metrics()
            .held_connections
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }
}

/// One held connection. Dropping it closes the socket (and stops its
/// watcher without reporting anything).
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    /// `host:port` it is connected to (a re-registration may move the
    /// heartbeat elsewhere).
    authority: String,
    watch: Arc<Watch>,
    /// When a check last put it back.
    put_at: Instant,
}

/// Shared by a connection and its watcher.
#[derive(Default)]
struct Watch {
    /// Held between checks: closing now is news.
    idle: AtomicBool,
    /// Dropped on purpose: the watcher stops.
    dropped: CancellationToken,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.watch.idle.store(false, Ordering::Release);
        self.watch.dropped.cancel();
    }
}

fn lock(
    idle: &Mutex<HashMap<ServiceUrl, Conn>>,
) -> std::sync::MutexGuard<'_, HashMap<ServiceUrl, Conn>> {
    idle.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a check's URL says to connect to and ask for.
struct Target {
    /// The URL as registered (what a signature names).
    url: String,
    authority: String,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn parse(url: &ServiceUrl) -> Result<Self, CallError> {
        let uri: hyper::Uri = url
            .as_str()
            .parse()
            .map_err(|e| CallError::Failed(format!("invalid heartbeat URL: {e}")))?;
        let authority = uri
            .authority()
            .ok_or_else(|| CallError::Failed("the heartbeat URL has no host".to_owned()))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Self {
            url: url.as_str().to_owned(),
            authority: authority.as_str().to_owned(),
            host,
            port: authority.port_u16().unwrap_or(80),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

/// How a check's answer went.
struct Answer {
    status: hyper::StatusCode,
    /// The server keeps the connection open after it.
    reusable: bool,
}

impl HeldConnections {
    pub fn new(registry: Registry) -> Self {
        let cap = registry
            .config()
            .max_held_connections
            .min(rollcall_http::server::descriptor_limit().map_or(usize::MAX, |fds| fds / 4));
        Self {
            inner: Arc::new(Inner {
                idle: Mutex::new(HashMap::new()),
                cap,
                registry,
            }),
        }
    }

    /// Checks `instance` by `GET`ting `heartbeat` (any 2xx within `timeout`
    /// passes) on its held connection, or a new one it then holds.
    pub async fn probe(
        &self,
        instance: &ServiceUrl,
        heartbeat: &ServiceUrl,
        timeout: Duration,
        key: Option<&SigningKey>,
    ) -> CheckOutcome {
        crate::workers::outbound::timed_check(timeout, self.attempt(instance, heartbeat, key)).await
    }

    /// Whether `instance`'s checks of `heartbeat` go through a held
    /// connection: an `http` one (`https` goes through the ordinary client),
    /// already held or with room for it. Past the cap, checks go through
    /// the ordinary pooled client, as without held connections (each such
    /// check counted).
    pub fn may_hold(&self, instance: &ServiceUrl, heartbeat: &ServiceUrl) -> bool {
        if !heartbeat.as_str().starts_with("http://") {
            return false;
        }
        let idle = lock(&self.inner.idle);
        let room = idle.contains_key(instance) || idle.len() < self.inner.cap;
        drop(idle);
        if !room {
            self.inner
                .registry
                .metrics()
                .held_connections_over_cap
                .inc();
        }
        room
    }

    async fn attempt(
        &self,
        instance: &ServiceUrl,
        heartbeat: &ServiceUrl,
        key: Option<&SigningKey>,
    ) -> Result<(), CallError> {
        let target = Target::parse(heartbeat)?;
        if let Some(mut conn) = self.take(instance, &target) {
            // A held connection the server closed just now fails at once;
            // a check is idempotent, so it is asked again on a new one.
            if let Ok(answer) = exchange(&mut conn.sender, &target, key).await {
                return self.finish(instance, conn, &answer);
            }
        }
        let mut conn = self.connect(instance, &target).await?;
        let answer = exchange(&mut conn.sender, &target, key).await?;
        self.finish(instance, conn, &answer)
    }

    /// Holds `conn` again if the server keeps it; the check's result.
    fn finish(&self, instance: &ServiceUrl, conn: Conn, answer: &Answer) -> Result<(), CallError> {
        if answer.reusable {
            self.put(instance, conn);
        }
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(CallError::Status(answer.status.as_u16()))
        }
    }

    /// Takes `instance`'s held connection out for a check.
    fn take(&self, instance: &ServiceUrl, target: &Target) -> Option<Conn> {
        let mut idle = lock(&self.inner.idle);
        let conn = idle.remove(instance)?;
        self.inner.set_gauge(idle.len());
        drop(idle);
        conn.watch.idle.store(false, Ordering::Release);
        (conn.authority == target.authority && !conn.sender.is_closed()).then_some(conn)
    }

    /// Holds `conn` until the next check of `instance`; at the cap it is
    /// dropped instead (counted): the ones held stay held, rather than each
    /// new one pushing out the next to be checked.
    fn put(&self, instance: &ServiceUrl, mut conn: Conn) {
        let mut idle = lock(&self.inner.idle);
        if idle.len() >= self.inner.cap && !idle.contains_key(instance) {
            drop(idle);
            self.inner
                .registry
                .metrics()
                .held_connections_over_cap
                .inc();
            return;
        }
        conn.put_at = Instant::now();
        conn.watch.idle.store(true, Ordering::Release);
        let replaced = idle.insert(instance.clone(), conn);
        self.inner.set_gauge(idle.len());
        drop(idle);
        drop(replaced);
    }

    /// Drops connections no check has used since `before` (their instance
    /// left, or is checked by another replica now). Walks at most the cap.
    pub fn sweep(&self, before: Instant) {
        let mut idle = lock(&self.inner.idle);
        let stale: Vec<ServiceUrl> = idle
            .iter()
            .filter(|(_, c)| c.put_at < before)
            .map(|(url, _)| url.clone())
            .collect();
        let dropped: Vec<Conn> = stale.iter().filter_map(|url| idle.remove(url)).collect();
        self.inner.set_gauge(idle.len());
        drop(idle);
        drop(dropped);
    }

    /// Opens a connection for `instance`'s checks and starts its watcher.
    async fn connect(&self, instance: &ServiceUrl, target: &Target) -> Result<Conn, CallError> {
        let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| CallError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        // A small fixed read buffer: a heartbeat's answer is small, and
        // thousands of these are held.
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .read_buf_exact_size(Some(READ_BUFFER))
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| CallError::Connect(e.to_string()))?;
        let watch = Arc::new(Watch::default());
        let watcher = watch.clone();
        let held = Arc::downgrade(&self.inner);
        let url = instance.clone();
        let shutdown = self.inner.registry.shutdown_token().clone();
        self.inner.registry.spawn(async move {
            tokio::select! {
                _ = connection => {
                    if watcher.idle.load(Ordering::Acquire) {
                        lost(&held, &url, &watcher);
                    }
                }
                () = watcher.dropped.cancelled() => {}
                () = shutdown.cancelled() => {}
            }
        });
        Ok(Conn {
            sender,
            authority: target.authority.clone(),
            watch,
            put_at: Instant::now(),
        })
    }
}

/// A held connection closed by the other end between checks: forget it and
/// make its instance suspect.
fn lost(held: &Weak<Inner>, url: &ServiceUrl, watch: &Arc<Watch>) {
    let Some(inner) = held.upgrade() else {
        return;
    };
    let conn = {
        let mut idle = lock(&inner.idle);
        let ours = idle.get(url).is_some_and(|c| Arc::ptr_eq(&c.watch, watch));
        let conn = ours.then(|| idle.remove(url)).flatten();
        inner.set_gauge(idle.len());
        conn
    };
    if conn.is_none() {
        return;
    }
    drop(conn);
    inner.registry.metrics().held_connections_lost.inc();
    tracing::debug!(%url, "held connection closed by the instance; checking it now");
    inner.registry.contact_lost(url);
}

/// Sends one check on `sender` and reads a little of the answer.
async fn exchange(
    sender: &mut SendRequest<Empty<Bytes>>,
    target: &Target,
    key: Option<&SigningKey>,
) -> Result<Answer, CallError> {
    sender
        .ready()
        .await
        .map_err(|e| CallError::Connect(e.to_string()))?;
    let mut request = hyper::Request::get(target.path.as_str())
        .header(HOST, target.authority.as_str())
        .header(USER_AGENT, AGENT);
    if let Some(key) = key {
        for (name, value) in key.sign(
            "GET",
            &target.url,
            b"",
            rollcall_proto::Timestamp::system_now().0,
        ) {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| CallError::Failed(format!("invalid request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| CallError::Failed(e.to_string()))?;
    let status = response.status();
    let mut reusable = response.version() == hyper::Version::HTTP_11
        && !response.headers().get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
        });
    let mut body = response.into_body();
    let mut read = 0;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                read += frame.data_ref().map_or(0, Bytes::len);
                if read > MAX_ANSWER_READ {
                    // Not worth reading on: the connection goes.
                    reusable = false;
                    break;
                }
            }
            Some(Err(_)) => {
                reusable = false;
                break;
            }
            None => break,
        }
    }
    Ok(Answer { status, reusable })
}

/// Drops held connections no check used for a while, every few seconds,
/// until shutdown.
pub async fn run_sweeper(held: HeldConnections, registry: Registry) {
    let unused = (registry.config().check_interval * 3).max(Duration::from_secs(30));
    let shutdown = registry.shutdown_token().clone();
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Some(before) = Instant::now().checked_sub(unused) {
            held.sweep(before);
        }
    }
}
