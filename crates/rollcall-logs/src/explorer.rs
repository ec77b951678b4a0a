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
use axum::response::{Html, IntoResponse, Response};
use rollcall_proto::Timestamp;

use crate::http::AppState;
use crate::query::QueryParams;
use crate::record::{Level, LogRecord};

/// Records per page.
pub const PAGE: usize = 100;

struct Row {
    seq: u64,
    ts: String,
    time: String,
    level: &'static str,
    service: String,
    instance: String,
    message: String,
    fields: Vec<(String, String)>,
    id: String,
    received: String,
}

impl Row {
    fn of(r: LogRecord) -> Row {
        let ts = r.ts.to_rfc3339();
        Row {
            seq: r.seq,
            time: ts.get(11..23).unwrap_or(&ts).to_owned(),
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
    /// The address of the next (older) page.
    older: Option<String>,
    /// The filters as a query string, for the live tail.
    filters: String,
    /// The newest record shown (the tail starts after it).
    newest: u64,
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
    ))]
pub async fn explorer(
    State(state): State<AppState>,
    params: Result<QueryString<QueryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
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
            Ok(query) => match crate::http::find(&state, query).await {
                Ok(mut page) => {
                    note = page.note.take();
                    older = page.next_cursor.map(|c| {
                        let cursor = c.to_string();
                        let mut q = filters.clone();
                        if !q.is_empty() {
                            q.push('&');
                        }
                        q.push_str(&encode(&[("cursor", &cursor)]));
                        format!("/?{q}")
                    });
                    rows = page.records.into_iter().map(Row::of).collect();
                }
                Err(_) => error = Some("log storage is unavailable".to_owned()),
            },
        }
    }
    let newest = if params.cursor.is_none() {
        rows.first().map_or(0, |r| r.seq)
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
        older,
        filters,
        newest,
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the explorer failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
