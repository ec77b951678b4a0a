//! Validated identifiers: a service's name and an instance's URL.
//!
//! Both are cheap to clone (`Arc<str>` inside) because the registry keys its
//! whole catalog by them, and both keep the exact text the client sent: a classic
//! client builds its calls by appending to the URL it registered
//! (`URL + "/log"`), so normalising `http://h:1` into `http://h:1/` would break it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted service name, in characters (all ASCII).
pub const MAX_NAME_LEN: usize = 128;
/// Longest accepted URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// The names rollcall's own services register under by default (each takes
/// `--name` to match what an existing client requires).
pub mod well_known {
    /// The log service.
    pub const LOG_SERVICE: &str = "LogService";
    /// The grading service.
    pub const GRADING_SERVICE: &str = "GradingService";
    /// The teacher portal.
    pub const PORTAL: &str = "Portal";
    /// What the registry's own log records carry as their service.
    pub const REGISTRY: &str = "Registry";
}

/// Why a string is not a valid [`ServiceName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("the service name is empty")]
    Empty,
    #[error("the service name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("the service name contains {0:?}; only letters, digits, `.`, `_` and `-` are allowed")]
    BadCharacter(char),
}

/// A service name (`LogService`, `Log_Service`, `GradingService`, ...): ASCII
/// letters, digits, `.`, `_` and `-`, 1 to 128 characters. Matching is exact on
/// the wire; human-facing filters may ignore case ([`ServiceName::eq_ignore_case`]).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(Arc<str>);

impl ServiceName {
    /// Checks `name` and wraps it.
    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        if name.is_empty() {
            return Err(InvalidName::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(InvalidName::TooLong);
        }
        if let Some(bad) = name.chars().find(|c| !is_name_char(*c)) {
            return Err(InvalidName::BadCharacter(bad));
        }
        Ok(Self(name.into()))
    }

    /// A well-known name (a constant of [`well_known`]): checked like any
    /// other, and a name that is not valid — a bug, caught by this crate's
    /// tests — is replaced by `invalid-name` rather than panicking.
    pub fn well_known(name: &'static str) -> Self {
        Self::parse(name).unwrap_or_else(|_| Self("invalid-name".into()))
    }

    /// Whether `other` names this service, ignoring ASCII case (for filters a
    /// person types: `portal` finds `Portal`).
    pub fn eq_ignore_case(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a string is not a valid [`ServiceUrl`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUrl {
    #[error("the URL is empty")]
    Empty,
    #[error("the URL is longer than {MAX_URL_LEN} bytes")]
    TooLong,
    #[error("the URL does not parse: {0}")]
    Unparsable(String),
    #[error("the URL's scheme is `{0}`; only http and https are accepted")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL contains a control or invisible format character (U+{0:04X})")]
    ControlCharacter(u32),
    #[error(
        "the URL has user information (`user@`), which makes it read as naming another host; write the host alone"
    )]
    UserInfo,
}

/// An absolute `http`/`https` URL, kept exactly as sent (surrounding white space
/// trimmed). An instance's `ServiceURL` is its identity in the catalog.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceUrl(Arc<str>);

impl ServiceUrl {
    /// Checks `url` (after trimming surrounding white space) and wraps it.
    pub fn parse(url: &str) -> Result<Self, InvalidUrl> {
        let url = url.trim();
        if url.is_empty() {
            return Err(InvalidUrl::Empty);
        }
        if url.len() > MAX_URL_LEN {
            return Err(InvalidUrl::TooLong);
        }
        // The URL parser would quietly drop a tab or a newline; a URL kept as
        // sent must not carry one into a log line, a table or a terminal.
        if let Some(c) = url.chars().find(|&c| crate::text::is_hidden(c)) {
            return Err(InvalidUrl::ControlCharacter(u32::from(c)));
        }
        let parsed = url::Url::parse(url).map_err(|e| InvalidUrl::Unparsable(e.to_string()))?;
        match parsed.scheme() {
            "http" | "https" => {}
            other => return Err(InvalidUrl::Scheme(other.to_owned())),
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(InvalidUrl::NoHost);
        }
        // `http://10.9.0.3@10.9.0.2/` reads as the first address and goes
        // to the second.
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(InvalidUrl::UserInfo);
        }
        Ok(Self(url.into()))
    }

    /// Like [`ServiceUrl::parse`], but an empty or blank string means "none":
    /// the classic protocol sends `""` for an absent update or heartbeat URL.
    pub fn parse_optional(url: &str) -> Result<Option<Self>, InvalidUrl> {
        if url.trim().is_empty() {
            Ok(None)
        } else {
            Self::parse(url).map(Some)
        }
    }

