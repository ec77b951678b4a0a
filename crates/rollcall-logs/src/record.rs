//! Log records: what is stored, and how what clients send becomes it.
//!
//! Stored form, one JSON object per line (NDJSON), `seq` first so a scan can
//! read it without parsing the rest:
//!
//! ```json
//! {"seq":42,"ts":"2026-11-21T10:00:00.123Z","received":"2026-11-21T10:00:00.125Z",
//!  "service":"GradingService","instance":"http://127.0.0.1:6000","level":"warn",
//!  "message":"slow query","fields":{"ms":812},"id":"3f2a-17"}
//! ```
//!
//! `seq` is assigned by the log service and grows by one per stored record;
//! `ts` is the producer's time (the arrival time if it sent none); `received`
//! is the arrival time; `id`, if the producer sent one, makes retries
//! idempotent.

use std::fmt;

use rollcall_proto::{ServiceName, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest serialized record, by default.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;
/// Longest accepted record id.
pub const MAX_ID_LEN: usize = 128;
/// Longest accepted instance name.
pub const MAX_INSTANCE_LEN: usize = 2048;

/// Severity, ordered: `trace < debug < info < warn < error`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
    ];

    /// Parses a level name, case-insensitively (`warning` is `warn`).
    pub fn parse(text: &str) -> Option<Level> {
        match text.trim().to_ascii_lowercase().as_str() {
            "trace" => Some(Level::Trace),
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" | "err" => Some(Level::Error),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogRecord {
    pub seq: u64,
    pub ts: Timestamp,
    pub received: Timestamp,
    /// Read leniently: a name stored before names were restricted to letters,
    /// digits, `.`, `_` and `-` reads as no service rather than making the
    /// whole record unreadable.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_name"
    )]
    pub service: Option<ServiceName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub level: Level,
    pub message: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

fn lenient_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ServiceName>, D::Error> {
    let text = Option::<std::borrow::Cow<'de, str>>::deserialize(d)?;
    Ok(text.and_then(|t| ServiceName::parse(&t).ok()))
}

/// A record accepted for storage, before the log service numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    pub ts: Timestamp,
    pub received: Timestamp,
    pub service: Option<ServiceName>,
    pub instance: Option<String>,
    pub level: Level,
    pub message: String,
    pub fields: Map<String, Value>,
    pub id: Option<String>,
}

impl NewRecord {
    /// Numbers it.
    pub fn with_seq(self, seq: u64) -> LogRecord {
        LogRecord {
            seq,
            ts: self.ts,
            received: self.received,
            service: self.service,
            instance: self.instance,
            level: self.level,
            message: self.message,
            fields: self.fields,
            id: self.id,
        }
    }

    /// A classic `POST /log` body: one message, stored with the time it was
    /// received. A leading `[Name] - ` (how the original clients prefixed) names
    /// the service. One trailing newline is not part of the message.
    pub fn classic(body: &str, received: Timestamp) -> Option<NewRecord> {
        let text = body
            .strip_suffix("\r\n")
            .or_else(|| body.strip_suffix('\n'))
            .unwrap_or(body);
        if text.trim().is_empty() {
            return None;
        }
        let (service, message) = split_classic_prefix(text);
        Some(NewRecord {
            ts: received,
            received,
            service,
            instance: None,
            level: Level::Info,
            message: message.to_owned(),
            fields: Map::new(),
            id: None,
        })
    }
}

fn split_classic_prefix(text: &str) -> (Option<ServiceName>, &str) {
    if let Some(rest) = text.strip_prefix('[')
        && let Some(end) = rest.find("] - ")
        && let Ok(name) = ServiceName::parse(&rest[..end])
    {
        return (Some(name), &rest[end + 4..]);
    }
    (None, text)
}

