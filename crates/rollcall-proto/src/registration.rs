//! The classic registration message (`POST /services` on the registry).
//!
//! Decoding follows Go's `encoding/json`, which the original clients and
//! registry use: field names match case-insensitively (`ServiceURL`,
//! `ServiceUrl` and `serviceurl` are one field; a later duplicate wins), unknown
//! fields are ignored, `null` means "absent", and `ServiceUpdatedURL` is an alias
//! of `ServiceUpdateURL`. Encoding uses Go's casing and writes the update URL
//! under both spellings so either original registry understands it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::meta::{InvalidMeta, Meta};
use crate::names::{InvalidName, InvalidUrl, ServiceName, ServiceUrl};

/// Most names one registration may require.
pub const MAX_REQUIRED_SERVICES: usize = 64;

/// A validated registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// `ServiceName`.
    pub name: ServiceName,
    /// `ServiceURL`: the instance's identity.
    pub url: ServiceUrl,
    /// `RequiredServices`, without duplicates, in the order first given.
    pub required: Vec<ServiceName>,
    /// `ServiceUpdateURL`: where patches are POSTed; `None` when empty.
    pub update_url: Option<ServiceUrl>,
    /// `HeartbeatURL`: what the registry GETs to check health; `None` when empty.
    pub heartbeat_url: Option<ServiceUrl>,
    /// `Meta`: the instance's own labels (rollcall's addition; classic
    /// clients never send it).
    pub meta: Meta,
}

/// Why a registration was refused. Each variant names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the registration does not have the expected shape: {0}")]
    WrongShape(String),
    #[error("`{0}` is required")]
    MissingField(&'static str),
    #[error("`ServiceName` is invalid: {0}")]
    InvalidName(InvalidName),
    #[error("`{field}` is invalid: {reason}")]
    InvalidUrl {
        field: &'static str,
        reason: InvalidUrl,
    },
    #[error("`RequiredServices` entry {index} is invalid: {reason}")]
    InvalidRequiredService { index: usize, reason: InvalidName },
    #[error("`RequiredServices` lists more than {MAX_REQUIRED_SERVICES} names")]
    TooManyRequiredServices,
    #[error("`Meta` is invalid: {0}")]
    InvalidMeta(InvalidMeta),
}

impl RegistrationError {
    /// A stable, machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::WrongShape(_) => "invalid_registration",
            Self::MissingField(_) => "missing_field",
            Self::InvalidName(_) | Self::InvalidRequiredService { .. } => "invalid_name",
            Self::InvalidUrl { .. } => "invalid_url",
            Self::TooManyRequiredServices => "too_many_required_services",
            Self::InvalidMeta(_) => "invalid_meta",
        }
    }
}

impl Registration {
    /// Decodes and validates a registration body.
    pub fn from_json(body: &[u8]) -> Result<Self, RegistrationError> {
        let raw: RawRegistration = serde_json::from_slice(body).map_err(|e| {
            if e.is_data() {
                RegistrationError::WrongShape(e.to_string())
            } else {
                RegistrationError::MalformedJson(e.to_string())
            }
        })?;
        raw.validate()
    }

    /// Whether this registration requires `name`.
    pub fn requires(&self, name: &ServiceName) -> bool {
        self.required.contains(name)
    }
}

/// The fields as sent, before validation.
#[derive(Debug, Default)]
struct RawRegistration {
    name: Option<String>,
    url: Option<String>,
    required: Option<Vec<String>>,
    update_url: Option<String>,
    heartbeat_url: Option<String>,
    meta: Option<std::collections::BTreeMap<String, String>>,
}

