//! The callback guard: a request may only name its own address. The
//! registry calls the URLs an instance registers (checks, patches), so
//! without this anyone could aim it at any host, or take over, remove or
//! hold out of discovery another instance. By default every URL in a
//! registration, and the instance a deregistration, a maintenance switch or
//! a bound watch stream names, must point at the address the request came
//! from — `localhost` counts as the caller's own when the caller is on
//! loopback. `--allow-callbacks CIDR,…` widens it (`any` lifts it); a
//! request with the registry's token may name anything (one a
//! `--trust-classic-from` range admits without it may not).
//!
//! The guard is in one place: a registry write takes a [`Claimed`] value,
//! and only [`claim`] and [`claim_registration`] make one, so a route
//! cannot name an instance without passing it.

use std::net::IpAddr;

use rollcall_http::access::{Cidr, Peer, canonical};
use rollcall_proto::{Registration, ServiceName, ServiceUrl};

/// One `--allow-callbacks` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackRange {
    /// No guard at all.
    Any,
    /// Addresses in this range may be named by anyone.
    Range(Cidr),
}

impl CallbackRange {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("any") {
            Ok(Self::Any)
        } else {
            Cidr::parse(text).map(Self::Range)
        }
    }
}

/// Why a URL may not be named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{field}` {url} {reason}; a registration may only name the address it comes from \
     ({peer}) — --allow-callbacks widens this, and a request with the registry's token may \
     name any address"
)]
pub struct Refused {
    pub field: &'static str,
    pub url: String,
    pub reason: String,
    pub peer: String,
}

/// What a request may name, having passed the guard.
#[derive(Debug)]
pub struct Claimed<T>(T);

impl<T> Claimed<T> {
    pub fn get(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Only a tokened request may register under `0`: every SDK service sends
/// its token to the log service's providers, so an untokened client (one a
/// `--trust-classic-from` range admits) registering as the log service
/// would be handed the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "only a request with the registry's token may register as `{0}`: services send their token to it"
)]
pub struct NeedsToken(pub ServiceName);

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationRefused {
    #[error(transparent)]
    Callback(#[from] Refused),
    #[error(transparent)]
    Name(#[from] NeedsToken),
}

/// `registration`, if every URL in it is its caller's to name, and its name
/// too: with a token, `token_only` (the log service's name) needs it.
pub fn claim_registration(
    registration: Registration,
    peer: Peer,
    allowed: &[CallbackRange],
    token_only: Option<&ServiceName>,
) -> Result<Claimed<Registration>, RegistrationRefused> {
    if let Some(name) = token_only
        && !peer.authenticated
        && peer.addr.is_some()
        && registration.name.eq_ignore_case(name.as_str())
    {
        return Err(NeedsToken(name.clone()).into());
    }
    check_registration(&registration, peer, allowed)?;
    Ok(Claimed(registration))
}

/// The instance `url` (named in request field `field`), if it is its
/// caller's to name.
pub fn claim(
    field: &'static str,
    url: ServiceUrl,
    peer: Peer,
    allowed: &[CallbackRange],
) -> Result<Claimed<ServiceUrl>, Refused> {
    check_url(field, &url, peer, allowed)?;
    Ok(Claimed(url))
}

/// Checks every URL of `registration` against where it came from.
fn check_registration(
    registration: &Registration,
    peer: Peer,
    allowed: &[CallbackRange],
) -> Result<(), Refused> {
    let urls = [
        ("ServiceURL", Some(&registration.url)),
        ("ServiceUpdateURL", registration.update_url.as_ref()),
        ("HeartbeatURL", registration.heartbeat_url.as_ref()),
    ];
    for (field, url) in urls {
        if let Some(url) = url {
            check_url(field, url, peer, allowed)?;
        }
    }
    Ok(())
}

/// Checks one URL against where the request came from.
fn check_url(
    field: &'static str,
    url: &ServiceUrl,
    peer: Peer,
    allowed: &[CallbackRange],
) -> Result<(), Refused> {
    // In process (no connection) there is no address to compare with.
    let Some(from) = peer.addr.map(canonical) else {
        return Ok(());
    };
    if peer.authenticated || allowed.contains(&CallbackRange::Any) {
        return Ok(());
    }
    let refuse = |reason: String| Refused {
        field,
        url: url.to_string(),
        reason,
        peer: from.to_string(),
    };
    let host = url::Url::parse(url.as_str())
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
        .ok_or_else(|| refuse("has no host".into()))?;
    let target = match host {
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => canonical(IpAddr::V6(ip)),
        url::Host::Domain(name) if name.eq_ignore_ascii_case("localhost") && from.is_loopback() => {
            return Ok(());
        }
        url::Host::Domain(name) => {
            return Err(refuse(format!(
                "names the host `{name}`, which the registry cannot tell is the caller's"
            )));
        }
    };
    let own = target == from || (target.is_loopback() && from.is_loopback());
    let widened = allowed
        .iter()
        .any(|r| matches!(r, CallbackRange::Range(c) if c.contains(target)));
    if own || widened {
        Ok(())
    } else {
        Err(refuse(format!("points at {target}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (URL, caller, `--allow-callbacks`, token?) → allowed?
    const CASES: &[(&str, &str, &[&str], bool, bool)] = &[
        // A caller may name itself; loopback may name localhost.
        ("http://10.0.0.5:80", "10.0.0.5", &[], false, true),
        ("http://localhost:6000", "127.0.0.1", &[], false, true),
        (
            "http://127.0.0.1:6000",
            "::ffff:127.0.0.1",
            &[],
            false,
            true,
        ),
        ("http://[::1]:6000", "127.0.0.1", &[], false, true),
        // Another address, localhost from afar, or a name: refused...
        ("http://10.0.0.9/x", "10.0.0.5", &[], false, false),
        ("http://localhost:1", "10.0.0.5", &[], false, false),
        ("http://grades.internal:1", "127.0.0.1", &[], false, false),
        // ...unless widened, lifted, or tokened.
        (
            "http://10.0.0.9/x",
            "10.0.0.5",
            &["10.0.0.0/8"],
            false,
            true,
        ),
        (
            "http://grades.internal:1",
            "10.0.0.5",
            &["any"],
            false,
            true,
        ),
        ("http://203.0.113.7", "10.0.0.5", &[], true, true),
    ];

    #[test]
    fn a_caller_may_name_only_its_own_address_unless_widened_or_tokened() {
        for (target, from, allowed, authenticated, ok) in CASES {
            let allowed: Vec<CallbackRange> = allowed
                .iter()
                .map(|a| CallbackRange::parse(a).unwrap())
                .collect();
            let peer = Peer {
                addr: Some(from.parse().unwrap()),
                authenticated: *authenticated,
            };
            let url = ServiceUrl::parse(target).unwrap();
            let result = check_url("HeartbeatURL", &url, peer, &allowed);
            assert_eq!(result.is_ok(), *ok, "{target} from {from}: {result:?}");
            if let Err(refused) = result {
                assert_eq!(refused.field, "HeartbeatURL");
                assert!(refused.to_string().contains(target), "{refused}");
            }
        }
    }
}
