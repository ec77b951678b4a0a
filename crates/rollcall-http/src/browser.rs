//! Browsers cannot be turned against a service. A web page the user opens can
//! send requests to `127.0.0.1` (simple cross-site POSTs need no CORS
//! preflight), and a hostile domain can resolve to `127.0.0.1` (DNS
//! rebinding). So:
//!
//! - a state-changing request (anything but GET, HEAD, OPTIONS) whose
//!   `Sec-Fetch-Site` says `cross-site` or `same-site`, or whose `Origin` is
//!   not the service's own (the `Host` it was sent to), is refused with 403 —
//!   browsers send these headers on every such request; other clients send
//!   none and are not affected;
//! - a request whose `Host` is a name (not an IP literal, not `localhost`)
//!   missing from `--allowed-hosts` is refused with 421: a rebinding page
//!   always carries its own domain there.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::error_response;

/// The `--allowed-hosts` flag (flatten it into a service's settings).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HostArgs {
    /// Host names (with or without a port) this service may be reached by,
    /// besides IP addresses and `localhost`: a request naming any other host
    /// is refused (421), which defeats DNS rebinding.
    #[arg(long, env = "ROLLCALL_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
}

impl HostArgs {
    pub fn policy(&self) -> Arc<Browsers> {
        Arc::new(Browsers {
            allowed_hosts: self
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        })
    }
}

/// The rules [`guard`] applies.
#[derive(Debug, Clone, Default)]
pub struct Browsers {
    allowed_hosts: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 421: the `Host` names a host this service does not answer for.
    UnknownHost(String),
    /// 403: a browser sent it from another site.
    CrossSite(String),
}

impl Browsers {
    /// Checks one request's method and headers.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        if let Some(host) = &host
            && !self.host_allowed(host)
        {
            return Err(Refusal::UnknownHost(host.clone()));
        }
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let fetch_site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if fetch_site.eq_ignore_ascii_case("cross-site")
            || fetch_site.eq_ignore_ascii_case("same-site")
        {
            return Err(Refusal::CrossSite(format!("Sec-Fetch-Site: {fetch_site}")));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
            let authority = origin.split_once("://").map(|(_, rest)| rest);
            let same = matches!((authority, &host), (Some(a), Some(h)) if a == h);
            if !same {
                return Err(Refusal::CrossSite(format!("Origin: {origin}")));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host);
        name == "localhost"
            || name.parse::<std::net::IpAddr>().is_ok()
            || name
                .strip_prefix('[')
                .and_then(|n| n.strip_suffix(']'))
                .is_some_and(|n| n.parse::<std::net::Ipv6Addr>().is_ok())
            || self
                .allowed_hosts
                .iter()
                .any(|allowed| allowed == host || allowed == name)
    }
}

/// `host[:port]` without the port (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Middleware: refuses what [`Browsers::check`] refuses.
pub async fn guard(State(rules): State<Arc<Browsers>>, req: Request, next: Next) -> Response {
    match admit(&rules, &req) {
        Ok(()) => next.run(req).await,
        Err(refusal) => *refusal,
    }
}

/// What [`guard`] does before the handler: a 421 or 403 for what
/// [`Browsers::check`] refuses.
pub fn admit(rules: &Browsers, req: &Request) -> Result<(), Box<Response>> {
    Err(Box::new(match rules.check(req.method(), req.headers()) {
        Ok(()) => return Ok(()),
        Err(Refusal::UnknownHost(host)) => error_response(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown_host",
            format!(
                "this service does not answer for the host `{host}`; add it to --allowed-hosts \
                 (ROLLCALL_ALLOWED_HOSTS) if it is really this service's name"
            ),
        ),
        Err(Refusal::CrossSite(why)) => error_response(
            StatusCode::FORBIDDEN,
            "cross_site",
            format!("a web page from another site cannot change this service ({why})"),
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    /// Method, an extra header, allowed?
    type Case = (Method, Option<(&'static str, &'static str)>, bool);

    #[test]
    fn cross_site_writes_are_refused_and_same_origin_and_plain_clients_are_not() {
        let rules = Browsers::default();
        let local = ("host", "127.0.0.1:3000");
        let cases: &[Case] = &[
            (Method::POST, None, true),
            (
                Method::POST,
                Some(("origin", "http://127.0.0.1:3000")),
                true,
            ),
            (
                Method::POST,
                Some(("origin", "https://evil.example")),
                false,
            ),
            (Method::POST, Some(("origin", "null")), false),
            (Method::POST, Some(("sec-fetch-site", "cross-site")), false),
            (Method::POST, Some(("sec-fetch-site", "same-origin")), true),
            // Reads are not state-changing.
            (Method::GET, Some(("origin", "https://evil.example")), true),
        ];
        for (method, extra, ok) in cases {
            let mut pairs = vec![local];
            pairs.extend(extra.iter().copied());
            let result = rules.check(method, &headers(&pairs));
            assert_eq!(result.is_ok(), *ok, "{method} {extra:?}: {result:?}");
            if !ok {
                assert!(matches!(result, Err(Refusal::CrossSite(_))));
            }
        }
    }

    #[test]
    fn only_ip_literals_localhost_and_listed_names_are_answered() {
        let rules = HostArgs {
            allowed_hosts: vec!["registry.internal".into()],
        }
        .policy();
        for host in [
            "localhost:3000",
            "127.0.0.1:3000",
            "[::1]:3000",
            "10.1.2.3",
            "registry.internal:3000",
            "REGISTRY.internal",
        ] {
            assert!(
                rules
                    .check(&Method::GET, &headers(&[("host", host)]))
                    .is_ok(),
                "{host}"
            );
        }
        for host in ["evil.example:3000", "localhost.evil.example", "[::1"] {
            assert!(
                matches!(
                    rules.check(&Method::GET, &headers(&[("host", host)])),
                    Err(Refusal::UnknownHost(_))
                ),
                "{host}"
            );
        }
    }
}
