//! OpenTelemetry logs in: OTLP/HTTP exports at the standard path,
//! `POST /v1/logs`, next to rollcall's own batch format on the same path.
//!
//! An export is told apart by its `Content-Type`: `application/x-protobuf`
//! is OTLP's binary encoding; a JSON object whose first field is
//! `resourceLogs` is OTLP's JSON encoding; anything else is rollcall's batch
//! (an array, or one record per line). The types are `opentelemetry-proto`'s
//! generated ones (no protoc at build time).
//!
//! Each OTLP log record becomes one stored record:
//! - service: the resource's `service.name` (characters a rollcall name
//!   cannot hold become `_`, so an SDK's default `unknown_service:rust`
//!   is `unknown_service_rust`; absent: `unknown_service`), instance: its
//!   `service.instance.id`;
//! - level: from `severityNumber` (1–4 trace, 5–8 debug, 9–12 info, 13–16
//!   warn, 17–24 error), else from `severityText`, else info;
//! - message: the body (a string as is, anything else as JSON; no body:
//!   the event name, else `(no body)`); time: `timeUnixNano`, else
//!   `observedTimeUnixNano`, else the arrival;
//! - fields: the record's attributes, `trace_id` and `span_id` (hex), the
//!   scope's name as `otel.scope`, a severity text the level does not say
//!   as `otel.severity`, and the other resource attributes as
//!   `resource.KEY`.
//!
//! A record with a time of its own gets an `id` hashed from its content (its
//! resource, scope and every field), so an export sent again after a lost
//! answer is acknowledged and not stored twice — like the SDK's ids.
//!
//! The same limits and rule as a rollcall batch (a gzip body is unpacked
//! first, `http.rs`, and the limit holds for what it unpacks to): at most
//! `--max-batch-bytes`, `--max-batch-records`, every record within
//! `--max-record-bytes`; all or nothing — one record that cannot be stored
//! and nothing is, with a 400 (413 for sizes). The answer is OTLP's:
//! `ExportLogsServiceResponse` in the request's encoding (no
//! `partialSuccess`: nothing is ever half-stored), or on an error a
//! `google.rpc.Status` (in JSON also rollcall's `{"error": {...}}`).

mod shape;

use std::hash::{DefaultHasher, Hash, Hasher};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use rollcall_proto::ServiceName;
use serde_json::{Map, Value};

use crate::record::{IncomingRecord, Level};
use crate::state::AppState;
use crate::store::Appended;

/// OTLP's two encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// Whether a request to `POST /v1/logs` is an OTLP export, and in which
/// encoding (`None`: rollcall's own batch); `content_type` lower-cased.
pub fn detect(content_type: &str, body: &[u8]) -> Option<Encoding> {
    if content_type.starts_with("application/x-protobuf")
        || content_type.starts_with("application/protobuf")
    {
        return Some(Encoding::Protobuf);
    }
    let text = std::str::from_utf8(body.get(..body.len().min(256))?)
        .or_else(|e| std::str::from_utf8(&body[..e.valid_up_to()]))
        .ok()?;
    let rest = text.trim_start().strip_prefix('{')?.trim_start();
    (rest.starts_with("\"resourceLogs\"") || rest.starts_with("\"resource_logs\""))
        .then_some(Encoding::Json)
}

/// The `google.rpc.Status` an OTLP error answer carries.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// `google.rpc.Code.INVALID_ARGUMENT`.
const INVALID_ARGUMENT: i32 = 3;

/// An OTLP error answer in `encoding`.
pub fn error(encoding: Encoding, status: StatusCode, code: &str, message: String) -> Response {
    match encoding {
        Encoding::Protobuf => (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            RpcStatus {
                code: INVALID_ARGUMENT,
                message,
            }
            .encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            status,
            axum::Json(serde_json::json!({
                "code": INVALID_ARGUMENT,
                "message": message,
                "error": {"code": code, "message": message},
            })),
        )
            .into_response(),
    }
}

fn decode(body: &[u8], encoding: Encoding) -> Result<ExportLogsServiceRequest, String> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| e.to_string()),
    }
}

/// An attribute value as JSON (bytes as hex).
fn json_of(value: &AnyValue) -> Value {
    match &value.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(json_of).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(object_of(&kv.values, "")),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex::encode(b)),
        Some(any_value::Value::StringValueStrindex(i)) => Value::from(*i),
    }
}

