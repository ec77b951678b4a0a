//! The log service's HTTP API.
//!
//! - `POST /log` — classic: one plain-text message per request.
//! - `POST /v1/logs` — a batch (JSON array, or NDJSON: one object per line),
//!   or an OpenTelemetry logs export (OTLP/HTTP, protobuf or JSON; see
//!   `otlp.rs`).
//!   All or nothing: if any record is invalid, nothing is stored and the
//!   answer lists every rejected record with its reason (400, or 413 when a
//!   record or the batch is too large).
//! - `GET /v1/logs` — query (see `query.rs`).
//! - `GET /` — the log explorer (HTML; see `explorer.rs`).
//! - `GET /v1/logs/tail` — Server-Sent Events: `record` events as records are
//!   stored, with the same filters; `cursor=SEQ` first replays stored records
//!   after SEQ (up to 1000), so `query then tail` misses nothing.
//!
//! `/healthz` and `/metrics` come from the SDK.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use rollcall_http::{QueryParams as Q, RawBody};
use rollcall_proto::Timestamp;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::LogError;
use crate::query::{Filter, Order, Page, Query, QueryParams};
use crate::record::{IncomingRecord, LogRecord, NewRecord, RecordError};
use crate::store::Appended;

pub use crate::metrics::{HttpMetrics, register_metrics};

/// Largest classic `POST /log` body.
pub const MAX_CLASSIC_BODY: usize = 64 * 1024;
/// Most stored records a tail replays before going live.
pub const TAIL_BACKFILL: usize = 1000;

pub use crate::ingest::Rejected;
use crate::ingest::{rejected_status, validate_batch};
use crate::search::find;
pub use crate::state::AppState;

/// The document's front matter; the paths come from the handlers' own
/// `#[utoipa::path]` attributes through [`api`], and the SDK's routes from
/// [`rollcall_sdk::service::openapi`].
#[derive(OpenApi)]
#[openapi(info(
    title = "rollcall log service",
    description = "Collects logs: the classic POST /log, structured batches, queries and a live \
tail. Every error is JSON: {\"error\": {\"code\", \"message\"}}."
))]
struct Doc;

/// The log service's own routes with their documentation: the router and
/// the OpenAPI document come from this one list.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(Doc::openapi())
        .routes(routes!(classic))
        .routes(routes!(ingest, query))
        .routes(routes!(tail))
        .routes(routes!(crate::explorer::explorer))
        .routes(routes!(rollcall_http::openapi::document))
}

/// The whole document the service serves: its own routes and the SDK's.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    rollcall_http::openapi::whole(api(), Some(rollcall_sdk::service::openapi()))
}

pub fn router(state: AppState) -> Router {
    let access = Arc::new(state.config.access.policy());
    rollcall_http::openapi::router(api(), Some(rollcall_sdk::service::openapi()))
        .layer(axum::middleware::from_fn_with_state(
            access,
            rollcall_http::access::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            rollcall_http::rate::WriteLimit::new(state.config.max_writes_per_client),
            rollcall_http::rate::guard,
        ))
        .with_state(state)
}

fn now() -> Timestamp {
    Timestamp::system_now()
}

/// Store one message (classic)
///
/// The body is one message as text; one trailing newline is not part of it.
/// A leading `[Name] - ` names the service. Stored at level info with the
/// time it was received.
#[utoipa::path(post, path = "/log", tag = "classic",
    request_body(content = String, content_type = "text/plain", description = "At most 64 KiB"),
    responses(
        (status = 200, description = "Stored (empty body)"),
        rollcall_http::openapi::WriteRefused,
    ))]
async fn classic(
    State(state): State<AppState>,
    RawBody(body): RawBody<MAX_CLASSIC_BODY>,
) -> Result<StatusCode, LogError> {
    let text = std::str::from_utf8(&body).map_err(|_| LogError::NotText)?;
    let record = NewRecord::classic(text, now()).ok_or(LogError::EmptyMessage)?;
    state.store.append(vec![record]).await?;
    state.metrics.classic_messages.inc();
    Ok(StatusCode::OK)
}

/// Unpacks a gzip body, refusing one that unpacks past `limit` bytes.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, LogError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| {
            LogError::Body(rollcall_http::BodyError::Unreadable(format!(
                "not gzip: {e}"
            )))
        })?;
    if out.len() > limit {
        return Err(LogError::Body(rollcall_http::BodyError::TooLarge { limit }));
    }
    Ok(out)
}

/// Splits a batch body into JSON values: an array, or one value per line.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Value>, LogError> {
    let text = std::str::from_utf8(body).map_err(|_| LogError::NotText)?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(LogError::EmptyBatch);
    }
    let values = if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<Value>>(trimmed)
            .map_err(|e| LogError::MalformedBatch(e.to_string()))?
    } else {
        let mut values = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            values.push(
                serde_json::from_str::<Value>(line)
                    .map_err(|e| LogError::MalformedBatch(format!("line {}: {e}", n + 1)))?,
            );
        }
        values
    };
    if values.is_empty() {
        return Err(LogError::EmptyBatch);
    }
    Ok(values)
}

