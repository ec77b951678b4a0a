//! Per-client write rate limits: a token bucket per client address; a write
//! past it is a 429 with `Retry-After`, before anything is read or changed.
//! Reads are not limited here (they change nothing; connections bound them).

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

/// Writes per second per client address, with a burst of twice that.
#[derive(Debug)]
pub struct WriteLimit {
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl WriteLimit {
    /// `per_second` of 0: no limit.
    pub fn new(per_second: u32) -> Arc<Self> {
        Arc::new(Self {
            per_second: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one write from `client`'s bucket: `Err(seconds to wait)` if empty.
    pub fn take(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let burst = 2.0 * self.per_second;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            // Forget the clients whose buckets are full again (idle ones);
            // if every one is busy, forget one anyway: the map stays bounded.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * self.per_second < burst
            });
            if buckets.len() >= MAX_CLIENTS
                && let Some(any) = buckets.keys().next().copied()
            {
                buckets.remove(&any);
            }
        }
        let (tokens, at) = buckets.entry(client).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64)
        }
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
    if write
        && let Some(client) = client
        && let Err(wait) = limit.take(client, Instant::now())
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
}