/// A record as a producer sends it to `POST /v1/logs`.
///
/// `service` and `message` are required; `level` defaults to `info`;
/// `timestamp` (RFC 3339 text or Unix milliseconds; alias `ts`) defaults to the
/// arrival time; `fields` must be an object; `id` makes a retry idempotent.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncomingRecord {
    /// RFC 3339 text or Unix milliseconds (alias `ts`); default: arrival.
    #[serde(default, alias = "ts")]
    #[schema(value_type = Option<String>)]
    pub timestamp: Option<Value>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default, alias = "msg")]
    pub message: Option<String>,
    /// An object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub fields: Option<Value>,
    /// Makes a retry idempotent.
    #[serde(default)]
    pub id: Option<String>,
}

/// Why one record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a record object: {0}")]
    Shape(String),
    #[error("`service` is required")]
    MissingService,
    #[error("`service` is invalid: {0}")]
    InvalidService(String),
    #[error("`message` is required and must not be empty")]
    MissingMessage,
    #[error("`level` `{0}` is not one of trace, debug, info, warn, error")]
    UnknownLevel(String),
    #[error("`timestamp` is neither RFC 3339 text nor Unix milliseconds in the years 0 to 9999")]
    InvalidTimestamp,
    #[error("`fields` must be an object")]
    FieldsNotObject,
    #[error("`id` is empty or longer than {MAX_ID_LEN} characters")]
    InvalidId,
    #[error("`instance` is longer than {MAX_INSTANCE_LEN} characters")]
    InvalidInstance,
    #[error("the record is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
}

impl RecordError {
    pub fn is_size(&self) -> bool {
        matches!(self, RecordError::TooLarge { .. })
    }
}