#[derive(Debug, Serialize, ToSchema)]
struct Accepted {
    accepted: usize,
    stored: usize,
    duplicates: usize,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    rejected: Vec<Rejected>,
}

/// Store a batch of records, or an OpenTelemetry (OTLP/HTTP) logs export
///
/// A JSON array of records, or NDJSON (one record per line); or an OTLP
/// export (`Content-Type: application/x-protobuf`, or JSON whose first
/// field is `resourceLogs`), answered as OTLP does. All or nothing:
/// if any record is invalid nothing is stored, and the 400's body lists each
/// one with its reason under `rejected`. Records with an `id` already stored recently are
/// acknowledged but not stored again (idempotent retries).
#[utoipa::path(post, path = "/v1/logs", tag = "rollcall",
    request_body(content(
        (Vec<IncomingRecord> = "application/json"),
        (IncomingRecord = "application/x-ndjson"),
    )),
    responses(
        (status = 200, description = "Stored", body = Accepted),
        rollcall_http::openapi::WriteRefused,
    ))]
async fn ingest(State(state): State<AppState>, req: Request) -> Result<Response, LogError> {
    let limit = usize::try_from(state.config.max_batch_bytes).unwrap_or(usize::MAX);
    let headers = req.headers();
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let gzip = match headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        None => false,
        Some(e) if e.eq_ignore_ascii_case("identity") || e.is_empty() => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(other) => return Err(LogError::Encoding(other.to_owned())),
    };
    let body = rollcall_http::read_body(req, limit).await?;
    // Compressed (as the OpenTelemetry Collector sends by default): the
    // limit holds for what it unpacks to, so a small bomb stays small.
    let body = if gzip {
        gunzip(&body, limit)?.into()
    } else {
        body
    };
    if let Some(encoding) = crate::otlp::detect(&content_type, &body) {
        return Ok(crate::otlp::ingest(&state, &body, encoding).await);
    }
    let values = parse_batch(&body)?;
    if values.len() > state.config.max_batch_records {
        return Err(LogError::TooManyRecords {
            count: values.len(),
            limit: state.config.max_batch_records,
        });
    }
    let total = values.len();
    let incoming = values.into_iter().map(|value| {
        serde_json::from_value::<IncomingRecord>(value)
            .map_err(|e| RecordError::Shape(e.to_string()))
    });
    let records = match validate_batch(&state, incoming) {
        Ok(records) => records,
        Err(rejected) => {
            let body = serde_json::json!({
            "error": {
                "code": "invalid_records",
                "message": format!("{} of {total} records are invalid; nothing was stored", rejected.len()),
            },
            "accepted": 0,
            "rejected": rejected,
            });
            return Ok((rejected_status(&rejected), axum::Json(body)).into_response());
        }
    };
    let Appended {
        stored,
        duplicates,
        first_seq,
        last_seq,
    } = state.store.append(records).await?;
    state.metrics.batches_accepted.inc();
    Ok(axum::Json(Accepted {
        accepted: total,
        stored,
        duplicates,
        first_seq,
        last_seq,
        rejected: Vec::new(),
    })
    .into_response())
}

/// Query stored records
///
/// By arrival: newest first (`order=desc`, the default) or oldest first.
/// A page stops at `limit` records, at 1 MiB of records, or after scanning
/// `--scan-budget` (256 MiB); `next_cursor` asks for the next page,
/// `scanned_records` says how much this one looked at, and `reached_end`
/// whether nothing further can match (an empty page without it has not
/// searched everything).
#[utoipa::path(get, path = "/v1/logs", tag = "rollcall", params(QueryParams),
    responses(
        (status = 200, description = "One page", body = Page),
        rollcall_http::openapi::BadQuery,
    ))]
async fn query(
    State(state): State<AppState>,
    Q(params): Q<QueryParams>,
) -> Result<Response, LogError> {
    let query = params.query(now())?;
    state.metrics.queries.inc();
    let page = find(&state, query).await?;
    // Written off the async threads: a page is up to a MiB of records, and
    // a hundred at once would keep every other request waiting.
    let body = tokio::task::spawn_blocking(move || serde_json::to_vec(&page))
        .await
        .map_err(|_| LogError::Internal)?
        .map_err(|_| LogError::Internal)?;
    let mut headers = store_headers(&state);
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok((headers, body).into_response())
}

/// Which store answers, and how far it goes: `X-Rollcall-Log-Store` (its
/// identity) and `X-Rollcall-Log-Last-Seq`. A reader that keeps a cursor
/// notices by them a store that started over (another identity, or a last
/// seq behind its cursor).
fn store_headers(state: &AppState) -> axum::http::HeaderMap {
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(id) = axum::http::HeaderValue::from_str(state.store.id()) {
        headers.insert(STORE_HEADER, id);
    }
    headers.insert(
        LAST_SEQ_HEADER,
        axum::http::HeaderValue::from(state.store.last_seq().unwrap_or(0)),
    );
    headers
}

