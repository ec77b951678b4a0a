//! The command-line setting every service built on the SDK shares: where its
//! registry is (`--registry`, `ROLLCALL_REGISTRY`), parsed at the edge.

use std::fmt;

use rollcall_http::access::Secret;
use rollcall_proto::ServiceUrl;

/// The token from `ROLLCALL_TOKEN`, which the SDK sends to the registry and
/// the log service (`Authorization: Bearer …`). An invalid one is ignored
/// with a warning (it could never be accepted).
pub fn token_from_env() -> Option<Secret> {
    rollcall_http::access::from_env("ROLLCALL_TOKEN", Secret::parse)
}

/// `request` with the token, if there is one.
pub(crate) fn bearer(
    request: reqwest::RequestBuilder,
    token: Option<&Secret>,
) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token.expose()),
        None => request,
    }
}

/// Where a service registers and finds its dependencies; flatten it into a
/// service's clap settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Membership {
    /// The registry to register with and find dependencies through (empty:
    /// run standalone).
    #[arg(
        long,
        env = "ROLLCALL_REGISTRY",
        default_value = "http://127.0.0.1:3000",
        value_parser = RegistryUrl::parse
    )]
    pub registry: RegistryUrl,

    #[command(flatten)]
    pub hosts: rollcall_http::browser::HostArgs,

    #[command(flatten)]
    pub limits: rollcall_http::server::Limits,

    #[command(flatten)]
    pub tls: rollcall_http::tls::TlsArgs,
}

impl Membership {
    /// No registry: the service runs on its own.
    pub fn standalone() -> Self {
        Self {
            registry: RegistryUrl(None),
            hosts: rollcall_http::browser::HostArgs::default(),
            limits: rollcall_http::server::Limits::default(),
            tls: rollcall_http::tls::TlsArgs::default(),
        }
    }

    /// The registry at `url` (empty: standalone).
    pub fn at(url: &str) -> Result<Self, String> {
        RegistryUrl::parse(url).map(|registry| Self {
            registry,
            hosts: rollcall_http::browser::HostArgs::default(),
            limits: rollcall_http::server::Limits::default(),
            tls: rollcall_http::tls::TlsArgs::default(),
        })
    }

    /// The registry's URL, unless standalone.
    pub fn url(&self) -> Option<&ServiceUrl> {
        self.registry.0.as_ref()
    }
}

/// A registry URL, or none (empty text: standalone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUrl(Option<ServiceUrl>);

impl RegistryUrl {
    /// Empty (or white space) means none; anything else must be an absolute
    /// http(s) URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        ServiceUrl::parse_optional(text.trim())
            .map(Self)
            .map_err(|e| format!("not a registry URL: {e}"))
    }
}

impl fmt::Display for RegistryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(url) => fmt::Display::fmt(url, f),
            None => f.write_str("(none)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_standalone_and_a_bad_url_is_refused() {
        assert_eq!(RegistryUrl::parse("  ").unwrap(), RegistryUrl(None));
        assert_eq!(
            RegistryUrl::parse("http://127.0.0.1:3000")
                .unwrap()
                .0
                .unwrap()
                .as_str(),
            "http://127.0.0.1:3000"
        );
        assert!(RegistryUrl::parse("localhost:3000").is_err());
    }
}
