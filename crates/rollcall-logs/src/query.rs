//! Queries over stored records: filters, order, pagination.
//!
//! `GET /v1/logs?service=S&level=L&since=T&until=T&contains=X&limit=N&order=desc&cursor=C`
//!
//! - `service`: a service name, ignoring ASCII case (`portal` finds `Portal`).
//!   `level`: the minimum level (`warn` gives warn and error). `contains`: a
//!   substring of the message or of any field (`key=value`), ignoring ASCII
//!   case.
//! - Unknown parameters are refused (a 400 that lists the known ones), so a
//!   typo never returns everything.
//! - `since` / `until`: RFC 3339 time, Unix milliseconds, or a duration meaning
//!   "that long ago" (`10m`, `2h`); compared with each record's own timestamp.
//! - Order is by arrival (`seq`): newest first by default, `order=asc` for
//!   oldest first. `limit` is 1–1000 (default 100).
//! - A page that may have more after it carries `next_cursor`; pass it back as
//!   `cursor` for the next page. A query also stops after reading
//!   `scan_budget` bytes (256 MiB), so no request reads the whole disk: it then
//!   returns what it found with a `next_cursor` to continue from. A page also
//!   ends once its records come to [`MAX_PAGE_BYTES`] (1 MiB, at least one
//!   record): a thousand records of 64 KiB would be a 64 MiB answer, held in
//!   memory for as long as its client takes to read it.

use rollcall_proto::{ServiceName, Timestamp};
use serde::{Deserialize, Serialize};

use crate::record::{Level, LogRecord};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
pub const DEFAULT_SCAN_BUDGET: u64 = 256 << 20;
/// Most bytes of records one page holds (the page ends after the record
/// that reaches it).
pub const MAX_PAGE_BYTES: u64 = 1 << 20;

/// Which records match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub service: Option<ServiceName>,
    pub min_level: Option<Level>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Lower-cased.
    pub contains: Option<String>,
}

impl Filter {
    pub fn matches(&self, r: &LogRecord) -> bool {
        self.service.as_ref().is_none_or(|s| {
            r.service
                .as_ref()
                .is_some_and(|r| r.eq_ignore_case(s.as_str()))
        }) && self.min_level.is_none_or(|l| r.level >= l)
            && self.since.is_none_or(|t| r.ts >= t)
            && self.until.is_none_or(|t| r.ts <= t)
            && self.contains.as_ref().is_none_or(|needle| {
                contains_ignore_case(&r.message, needle)
                    || r.fields.iter().any(|(key, value)| {
                        let text = match value {
                            serde_json::Value::String(s) => format!("{key}={s}"),
                            other => format!("{key}={other}"),
                        };
                        contains_ignore_case(&text, needle)
                    })
            })
    }
}

fn contains_ignore_case(haystack: &str, lower_needle: &str) -> bool {
    if lower_needle.is_empty() {
        return true;
    }
    haystack.to_ascii_lowercase().contains(lower_needle)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Desc,
    Asc,
}

/// A whole query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub filter: Filter,
    pub order: Order,
    pub limit: usize,
    pub cursor: Option<u64>,
    pub scan_budget: u64,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            filter: Filter::default(),
            order: Order::Desc,
            limit: DEFAULT_LIMIT,
            cursor: None,
            scan_budget: DEFAULT_SCAN_BUDGET,
        }
    }
}

/// One page of results. A page ends when it holds `limit` records or its scan
/// budget is spent (`next_cursor` goes on from there), or when the store has
/// nothing further (`reached_end`): an empty page with a `next_cursor` has not
/// searched everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub records: Vec<LogRecord>,
    pub next_cursor: Option<u64>,
    /// Stored records this page looked at, and their bytes.
    pub scanned_records: u64,
    pub scanned_bytes: u64,
    /// Whether the scan reached the end of the store in the query's order:
    /// nothing further can match.
    pub reached_end: bool,
    /// Why a page is empty when the reason is not the filter's values: the
    /// named service has no records at all (and which services do).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
}

impl Page {
    /// Says so when the page is empty because `filter` names a service that
    /// has no records; `known` are the services that have some.
    pub fn explain_empty(&mut self, filter: &Filter, known: Vec<String>) {
        let Some(wanted) = &filter.service else {
            return;
        };
        if !self.records.is_empty() || known.iter().any(|k| wanted.eq_ignore_case(k)) {
            return;
        }
        self.note = Some(if known.is_empty() {
            format!("no service has records yet, so none from `{wanted}`")
        } else {
            format!(
                "no records from a service called `{wanted}`; services with records: {}",
                known.join(", ")
            )
        });
        self.services = Some(known);
    }
}

/// The query string as sent.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueryParams {
    /// Only this service (any case).
    pub service: Option<String>,
    /// This level and above: trace, debug, info, warn, error.
    pub level: Option<String>,
    /// From this time: RFC 3339, or a duration ago such as `15m`.
    pub since: Option<String>,
    /// Until this time: RFC 3339, or a duration ago.
    pub until: Option<String>,
    /// Text the message or a field value contains (any case).
    pub contains: Option<String>,
    /// Page size, 1 to 1000 (default 100); queries only.
    pub limit: Option<usize>,
    /// `desc` (newest first, the default) or `asc`; queries only.
    #[param(inline)]
    pub order: Option<Order>,
    /// Continue after this record (`next_cursor` of the previous page).
    pub cursor: Option<u64>,
}

