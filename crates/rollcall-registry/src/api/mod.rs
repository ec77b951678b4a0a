//! The registry's HTTP API: the classic routes of `docs/PROTOCOL.md` §1 and
//! rollcall's additions (§2). Handlers parse, call one operation on
//! [`Registry`], and map the result; no rules live here.

pub mod discovery;
pub mod error;
pub mod read;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rollcall_http::access::{Access, Peer};
use rollcall_http::browser::Browsers;
use rollcall_http::{QueryParams, RawBody};
use rollcall_proto::views::Deregistered;
use rollcall_proto::{Registration, ServiceUrl, prom};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::error::ApiError;
use crate::catalog::Event;
use crate::shell::Registry;
use crate::{callbacks, dashboard, metrics};

/// Largest accepted request body. A registration is a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// The document's front matter; every path comes from the handlers' own
/// `#[utoipa::path]` attributes through [`api`].
#[derive(OpenApi)]
#[openapi(info(
    title = "rollcall registry",
    description = "Service registry compatible with the classic protocol (docs/PROTOCOL.md section 1), \
plus rollcall's additions under /v1. Every error is JSON: {\"error\": {\"code\", \"message\"}}."
))]
struct Doc;

/// Every route with its documentation: the router and the OpenAPI document
/// come from this one list, so neither can miss what the other has.
pub fn api() -> OpenApiRouter<Registry> {
    OpenApiRouter::with_openapi(Doc::openapi())
        .routes(routes!(
            crate::api::read::list_services,
            register,
            deregister
        ))
        .routes(routes!(dashboard::page))
        .routes(routes!(dashboard::live))
        .routes(routes!(dashboard::pages::service_page))
        .routes(routes!(dashboard::pages::instance_page))
        .routes(routes!(healthz))
        .routes(routes!(metrics_text))
        .routes(routes!(rollcall_http::openapi::document))
        .routes(routes!(recent_events))
        .routes(routes!(crate::api::discovery::prometheus_targets))
        .routes(routes!(maintenance))
        .routes(routes!(watch::watch))
}

/// The OpenAPI document, generated from [`api`].
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    rollcall_http::openapi::whole(api(), None)
}

/// Builds the router without a token (see [`guarded`]); browsers are kept
/// out all the same.
pub fn router(registry: Registry) -> Router {
    guarded(
        registry,
        Arc::new(Access::open()),
        Arc::new(Browsers::default()),
    )
}

/// Builds the router behind `access` (tokens, trusted classic addresses)
/// and `browsers` (origin and host checks).
pub fn guarded(registry: Registry, access: Arc<Access>, browsers: Arc<Browsers>) -> Router {
    let guards = Arc::new((
        rollcall_http::Guards {
            access,
            limit: rollcall_http::rate::WriteLimit::new(registry.config().max_writes_per_client),
            browsers,
        },
        registry.clone(),
    ));
    rollcall_http::openapi::router(api(), None)
        .layer(middleware::from_fn_with_state(guards, guard))
        .with_state(registry)
}

/// One layer around every route: the guards (browsers, write rate, token);
/// then counts rejected requests, and marks every answer of a replica that
/// has lost etcd (`X-Rollcall-Stale: true`): what it reads out may be behind.
async fn guard(
    State(state): State<Arc<(rollcall_http::Guards, Registry)>>,
    mut req: Request,
    next: Next,
) -> Response {
    let (guards, registry) = &*state;
    let mut response = match guards.admit(&mut req) {
        Ok(()) => next.run(req).await,
        Err(refusal) => *refusal,
    };
    if response.status().is_client_error() {
        registry.metrics().rejected_requests.inc();
    }
    if registry.is_stale() {
        response.headers_mut().insert(
            "x-rollcall-stale",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// Register an instance (classic)
///
/// Field names match case-insensitively; `ServiceUpdatedURL` is an alias of
/// `ServiceUpdateURL`; unknown fields are ignored; any Content-Type is
/// accepted. Registering a known `ServiceURL` replaces it. Before answering,
/// the registry delivers the registrant's initial patch (bounded by the
/// delivery timeout).
#[utoipa::path(post, path = "/services", tag = "classic",
    request_body = Registration,
    responses(
        (status = 200, description = "Registered (empty body)"),
        rollcall_http::openapi::WriteRefused,
    ))]
async fn register(
    State(registry): State<Registry>,
    peer: Peer,
    RawBody(body): RawBody<MAX_BODY>,
) -> Result<StatusCode, ApiError> {
    let registration = Registration::from_json(&body)?;
    let config = registry.config();
    // With a token, the log service's name is the token holders' to claim.
    let token_only = config.access.has_token().then_some(&config.log_service);
    let registration =
        callbacks::claim_registration(registration, peer, &config.allow_callbacks, token_only)?;
    registry.register(registration).await?;
    Ok(StatusCode::OK)
}

/// Deregister an instance (classic)
///
/// The body is the instance's `ServiceURL` as text. The answer (classic
/// clients only look at the 200) says whether the instance still holds a
/// watch stream: a running SDK service, which will register again within
/// seconds — maintenance is what takes it out.
#[utoipa::path(delete, path = "/services", tag = "classic",
    request_body(content = String, content_type = "text/plain",
        description = "The instance's ServiceURL; surrounding white space is trimmed"),
    responses(
        (status = 200, description = "Removed. `live` says the instance holds a watch stream; a `note` then points at maintenance", body = Deregistered),
        rollcall_http::openapi::WriteRefused,
    ))]
