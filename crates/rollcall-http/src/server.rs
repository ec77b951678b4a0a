//! Serving a router with limits, so that nobody can hold a service by its
//! sockets: at most `max_connections` open at once (never more than the
//! process's file-descriptor limit allows, less a reserve), at most
//! `max_per_client` from one address, request headers within
//! `header_timeout` (slowloris), a request's body within `body_timeout`, and a
//! connection idle between requests for `header_timeout` is closed. A
//! connection over the per-client limit is closed at once, before anything is
//! read from it. At the overall limit, a new connection takes the place of
//! the longest-open one that has no request in progress (one still sending
//! its headers, or idle between requests): idle sockets from many addresses
//! cannot lock everyone else out, while requests and streams in progress are
//! never cut for a newcomer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tower_http::timeout::DeadlineBody;

/// How a service serves, the flags every service shares (the registry
/// flattens it, SDK services through their `Membership`): the host names
/// browsers may use, connection limits, TLS.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub hosts: crate::browser::HostArgs,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

/// Connection limits (flatten into a service's settings).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Limits {
    /// Most connections open at once (further ones are closed at once).
    /// Never more than the file-descriptor limit allows, less 64.
    #[arg(long, env = "ROLLCALL_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Most connections open at once from one client address.
    #[arg(
        long,
        env = "ROLLCALL_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 1024
    )]
    pub max_connections_per_client: usize,
    /// Time a client has to send a request's headers, and the longest a
    /// connection may sit idle between requests.
    #[arg(long, env = "ROLLCALL_HEADER_TIMEOUT", default_value = "10s", value_parser = rollcall_proto::units::parse_duration)]
    pub header_timeout: Duration,
    /// Time a client has to send a request's body once its headers are in
    /// (408 past it).
    #[arg(long, env = "ROLLCALL_BODY_TIMEOUT", default_value = "30s", value_parser = rollcall_proto::units::parse_duration)]
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_client: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// `max_connections`, lowered to what the process may open.
    pub fn effective_max(&self) -> usize {
        match descriptor_limit() {
            Some(soft) => self.max_connections.min(soft.saturating_sub(64).max(1)),
            None => self.max_connections,
        }
    }
}

/// How many file descriptors the process may open (its soft limit).
pub fn descriptor_limit() -> Option<usize> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX))
}

/// Open connections, in all and per client address, oldest first.
#[derive(Debug, Default)]
struct Open {
    next_id: u64,
    per_client: HashMap<IpAddr, usize>,
    connections: std::collections::BTreeMap<u64, Connection>,
}

/// One open connection, as the admission sees it.
#[derive(Debug)]
struct Connection {
    client: IpAddr,
    /// Requests in progress (a streaming answer counts until it ends).
    busy: Arc<AtomicUsize>,
    /// Fired to make it give its place to a newcomer.
    evict: CancellationToken,
    /// Fired once it is closed and its descriptor given back.
    gone: CancellationToken,
}

/// A connection's place: its in-progress count and eviction signal; gives
/// the place back when dropped.
struct Place {
    open: Arc<Mutex<Open>>,
    id: u64,
    busy: Arc<AtomicUsize>,
    evict: CancellationToken,
    gone: CancellationToken,
}

fn lock(open: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    open.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Open {
    /// Forgets connection `id` (closed).
    fn release(&mut self, id: u64) {
        if let Some(c) = self.connections.remove(&id)
            && let Some(n) = self.per_client.get_mut(&c.client)
        {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&c.client);
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        lock(&self.open).release(self.id);
        self.gone.cancel();
    }
}

/// Counts one request in progress on a connection while it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `router` on `listener` with `limits` (over TLS with `tls`) until
/// `shutdown` fires, then lets in-flight requests (streams included) finish
/// for up to `drain`.
/// Handlers see the client's address as `ConnectInfo<SocketAddr>`.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    drain: Duration,
    limits: Limits,
    tls: Option<crate::tls::Acceptor>,
) -> std::io::Result<()> {
    let max = limits.effective_max();
    let open = Arc::new(Mutex::new(Open::default()));
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept:
                    // wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some((place, evicted)) =
            admit(&open, peer.ip(), max, limits.max_connections_per_client)
        else {
            drop(stream);
            continue;
        };
        if let Some(gone) = evicted {
            // Wait for the evicted connection to close, so descriptors stay
            // within the limit however fast newcomers arrive.
            let _ = tokio::time::timeout(Duration::from_secs(1), gone.cancelled()).await;
        }
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = shutdown.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let evicted = place.evict.clone();
            let busy = place.busy.clone();
            let serve = async move {
                match tls {
                    None => serve_connection(stream, peer, router, limits, busy, stop).await,
                    Some(tls) => {
                        // The handshake counts against the header timeout: a
                        // client that opens and says nothing is cut off alike.
                        match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await
                        {
                            Ok(Ok(stream)) => {
                                serve_connection(stream, peer, router, limits, busy, stop).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                () = serve => {}
                // Dropping the connection closes it.
                () = evicted.cancelled() => tracing::debug!(%peer, "idle connection closed for a newcomer"),
            }
            drop(place);
        });
    }
    // New connections are refused from now on, not left in the backlog.
    drop(listener);
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            "in-flight requests did not finish before the shutdown deadline"
        );
    }
    Ok(())
}