/// Why a query string was refused (the parameter and the reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{param}`: {reason}")]
pub struct QueryError {
    pub param: &'static str,
    pub reason: String,
}

fn bad(param: &'static str, reason: impl Into<String>) -> QueryError {
    QueryError {
        param,
        reason: reason.into(),
    }
}

/// Parses a point in time: RFC 3339, Unix milliseconds, or a duration ago.
pub fn parse_time(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(Timestamp::from_millis(ms));
    }
    if let Ok(t) = Timestamp::parse_rfc3339(text) {
        return Ok(t);
    }
    rollcall_proto::units::parse_duration(text)
        .map(|ago| now.minus(ago))
        .map_err(|_| {
            format!("`{text}` is not RFC 3339 time, Unix milliseconds, or a duration like 10m")
        })
}

impl QueryParams {
    /// Validates the parameters into a filter (shared with the live tail).
    pub fn filter(&self, now: Timestamp) -> Result<Filter, QueryError> {
        let service = self
            .service
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(ServiceName::parse)
            .transpose()
            .map_err(|e| bad("service", e.to_string()))?;
        let min_level = self
            .level
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|l| {
                Level::parse(l).ok_or_else(|| {
                    bad(
                        "level",
                        format!("`{l}` is not one of trace, debug, info, warn, error"),
                    )
                })
            })
            .transpose()?;
        let time = |param: &'static str, value: &Option<String>| {
            value
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|t| parse_time(t, now).map_err(|e| bad(param, e)))
                .transpose()
        };
        let since = time("since", &self.since)?;
        let until = time("until", &self.until)?;
        if let (Some(s), Some(u)) = (since, until)
            && s > u
        {
            return Err(bad("since", "is after `until`"));
        }
        Ok(Filter {
            service,
            min_level,
            since,
            until,
            contains: self
                .contains
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(str::to_ascii_lowercase),
        })
    }

    pub fn query(&self, now: Timestamp) -> Result<Query, QueryError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(bad("limit", format!("must be 1 to {MAX_LIMIT}")));
        }
        Ok(Query {
            filter: self.filter(now)?,
            order: self.order.unwrap_or_default(),
            limit,
            cursor: self.cursor,
            scan_budget: DEFAULT_SCAN_BUDGET,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NewRecord;

    #[test]
    fn times_parse_three_ways() {
        let now = Timestamp(1_000_000);
        assert_eq!(parse_time("600000", now), Ok(Timestamp(600_000)));
        assert_eq!(parse_time("10s", now), Ok(Timestamp(990_000)));
        assert!(parse_time("2026-11-21T10:00:00Z", now).is_ok());
        assert!(parse_time("last tuesday", now).is_err());
    }

    #[test]
    fn filters_combine() {
        let mut r = NewRecord::classic("[Grading] - Student Added", Timestamp(500))
            .unwrap()
            .with_seq(1);
        r.level = Level::Warn;
        let params = |q: &str| -> QueryParams {
            serde_json::from_value(serde_json::json!(
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap();
                        (k.to_owned(), serde_json::Value::String(v.to_owned()))
                    })
                    .collect::<serde_json::Map<_, _>>()
            ))
            .unwrap()
        };
        let f = |q: &str| params(q).filter(Timestamp(1000)).unwrap();
        assert!(f("").matches(&r));
        assert!(f("service=Grading&level=warn&contains=student").matches(&r));
        assert!(f("service=grading").matches(&r), "names ignore case");
        r.fields
            .insert("student".into(), serde_json::Value::from("Zhang San"));
        r.fields.insert("score".into(), serde_json::Value::from(85));
        assert!(f("contains=zhang").matches(&r), "fields are searched");
        assert!(f("contains=score=85").matches(&r));
        assert!(!f("contains=score=86").matches(&r));
        assert!(!f("level=error").matches(&r));
        assert!(!f("service=Other").matches(&r));
        assert!(!f("contains=deleted").matches(&r));
        assert!(f("since=600ms").matches(&r));
        assert!(!f("since=400ms").matches(&r));
        assert!(params("level=loud").filter(Timestamp(0)).is_err());
        assert!(params("since=1000&until=10").filter(Timestamp(0)).is_err());
    }

    #[test]
    fn unknown_parameters_are_refused_and_empty_pages_explained() {
        let typo: Result<QueryParams, _> =
            serde_json::from_value(serde_json::json!({"servce": "Portal"}));
        let error = typo.unwrap_err().to_string();
        assert!(
            error.contains("servce") && error.contains("service"),
            "{error}"
        );

        let filter = |service: &str| Filter {
            service: Some(ServiceName::parse(service).unwrap()),
            ..Filter::default()
        };
        let known = vec!["GradingService".to_owned(), "Portal".to_owned()];
        let mut page = Page::default();
        page.explain_empty(&filter("portal"), known.clone());
        assert_eq!(
            page.note, None,
            "it exists (ignoring case): nothing to explain"
        );
        page.explain_empty(&filter("Portl"), known.clone());
        assert!(
            page.note
                .as_deref()
                .unwrap()
                .contains("GradingService, Portal")
        );
        assert_eq!(page.services, Some(known));
    }

    #[test]
    fn limits_are_bounded() {
        let q = |limit| QueryParams {
            limit: Some(limit),
            ..QueryParams::default()
        };
        assert!(q(0).query(Timestamp(0)).is_err());
        assert!(q(1001).query(Timestamp(0)).is_err());
        assert_eq!(q(5).query(Timestamp(0)).unwrap().limit, 5);
    }
}
