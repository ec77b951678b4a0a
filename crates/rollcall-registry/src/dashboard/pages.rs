//! The page of one service (its instances, who requires it, what it
//! requires, its events) and of one instance (registration, check history,
//! last error, deliveries, events).

use std::collections::BTreeSet;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use rollcall_http::QueryParams;
use rollcall_proto::{ServiceName, ServiceUrl};
use serde::Deserialize;

use super::*;
use crate::catalog::Event;
use crate::shell::Registry;

struct DependentRow {
    service: String,
    url: String,
    status: &'static str,
}

/// Instances on one page of a service's page.
pub const SERVICE_PAGE: usize = 200;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ServiceQuery {
    /// Which page of its instances (200 a page, from 1).
    page: Option<usize>,
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage {
    name: String,
    instances: Vec<InstanceRow>,
    /// This page (from 1), and how many there are.
    page: usize,
    pages: usize,
    total: usize,
    required_by: Vec<DependentRow>,
    requires: Vec<String>,
    events: Vec<EventRow>,
}

/// Dashboard: one service (instances, who requires it, events)
#[utoipa::path(get, path = "/dashboard/service/{name}", tag = "dashboard",
    params(("name" = String, Path, description = "The service name"), ServiceQuery),
    responses(
        (status = 200, description = "The page", content_type = "text/html"),
        (status = 404, description = "No such service (HTML)", content_type = "text/html"),
    ))]
pub async fn service_page(
    State(registry): State<Registry>,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<ServiceQuery>,
) -> Response {
    let Ok(name) = ServiceName::parse(&name) else {
        return not_found("There is no such service: the name is not valid.");
    };
    let now = registry.now();
    let page = query.page.unwrap_or(1).max(1);
    let (instances, total, required_by, requires) = registry.read(|c| {
        // In URL order (the name index is ordered); rows only for this page.
        let instances: Vec<InstanceRow> = c
            .instances_of(&name)
            .skip((page - 1).saturating_mul(SERVICE_PAGE))
            .take(SERVICE_PAGE)
            .map(|i| instance_row(i, now))
            .collect();
        let total = c.instances_of(&name).count();
        let required_by: Vec<DependentRow> = c
            .dependents_of(&name)
            .map(|i| DependentRow {
                service: i.name().to_string(),
                url: i.url().to_string(),
                status: i.shown().as_str(),
            })
            .collect();
        let requires: BTreeSet<String> = c
            .instances_of(&name)
            .flat_map(|i| i.registration.required.iter().map(ToString::to_string))
            .collect();
        (instances, total, required_by, requires)
    });
    if total == 0 && required_by.is_empty() {
        return not_found("No instance of this service is registered, and nothing requires it.");
    }
    let events: Vec<Event> = registry
        .recent_events(crate::shell::RECENT_EVENTS)
        .into_iter()
        .filter(|e| e.service == name)
        .collect();
    render(&ServicePage {
        name: name.to_string(),
        instances,
        page,
        pages: total.div_ceil(SERVICE_PAGE).max(1),
        total,
        required_by,
        requires: requires.into_iter().collect(),
        events: fold_events(events, TIMELINE),
    })
}

struct CheckRow {
    at: String,
    passed: bool,
    latency: String,
}

#[derive(Template)]
#[template(path = "instance.html")]
struct InstancePage {
    service: String,
    row: InstanceRow,
    registered: String,
    update_url: String,
    heartbeat_url: String,
    meta: Vec<(String, String)>,
    checks: Vec<CheckRow>,
    last_failure: Option<(String, String)>,
    delivery: Option<String>,
    required_by: Vec<DependentRow>,
    events: Vec<EventRow>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InstanceQuery {
    /// The instance's URL.
    url: String,
}

/// Dashboard: one instance (check history, last error, delivery, events)
#[utoipa::path(get, path = "/dashboard/instance", tag = "dashboard", params(InstanceQuery),
    responses(
        (status = 200, description = "The page", content_type = "text/html"),
        (status = 404, description = "No such instance (HTML)", content_type = "text/html"),
    ))]
pub async fn instance_page(
    State(registry): State<Registry>,
    QueryParams(query): QueryParams<InstanceQuery>,
) -> Response {
    let Ok(url) = ServiceUrl::parse(&query.url) else {
        return not_found("There is no such instance: the URL is not valid.");
    };
    let now = registry.now();
    let page = registry.read(|c| {
        let i = c.get(&url)?;
        let reg = &i.registration;
        let required_by = c
            .dependents_of(i.name())
            .map(|d| DependentRow {
                service: d.name().to_string(),
                url: d.url().to_string(),
                status: d.shown().as_str(),
            })
            .collect();
        Some(InstancePage {
            service: i.name().to_string(),
            row: instance_row(i, now),
            registered: ago(now, i.registered_at),
            update_url: reg
                .update_url
                .as_ref()
                .map_or_else(|| "—".into(), ToString::to_string),
            heartbeat_url: reg
                .heartbeat_url
                .as_ref()
                .map_or_else(|| "— (not checked)".into(), ToString::to_string),
            meta: reg
                .meta
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            checks: i
                .health
                .recent()
                .rev()
                .map(|s| CheckRow {
                    at: ago(now, s.at),
                    passed: s.passed,
                    latency: format!("{:.1} ms", f64::from(s.latency_us) / 1000.0),
                })
                .collect(),
            last_failure: i.health.last_failure().map(|f| {
                (
                    ago(now, f.at),
                    f.error.clone().unwrap_or_else(|| "failed".into()),
                )
            }),
            delivery: i.receiver().map(|r| {
                format!(
                    "{} delivered, {} failed, {} queued{}",
                    r.delivered,
                    r.failed,
                    r.queue.len() + usize::from(r.in_flight.is_some()),
                    if r.resync.is_some() {
                        "; a resync is owed"
                    } else {
                        ""
                    }
                )
            }),
            required_by,
            events: Vec::new(),
        })
    });
    let Some(mut page) = page else {
        return not_found("No instance is registered at this URL.");
    };
    let events: Vec<Event> = registry
        .recent_events(crate::shell::RECENT_EVENTS)
        .into_iter()
        .filter(|e| e.url == url)
        .collect();
    page.events = fold_events(events, TIMELINE);
    render(&page)
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFound<'a> {
    message: &'a str,
}

fn not_found(message: &str) -> Response {
    rollcall_http::html_page(StatusCode::NOT_FOUND, (NotFound { message }).render())
}