/// The store's identity, on every query and tail answer.
pub const STORE_HEADER: &str = "x-rollcall-log-store";
/// The newest seq stored when the answer was made.
pub const LAST_SEQ_HEADER: &str = "x-rollcall-log-last-seq";

fn record_event(record: &LogRecord) -> Event {
    Event::default()
        .event("record")
        .id(record.seq.to_string())
        .json_data(record)
        .unwrap_or_else(|_| Event::default().event("record").data("{}"))
}

/// Live tail (Server-Sent Events)
///
/// `record` events (data: a record; id: its seq) as records are stored,
/// filtered like queries. With `cursor` (or a `Last-Event-ID` past it, as an
/// `EventSource` sends when it reconnects), stored records after it are sent
/// first (up to 1000). `lagged` {missed} if the client fell behind. A comment
/// every 15 s keeps the connection alive. `X-Rollcall-Log-Store` and
/// `X-Rollcall-Log-Last-Seq` say which store answers and how far it goes.
#[utoipa::path(get, path = "/v1/logs/tail", tag = "rollcall", params(QueryParams),
    responses(
        (status = 200, description = "The stream", content_type = "text/event-stream"),
        rollcall_http::openapi::BadQuery,
    ))]
async fn tail(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Q(mut params): Q<QueryParams>,
) -> Result<
    (
        axum::http::HeaderMap,
        Sse<impl Stream<Item = Result<Event, Infallible>>>,
    ),
    LogError,
> {
    // A browser's EventSource reconnects with the id of the last event it
    // got: go on from there.
    if let Some(last) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        && params.cursor.is_none_or(|c| last > c)
    {
        params.cursor = Some(last);
    }
    let filter = params.filter(now())?;
    // Subscribe before reading the backfill, so nothing falls in between.
    let live = state.store.subscribe();
    let mut backfill = Vec::new();
    let mut last_sent = params.cursor.unwrap_or(0);
    if let Some(cursor) = params.cursor {
        let query = Query {
            filter: filter.clone(),
            order: Order::Asc,
            limit: TAIL_BACKFILL,
            cursor: Some(cursor),
            ..Query::default()
        };
        let page = crate::search::off_thread(&state, query).await?;
        backfill = page.records;
        if let Some(last) = backfill.last() {
            last_sent = last.seq;
        }
    }
    state.store.metrics().tail_subscribers.inc();
    let headers = store_headers(&state);
    let tail = TailState {
        state,
        filter,
        live,
        backfill: backfill.into(),
        last_sent,
    };
    let stream = futures_util::stream::unfold(tail, |mut tail| async move {
        let shutdown = tail.state.shutdown.clone();
        tokio::select! {
            () = shutdown.cancelled() => None,
            event = tail.next() => event.map(|e| (Ok(e), tail)),
        }
    });
    Ok((
        headers,
        Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    ))
}

struct TailState {
    state: AppState,
    filter: Filter,
    live: tokio::sync::broadcast::Receiver<Arc<LogRecord>>,
    backfill: std::collections::VecDeque<LogRecord>,
    last_sent: u64,
}

impl Drop for TailState {
    fn drop(&mut self) {
        self.state.store.metrics().tail_subscribers.dec();
    }
}

impl TailState {
    async fn next(&mut self) -> Option<Event> {
        if let Some(record) = self.backfill.pop_front() {
            return Some(record_event(&record));
        }
        loop {
            match self.live.recv().await {
                Ok(record) => {
                    if record.seq <= self.last_sent || !self.filter.matches(&record) {
                        continue;
                    }
                    self.last_sent = record.seq;
                    return Some(record_event(&record));
                }
                Err(RecvError::Lagged(missed)) => {
                    self.state.store.metrics().tail_lagged.inc_by(missed);
                    return Some(
                        Event::default()
                            .event("lagged")
                            .data(format!("{{\"missed\":{missed}}}")),
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_parse_as_arrays_or_ndjson() {
        assert_eq!(parse_batch(b"[{\"a\":1},{\"b\":2}]").unwrap().len(), 2);
        assert_eq!(parse_batch(b"{\"a\":1}\n\n{\"b\":2}\n").unwrap().len(), 2);
        assert!(matches!(parse_batch(b"  "), Err(LogError::EmptyBatch)));
        assert!(matches!(parse_batch(b"[]"), Err(LogError::EmptyBatch)));
        assert!(
            matches!(parse_batch(b"{\"a\":1}\n{oops"), Err(LogError::MalformedBatch(m)) if m.starts_with("line 2"))
        );
        assert!(matches!(
            parse_batch(b"[{\"a\":1}"),
            Err(LogError::MalformedBatch(_))
        ));
    }
}
