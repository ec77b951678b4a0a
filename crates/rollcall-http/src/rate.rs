//! Per-client write rate limits: a token bucket per client address; a write
//! past it is a 429 with `Retry-After`, before anything is read or changed.
//! Reads are not limited here (they change nothing; connections bound them).
//!
//! Every process on a host is one client address, so one busy process would
//! spend the budget of all of them: an unmodified classic client (one
//! registration on a connection of its own, exiting on any non-200) would be
//! refused because a neighbour floods over keep-alive connections. So the
//! first write on a connection may also be paid from a second, smaller
//! bucket of the address's ([`WriteLimit::FIRST_WRITES`]): a newcomer gets
//! in while a neighbour keeps its connections busy, and a client that opens
//! a connection per write still meets a bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::error_response;

/// Most client addresses remembered; past it the fullest buckets (idle
/// clients) are forgotten.
const MAX_CLIENTS: usize = 10_000;

/// Token buckets, one per client address, refilled at `per_second` and
/// holding at most `burst`; at most [`MAX_CLIENTS`] addresses remembered.
#[derive(Debug)]
struct Buckets {
    per_second: f64,
    burst: f64,
    by_client: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Buckets {
    fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst,
            by_client: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `client`'s bucket: `Err(seconds to wait)` if empty.
    fn take(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let (per_second, burst) = (self.per_second, self.burst);
        let mut buckets = self
            .by_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            // Forget the clients whose buckets are full again (idle ones);
            // if every one is busy, forget one anyway: the map stays bounded.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_second < burst
            });
            if buckets.len() >= MAX_CLIENTS
                && let Some(any) = buckets.keys().next().copied()
            {
                buckets.remove(&any);
            }
        }
        let (tokens, at) = buckets.entry(client).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

/// Writes per second per client address, with a burst of twice that; `None`:
/// no limit.
#[derive(Debug)]
pub struct WriteLimit {
    limits: Option<(Buckets, Buckets)>,
}

/// How many writes a connection has made, kept on the connection (the
/// server puts it in every request's extensions).
#[derive(Debug, Clone, Default)]
pub struct ConnectionWrites(Arc<std::sync::atomic::AtomicU64>);

impl ConnectionWrites {
    fn first(&self) -> bool {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0
    }
}

impl WriteLimit {
    /// The burst of the first-writes bucket; it refills at a tenth of the
    /// rate (at least 1 a second).
    pub const FIRST_WRITES: f64 = 20.0;

    /// `per_second` of 0: no limit.
    pub fn new(per_second: u32) -> Arc<Self> {
        let rate = f64::from(per_second);
        Arc::new(Self {
            limits: (per_second > 0).then(|| {
                (
                    Buckets::new(rate, 2.0 * rate),
                    Buckets::new((rate / 10.0).max(1.0), Self::FIRST_WRITES),
                )
            }),
        })
    }

    /// Takes one write from `client`'s bucket; the first write of a
    /// connection (`first_on_connection`) may also be paid from the
    /// address's first-writes bucket. `Err(seconds to wait)` if neither has
    /// a token.
    pub fn take_on(
        &self,
        client: IpAddr,
        first_on_connection: bool,
        now: Instant,
    ) -> Result<(), u64> {
        let Some((all, first_writes)) = &self.limits else {
            return Ok(());
        };
        let taken = all.take(client, now);
        if taken.is_err() && first_on_connection && first_writes.take(client, now).is_ok() {
            return Ok(());
        }
        taken
    }

    /// Takes one write from `client`'s bucket: `Err(seconds to wait)` if empty.
    pub fn take(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        self.take_on(client, false, now)
    }
}

/// Middleware: limits state-changing requests per client address.
pub async fn guard(State(limit): State<Arc<WriteLimit>>, req: Request, next: Next) -> Response {
    match admit(&limit, &req) {
        Ok(()) => next.run(req).await,
        Err(refusal) => *refusal,
    }
}

/// What [`guard`] does before the handler: a 429 for a client over its rate.
pub fn admit(limit: &WriteLimit, req: &Request) -> Result<(), Box<Response>> {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let client = crate::access::client_ip(req.extensions());
    let first = write
        && req
            .extensions()
            .get::<ConnectionWrites>()
            .is_some_and(ConnectionWrites::first);
    if write
        && let Some(client) = client
        && let Err(wait) = limit.take_on(client, first, Instant::now())
    {
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_writes",
            format!(
                "this client sends more writes than --max-writes-per-client allows; retry in {wait} s"
            ),
        );
        if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Err(Box::new(response));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_a_burst_then_its_rate_and_others_are_unaffected() {
        let limit = WriteLimit::new(10);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(limit.take(a, t0).is_ok());
        }
        assert_eq!(limit.take(a, t0), Err(1));
        assert!(limit.take(b, t0).is_ok(), "another client");
        let later = t0 + std::time::Duration::from_millis(200);
        assert!(limit.take(a, later).is_ok(), "two tokens came back");
        assert!(WriteLimit::new(0).take(a, t0).is_ok());
    }

    #[test]
    fn a_first_write_on_a_connection_gets_in_while_the_address_is_spent() {
        let limit = WriteLimit::new(10);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        // A neighbour on the same address spends its budget over a
        // keep-alive connection: only its first write is a first.
        let busy = ConnectionWrites::default();
        for _ in 0..20 {
            assert!(limit.take_on(a, busy.first(), t0).is_ok());
        }
        assert_eq!(limit.take_on(a, busy.first(), t0), Err(1));
        // A newcomer's first write gets in; its second waits like the rest.
        let newcomer = ConnectionWrites::default();
        assert!(limit.take_on(a, newcomer.first(), t0).is_ok());
        assert_eq!(limit.take_on(a, newcomer.first(), t0), Err(1));
        // A connection per write meets the first-writes bound too.
        let mut admitted = 0;
        for _ in 0..100 {
            if limit
                .take_on(a, ConnectionWrites::default().first(), t0)
                .is_ok()
            {
                admitted += 1;
            }
        }
        assert_eq!(admitted, WriteLimit::FIRST_WRITES as usize - 1);
    }
}
