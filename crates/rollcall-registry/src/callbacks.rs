//! The callback guard: a registration may only name its own address. The
//! registry calls the URLs an instance registers (checks, patches), so
//! without this anyone could aim it at any host, or take over another
//! instance's URL under another name. By default every URL in a
//! registration (and the URL of a deregistration) must point at the address
//! the request came from — `localhost` counts as the caller's own when the
//! caller is on loopback. `--allow-callbacks CIDR,…` widens it (`any` lifts
//! it); a request with the registry's token may name anything.

use std::net::IpAddr;

use rollcall_http::access::{Cidr, Peer};
use rollcall_proto::{Registration, ServiceUrl};

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

/// Checks every URL of `registration` against where it came from.
pub fn check_registration(
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
pub fn check_url(
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

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> Peer {
        Peer {
            addr: Some(ip.parse().unwrap()),
            authenticated: false,
        }
    }

    fn url(text: &str) -> ServiceUrl {
        ServiceUrl::parse(text).unwrap()
    }

    #[test]
    fn a_caller_may_name_itself_and_loopback_may_name_localhost() {
        let none: &[CallbackRange] = &[];
        assert!(
            check_url(
                "ServiceURL",
                &url("http://10.0.0.5:80"),
                peer("10.0.0.5"),
                none
            )
            .is_ok()
        );
        assert!(
            check_url(
                "ServiceURL",
                &url("http://localhost:6000"),
                peer("127.0.0.1"),
                none
            )
            .is_ok()
        );
        assert!(
            check_url(
                "ServiceURL",
                &url("http://127.0.0.1:6000"),
                peer("::ffff:127.0.0.1"),
                none
            )
            .is_ok()
        );
        assert!(
            check_url(
                "ServiceURL",
                &url("http://[::1]:6000"),
                peer("127.0.0.1"),
                none
            )
            .is_ok()
        );
    }

    #[test]
    fn another_address_or_a_name_is_refused_unless_widened_or_tokened() {
        let none: &[CallbackRange] = &[];
        let refused = check_url(
            "HeartbeatURL",
            &url("http://10.0.0.9/x"),
            peer("10.0.0.5"),
            none,
        )
        .unwrap_err();
        assert_eq!(refused.field, "HeartbeatURL");
        assert!(refused.to_string().contains("10.0.0.9"), "{refused}");
        assert!(
            check_url(
                "ServiceURL",
                &url("http://localhost:1"),
                peer("10.0.0.5"),
                none
            )
            .is_err()
        );
        assert!(
            check_url(
                "ServiceURL",
                &url("http://grades.internal:1"),
                peer("127.0.0.1"),
                none
            )
            .is_err()
        );
        let wide = [CallbackRange::parse("10.0.0.0/8").unwrap()];
        assert!(
            check_url(
                "ServiceURL",
                &url("http://10.0.0.9/x"),
                peer("10.0.0.5"),
                &wide
            )
            .is_ok()
        );
        let any = [CallbackRange::parse("any").unwrap()];
        assert!(
            check_url(
                "ServiceURL",
                &url("http://grades.internal:1"),
                peer("10.0.0.5"),
                &any
            )
            .is_ok()
        );
        let tokened = Peer {
            authenticated: true,
            ..peer("10.0.0.5")
        };
        assert!(check_url("ServiceURL", &url("http://203.0.113.7"), tokened, none).is_ok());
    }
}