impl IncomingRecord {
    /// Checks the record; `received` is the arrival time.
    pub fn validate(self, received: Timestamp, max_bytes: usize) -> Result<NewRecord, RecordError> {
        let service = self
            .service
            .filter(|s| !s.is_empty())
            .ok_or(RecordError::MissingService)?;
        let service =
            ServiceName::parse(&service).map_err(|e| RecordError::InvalidService(e.to_string()))?;
        let message = self
            .message
            .filter(|m| !m.is_empty())
            .ok_or(RecordError::MissingMessage)?;
        let level = match self.level {
            None => Level::Info,
            Some(text) => Level::parse(&text).ok_or(RecordError::UnknownLevel(text))?,
        };
        let ts = match self.timestamp {
            None | Some(Value::Null) => received,
            Some(Value::String(text)) => {
                Timestamp::parse_rfc3339(&text).map_err(|_| RecordError::InvalidTimestamp)?
            }
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Timestamp::from_millis)
                .ok_or(RecordError::InvalidTimestamp)?,
            Some(_) => return Err(RecordError::InvalidTimestamp),
        };
        // Years 0–9999 only: what RFC 3339 can write back (a later one
        // would be stored and then unreadable).
        if ts > Timestamp::MAX_RFC3339 {
            return Err(RecordError::InvalidTimestamp);
        }
        let fields = match self.fields {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(RecordError::FieldsNotObject),
        };
        if let Some(id) = &self.id
            && (id.is_empty() || id.chars().count() > MAX_ID_LEN)
        {
            return Err(RecordError::InvalidId);
        }
        if let Some(instance) = &self.instance
            && instance.chars().count() > MAX_INSTANCE_LEN
        {
            return Err(RecordError::InvalidInstance);
        }
        let record = NewRecord {
            ts,
            received,
            service: Some(service),
            instance: self.instance.filter(|i| !i.is_empty()),
            level,
            message,
            fields,
            id: self.id,
        };
        let size = approximate_size(&record);
        if size > max_bytes {
            return Err(RecordError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        Ok(record)
    }
}

/// The stored size of a record, give or take the fixed framing.
pub fn approximate_size(record: &NewRecord) -> usize {
    let fields = if record.fields.is_empty() {
        0
    } else {
        serde_json::to_string(&record.fields).map_or(usize::MAX, |s| s.len())
    };
    record.message.len()
        + fields
        + record.instance.as_ref().map_or(0, String::len)
        + record.id.as_ref().map_or(0, String::len)
        + record.service.as_ref().map_or(0, |s| s.as_str().len())
        + 120
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(json: &str) -> IncomingRecord {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn classic_bodies_keep_the_prefix_as_the_service() {
        let r = NewRecord::classic("[GradingService] - student 3 added\n", Timestamp(5)).unwrap();
        assert_eq!(r.service.unwrap().as_str(), "GradingService");
        assert_eq!(r.message, "student 3 added");
        assert_eq!((r.ts, r.level), (Timestamp(5), Level::Info));
        let r = NewRecord::classic("no prefix here", Timestamp(5)).unwrap();
        assert_eq!((r.service, r.message.as_str()), (None, "no prefix here"));
        let r = NewRecord::classic("[] - empty name", Timestamp(5)).unwrap();
        assert_eq!(r.message, "[] - empty name");
        assert!(NewRecord::classic("\n", Timestamp(5)).is_none());
        assert!(NewRecord::classic("", Timestamp(5)).is_none());
    }

    #[test]
    fn timestamps_past_the_year_9999_are_refused() {
        let last =
            incoming(r#"{"service":"S","message":"m","timestamp":"9999-12-31T23:59:59.999Z"}"#)
                .validate(Timestamp(9), 1 << 16);
        assert!(last.is_ok());
        for late in [
            r#"{"service":"S","message":"m","timestamp":253402300800000}"#,
            r#"{"service":"S","message":"m","ts":18446744073709551615}"#,
        ] {
            assert!(
                matches!(
                    incoming(late).validate(Timestamp(9), 1 << 16),
                    Err(RecordError::InvalidTimestamp)
                ),
                "{late}"
            );
        }
    }

    #[test]
    fn structured_records_are_validated() {
        let ok = incoming(
            r#"{"timestamp":"2026-11-21T10:00:00Z","service":"S","level":"WARNING","message":"m","fields":{"a":1},"id":"x-1"}"#,
        )
        .validate(Timestamp(9), 1 << 16)
        .unwrap();
        assert_eq!(ok.level, Level::Warn);
        assert_eq!(
            ok.ts,
            Timestamp::parse_rfc3339("2026-11-21T10:00:00Z").unwrap()
        );
        let defaults = incoming(r#"{"service":"S","msg":"m","ts":1000}"#)
            .validate(Timestamp(9), 1 << 16)
            .unwrap();
        assert_eq!(
            (defaults.level, defaults.ts),
            (Level::Info, Timestamp(1000))
        );

        let err = |json: &str| incoming(json).validate(Timestamp(9), 200).unwrap_err();
        assert_eq!(err(r#"{"message":"m"}"#), RecordError::MissingService);
        assert_eq!(err(r#"{"service":"S"}"#), RecordError::MissingMessage);
        assert_eq!(
            err(r#"{"service":"S","message":"m","level":"loud"}"#),
            RecordError::UnknownLevel("loud".into())
        );
        assert_eq!(
            err(r#"{"service":"S","message":"m","timestamp":"yesterday"}"#),
            RecordError::InvalidTimestamp
        );
        assert_eq!(
            err(r#"{"service":"S","message":"m","fields":[1]}"#),
            RecordError::FieldsNotObject
        );
        assert!(
            err(&format!(
                r#"{{"service":"S","message":"{}"}}"#,
                "x".repeat(500)
            ))
            .is_size()
        );
        assert!(
            serde_json::from_str::<IncomingRecord>(r#"{"service":"S","message":"m","extra":1}"#)
                .is_err()
        );
    }

    #[test]
    fn stored_form_round_trips_with_seq_first() {
        let r = NewRecord::classic("[A] - hi", Timestamp(1_000))
            .unwrap()
            .with_seq(7);
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.starts_with(r#"{"seq":7,"#), "{line}");
        assert_eq!(serde_json::from_str::<LogRecord>(&line).unwrap(), r);
    }

    #[test]
    fn levels_are_ordered() {
        assert!(Level::Trace < Level::Error);
        assert_eq!(Level::parse("Err"), Some(Level::Error));
        assert_eq!(Level::parse("fatal"), None);
    }
}
