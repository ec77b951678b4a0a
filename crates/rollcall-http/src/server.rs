//! Serving a router with limits, so that nobody can hold a service by its
//! sockets: at most `max_connections` open at once (never more than the
//! process's file-descriptor limit allows, less a reserve), at most
//! `max_per_client` from one address, request headers within
//! `header_timeout` (slowloris), and a connection idle between requests for
//! `header_timeout` is closed. A connection over a limit is closed at once,
//! before anything is read from it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_client: 1024,
            header_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// `max_connections`, lowered to what the process may open.
    pub fn effective_max(&self) -> usize {
        match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
            Ok((soft, _)) => {
                let allowed = usize::try_from(soft)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(64);
                self.max_connections.min(allowed.max(1))
            }
            Err(_) => self.max_connections,
        }
    }
}

/// Open connections, in all and per client address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// Releases a connection's place when it ends.
struct Place {
    open: Arc<Mutex<Open>>,
    client: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.total -= 1;
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.client);
            }
        }
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
        let Some(place) = admit(&open, peer.ip(), max, limits.max_connections_per_client) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = shutdown.clone();
        let header_timeout = limits.header_timeout;
        let tls = tls.clone();
        connections.spawn(async move {
            let _place = place;
            match tls {
                None => serve_connection(stream, peer, router, header_timeout, stop).await,
                Some(tls) => {
                    // The handshake counts against the header timeout: a
                    // client that opens and says nothing is cut off alike.
                    match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, router, header_timeout, stop).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
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
    header_timeout: Duration,
    stop: CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                Ok::<_, Infallible>(
                    router
                        .oneshot(request.map(axum::body::Body::new))
                        .await
                        .unwrap_or_else(|e| match e {}),
                )
            }
        });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
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

/// A place for a connection from `client`, unless a limit is reached.
fn admit(open: &Arc<Mutex<Open>>, client: IpAddr, max: usize, per_client: usize) -> Option<Place> {
    let mut state = open
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let from_client = state.per_client.get(&client).copied().unwrap_or(0);
    if state.total >= max || from_client >= per_client {
        return None;
    }
    state.total += 1;
    *state.per_client.entry(client).or_default() += 1;
    Some(Place {
        open: open.clone(),
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_in_all_and_per_client_and_given_back() {
        let open = Arc::new(Mutex::new(Open::default()));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = admit(&open, a, 3, 2).unwrap();
        let _second = admit(&open, a, 3, 2).unwrap();
        assert!(admit(&open, a, 3, 2).is_none(), "per client");
        let _third = admit(&open, b, 3, 2).unwrap();
        assert!(admit(&open, b, 3, 2).is_none(), "in all");
        drop(first);
        assert!(admit(&open, a, 3, 2).is_some(), "a place given back");
    }
}
