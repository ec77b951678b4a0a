//! The classic patch message: what the registry POSTs to a service's
//! `ServiceUpdateURL` when providers of the names it requires come or go.
//!
//! Receivers accept `null` for either list (the Go originals send `null` for an
//! empty list); rollcall always sends both lists as arrays. Two additive fields
//! ride along and are ignored by classic clients: `Revision`, the catalog revision
//! the patch was computed at, and `Resync`, set on a patch that carries the
//! receiver's complete provider list (the receiver replaces its table for the
//! names it requires instead of applying a difference).

use serde::{Deserialize, Deserializer, Serialize};

use crate::names::{ServiceName, ServiceUrl};

/// One provider: a service name and an instance URL.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct PatchEntry {
    #[serde(rename = "Name", alias = "name")]
    pub name: ServiceName,
    #[serde(rename = "URL", alias = "Url", alias = "url")]
    pub url: ServiceUrl,
}

impl PatchEntry {
    pub fn new(name: ServiceName, url: ServiceUrl) -> Self {
        Self { name, url }
    }
}

/// A change to a receiver's providers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Patch {
    #[serde(
        rename = "Added",
        alias = "added",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub added: Vec<PatchEntry>,
    #[serde(
        rename = "Removed",
        alias = "removed",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub removed: Vec<PatchEntry>,
    /// The catalog revision this patch was computed at (rollcall addition).
    #[serde(
        rename = "Revision",
        alias = "revision",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub revision: Option<u64>,
    /// `true` when `added` is the receiver's complete provider list (rollcall
    /// addition).
    #[serde(
        rename = "Resync",
        alias = "resync",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub resync: bool,
}

impl Patch {
    /// Whether the patch changes nothing (and is not a resync, which always says
    /// something: "this is all there is").
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && !self.resync
    }
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_lists_decode_as_empty() {
        let p: Patch = serde_json::from_str(r#"{"Added":null,"Removed":null}"#).unwrap();
        assert!(p.added.is_empty() && p.removed.is_empty());
        let p: Patch = serde_json::from_str("{}").unwrap();
        assert!(p.is_empty());
    }

    #[test]
    fn encodes_both_lists_as_arrays_with_go_casing() {
        let p = Patch {
            added: vec![PatchEntry::new(
                ServiceName::parse("LogService").unwrap(),
                ServiceUrl::parse("http://127.0.0.1:4000").unwrap(),
            )],
            removed: vec![],
            revision: Some(7),
            resync: false,
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(
            text,
            r#"{"Added":[{"Name":"LogService","URL":"http://127.0.0.1:4000"}],"Removed":[],"Revision":7}"#
        );
        assert_eq!(serde_json::from_str::<Patch>(&text).unwrap(), p);
    }

    #[test]
    fn invalid_entries_are_refused() {
        assert!(
            serde_json::from_str::<Patch>(r#"{"Added":[{"Name":"","URL":"http://h"}]}"#).is_err()
        );
        assert!(serde_json::from_str::<Patch>(r#"{"Added":[{"Name":"A","URL":"h"}]}"#).is_err());
    }
}