impl RawRegistration {
    fn validate(self) -> Result<Registration, RegistrationError> {
        let name = self
            .name
            .filter(|n| !n.is_empty())
            .ok_or(RegistrationError::MissingField("ServiceName"))?;
        let name = ServiceName::parse(&name).map_err(RegistrationError::InvalidName)?;
        let url = self
            .url
            .filter(|u| !u.trim().is_empty())
            .ok_or(RegistrationError::MissingField("ServiceURL"))?;
        let url = ServiceUrl::parse(&url).map_err(|reason| RegistrationError::InvalidUrl {
            field: "ServiceURL",
            reason,
        })?;
        let optional_url = |value: Option<String>, field: &'static str| {
            ServiceUrl::parse_optional(value.as_deref().unwrap_or(""))
                .map_err(|reason| RegistrationError::InvalidUrl { field, reason })
        };
        let update_url = optional_url(self.update_url, "ServiceUpdateURL")?;
        let heartbeat_url = optional_url(self.heartbeat_url, "HeartbeatURL")?;
        let raw_required = self.required.unwrap_or_default();
        if raw_required.len() > MAX_REQUIRED_SERVICES {
            return Err(RegistrationError::TooManyRequiredServices);
        }
        let mut required: Vec<ServiceName> = Vec::with_capacity(raw_required.len());
        for (index, name) in raw_required.iter().enumerate() {
            let name = ServiceName::parse(name)
                .map_err(|reason| RegistrationError::InvalidRequiredService { index, reason })?;
            if !required.contains(&name) {
                required.push(name);
            }
        }
        let meta =
            Meta::new(self.meta.unwrap_or_default()).map_err(RegistrationError::InvalidMeta)?;
        Ok(Registration {
            name,
            url,
            required,
            update_url,
            heartbeat_url,
            meta,
        })
    }
}

impl<'de> Deserialize<'de> for RawRegistration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;

        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawRegistration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a registration object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut raw = RawRegistration::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let is = |name: &str| key.eq_ignore_ascii_case(name);
                    if is("ServiceName") {
                        raw.name = map.next_value()?;
                    } else if is("ServiceURL") {
                        raw.url = map.next_value()?;
                    } else if is("RequiredServices") {
                        raw.required = map.next_value()?;
                    } else if is("ServiceUpdateURL") || is("ServiceUpdatedURL") {
                        raw.update_url = map.next_value()?;
                    } else if is("HeartbeatURL") {
                        raw.heartbeat_url = map.next_value()?;
                    } else if is("Meta") {
                        raw.meta = map.next_value()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(raw)
            }
        }

        deserializer.deserialize_map(RawVisitor)
    }
}

impl<'de> Deserialize<'de> for Registration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawRegistration::deserialize(deserializer)?
            .validate()
            .map_err(de::Error::custom)
    }
}

