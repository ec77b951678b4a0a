//! Signed calls from the registry to the services it tells things
//! (`--signing-key`, `ROLLCALL_SIGNING_KEY`). Every patch `POST` and every
//! heartbeat `GET` the registry sends carries a timestamp and an
//! HMAC-SHA256 over `"{timestamp}.{METHOD}.{URL}."` followed by the body,
//! where URL is the one the request is sent to; a service holding the same
//! key refuses (401) what is unsigned, forged, signed for another URL (a
//! patch one service received, replayed to another), more than
//! [`MAX_SKEW`] away from its own clock, or — for patches — seen before (a
//! replay).

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::http::HeaderMap;

/// The request's signing time, Unix milliseconds.
pub const TIMESTAMP: &str = "x-rollcall-timestamp";
/// `v1=` and the hex HMAC-SHA256.
pub const SIGNATURE: &str = "x-rollcall-signature";
/// How far a signed request's time may be from the receiver's.
pub const MAX_SKEW: Duration = Duration::from_secs(30);
/// The signature scheme: `v2` signs the recipient's URL too (`v1`, which
/// did not, is refused).
const VERSION: &str = "v2";

/// The shared key: at least 16 visible ASCII characters; shown as
/// `[redacted]`.
#[derive(Clone)]
pub struct SigningKey(hmac::Key);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a signed request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed (the service holds a signing key)")]
    Missing,
    #[error("the signature headers are malformed")]
    Malformed,
    #[error("the signature's time is more than 30 s away from this service's clock")]
    Stale,
    #[error("the signature does not match")]
    Forged,
    #[error("this signed request was already received (a replay)")]
    Replayed,
}

impl SigningKey {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() < 16 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a signing key is at least 16 visible ASCII characters".into());
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, text.as_bytes())))
    }

    /// A new key's text: 32 random bytes, hex.
    pub fn generate() -> Result<String, aws_lc_rs::error::Unspecified> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes)?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The key in `ROLLCALL_SIGNING_KEY`, if set (an invalid one is ignored
    /// with a warning: it could never verify anything).
    pub fn from_env() -> Option<Self> {
        crate::access::from_env("ROLLCALL_SIGNING_KEY", Self::parse)
    }

    /// What is signed: the time, the method, the URL the request is sent
    /// to (so a signature is good at one recipient only: a service cannot
    /// replay a patch signed for it to another) and the body.
    fn message(ts: u64, method: &str, url: &str, body: &[u8]) -> Vec<u8> {
        let mut message = format!("{ts}.{method}.{url}.").into_bytes();
        message.extend_from_slice(body);
        message
    }

    /// The two headers to send with a request to `url` signed at `now_ms`.
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
        now_ms: u64,
    ) -> [(&'static str, String); 2] {
        let tag = hmac::sign(&self.0, &Self::message(now_ms, method, url, body));
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        [
            (TIMESTAMP, now_ms.to_string()),
            (SIGNATURE, format!("{VERSION}={hex}")),
        ]
    }

    /// Checks the signature of a request received at `url` (the URL this
    /// service registered for it; constant-time); returns its time and tag
    /// (for the replay check).
    pub fn verify(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
        headers: &HeaderMap,
        now_ms: u64,
    ) -> Result<(u64, Vec<u8>), SignatureError> {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(ts), Some(signature)) = (header(TIMESTAMP), header(SIGNATURE)) else {
            return Err(SignatureError::Missing);
        };
        let ts: u64 = ts.parse().map_err(|_| SignatureError::Malformed)?;
        let tag = signature
            .strip_prefix(VERSION)
            .and_then(|rest| rest.strip_prefix('='))
            .and_then(unhex)
            .ok_or(SignatureError::Malformed)?;
        if now_ms.abs_diff(ts) > MAX_SKEW.as_millis() as u64 {
            return Err(SignatureError::Stale);
        }
        hmac::verify(&self.0, &Self::message(ts, method, url, body), &tag)
            .map_err(|_| SignatureError::Forged)?;
        Ok((ts, tag))
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signatures received within [`MAX_SKEW`]: a second arrival of one is a
/// replay. Bounded: past `capacity` the oldest are forgotten (and a replay of
/// those is still refused once it is stale).
#[derive(Debug)]
pub struct SeenSignatures {
    capacity: usize,
    seen: Mutex<Seen>,
}

/// Arrival order (for forgetting the oldest) and the set (for lookups).
type Seen = (VecDeque<(u64, Vec<u8>)>, HashSet<Vec<u8>>);

impl SeenSignatures {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: Mutex::new((VecDeque::new(), HashSet::new())),
        }
    }

    /// Records `tag`; `false` if it was already there.
    pub fn first_time(&self, ts: u64, tag: Vec<u8>, now_ms: u64) -> bool {
        let mut guard = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (order, set) = &mut *guard;
        let horizon = now_ms.saturating_sub(2 * MAX_SKEW.as_millis() as u64);
        while order
            .front()
            .is_some_and(|(at, _)| *at < horizon || order.len() >= self.capacity)
        {
            if let Some((_, old)) = order.pop_front() {
                set.remove(&old);
            }
        }
        if !set.insert(tag.clone()) {
            return false;
        }
        order.push_back((ts, tag));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: [(&'static str, String); 2]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn a_signature_verifies_only_for_its_key_recipient_body_method_and_time() {
        let key = SigningKey::parse("a-shared-signing-key").unwrap();
        let other = SigningKey::parse("another-signing-key!").unwrap();
        let now = 1_700_000_000_000;
        let signed = headers(key.sign("POST", "http://a/services", b"{}", now));
        assert!(
            key.verify("POST", "http://a/services", b"{}", &signed, now + 1000)
                .is_ok()
        );
        assert_eq!(
            key.verify("POST", "http://a/services", b"{ }", &signed, now),
            Err(SignatureError::Forged)
        );
        assert_eq!(
            key.verify("GET", "http://a/services", b"{}", &signed, now),
            Err(SignatureError::Forged)
        );
        assert_eq!(
            other.verify("POST", "http://a/services", b"{}", &signed, now),
            Err(SignatureError::Forged)
        );
        // Signed for one service, replayed to another.
        assert_eq!(
            key.verify("POST", "http://b/services", b"{}", &signed, now),
            Err(SignatureError::Forged)
        );
        assert_eq!(
            key.verify("POST", "http://a/services", b"{}", &signed, now + 31_000),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            key.verify("POST", "http://a/services", b"{}", &HeaderMap::new(), now),
            Err(SignatureError::Missing)
        );
        assert!(SigningKey::parse("short").is_err());
        assert_eq!(format!("{key:?}"), "[redacted]");
    }

    #[test]
    fn a_signature_seen_twice_is_a_replay_and_the_memory_is_bounded() {
        let seen = SeenSignatures::new(2);
        let now = 1_000_000;
        assert!(seen.first_time(now, vec![1], now));
        assert!(!seen.first_time(now, vec![1], now));
        assert!(seen.first_time(now, vec![2], now));
        assert!(seen.first_time(now, vec![3], now));
        assert_eq!(seen.seen.lock().unwrap().0.len(), 2);
    }
}
