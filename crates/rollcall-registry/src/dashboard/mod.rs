//! The registry's dashboard: `GET /`, and a page per service and instance.
//!
//! Server-rendered, no assets from the internet: a search box (`?q=`, a
//! substring of a service's name or an instance's URL, ignoring case),
//! services that need attention first (each a collapsible group; healthy ones
//! fold once there are many), the dependency graph as inline SVG (a layered
//! layout, see [`graph`]), a timeline of recent events with repeats collapsed
//! into one row (`×N`), and the latest records from the log service when one
//! is registered. It updates live: a few lines of inline script listen to
//! `/v1/watch` (Server-Sent Events) and swap in `GET /dashboard/live`, the same
//! page's live part, on every change (and every 2 s, so "last check" times
//! move), keeping the search and which groups are open. Without JavaScript it
//! reloads every 5 s.
//!
//! `GET /dashboard/service/{name}`: its instances, who requires it, what it
//! requires, its events. `GET /dashboard/instance?url=`: one instance's
//! registration, check history, last error, delivery state and events.

pub mod graph;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rollcall_http::QueryParams;
use rollcall_proto::{ServiceUrl, Timestamp};
use serde::Deserialize;

use crate::catalog::health::Shown;
use crate::catalog::{Event, EventKind, Instance};
use crate::shell::Registry;
use graph::{Graph, ServiceInfo};

/// Event groups shown on the timeline.
pub const TIMELINE: usize = 40;
/// Events looked at to build the timeline (repeats are folded).
pub const TIMELINE_WINDOW: usize = 400;
/// Log records shown.
pub const LOG_LINES: usize = 15;
/// Most bytes of the log service's answer read (15 records of at most 64 KiB).
pub const MAX_LOG_ANSWER: usize = LOG_LINES * 64 * 1024 + 64 * 1024;
/// How long the dashboard waits for the log service.
pub const LOG_TIMEOUT: Duration = Duration::from_millis(800);
/// Up to this many services, every group is open.
pub const OPEN_UP_TO: usize = 6;

struct InstanceRow {
    url: String,
    status: &'static str,
    last_check: String,
    latency: String,
    error: String,
    requires: String,
}

struct ServiceGroup {
    name: String,
    /// Something in it is not passing.
    attention: bool,
    open: bool,
    passing: usize,
    other: usize,
    /// The first of its instances (those needing attention first).
    instances: Vec<InstanceRow>,
    /// Instances not shown here (they are on the service's own page).
    more: usize,
}

/// Most service groups the page shows (those needing attention first; a
/// search narrows the rest), and most instances a group shows, open or
/// folded: the page stays small however large the catalog.
pub const MAX_GROUPS: usize = 100;
pub const OPEN_ROWS: usize = 20;
pub const FOLDED_ROWS: usize = 3;
/// Most services the dependency graph draws.
pub const MAX_GRAPH: usize = 150;

struct EventRow {
    at: String,
    kind: &'static str,
    class: &'static str,
    service: String,
    url: String,
    detail: String,
    /// How many times it happened in the window (folded into this row).
    times: usize,
    /// When the first of them happened, if more than one.
    first: String,
}

struct LogRow {
    ts: String,
    level: String,
    service: String,
    message: String,
    /// Its fields, `key=value …`, cut short.
    fields: String,
}

enum LogPanel {
    NoLogService,
    Unavailable(String),
    Records { from: String, rows: Vec<LogRow> },
}

#[derive(Template)]
#[template(path = "live.html")]
struct Live {
    revision: u64,
    passing: usize,
    critical: usize,
    total_services: usize,
    query: String,
    services: Vec<ServiceGroup>,
    /// Service groups not shown (past [`MAX_GROUPS`]).
    more_services: usize,
    graph: Graph,
    events: Vec<EventRow>,
    logs: LogPanel,
    log_name: String,
    node_w: u32,
    node_h: u32,
    generated: String,
    /// A cluster replica without etcd quorum: what it shows may be behind.
    stale: bool,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    store: String,
    query: String,
    /// The rendered live part (it is also served alone).
    live_html: String,
}

fn ago(now: Timestamp, then: Timestamp) -> String {
    rollcall_proto::time::format_ago(now.since(then))
}

fn clock(t: Timestamp) -> String {
    // "2026-11-21T10:04:05.123Z" → "10:04:05"
    let text = t.to_rfc3339();
    text.get(11..19).unwrap_or(&text).to_owned()
}

fn event_class(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Registered | EventKind::Recovered | EventKind::Resynced => "good",
        EventKind::Critical | EventKind::Expired | EventKind::DeliveryFailed => "bad",
        EventKind::Reregistered
        | EventKind::Deregistered
        | EventKind::MaintenanceOn
        | EventKind::MaintenanceOff => "neutral",
    }
}

