//! The registry's HTTP API: the classic routes of `PROTOCOL.md` §1 and
//! rollcall's additions (§2). Handlers parse, call one operation on
//! [`Registry`], and map the result; no rules live here.

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rollcall_http::{QueryParams, RawBody};
use rollcall_proto::{Registration, ServiceName, ServiceUrl, Timestamp, prom};
use serde::{Deserialize, Serialize};

use crate::catalog::health::Shown;
use crate::catalog::{Event, Instance};
use crate::error::ApiError;
use crate::shell::Registry;
use crate::{dashboard, metrics, watch};

/// Largest accepted request body. A registration is a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Builds the router.
pub fn router(registry: Registry) -> Router {
    let api = Router::new()
        .route(
            "/services",
            get(list_services).post(register).delete(deregister),
        )
        .route("/", get(dashboard::page))
        .route("/dashboard/live", get(dashboard::live))
        .route("/dashboard/service/{name}", get(dashboard::service_page))
        .route("/dashboard/instance", get(dashboard::instance_page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .route("/v1/events", get(recent_events))
        .route("/v1/maintenance", axum::routing::put(maintenance))
        .route("/v1/watch", get(watch::watch));
    rollcall_http::with_fallbacks(api)
        .layer(middleware::from_fn_with_state(
            registry.clone(),
            count_rejections,
        ))
        .with_state(registry)
}

async fn count_rejections(State(registry): State<Registry>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status().is_client_error() {
        registry.metrics().rejected_requests.inc();
    }
    response
}

/// `POST /services`: register (classic).
async fn register(
    State(registry): State<Registry>,
    RawBody(body): RawBody<MAX_BODY>,
) -> Result<StatusCode, ApiError> {
    let registration = Registration::from_json(&body)?;
    registry.register(registration).await?;
    Ok(StatusCode::OK)
}

/// `DELETE /services`: deregister (classic). The body is the URL as text.
/// The answer (classic clients only look at the 200) says whether the
/// instance still holds a watch stream: a running SDK service, which will
/// register again within seconds — maintenance is what takes it out.
async fn deregister(
    State(registry): State<Registry>,
    RawBody(body): RawBody<MAX_BODY>,
) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::NotText)?;
    let url = ServiceUrl::parse(text).map_err(ApiError::InvalidUrl)?;
    // Asked first: the removal ends the instance's stream.
    let live = registry.holds_stream(&url);
    registry.deregister(&url).await?;
    let mut answer = serde_json::json!({ "deregistered": url, "live": live });
    if live {
        answer["note"] = serde_json::Value::from(
            "this instance holds a watch stream (a running SDK service): it will register \
             again within seconds; use PUT /v1/maintenance to take it out of discovery",
        );
    }
    Ok(axum::Json(answer).into_response())
}

/// The body of `PUT /v1/maintenance`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceRequest {
    #[serde(rename = "ServiceURL")]
    url: ServiceUrl,
    #[serde(rename = "Enable")]
    enable: bool,
}

/// `PUT /v1/maintenance`: `{"ServiceURL": URL, "Enable": true|false}` takes a
/// live instance out of discovery (dependents get `Removed`) without removing
/// it, or puts it back. It survives re-registration and restarts.
async fn maintenance(
    State(registry): State<Registry>,
    RawBody(body): RawBody<MAX_BODY>,
) -> Result<Response, ApiError> {
    let request: MaintenanceRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    registry
        .set_maintenance(&request.url, request.enable)
        .await?;
    Ok(axum::Json(serde_json::json!({
        "ServiceURL": request.url,
        "Maintenance": request.enable,
    }))
    .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    service: Option<String>,
    status: Option<String>,
}

/// One instance as `GET /services` shows it: the classic fields (Go casing)
/// plus its health.
#[derive(Debug, Serialize)]
pub struct InstanceView {
    #[serde(rename = "ServiceName")]
    pub name: ServiceName,
    #[serde(rename = "ServiceURL")]
    pub url: ServiceUrl,
    #[serde(rename = "RequiredServices")]
    pub required: Vec<ServiceName>,
    #[serde(rename = "ServiceUpdateURL")]
    pub update_url: String,
    #[serde(rename = "HeartbeatURL")]
    pub heartbeat_url: String,
    /// `passing`, `critical`, `unchecked` (no check finished yet) or
    /// `maintenance`.
    #[serde(rename = "Status")]
    pub status: Shown,
    /// Whether dependents are told about it (passing or unchecked, and not in
    /// maintenance).
    #[serde(rename = "InDiscovery")]
    pub in_discovery: bool,
    #[serde(rename = "MaintenanceSince", skip_serializing_if = "Option::is_none")]
    pub maintenance_since: Option<Timestamp>,
    #[serde(rename = "StatusSince")]
    pub status_since: Timestamp,
    #[serde(rename = "RegisteredAt")]
    pub registered_at: Timestamp,
    #[serde(rename = "LastCheck")]
    pub last_check: Option<Timestamp>,
    #[serde(rename = "LastCheckLatencyMs")]
    pub last_check_latency_ms: Option<f64>,
    #[serde(rename = "LastCheckError")]
    pub last_check_error: Option<String>,
    #[serde(rename = "ConsecutiveFailures")]
    pub consecutive_failures: u32,
    #[serde(rename = "NextCheck")]
    pub next_check: Option<Timestamp>,
    #[serde(rename = "Delivery", skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryView>,
}

/// A receiver's delivery state.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    #[serde(rename = "Delivered")]
    pub delivered: u64,
    #[serde(rename = "Failed")]
    pub failed: u64,
    #[serde(rename = "Queued")]
    pub queued: usize,
    #[serde(rename = "ResyncOwed")]
    pub resync_owed: bool,
}

