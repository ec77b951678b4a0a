//! The registry's dashboard: `GET /`.
//!
//! One server-rendered page, no assets from the internet: instances grouped by
//! service (status, last check, latency), the dependency graph as inline SVG
//! with health colours, a timeline of recent events, and the latest records
//! from the log service when one is registered. It updates live: a few lines
//! of inline script listen to `/v1/watch` (Server-Sent Events) and swap in
//! `GET /dashboard/live`, the same page's live part, on every change (and
//! every 2 s, so "last check" times move). Without JavaScript it reloads
//! every 5 s.

pub mod graph;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use rollcall_proto::Timestamp;
use serde::Deserialize;

use crate::catalog::EventKind;
use crate::shell::Registry;
use graph::{Graph, ServiceInfo};

/// Events shown on the timeline.
pub const TIMELINE: usize = 40;
/// Log records shown.
pub const LOG_LINES: usize = 15;
/// How long the dashboard waits for the log service.
pub const LOG_TIMEOUT: Duration = Duration::from_millis(800);

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
    instances: Vec<InstanceRow>,
}

struct EventRow {
    at: String,
    kind: &'static str,
    class: &'static str,
    service: String,
    url: String,
    detail: String,
}

struct LogRow {
    ts: String,
    level: String,
    service: String,
    message: String,
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
    services: Vec<ServiceGroup>,
    graph: Graph,
    events: Vec<EventRow>,
    logs: LogPanel,
    node_w: u32,
    node_h: u32,
    generated: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    store: String,
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

/// The catalog part of the page (no I/O beyond the lock).
fn snapshot(registry: &Registry, now: Timestamp) -> (Live, Option<String>) {
    let log_name = Some(registry.config().log_service.clone());
    let (groups, infos, revision, log_url) = registry.read(|c| {
        let mut groups: BTreeMap<String, Vec<InstanceRow>> = BTreeMap::new();
        let mut infos: BTreeMap<String, ServiceInfo> = BTreeMap::new();
        for i in c.instances() {
            let name = i.name().to_string();
            let last = i.health.last_check.as_ref();
            groups.entry(name.clone()).or_default().push(InstanceRow {
                url: i.url().to_string(),
                status: i.shown().as_str(),
                last_check: last.map_or_else(|| "not yet".into(), |l| ago(now, l.at)),
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
            });
            let info = infos.entry(name.clone()).or_insert_with(|| ServiceInfo {
                name,
                passing: 0,
                critical: 0,
                requires: BTreeSet::new(),
            });
            if i.in_discovery() {
                info.passing += 1;
            } else {
                info.critical += 1;
            }
            info.requires
                .extend(i.registration.required.iter().map(ToString::to_string));
        }
        let log_url = log_name
            .as_ref()
            .and_then(|n| c.healthy_providers(n).into_iter().next())
            .map(|u| u.to_string());
        (groups, infos, c.revision(), log_url)
    });
    let passing = infos.values().map(|s| s.passing).sum();
    let critical = infos.values().map(|s| s.critical).sum();
    let services = groups
        .into_iter()
        .map(|(name, mut instances)| {
            instances.sort_by(|a, b| a.url.cmp(&b.url));
            ServiceGroup { name, instances }
        })
        .collect();
    let graph = graph::layout(&infos.into_values().collect::<Vec<_>>());
    let events = registry
        .recent_events(TIMELINE)
        .into_iter()
        .rev()
        .map(|e| EventRow {
            at: clock(e.at),
            kind: e.kind.as_str(),
            class: event_class(e.kind),
            service: e.service.to_string(),
            url: e.url.to_string(),
            detail: e.detail.unwrap_or_default(),
        })
        .collect();
    let live = Live {
        revision,
        passing,
        critical,
        services,
        graph,
        events,
        logs: LogPanel::NoLogService,
        node_w: graph::NODE_W,
        node_h: graph::NODE_H,
        generated: clock(now),
    };
    (live, log_url)
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
}

async fn fetch_logs(registry: &Registry, base: &str) -> LogPanel {
    let url = format!("{}/v1/logs?limit={LOG_LINES}", base.trim_end_matches('/'));
    let fetched = async {
        let response = registry
            .inner()
            .client
            .get(&url)
            .timeout(LOG_TIMEOUT)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status().as_u16()));
        }
        response.json::<LogPage>().await.map_err(|e| e.to_string())
    };
    match fetched.await {
        Ok(page) => LogPanel::Records {
            from: base.to_owned(),
            rows: page
                .records
                .into_iter()
                .map(|r| LogRow {
                    ts: r.ts.get(11..19).unwrap_or(&r.ts).to_owned(),
                    level: r.level,
                    service: r.service.unwrap_or_else(|| "-".into()),
                    message: r.message,
                })
                .collect(),
        },
        Err(e) => LogPanel::Unavailable(format!("{base}: {e}")),
    }
}

async fn live_part(registry: &Registry) -> Live {
    let (mut live, log_url) = snapshot(registry, registry.now());
    if let Some(url) = log_url {
        live.logs = fetch_logs(registry, &url).await;
    }
    live
}

fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the dashboard failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// `GET /`: the dashboard.
pub async fn page(State(registry): State<Registry>) -> Response {
    let live_html = match live_part(&registry).await.render() {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "the dashboard failed to render");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    render(&Dashboard {
        store: registry.store_description().to_owned(),
        live_html,
    })
}

/// `GET /dashboard/live`: the part of the page that changes.
pub async fn live(State(registry): State<Registry>) -> Response {
    render(&live_part(&registry).await)
}
