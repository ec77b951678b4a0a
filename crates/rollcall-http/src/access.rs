//! Who may call a service: with a token set, writes (and, with
//! `--protect-reads`, reads) need `Authorization: Bearer TOKEN`; untokened
//! writes are let in from `--trust-classic-from` addresses only (unmodified
//! classic clients cannot send a token). The token is compared in constant
//! time and never logged or printed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error_response;

/// The access flags every service with a write API shares (flatten it into
/// the service's clap settings).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AccessArgs {
    /// Require `Authorization: Bearer TOKEN` on every write (401 otherwise).
    /// The SDK, the CLI and `up` send the same variable.
    #[arg(long, env = "ROLLCALL_TOKEN", hide_env_values = true, value_parser = Secret::parse)]
    pub token: Option<Secret>,

    /// Read the token from the first line of this file instead.
    #[arg(long, env = "ROLLCALL_TOKEN_FILE", conflicts_with = "token", value_parser = Secret::from_file)]
    pub token_file: Option<Secret>,

    /// Require the token on reads too (the catalog, queries, the dashboard).
    #[arg(long, env = "ROLLCALL_PROTECT_READS")]
    pub protect_reads: bool,

    /// Let writes without a token in from these addresses (CIDR list, e.g.
    /// `127.0.0.1/32,10.0.0.0/8`): the compatibility escape hatch for
    /// unmodified classic clients, which cannot send a token.
    #[arg(long, env = "ROLLCALL_TRUST_CLASSIC_FROM", value_delimiter = ',', value_parser = Cidr::parse)]
    pub trust_classic_from: Vec<Cidr>,
}

impl AccessArgs {
    /// The policy these flags describe.
    pub fn policy(&self) -> Access {
        Access {
            token: self.token.clone().or_else(|| self.token_file.clone()),
            protect_reads: self.protect_reads,
            trusted: self.trust_classic_from.clone(),
        }
    }

    /// Whether writes need a token.
    pub fn has_token(&self) -> bool {
        self.token.is_some() || self.token_file.is_some()
    }
}

/// The value of environment variable `name` parsed by `parse`; an invalid
/// one is ignored with a warning (it could never be used).
pub fn from_env<T>(name: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
    let text = std::env::var(name).ok()?;
    parse(&text)
        .map_err(|e| tracing::warn!("{name} is ignored: {e}"))
        .ok()
}

/// A token: compared in constant time, shown as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// A token of visible ASCII characters (what fits in a header), at least
    /// one; surrounding white space is trimmed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token is one or more visible ASCII characters".into());
        }
        Ok(Self(text.into()))
    }

    /// The first line of a file.
    pub fn from_file(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(Path::new(path))
            .map_err(|e| format!("cannot read the token file {path}: {e}"))?;
        Self::parse(text.lines().next().unwrap_or_default())
    }

    /// The token, for an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, taking the same time wherever the
    /// two differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.as_bytes(), presented).is_ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An address range: `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Self { network, prefix })
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, canonical(addr)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// `ip` with an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) written as the
/// IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The address a request's connection came from (none when a router is
/// called in process, without a connection).
pub fn client_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| canonical(c.0.ip()))
}

/// The policy a service applies to each request.
#[derive(Debug, Clone, Default)]
pub struct Access {
    token: Option<Secret>,
    protect_reads: bool,
    trusted: Vec<Cidr>,
}

impl Access {
    /// No token: everything is open (the default on loopback).
    pub fn open() -> Self {
        Self::default()
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether a request may go on — `Ok(true)` when it carried the right
    /// token — or why not.
    pub fn allows(
        &self,
        method: &Method,
        authorization: Option<&[u8]>,
        peer: Option<IpAddr>,
    ) -> Result<bool, &'static str> {
        let Some(token) = &self.token else {
            return Ok(false);
        };
        let presented = authorization.and_then(|value| value.strip_prefix(b"Bearer "));
        let authenticated = presented.is_some_and(|p| token.matches(p));
        let write = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if authenticated || (!write && !self.protect_reads) {
            return Ok(authenticated);
        }
        match presented {
            Some(_) => Err("the token is not the one this service was given"),
            None if write && peer.is_some_and(|p| self.trusted.iter().any(|c| c.contains(p))) => {
                Ok(false)
            }
            None => Err(
                "this route needs `Authorization: Bearer TOKEN` (the service runs with --token)",
            ),
        }
    }
}