/// Events newest first, each run of the same (kind, service, instance) in the
/// window folded into its newest occurrence, with a count.
fn fold_events(events: Vec<Event>, limit: usize) -> Vec<EventRow> {
    let mut rows: Vec<EventRow> = Vec::new();
    let mut seen: std::collections::HashMap<(EventKind, String, String), usize> =
        std::collections::HashMap::new();
    for e in events.into_iter().rev() {
        let key = (e.kind, e.service.to_string(), e.url.to_string());
        if let Some(&i) = seen.get(&key) {
            rows[i].times += 1;
            rows[i].first = clock(e.at);
            continue;
        }
        if rows.len() == limit {
            continue;
        }
        seen.insert(key, rows.len());
        rows.push(EventRow {
            at: clock(e.at),
            kind: e.kind.as_str(),
            class: event_class(e.kind),
            service: e.service.to_string(),
            url: e.url.to_string(),
            detail: e.detail.unwrap_or_default(),
            times: 1,
            first: String::new(),
        });
    }
    rows
}

fn instance_row(i: &Instance, now: Timestamp) -> InstanceRow {
    let last = i.health.last_check();
    InstanceRow {
        url: i.url().to_string(),
        status: i.shown().as_str(),
        last_check: match last {
            Some(l) => ago(now, l.at),
            None if i.checked_elsewhere() => "by another replica".into(),
            None => "not yet".into(),
        },
        latency: last.map_or_else(String::new, |l| {
            format!("{:.1} ms", l.latency.as_secs_f64() * 1000.0)
        }),
        error: last.and_then(|l| l.error.clone()).unwrap_or_default(),
        requires: i
            .registration
            .required
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[derive(Debug, Deserialize)]
struct LogPage {
    records: Vec<LogRecordView>,
}

#[derive(Debug, Deserialize)]
struct LogRecordView {
    ts: String,
    level: String,
    #[serde(default)]
    service: Option<String>,
    message: String,
    #[serde(default)]
    fields: serde_json::Map<String, serde_json::Value>,
}

async fn fetch_logs(registry: &Registry, base: &str) -> LogPanel {
    let url = format!("{}/v1/logs?limit={LOG_LINES}", base.trim_end_matches('/'));
    // The registry's own token goes along: a log service that protects its
    // reads shares it (as it shares `ROLLCALL_TOKEN` with everyone).
    let access = &registry.config().access;
    let token = access.token.as_ref().or(access.token_file.as_ref());
    let fetched = crate::workers::outbound::get_json::<LogPage>(
        registry.client(),
        &url,
        token,
        LOG_TIMEOUT,
        MAX_LOG_ANSWER,
    );
    match fetched.await {
        Ok(mut page) => {
            let now = registry.now().to_rfc3339();
            let today = now.get(..10).unwrap_or_default();
            // Newest first by the records' own time, not by arrival.
            page.records.sort_by(|a, b| b.ts.cmp(&a.ts));
            LogPanel::Records {
                from: base.to_owned(),
                rows: page
                    .records
                    .into_iter()
                    .map(|r| LogRow {
                        ts: rollcall_proto::log_row::row_time(&r.ts, today, 0),
                        level: r.level,
                        service: r.service.unwrap_or_else(|| "-".into()),
                        message: r.message,
                        fields: rollcall_proto::log_row::inline_fields(&r.fields, 100),
                    })
                    .collect(),
            }
        }
        Err(e) => LogPanel::Unavailable(format!("{base}: {e}")),
    }
}

async fn live_part(registry: &Registry, query: &str) -> Live {
    let (mut live, log_url) = snapshot::snapshot(registry, registry.now(), query).await;
    if let Some(url) = log_url {
        live.logs = fetch_logs(registry, &url).await;
    }
    live
}

fn render(template: &impl Template) -> Response {
    rollcall_http::html_page(StatusCode::OK, template.render())
}

/// `?q=`: the search.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Search {
    /// A substring of a service name or instance URL, ignoring case.
    #[serde(default)]
    q: String,
}

/// The dashboard (HTML)
///
/// Instances grouped by service, the dependency graph (SVG), recent events,
/// the latest logs from the log service; updates live over `/v1/watch`.
#[utoipa::path(get, path = "/", tag = "dashboard", params(Search),
    responses((status = 200, description = "The page", content_type = "text/html")))]
pub async fn page(
    State(registry): State<Registry>,
    QueryParams(search): QueryParams<Search>,
) -> Response {
    let live_html = match live_part(&registry, &search.q).await.render() {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "the dashboard failed to render");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    render(&Dashboard {
        store: registry.store_description().to_owned(),
        query: search.q,
        live_html,
    })
}

/// The live part of the dashboard (an HTML fragment)
#[utoipa::path(get, path = "/dashboard/live", tag = "dashboard", params(Search),
    responses((status = 200, description = "The fragment", content_type = "text/html")))]
pub async fn live(
    State(registry): State<Registry>,
    QueryParams(search): QueryParams<Search>,
) -> Response {
    render(&live_part(&registry, &search.q).await)
}

pub mod pages;

pub use pages::{InstanceQuery, instance_page, service_page};

#[cfg(test)]
mod tests;