impl Serialize for Registration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let update = self.update_url.as_ref().map_or("", ServiceUrl::as_str);
        let heartbeat = self.heartbeat_url.as_ref().map_or("", ServiceUrl::as_str);
        let entries = if self.meta.is_empty() { 6 } else { 7 };
        let mut map = serializer.serialize_map(Some(entries))?;
        map.serialize_entry("ServiceName", &self.name)?;
        map.serialize_entry("ServiceURL", &self.url)?;
        map.serialize_entry("RequiredServices", &self.required)?;
        map.serialize_entry("ServiceUpdateURL", update)?;
        map.serialize_entry("ServiceUpdatedURL", update)?;
        map.serialize_entry("HeartbeatURL", heartbeat)?;
        if !self.meta.is_empty() {
            map.serialize_entry("Meta", &self.meta)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Registration, RegistrationError> {
        Registration::from_json(json.as_bytes())
    }

    #[test]
    fn classic_go_body_with_null_required_services() {
        let reg = parse(
            r#"{"ServiceName":"LogService","ServiceURL":"http://localhost:4000",
                "RequiredServices":null,"ServiceUpdateURL":"http://localhost:4000/services",
                "HeartbeatURL":"http://localhost:4000/heartbeat"}"#,
        )
        .unwrap();
        assert_eq!(reg.name.as_str(), "LogService");
        assert_eq!(reg.url.as_str(), "http://localhost:4000");
        assert!(reg.required.is_empty());
        assert_eq!(
            reg.update_url.unwrap().as_str(),
            "http://localhost:4000/services"
        );
        assert_eq!(
            reg.heartbeat_url.unwrap().as_str(),
            "http://localhost:4000/heartbeat"
        );
    }

    #[test]
    fn field_names_match_case_insensitively_and_alias_is_accepted() {
        let reg = parse(
            r#"{"servicename":"Grading_Service","ServiceUrl":"http://h:6000",
                "requiredSERVICES":["Log_Service","Log_Service"],
                "ServiceUpdatedURL":"http://h:6000/services","Extra":{"x":[1,2]}}"#,
        )
        .unwrap();
        assert_eq!(reg.name.as_str(), "Grading_Service");
        assert_eq!(reg.required.len(), 1, "duplicates are dropped");
        assert_eq!(reg.update_url.unwrap().as_str(), "http://h:6000/services");
        assert_eq!(reg.heartbeat_url, None);
    }

    #[test]
    fn meta_round_trips_and_is_bounded() {
        let reg = parse(
            r#"{"ServiceName":"A","ServiceURL":"http://h:1","Meta":{"version":"2","zone":"eu-1"}}"#,
        )
        .unwrap();
        assert_eq!(reg.meta.get("version"), Some("2"));
        let json = serde_json::to_string(&reg).unwrap();
        assert!(
            json.contains(r#""Meta":{"version":"2","zone":"eu-1"}"#),
            "{json}"
        );
        assert_eq!(Registration::from_json(json.as_bytes()).unwrap(), reg);
        // Without metadata the encoding is the classic one, field for field.
        let plain = parse(r#"{"ServiceName":"A","ServiceURL":"http://h:1","Meta":null}"#).unwrap();
        assert!(plain.meta.is_empty());
        assert!(!serde_json::to_string(&plain).unwrap().contains("Meta"));
        assert_eq!(
            parse(r#"{"ServiceName":"A","ServiceURL":"http://h:1","Meta":{"a b":"1"}}"#)
                .unwrap_err()
                .code(),
            "invalid_meta"
        );
        assert_eq!(
            parse(r#"{"ServiceName":"A","ServiceURL":"http://h:1","Meta":{"v":2}}"#)
                .unwrap_err()
                .code(),
            "invalid_registration"
        );
        assert_eq!(
            parse(r#"{"ServiceName":"A","ServiceURL":"http://h:1","Meta":["v"]}"#)
                .unwrap_err()
                .code(),
            "invalid_registration"
        );
    }

    #[test]
    fn empty_optional_urls_mean_none() {
        let reg = parse(
            r#"{"ServiceName":"A","ServiceURL":"http://h:1","ServiceUpdateURL":"","HeartbeatURL":""}"#,
        )
        .unwrap();
        assert_eq!(reg.update_url, None);
        assert_eq!(reg.heartbeat_url, None);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            parse(r#"{"ServiceURL":"http://h:1"}"#),
            Err(RegistrationError::MissingField("ServiceName"))
        );
        assert_eq!(
            parse(r#"{"ServiceName":"A","ServiceURL":""}"#),
            Err(RegistrationError::MissingField("ServiceURL"))
        );
        assert!(matches!(
            parse(r#"{"ServiceName":"A","ServiceURL":"nope"}"#),
            Err(RegistrationError::InvalidUrl {
                field: "ServiceURL",
                ..
            })
        ));
        assert!(matches!(
            parse(r#"{"ServiceName":"A","ServiceURL":"http://h:1","HeartbeatURL":"::"}"#),
            Err(RegistrationError::InvalidUrl {
                field: "HeartbeatURL",
                ..
            })
        ));
        assert!(matches!(
            parse(r#"{"ServiceName":"A","ServiceURL":"http://h:1","RequiredServices":[""]}"#),
            Err(RegistrationError::InvalidRequiredService { index: 0, .. })
        ));
        assert!(matches!(
            parse(r#"{"ServiceName":"A""#),
            Err(RegistrationError::MalformedJson(_))
        ));
        assert!(matches!(
            parse(r#"{"ServiceName":5,"ServiceURL":"http://h:1"}"#),
            Err(RegistrationError::WrongShape(_))
        ));
        assert!(matches!(
            parse(r#"[1,2]"#),
            Err(RegistrationError::WrongShape(_))
        ));
    }

    #[test]
    fn encoding_writes_both_update_spellings_and_round_trips() {
        let reg = parse(
            r#"{"ServiceName":"A","ServiceURL":"http://h:1","RequiredServices":["B"],
                "ServiceUpdateURL":"http://h:1/services","HeartbeatURL":"http://h:1/heartbeat"}"#,
        )
        .unwrap();
        let json = serde_json::to_value(&reg).unwrap();
        assert_eq!(json["ServiceUpdateURL"], "http://h:1/services");
        assert_eq!(json["ServiceUpdatedURL"], "http://h:1/services");
        let back: Registration = serde_json::from_value(json).unwrap();
        assert_eq!(back, reg);
    }
}