    /// The same URL in a fresh allocation of its own, for a copy that
    /// outlives the instance (an event kept in a history): sharing the
    /// instance's would keep its old allocation, and the allocator's page
    /// around it, in memory after the instance is gone.
    pub fn detached(&self) -> Self {
        Self(Arc::from(&*self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This URL with `path` appended, with exactly one `/` between them:
    /// `http://h:1` + `/heartbeat` and `http://h:1/` + `heartbeat` both give
    /// `http://h:1/heartbeat`.
    pub fn join(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.0.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

/// The characters a service name may hold.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Splits a comma-separated list of service names (`--requires A,B`, `?requires=A,B`),
/// ignoring blanks around and between entries.
pub fn parse_name_list(list: &str) -> Result<Vec<ServiceName>, InvalidName> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(ServiceName::parse)
        .collect()
}

macro_rules! text_newtype_impls {
    ($ty:ident, $err:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = $err;
            fn try_from(value: &str) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = $err;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $err;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::parse(value)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_newtype_impls!(ServiceName, InvalidName);
text_newtype_impls!(ServiceUrl, InvalidUrl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(ServiceName::parse("LogService").is_ok());
        assert!(ServiceName::parse("Log_Service").is_ok());
        assert!(ServiceName::parse("grading-service.v2").is_ok());
        assert!(ServiceName::parse(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert_eq!(ServiceName::parse(""), Err(InvalidName::Empty));
        assert_eq!(
            ServiceName::parse(" Log"),
            Err(InvalidName::BadCharacter(' '))
        );
        assert_eq!(
            ServiceName::parse("Bad Name!"),
            Err(InvalidName::BadCharacter(' '))
        );
        assert_eq!(
            ServiceName::parse("A,B"),
            Err(InvalidName::BadCharacter(','))
        );
        assert_eq!(
            ServiceName::parse("a\nb"),
            Err(InvalidName::BadCharacter('\n'))
        );
        assert_eq!(
            ServiceName::parse("Grädes"),
            Err(InvalidName::BadCharacter('ä'))
        );
        assert_eq!(
            ServiceName::parse(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(InvalidName::TooLong)
        );
    }

    #[test]
    fn the_well_known_names_are_valid() {
        for name in [
            well_known::LOG_SERVICE,
            well_known::GRADING_SERVICE,
            well_known::PORTAL,
            well_known::REGISTRY,
        ] {
            assert_eq!(ServiceName::well_known(name).as_str(), name);
        }
    }

    #[test]
    fn name_lists_split_on_commas() {
        let names = parse_name_list(" A, B ,,C").unwrap();
        let names: Vec<&str> = names.iter().map(ServiceName::as_str).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert!(parse_name_list("A,B C").is_err());
        assert!(parse_name_list("").unwrap().is_empty());
    }

    #[test]
    fn names_compare_ignoring_case_for_people() {
        let portal = ServiceName::parse("Portal").unwrap();
        assert!(portal.eq_ignore_case("portal"));
        assert!(!portal.eq_ignore_case("portals"));
    }

    #[test]
    fn urls_keep_their_text_and_are_checked() {
        let url = ServiceUrl::parse("  http://localhost:4000 ").unwrap();
        assert_eq!(url.as_str(), "http://localhost:4000");
        assert!(ServiceUrl::parse("https://example.test/a/b").is_ok());
        assert!(matches!(
            ServiceUrl::parse("ftp://x"),
            Err(InvalidUrl::Scheme(s)) if s == "ftp"
        ));
        assert!(matches!(
            ServiceUrl::parse("localhost:4000"),
            Err(InvalidUrl::Scheme(_)) | Err(InvalidUrl::Unparsable(_))
        ));
        assert!(matches!(
            ServiceUrl::parse("not a url"),
            Err(InvalidUrl::Unparsable(_))
        ));
        assert_eq!(ServiceUrl::parse(""), Err(InvalidUrl::Empty));
        assert_eq!(ServiceUrl::parse_optional("  "), Ok(None));
        // The URL parser would drop these and accept; a URL kept as sent must
        // not carry them into a log line or a terminal.
        for bad in ["http://a\n.b/", "http://a/x\ty", "http://a/\u{1b}[2J"] {
            assert!(
                matches!(ServiceUrl::parse(bad), Err(InvalidUrl::ControlCharacter(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn join_puts_exactly_one_slash() {
        let a = ServiceUrl::parse("http://h:1").unwrap();
        let b = ServiceUrl::parse("http://h:1/").unwrap();
        assert_eq!(a.join("/heartbeat"), "http://h:1/heartbeat");
        assert_eq!(b.join("heartbeat"), "http://h:1/heartbeat");
    }

    #[test]
    fn serde_goes_through_the_check() {
        let ok: ServiceName = serde_json::from_str("\"GradingService\"").unwrap();
        assert_eq!(ok.as_str(), "GradingService");
        assert!(serde_json::from_str::<ServiceName>("\"\"").is_err());
        assert!(serde_json::from_str::<ServiceUrl>("\"gopher://x\"").is_err());
    }
}