fn object_of(pairs: &[KeyValue], prefix: &str) -> Map<String, Value> {
    pairs
        .iter()
        .map(|kv| {
            (
                format!("{prefix}{}", kv.key),
                kv.value.as_ref().map_or(Value::Null, json_of),
            )
        })
        .collect()
}

fn string_attribute<'a>(pairs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    pairs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// A `service.name` as a rollcall service name.
pub fn service_name(name: Option<&str>) -> String {
    let name = name.filter(|n| !n.is_empty()).unwrap_or("unknown_service");
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if ServiceName::parse(&cleaned).is_ok() {
        cleaned
    } else {
        "unknown_service".to_owned()
    }
}

/// A severity number as a level.
fn level_of(number: i32, text: &str) -> Level {
    match number {
        1..=4 => Level::Trace,
        5..=8 => Level::Debug,
        9..=12 => Level::Info,
        13..=16 => Level::Warn,
        17..=24 => Level::Error,
        _ => Level::parse(text).unwrap_or(Level::Info),
    }
}

/// The records of an export, as a rollcall batch's records are sent.
pub fn incoming(export: &ExportLogsServiceRequest) -> Vec<IncomingRecord> {
    let mut out = Vec::new();
    for resource_logs in &export.resource_logs {
        let attributes: &[KeyValue] = resource_logs
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        let service = service_name(string_attribute(attributes, "service.name"));
        let instance = string_attribute(attributes, "service.instance.id").map(str::to_owned);
        // A record's id is a hash of what it holds (with its resource and
        // scope): an exporter that sends an export again after a lost answer
        // has it acknowledged, not stored twice.
        let mut resource_hash = DefaultHasher::new();
        resource_logs
            .resource
            .as_ref()
            .map(Message::encode_to_vec)
            .hash(&mut resource_hash);
        let resource: Vec<KeyValue> = attributes
            .iter()
            .filter(|kv| kv.key != "service.name" && kv.key != "service.instance.id")
            .cloned()
            .collect();
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs
                .scope
                .as_ref()
                .map(|s| s.name.as_str())
                .filter(|n| !n.is_empty());
            let mut scope_hash = resource_hash.clone();
            scope.hash(&mut scope_hash);
            for record in &scope_logs.log_records {
                let level = level_of(record.severity_number, &record.severity_text);
                let mut fields = object_of(&record.attributes, "");
                if !record.trace_id.is_empty() {
                    fields.insert(
                        "trace_id".into(),
                        Value::String(hex::encode(&record.trace_id)),
                    );
                }
                if !record.span_id.is_empty() {
                    fields.insert(
                        "span_id".into(),
                        Value::String(hex::encode(&record.span_id)),
                    );
                }
                if let Some(scope) = scope {
                    fields.insert("otel.scope".into(), Value::String(scope.to_owned()));
                }
                if !record.severity_text.is_empty()
                    && Level::parse(&record.severity_text) != Some(level)
                {
                    fields.insert(
                        "otel.severity".into(),
                        Value::String(record.severity_text.clone()),
                    );
                }
                fields.extend(object_of(&resource, "resource."));
                let message = match record.body.as_ref().map(|b| (b, &b.value)) {
                    Some((_, Some(any_value::Value::StringValue(s)))) if !s.is_empty() => s.clone(),
                    Some((b, Some(_))) => json_of(b).to_string(),
                    _ if !record.event_name.is_empty() => record.event_name.clone(),
                    _ => "(no body)".to_owned(),
                };
                let nanos = if record.time_unix_nano != 0 {
                    record.time_unix_nano
                } else {
                    record.observed_time_unix_nano
                };
                // Only a record with a time of its own: without one, the
                // same message sent twice is two events.
                let id = (nanos != 0).then(|| {
                    let mut hash = scope_hash.clone();
                    record.encode_to_vec().hash(&mut hash);
                    format!("otlp-{:016x}", hash.finish())
                });
                out.push(IncomingRecord {
                    timestamp: (nanos != 0).then(|| Value::from(nanos / 1_000_000)),
                    service: Some(service.clone()),
                    instance: instance.clone(),
                    level: Some(level.as_str().to_owned()),
                    message: Some(message),
                    fields: Some(Value::Object(fields)),
                    id,
                });
            }
        }
    }
    out
}

