//! The routes the SDK serves next to the service's own: `/heartbeat`,
//! `/services` (patches), `/healthz`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollcall_http::RawBody;
use rollcall_proto::Patch;
use rollcall_proto::prom::{self, Registry};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::*;

/// The SDK's routes with their documentation.
pub(super) fn api() -> OpenApiRouter<Arc<Inner>> {
    OpenApiRouter::new()
        .routes(routes!(heartbeat))
        .routes(routes!(receive_patch))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
}

/// The OpenAPI description of the routes the SDK serves next to a service's
/// own (`/heartbeat`, `/services`, `/healthz`, `/metrics`): a service merges
/// it into its own document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    rollcall_http::openapi::whole(api(), None)
}

/// Heartbeat for the registry
///
/// Also tells the SDK the registry is alive (a classic registry has no other
/// sign).
#[utoipa::path(get, path = "/heartbeat", tag = "sdk",
    responses(
        (status = 200, description = "Alive (empty body)"),
        (status = 401, description = "With a signing key: not signed by the registry", body = rollcall_proto::ErrorBody),
    ))]
pub(super) async fn heartbeat(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if let Some(refused) = check_signature(&inner, "GET", "/heartbeat", b"", &headers, false) {
        return refused;
    }
    inner.heard_from_registry();
    if let Some(check) = &inner.health
        && let Err(why) = check().await
    {
        tracing::warn!(reason = %why, "unhealthy: answering the heartbeat with 503");
        return rollcall_http::error_response(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", why);
    }
    StatusCode::OK.into_response()
}

/// With a signing key, the refusal (401, counted) of what the registry did
/// not sign, a forgery, a stale signature, and — for patches — a replay.
/// `path` is the route's, joined to the service's URL as it registered it:
/// a signature is good only for the URL it was sent to.
fn check_signature(
    inner: &Inner,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &HeaderMap,
    once: bool,
) -> Option<Response> {
    let key = inner.signing.as_ref()?;
    let now = rollcall_proto::Timestamp::system_now().0;
    let checked = key
        .verify(method, &inner.url.join(path), body, headers, now)
        .and_then(|(ts, tag)| {
            if once && !inner.seen.first_time(ts, tag, now) {
                Err(rollcall_http::signing::SignatureError::Replayed)
            } else {
                Ok(())
            }
        });
    checked.err().map(|e| {
        inner.metrics.signatures_rejected.inc();
        tracing::warn!(error = %e, "refused a request that claims to come from the registry");
        rollcall_http::error_response(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string())
    })
}

/// Patches from the registry
///
/// Providers of the required names that came or went; applied to the
/// service's providers table.
#[utoipa::path(post, path = "/services", tag = "sdk",
    request_body = Patch,
    responses(
        (status = 200, description = "Applied"),
        rollcall_http::openapi::WriteRefused,
    ))]
pub(super) async fn receive_patch(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    RawBody(body): RawBody<MAX_PATCH_BODY>,
) -> Response {
    if let Some(refused) = check_signature(&inner, "POST", "/services", &body, &headers, true) {
        return refused;
    }
    match serde_json::from_slice::<Patch>(&body) {
        Ok(patch) => {
            inner.heard_from_registry();
            inner.providers.apply(&patch);
            inner.metrics.patches_received.inc();
            tracing::debug!(
                added = patch.added.len(),
                removed = patch.removed.len(),
                resync = patch.resync,
                revision = ?patch.revision,
                "patch applied"
            );
            StatusCode::OK.into_response()
        }
        Err(e) => {
            inner.metrics.patches_rejected.inc();
            rollcall_http::error_response(StatusCode::BAD_REQUEST, "invalid_patch", e.to_string())
        }
    }
}

/// Readiness
#[utoipa::path(get, path = "/healthz", tag = "sdk",
    responses((status = 200, description = r#"{"status": "ok", "service", "url", "registered"}"#)))]
pub(super) async fn healthz(State(inner): State<Arc<Inner>>) -> Response {
    axum::Json(serde_json::json!({
        "status": "ok",
        "service": inner.name,
        "url": inner.url,
        "registered": *inner.registered.borrow(),
    }))
    .into_response()
}

/// Prometheus metrics
///
/// The SDK's figures and the service's own.
#[utoipa::path(get, path = "/metrics", tag = "sdk",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub(super) async fn metrics(State(inner): State<Arc<Inner>>) -> Response {
    let m = &inner.metrics;
    let mut r = Registry::default();
    prom::counters(
        &mut r,
        &[
            (
                "rollcall_sdk_patches_received",
                "Patches applied to the providers table",
                &m.patches_received,
            ),
            (
                "rollcall_sdk_patches_rejected",
                "Patch bodies that did not parse",
                &m.patches_rejected,
            ),
            (
                "rollcall_sdk_registrations",
                "Successful registrations (the first and every re-registration)",
                &m.registrations,
            ),
            (
                "rollcall_sdk_registration_failures",
                "Failed registration attempts",
                &m.registration_failures,
            ),
            (
                "rollcall_sdk_watch_reconnects",
                "Times the watch stream to the registry broke",
                &m.watch_reconnects,
            ),
            (
                "rollcall_sdk_classic_fallbacks",
                "Registrations with a registry that had no watch stream (carried on the classic way)",
                &m.classic_fallbacks,
            ),
            (
                "rollcall_sdk_signatures_rejected",
                "Patches and heartbeats refused for a missing, forged, stale or replayed signature",
                &m.signatures_rejected,
            ),
        ],
    );
    prom::gauge_now(
        &mut r,
        "rollcall_sdk_registered",
        "1 while registered",
        i64::from(*inner.registered.borrow()),
    );
    let providers: Vec<(String, i64)> = inner
        .providers
        .snapshot()
        .into_iter()
        .map(|(name, urls)| (name.to_string(), i64::try_from(urls.len()).unwrap_or(0)))
        .collect();
    let samples: Vec<(&str, i64)> = providers.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    prom::labelled_now(
        &mut r,
        "rollcall_sdk_providers",
        "Known providers per required service",
        "service",
        &samples,
    );
    let extras: Vec<MetricsFn> = inner
        .extra_metrics
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for extra in extras {
        extra(&mut r);
    }
    (
        [(header::CONTENT_TYPE, prom::CONTENT_TYPE)],
        prom::encode(&r),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sdk_document_covers_every_sdk_route() {
        let (router, _) = super::api().split_for_parts();
        rollcall_testkit::openapi::assert_documents_exactly(&router, &super::openapi());
    }
}