/// Serves HTTP/1.1 on one connection (plain or TLS) until it ends, or
/// gracefully once `stop` fires.
async fn serve_connection<IO>(
    stream: IO,
    peer: std::net::SocketAddr,
    router: Router,
    limits: Limits,
    busy: Arc<AtomicUsize>,
    stop: CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt as _;
    let body_timeout = limits.body_timeout;
    let writes = crate::rate::ConnectionWrites::default();
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            // In progress from its headers to the end of its answer (a
            // stream's included): not evicted for a newcomer meanwhile.
            let in_progress = Busy::new(&busy);
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(writes.clone());
            // A GET's body is not read by any handler but a stream's, which
            // reads its liveness beats for as long as it lives, each within
            // a deadline of its own.
            let request = if request.method() == hyper::Method::GET {
                request.map(axum::body::Body::new)
            } else {
                request.map(|body| axum::body::Body::new(DeadlineBody::new(body_timeout, body)))
            };
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await.unwrap_or_else(|e| match e {});
                Ok::<_, Infallible>(response.map(|body| {
                    axum::body::Body::new(body.map_frame(move |frame| {
                        let _ = &in_progress;
                        frame
                    }))
                }))
            }
        });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// A place for a connection from `client`, unless it has `per_client`
/// open already. At `max`, the oldest connection with nothing in progress
/// is told to close for it (returned: fired once it is closed); if every
/// one is busy, there is no place.
fn admit(
    open: &Arc<Mutex<Open>>,
    client: IpAddr,
    max: usize,
    per_client: usize,
) -> Option<(Place, Option<CancellationToken>)> {
    let mut state = lock(open);
    if state.per_client.get(&client).copied().unwrap_or(0) >= per_client {
        return None;
    }
    let mut evicted = None;
    if state.connections.len() >= max {
        let victim = state
            .connections
            .values()
            .find(|c| !c.evict.is_cancelled() && c.busy.load(Ordering::Acquire) == 0)?;
        victim.evict.cancel();
        evicted = Some(victim.gone.clone());
    }
    let id = state.next_id;
    state.next_id += 1;
    let (busy, evict, gone) = (
        Arc::new(AtomicUsize::new(0)),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    *state.per_client.entry(client).or_default() += 1;
    state.connections.insert(
        id,
        Connection {
            client,
            busy: busy.clone(),
            evict: evict.clone(),
            gone: gone.clone(),
        },
    );
    let place = Place {
        open: open.clone(),
        id,
        busy,
        evict,
        gone,
    };
    Some((place, evicted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(open: &Arc<Mutex<Open>>, client: IpAddr) -> Option<Place> {
        admit(open, client, 3, 2).map(|(place, _)| place)
    }

    #[test]
    fn places_are_counted_per_client_and_the_oldest_idle_one_gives_way() {
        let open = Arc::new(Mutex::new(Open::default()));
        let [a, b, c]: [IpAddr; 3] =
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"].map(|x| x.parse().unwrap());
        let first = place(&open, a).unwrap();
        let second = place(&open, a).unwrap();
        let _working = Busy::new(&second.busy);
        assert!(place(&open, a).is_none(), "per client");
        let third = place(&open, b).unwrap();
        // Full: the oldest idle connection (not the busy one) gives way, and
        // the newcomer is told when it is gone.
        let (fourth, evicted) = admit(&open, b, 3, 2).unwrap();
        let evicted = evicted.expect("someone gave way");
        assert!(first.evict.is_cancelled() && !second.evict.is_cancelled());
        assert!(!evicted.is_cancelled(), "still closing");
        drop(first);
        assert!(evicted.is_cancelled(), "closed");
        assert_eq!(lock(&open).connections.len(), 3);
        assert_eq!(lock(&open).per_client[&a], 1, "its place is given back");
        // When every connection is busy, a newcomer is turned away.
        let _t = Busy::new(&third.busy);
        let _f = Busy::new(&fourth.busy);
        assert!(place(&open, c).is_none(), "everything busy");
        drop(third);
        assert!(place(&open, c).is_some(), "a place given back");
    }
}