/// Says so, loudly, when a service without a token listens where other
/// machines can reach it.
pub fn warn_if_exposed(addr: SocketAddr, access: &Access) {
    if !addr.ip().is_loopback() && !access.has_token() {
        tracing::warn!(
            %addr,
            "listening beyond loopback without a token: anyone who can reach this port can \
             change the system; set --token (ROLLCALL_TOKEN), see SECURITY.md"
        );
    }
}

/// Set on a request that carried the right token (for handlers that let a
/// tokened caller do more, such as register any address).
#[derive(Debug, Clone, Copy)]
pub struct Authenticated;

/// The address a request came from (none when the router is called in
/// process, without a connection).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: Option<IpAddr>,
    /// The request carried the right token.
    pub authenticated: bool,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer {
            addr: client_ip(&parts.extensions),
            authenticated: parts.extensions.get::<Authenticated>().is_some(),
        })
    }
}

/// Middleware: applies `access` to every request (the peer address comes
/// from the connection, see [`crate::server`]).
pub async fn guard(State(access): State<Arc<Access>>, mut req: Request, next: Next) -> Response {
    match admit(&access, &mut req) {
        Ok(()) => next.run(req).await,
        Err(refusal) => *refusal,
    }
}

/// What [`guard`] does before the handler: marks `req` authenticated, or
/// answers 401.
pub fn admit(access: &Access, req: &mut Request) -> Result<(), Box<Response>> {
    let peer = client_ip(req.extensions());
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match access.allows(req.method(), authorization, peer) {
        Ok(authenticated) => {
            if authenticated {
                req.extensions_mut().insert(Authenticated);
            }
            Ok(())
        }
        Err(why) => {
            let mut response = error_response(StatusCode::UNAUTHORIZED, "unauthorized", why);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            Err(Box::new(response.into_response()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(protect_reads: bool, trusted: &[&str]) -> Access {
        Access {
            token: Some(Secret::parse("s3cret").unwrap()),
            protect_reads,
            trusted: trusted.iter().map(|t| Cidr::parse(t).unwrap()).collect(),
        }
    }

    #[test]
    fn writes_need_the_token_reads_only_when_protected() {
        let a = access(false, &[]);
        let local = Some("127.0.0.1".parse().unwrap());
        assert!(a.allows(&Method::POST, None, local).is_err());
        assert!(
            a.allows(&Method::DELETE, Some(b"Bearer wrong!"), local)
                .is_err()
        );
        assert!(
            a.allows(&Method::POST, Some(b"Bearer s3cret"), local)
                .is_ok()
        );
        assert!(
            a.allows(&Method::POST, Some(b"bearer s3cret"), local)
                .is_err()
        );
        assert!(a.allows(&Method::GET, None, local).is_ok());
        assert!(access(true, &[]).allows(&Method::GET, None, local).is_err());
        assert!(Access::open().allows(&Method::DELETE, None, None).is_ok());
    }

    #[test]
    fn classic_writes_are_trusted_only_from_the_listed_ranges() {
        let a = access(false, &["10.0.0.0/8", "::1"]);
        assert!(
            a.allows(&Method::POST, None, Some("10.1.2.3".parse().unwrap()))
                .is_ok()
        );
        assert!(
            a.allows(&Method::POST, None, Some("::1".parse().unwrap()))
                .is_ok()
        );
        assert!(
            a.allows(
                &Method::POST,
                None,
                Some("::ffff:10.9.9.9".parse().unwrap())
            )
            .is_ok()
        );
        assert!(
            a.allows(&Method::POST, None, Some("11.0.0.1".parse().unwrap()))
                .is_err()
        );
        assert!(a.allows(&Method::POST, None, None).is_err());
        // A wrong token is not rescued by the address.
        assert!(
            a.allows(
                &Method::POST,
                Some(b"Bearer x"),
                Some("10.0.0.1".parse().unwrap())
            )
            .is_err()
        );
    }

    #[test]
    fn cidrs_and_tokens_parse_strictly_and_tokens_never_show() {
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Secret::parse("has space").is_err());
        assert!(Secret::parse("").is_err());
        assert_eq!(
            format!("{:?}", Secret::parse("s3cret").unwrap()),
            "[redacted]"
        );
    }
}