async fn deregister(
    State(registry): State<Registry>,
    peer: Peer,
    RawBody(body): RawBody<MAX_BODY>,
) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::NotText)?;
    let url = ServiceUrl::parse(text).map_err(ApiError::InvalidUrl)?;
    let url = callbacks::claim("ServiceURL", url, peer, &registry.config().allow_callbacks)?;
    // Asked first: the removal ends the instance's stream.
    let live = registry.holds_stream(url.get());
    registry.deregister(&url).await?;
    let note = live.then(|| {
        "this instance holds a watch stream (a running SDK service): it will register again \
         within seconds; use PUT /v1/maintenance to take it out of discovery"
            .to_owned()
    });
    Ok(axum::Json(Deregistered {
        deregistered: url.into_inner(),
        live,
        note,
    })
    .into_response())
}

/// The body of `PUT /v1/maintenance`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MaintenanceRequest {
    #[serde(rename = "ServiceURL")]
    url: ServiceUrl,
    #[serde(rename = "Enable")]
    enable: bool,
}

/// Maintenance on or off
///
/// `{"ServiceURL": URL, "Enable": true|false}`. On: the instance leaves
/// discovery (dependents get `Removed`) but stays registered and checked,
/// across re-registrations and restarts. Off: back in discovery while it
/// passes. Done also when it already was so.
#[utoipa::path(put, path = "/v1/maintenance", tag = "rollcall",
    request_body = MaintenanceRequest,
    responses(
        (status = 200, description = "Done: `{ServiceURL, Maintenance}`"),
        rollcall_http::openapi::WriteRefused,
    ))]
async fn maintenance(
    State(registry): State<Registry>,
    peer: Peer,
    RawBody(body): RawBody<MAX_BODY>,
) -> Result<Response, ApiError> {
    let request: MaintenanceRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    let url = callbacks::claim(
        "ServiceURL",
        request.url,
        peer,
        &registry.config().allow_callbacks,
    )?;
    registry.set_maintenance(&url, request.enable).await?;
    Ok(axum::Json(serde_json::json!({
        "ServiceURL": url.get(),
        "Maintenance": request.enable,
    }))
    .into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// How many (default 100).
    limit: Option<usize>,
}

/// Recent catalog events, oldest first
///
/// At most 1000 are kept.
#[utoipa::path(get, path = "/v1/events", tag = "rollcall", params(EventsQuery),
    responses(
        (status = 200, description = "The events", body = Vec<Event>),
        rollcall_http::openapi::BadQuery,
    ))]
async fn recent_events(
    State(registry): State<Registry>,
    QueryParams(query): QueryParams<EventsQuery>,
) -> axum::Json<Vec<Event>> {
    axum::Json(registry.recent_events(query.limit.unwrap_or(100)))
}

/// Readiness
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = r#"{"status": "ok", "instances": N, "store": "...", "stale": false}; `stale`: a cluster replica that has lost etcd serves reads from its own, possibly older, catalog"#)))]
async fn healthz(State(registry): State<Registry>) -> Response {
    let instances = registry.read(|c| c.len());
    axum::Json(serde_json::json!({
        "status": "ok",
        "instances": instances,
        "store": registry.store_description(),
        "stale": registry.is_stale(),
    }))
    .into_response()
}

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
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

/// How long a stopping registry waits for in-flight requests.
pub const DRAIN: Duration = Duration::from_secs(5);
