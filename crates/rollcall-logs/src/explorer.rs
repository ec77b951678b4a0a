//! The log explorer at the log service's `GET /`: server-rendered like the
//! portal, so it works without JavaScript — pickers for service and level,
//! a time range, text search over messages and fields, records whose
//! fields open in place (`<details>`), older pages by cursor — and the
//! query is the page's address, so a view can be shared as a link. The
//! live tail is the one part that needs JavaScript: an `EventSource` on
//! `/v1/logs/tail` with the same filters, starting after the newest record
//! shown; a reconnect resumes from the last record it got (`Last-Event-ID`).

use askama::Template;
use axum::extract::{Query as QueryString, State};
use axum::http::StatusCode;
use axum::response::Response;
use rollcall_proto::Timestamp;

use crate::query::QueryParams;
use crate::record::{Level, LogRecord};
use crate::state::AppState;

/// Records per page.
pub const PAGE: usize = 100;
/// How long one page may search the store (page after page of the query
/// API's) before it shows what it found and offers to search further.
pub const SEARCH_FOR: std::time::Duration = std::time::Duration::from_secs(3);
use rollcall_proto::log_row::{INLINE_FIELDS, inline_fields, row_time};

struct Row {
    seq: u64,
    ts: String,
    /// The time of day, with the date before it when it is not `today`.
    time: String,
    /// `key=value …`, cut at [`INLINE_FIELDS`] characters.
    inline: String,
    level: &'static str,
    service: String,
    instance: String,
    message: String,
    fields: Vec<(String, String)>,
    id: String,
    received: String,
}

impl Row {
    /// `today` is `YYYY-MM-DD` (UTC, as times are shown).
    fn of(r: LogRecord, today: &str) -> Row {
        let ts = r.ts.to_rfc3339();
        Row {
            seq: r.seq,
            time: row_time(&ts, today, 3),
            inline: inline_fields(&r.fields, INLINE_FIELDS),
            ts,
            level: r.level.as_str(),
            service: r
                .service
                .map_or_else(|| "-".to_owned(), |s| s.as_str().to_owned()),
            instance: r.instance.unwrap_or_default(),
            message: r.message,
            fields: r
                .fields
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, text)
                })
                .collect(),
            id: r.id.unwrap_or_default(),
            received: r.received.to_rfc3339(),
        }
    }
}

#[derive(Template)]
#[template(path = "explorer.html")]
struct ExplorerPage {
    services: Vec<String>,
    levels: [&'static str; 5],
    service: String,
    level: String,
    since: String,
    until: String,
    contains: String,
    rows: Vec<Row>,
    error: Option<String>,
    note: Option<String>,
    /// How much the search looked at, when that is worth saying: nothing
    /// matched, or it stopped before filling the page.
    searched: Option<String>,
    /// The address of the next (older) page.
    older: Option<String>,
    /// The filters as a query string, for the live tail.
    filters: String,
    /// The newest record shown (the tail starts after it).
    newest: u64,
    /// [`INLINE_FIELDS`], for the live tail's rows.
    inline_max: usize,
}

/// "Searched all N records" when nothing matched to the end; "searched N
/// records so far" when the search stopped before filling the page.
fn searched_text(page: &crate::query::Page) -> Option<String> {
    let records = page.scanned_records;
    let mib = page.scanned_bytes as f64 / (1024.0 * 1024.0);
    if page.reached_end {
        page.records
            .is_empty()
            .then(|| format!("Searched all {records} records: none match."))
    } else if page.records.len() < PAGE {
        Some(format!(
            "Searched {records} records ({mib:.0} MiB) so far; older ones are not searched yet."
        ))
    } else {
        None
    }
}

fn encode(pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            out.append_pair(k, v);
        }
    }
    out.finish()
}

/// Log explorer (HTML)
///
/// Pickers for service and level, a time range, text search, records with
/// their fields, a live tail. The query string is `GET /v1/logs`'s.
#[utoipa::path(get, path = "/", tag = "explorer", params(QueryParams),
    responses(
        (status = 200, description = "The page", content_type = "text/html"),
        (status = 400, description = "The page, saying what is wrong with the query", content_type = "text/html"),
        (status = 503, description = "The page, saying the log storage is unavailable", content_type = "text/html"),
    ))]
pub async fn explorer(
    State(state): State<AppState>,
    params: Result<QueryString<QueryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A query the client got wrong is a 400; a store that failed it is the
    // API's status for that (503), not the client's fault.
    let mut status = StatusCode::BAD_REQUEST;
    let (params, mut error) = match params {
        Ok(QueryString(p)) => (p, None),
        Err(e) => (QueryParams::default(), Some(e.body_text())),
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let (service, level, since, until, contains) = (
        text(&params.service),
        text(&params.level),
        text(&params.since),
        text(&params.until),
        text(&params.contains),
    );
    let filters = encode(&[
        ("service", &service),
        ("level", &level),
        ("since", &since),
        ("until", &until),
        ("contains", &contains),
    ]);
    let mut services = state.store.services();
    services.sort_by_key(|s| s.to_ascii_lowercase());
    let mut rows = Vec::new();
    let mut note = None;
    let mut searched = None;
    let mut older = None;
    if error.is_none() {
        let query = QueryParams {
            limit: Some(PAGE),
            order: None,
            ..params.clone()
        }
        .query(Timestamp::system_now());
        match query {
            Err(e) => error = Some(e.to_string()),
            Ok(query) => match crate::search::search(&state, query, SEARCH_FOR).await {
                Ok(mut page) => {
                    note = page.note.take();
                    searched = searched_text(&page);
                    older = page.next_cursor.map(|c| {
                        let cursor = c.to_string();
                        let mut q = filters.clone();
                        if !q.is_empty() {
                            q.push('&');
                        }
                        q.push_str(&encode(&[("cursor", &cursor)]));
                        format!("/?{q}")
                    });
                    let now = Timestamp::system_now().to_rfc3339();
                    let today = now.get(..10).unwrap_or_default();
                    // Newest first by the records' own time (arrival order
                    // can differ: a batch sent late).
                    page.records
                        .sort_by(|a, b| b.ts.cmp(&a.ts).then(b.seq.cmp(&a.seq)));
                    rows = page
                        .records
                        .into_iter()
                        .map(|r| Row::of(r, today))
                        .collect();
                }
                Err(e) => {
                    status = e.status();
                    error = Some(e.to_string());
                }
            },
        }
    }
    let newest = if params.cursor.is_none() {
        rows.iter().map(|r| r.seq).max().unwrap_or(0)
    } else {
        0
    };
    let page = ExplorerPage {
        services,
        levels: Level::ALL.map(Level::as_str),
        service,
        level,
        since,
        until,
        contains,
        rows,
        error: error.clone(),
        note,
        searched,
        older,
        filters,
        newest,
        inline_max: INLINE_FIELDS,
    };
    if error.is_none() {
        status = StatusCode::OK;
    }
    rollcall_http::html_page(status, page.render())
}
