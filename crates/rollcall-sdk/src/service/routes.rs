//! The routes the SDK serves next to the service's own: `/heartbeat`,
//! `/services` (patches), `/healthz`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollcall_http::RawBody;
use rollcall_proto::Patch;
use rollcall_proto::prom::PromText;

use super::*;

pub(super) async fn heartbeat(State(inner): State<Arc<Inner>>) -> StatusCode {
    inner.heard_from_registry();
    StatusCode::OK
}

pub(super) async fn receive_patch(
    State(inner): State<Arc<Inner>>,
    RawBody(body): RawBody<MAX_PATCH_BODY>,
) -> Response {
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

pub(super) async fn healthz(State(inner): State<Arc<Inner>>) -> Response {
    axum::Json(serde_json::json!({
        "status": "ok",
        "service": inner.name,
        "url": inner.url,
        "registered": *inner.registered.borrow(),
    }))
    .into_response()
}

pub(super) async fn metrics(State(inner): State<Arc<Inner>>) -> Response {
    let m = &inner.metrics;
    let mut p = PromText::new();
    p.counter(
        "rollcall_sdk_patches_received_total",
        "Patches applied to the providers table.",
        m.patches_received.get(),
    )
    .counter(
        "rollcall_sdk_patches_rejected_total",
        "Patch bodies that did not parse.",
        m.patches_rejected.get(),
    )
    .counter(
        "rollcall_sdk_registrations_total",
        "Successful registrations (the first and every re-registration).",
        m.registrations.get(),
    )
    .counter(
        "rollcall_sdk_registration_failures_total",
        "Failed registration attempts.",
        m.registration_failures.get(),
    )
    .counter(
        "rollcall_sdk_watch_reconnects_total",
        "Times the watch stream to the registry broke.",
        m.watch_reconnects.get(),
    )
    .gauge(
        "rollcall_sdk_registered",
        "1 while registered.",
        if *inner.registered.borrow() { 1.0 } else { 0.0 },
    );
    let providers: Vec<(String, f64)> = inner
        .providers
        .snapshot()
        .into_iter()
        .map(|(name, urls)| (name.to_string(), urls.len() as f64))
        .collect();
    let samples: Vec<(&str, f64)> = providers.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    p.labelled(
        "gauge",
        "rollcall_sdk_providers",
        "Known providers per required service.",
        "service",
        &samples,
    );
    let extras: Vec<MetricsFn> = inner
        .extra_metrics
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for extra in extras {
        p.raw(&extra());
    }
    (
        [(header::CONTENT_TYPE, rollcall_proto::prom::CONTENT_TYPE)],
        p.finish(),
    )
        .into_response()
}