impl InstanceView {
    pub fn of(i: &Instance) -> Self {
        let reg = &i.registration;
        let last = i.health.last_check.as_ref();
        Self {
            name: reg.name.clone(),
            url: reg.url.clone(),
            required: reg.required.clone(),
            update_url: reg
                .update_url
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            heartbeat_url: reg
                .heartbeat_url
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            status: i.shown(),
            in_discovery: i.in_discovery(),
            maintenance_since: i.maintenance(),
            status_since: i.health.since,
            registered_at: i.registered_at,
            last_check: last.map(|c| c.at),
            last_check_latency_ms: last.map(|c| (c.latency.as_secs_f64() * 1e6).round() / 1e3),
            last_check_error: last.and_then(|c| c.error.clone()),
            consecutive_failures: i.health.consecutive_failures,
            next_check: i.next_check(),
            delivery: i.receiver().map(|r| DeliveryView {
                delivered: r.delivered,
                failed: r.failed,
                queued: r.queue.len() + usize::from(r.in_flight.is_some()),
                resync_owed: r.resync.is_some(),
            }),
        }
    }
}

/// `GET /services`: the catalog, sorted by name then URL. `?service=` and
/// `?status=passing|critical|unchecked|maintenance` filter it. The `X-Rollcall-Revision` header
/// carries the catalog revision.
async fn list_services(
    State(registry): State<Registry>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
    let service = query
        .service
        .filter(|s| !s.is_empty())
        .map(|s: String| ServiceName::parse(&s))
        .transpose()
        .map_err(|reason| ApiError::InvalidName {
            param: "service",
            reason,
        })?;
    let status = query
        .status
        .filter(|s| !s.is_empty())
        .map(|s: String| {
            Shown::parse(&s).ok_or(ApiError::InvalidQuery {
                param: "status",
                reason: format!("`{s}` is not one of passing, critical, unchecked, maintenance"),
            })
        })
        .transpose()?;
    let (mut views, revision) = registry.read(|c| {
        let pick = |i: &&Instance| status.is_none_or(|s| s == i.shown());
        let views: Vec<InstanceView> = match &service {
            Some(name) => c
                .instances_of(name)
                .filter(pick)
                .map(InstanceView::of)
                .collect(),
            None => c.instances().filter(pick).map(InstanceView::of).collect(),
        };
        (views, c.revision())
    });
    views.sort_by(|a, b| (&a.name, &a.url).cmp(&(&b.name, &b.url)));
    // Sized up front: one allocation instead of a buffer grown piece by piece.
    let mut body = Vec::with_capacity(64 + views.len() * 600);
    if let Err(e) = serde_json::to_writer(&mut body, &views) {
        tracing::error!(error = %e, "cannot encode the catalog");
        return Err(ApiError::Internal);
    }
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Ok(value) = HeaderValue::from_str(&revision.to_string()) {
        response.headers_mut().insert("x-rollcall-revision", value);
    }
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    limit: Option<usize>,
}

/// `GET /v1/events?limit=N`: the most recent catalog events, oldest first
/// (at most 1000 are kept).
async fn recent_events(
    State(registry): State<Registry>,
    QueryParams(query): QueryParams<EventsQuery>,
) -> axum::Json<Vec<Event>> {
    axum::Json(registry.recent_events(query.limit.unwrap_or(100)))
}

async fn healthz(State(registry): State<Registry>) -> Response {
    let instances = registry.read(|c| c.len());
    axum::Json(serde_json::json!({
        "status": "ok",
        "instances": instances,
        "store": registry.store_description(),
    }))
    .into_response()
}

async fn metrics_text(State(registry): State<Registry>) -> Response {
    (
        [(header::CONTENT_TYPE, prom::CONTENT_TYPE)],
        metrics::render(
            registry.metrics(),
            registry.read(metrics::CatalogFigures::of),
            registry.store_writer(),
        ),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// How long a stopping registry waits for in-flight requests.
pub const DRAIN: Duration = Duration::from_secs(5);
