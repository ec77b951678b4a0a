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
    /// The registry to register with and find dependencies through; several
    /// replicas comma-separated (the service spreads over them and moves to
    /// another when one stops answering); empty: run standalone.
    #[arg(
        long,
        env = "ROLLCALL_REGISTRY",
        default_value = "http://127.0.0.1:3000",
        value_parser = RegistryUrl::parse
    )]
    pub registry: RegistryUrl,

    /// Behave like a classic client of the original registry: no watch
    /// stream, so the registry notices a crash by its health checks only.
    /// Not needed against an original registry (the SDK notices it has no
    /// watch stream and registers once); for registries that take the stream
    /// badly.
    #[arg(long, env = "ROLLCALL_CLASSIC")]
    pub classic: bool,

    #[command(flatten)]
    pub serving: rollcall_http::server::ServeArgs,
}

impl Membership {
    /// No registry: the service runs on its own.
    pub fn standalone() -> Self {
        Self {
            registry: RegistryUrl(Vec::new()),
            classic: false,
            serving: rollcall_http::server::ServeArgs::default(),
        }
    }

    /// The registry at `url` (empty: standalone).
    pub fn at(url: &str) -> Result<Self, String> {
        RegistryUrl::parse(url).map(|registry| Self {
            registry,
            classic: false,
            serving: rollcall_http::server::ServeArgs::default(),
        })
    }

    /// The registry's URLs (comma-separated), unless standalone.
    pub fn url(&self) -> Option<String> {
        (!self.registry.0.is_empty()).then(|| self.registry.to_string())
    }
}

/// The registry's URLs (one per replica), or none (empty text: standalone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUrl(Vec<ServiceUrl>);

impl RegistryUrl {
    /// Empty (or white space) means none; anything else is one or more
    /// absolute http(s) URLs, comma-separated.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                ServiceUrl::parse(t).map_err(|e| {
                    if t.contains("://") {
                        format!("not a registry URL: {t:?}: {e}")
                    } else {
                        format!("not a registry URL: {t:?} has no scheme: write http://{t} (or https://{t})")
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn urls(&self) -> &[ServiceUrl] {
        &self.0
    }
}

impl fmt::Display for RegistryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        let urls: Vec<&str> = self.0.iter().map(ServiceUrl::as_str).collect();
        f.write_str(&urls.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_standalone_several_are_replicas_and_a_bad_url_is_refused() {
        assert_eq!(RegistryUrl::parse("  ").unwrap(), RegistryUrl(Vec::new()));
        assert_eq!(
            RegistryUrl::parse("http://127.0.0.1:3000")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:3000"
        );
        let three = RegistryUrl::parse("http://a:1, http://b:2,http://c:3").unwrap();
        assert_eq!(three.urls().len(), 3);
        assert_eq!(three.to_string(), "http://a:1,http://b:2,http://c:3");
        assert!(RegistryUrl::parse("localhost:3000").is_err());
        assert!(RegistryUrl::parse("http://a:1,localhost:3000").is_err());
    }
}
