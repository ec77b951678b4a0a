//! `Meta`: an instance's own labels (`version`, `zone`, …), sent with its
//! registration. Additive: classic clients never send it, and an instance
//! without any is encoded exactly as before (no `Meta` field at all).
//!
//! Bounds follow Consul's service metadata: at most [`MAX_META_PAIRS`] pairs,
//! keys of 1 to [`MAX_META_KEY`] characters from `A-Z a-z 0-9 _ . -`
//! starting with a letter or `_`, values of at most [`MAX_META_VALUE`] bytes
//! without control characters. Keys starting with `rollcall.` are set by
//! rollcall's SDK (see [`METRICS_PATH`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most pairs one instance may carry.
pub const MAX_META_PAIRS: usize = 64;
/// Longest key, in characters.
pub const MAX_META_KEY: usize = 128;
/// Longest value, in bytes.
pub const MAX_META_VALUE: usize = 512;
/// The path an SDK service serves Prometheus metrics on (the SDK sets it;
/// Prometheus discovery scrapes it).
pub const METRICS_PATH: &str = "rollcall.metrics_path";

/// Validated metadata; empty unless the registration carried some. One
/// pointer wide, so instances without any pay nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Meta(Option<Arc<BTreeMap<String, String>>>);

/// Why metadata was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMeta {
    #[error("more than {MAX_META_PAIRS} pairs")]
    TooMany,
    #[error(
        "key `{0}` is not 1 to {MAX_META_KEY} of A-Z a-z 0-9 _ . - starting with a letter or _"
    )]
    Key(String),
    #[error(
        "the value of `{0}` is longer than {MAX_META_VALUE} bytes or holds a control character"
    )]
    Value(String),
}

impl Meta {
    /// Checks `pairs`.
    pub fn new(pairs: BTreeMap<String, String>) -> Result<Self, InvalidMeta> {
        if pairs.len() > MAX_META_PAIRS {
            return Err(InvalidMeta::TooMany);
        }
        for (key, value) in &pairs {
            if !valid_key(key) {
                return Err(InvalidMeta::Key(shorten(key)));
            }
            if value.len() > MAX_META_VALUE || value.chars().any(char::is_control) {
                return Err(InvalidMeta::Value(key.clone()));
            }
        }
        Ok(if pairs.is_empty() {
            Self(None)
        } else {
            Self(Some(Arc::new(pairs)))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.as_ref()?.get(key).map(String::as_str)
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Whether it holds `key` with `value`.
    pub fn matches(&self, key: &str, value: &str) -> bool {
        self.get(key) == Some(value)
    }
}

/// Whether `key` may be a metadata key.
pub fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    key.len() <= MAX_META_KEY
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn shorten(key: &str) -> String {
    key.chars().take(40).collect()
}

/// A filter `key=value` (as in `?meta=version=2`, and as the SDK's
/// `--meta version=2` sets it); `key:value` is read the same way (keys hold
/// neither character, so the first of them ends the key).
pub fn parse_filter(text: &str) -> Option<(String, String)> {
    let at = text.find(['=', ':'])?;
    let (key, value) = (&text[..at], &text[at + 1..]);
    valid_key(key).then(|| (key.to_owned(), value.to_owned()))
}

/// Read back through the same checks (`GET /services` as a client reads it).
impl<'de> Deserialize<'de> for Meta {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs = BTreeMap::<String, String>::deserialize(deserializer)?;
        Meta::new(pairs).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Meta {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(self.0.as_ref().map(|m| m.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl fmt::Display for Meta {
    /// `key=value` pairs separated by commas (for tables).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Result<Meta, InvalidMeta> {
        Meta::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn bounds_are_checked() {
        let ok = meta(&[
            ("version", "2"),
            ("zone", "eu-1"),
            ("rollcall.metrics_path", "/metrics"),
        ])
        .unwrap();
        assert_eq!(ok.get("version"), Some("2"));
        assert!(ok.matches("zone", "eu-1"));
        assert!(!ok.matches("zone", "eu-2"));
        assert_eq!(
            ok.to_string(),
            "rollcall.metrics_path=/metrics,version=2,zone=eu-1"
        );
        assert!(meta(&[]).unwrap().is_empty());
        for bad in ["", "1abc", "a b", "a:b", "ä", &"k".repeat(129)] {
            assert!(
                matches!(meta(&[(bad, "v")]), Err(InvalidMeta::Key(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            meta(&[("k", &"v".repeat(513))]),
            Err(InvalidMeta::Value(_))
        ));
        assert!(matches!(meta(&[("k", "a\nb")]), Err(InvalidMeta::Value(_))));
        let many: Vec<(String, String)> =
            (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(
            Meta::new(many.into_iter().collect()),
            Err(InvalidMeta::TooMany)
        );
    }

    #[test]
    fn filters_split_at_the_first_colon() {
        assert_eq!(
            parse_filter("version:2"),
            Some(("version".into(), "2".into()))
        );
        assert_eq!(
            parse_filter("url:http://h:1"),
            Some(("url".into(), "http://h:1".into()))
        );
        assert_eq!(parse_filter("version"), None);
        assert_eq!(parse_filter(":2"), None);
    }
}