/// Stores an OTLP export (all or nothing) and answers as OTLP does.
pub async fn ingest(state: &AppState, body: &[u8], encoding: Encoding) -> Response {
    // Measured before it is decoded: decoding materialises every record,
    // and copies every resource attribute into each of them.
    let limits = shape::Limits {
        records: state.config.max_batch_records,
        expanded_bytes: state.config.max_batch_bytes,
    };
    let measured = match encoding {
        Encoding::Protobuf => shape::protobuf(body, limits),
        Encoding::Json => shape::json(body, limits),
    };
    if let Err(refused) = measured {
        state.metrics.batches_rejected.inc();
        let (status, code) = match refused {
            shape::Refused::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_export"),
            shape::Refused::TooManyRecords(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_many_records")
            }
            shape::Refused::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "export_too_large"),
        };
        let message = match refused {
            shape::Refused::Malformed(e) => format!("not an OTLP logs export: {e}"),
            other => format!("{other}; nothing was stored"),
        };
        return error(encoding, status, code, message);
    }
    let export = match decode(body, encoding) {
        Ok(export) => export,
        Err(e) => {
            state.metrics.batches_rejected.inc();
            return error(
                encoding,
                StatusCode::BAD_REQUEST,
                "malformed_export",
                format!("not an OTLP logs export: {e}"),
            );
        }
    };
    let records = incoming(&export);
    if records.is_empty() {
        return answer(encoding);
    }
    if records.len() > state.config.max_batch_records {
        state.metrics.batches_rejected.inc();
        return error(
            encoding,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "the export has {} records; the limit is {}",
                records.len(),
                state.config.max_batch_records
            ),
        );
    }
    let total = records.len();
    let valid = match crate::ingest::validate_batch(state, records.into_iter().map(Ok)) {
        Ok(valid) => valid,
        Err(rejected) => {
            let first = &rejected[0];
            return error(
                encoding,
                crate::ingest::rejected_status(&rejected),
                "invalid_records",
                format!(
                    "{} of {total} log records cannot be stored (record {}: {}); nothing was stored",
                    rejected.len(),
                    first.index,
                    first.reason
                ),
            );
        }
    };
    match state.store.append(valid).await {
        Ok(Appended { .. }) => {
            state.metrics.batches_accepted.inc();
            answer(encoding)
        }
        Err(e) => {
            tracing::error!(error = %e, "log store failure");
            let mut response = error(
                encoding,
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "log storage is unavailable".to_owned(),
            );
            // OTLP exporters retry a 503 after this long.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
    }
}

/// The success answer: an empty `ExportLogsServiceResponse`.
fn answer(encoding: Encoding) -> Response {
    let response = ExportLogsServiceResponse {
        partial_success: None,
    };
    match encoding {
        Encoding::Protobuf => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            response.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => axum::Json(response).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_made_storable() {
        assert_eq!(service_name(Some("checkout")), "checkout");
        assert_eq!(
            service_name(Some("unknown_service:rust")),
            "unknown_service_rust"
        );
        assert_eq!(service_name(None), "unknown_service");
        assert_eq!(service_name(Some("")), "unknown_service");
    }

    #[test]
    fn severities_map_to_levels() {
        assert_eq!(level_of(1, ""), Level::Trace);
        assert_eq!(level_of(9, "INFO"), Level::Info);
        assert_eq!(level_of(13, ""), Level::Warn);
        assert_eq!(level_of(21, "FATAL"), Level::Error);
        assert_eq!(level_of(0, "warning"), Level::Warn);
        assert_eq!(level_of(0, "loud"), Level::Info);
    }

    #[test]
    fn otlp_json_is_told_from_a_batch() {
        let json = "application/json";
        assert_eq!(
            detect(json, br#" { "resourceLogs": [] }"#),
            Some(Encoding::Json)
        );
        assert_eq!(detect(json, br#"{"service":"S","message":"m"}"#), None);
        assert_eq!(detect("", br#"[{"resourceLogs":1}]"#), None);
        assert_eq!(
            detect("application/x-protobuf", b"\x0a\x00"),
            Some(Encoding::Protobuf)
        );
    }
}
