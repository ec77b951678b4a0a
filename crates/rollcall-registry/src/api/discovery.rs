//! Prometheus service discovery: `GET /v1/prometheus/targets` answers in
//! Prometheus' HTTP SD format, so one `http_sd_configs` entry pointed at the
//! registry scrapes every service with nothing configured per service.
//!
//! One target group per instance in discovery (passing, or not checked yet):
//! its `host:port`, and labels Prometheus can relabel on —
//! `__meta_rollcall_service`, `__meta_rollcall_url`,
//! `__meta_rollcall_meta_<key>` for each metadata pair (key characters
//! other than letters, digits and `_` become `_`, as Consul's discovery
//! does) — plus `service`, kept on every scraped series. An instance whose
//! metadata names a metrics path (`rollcall.metrics_path`, which the SDK
//! sets) gets `__metrics_path__`; an `https` instance gets `__scheme__`.
//! Groups rather than one per service, because the URL and metadata labels
//! are each instance's own.

use std::collections::BTreeMap;

use axum::extract::State;
use rollcall_http::QueryParams;
use rollcall_proto::meta::METRICS_PATH;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::ApiError;
use crate::shell::Registry;
use rollcall_proto::views::InstanceView;

/// One target group of Prometheus' HTTP SD format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TargetsQuery {
    /// Only this service's instances.
    service: Option<String>,
}

/// Prometheus targets (HTTP SD)
///
/// Every instance in discovery as a Prometheus HTTP SD target group. Point
/// `http_sd_configs` at this URL.
#[utoipa::path(get, path = "/v1/prometheus/targets", tag = "rollcall", params(TargetsQuery),
    responses(
        (status = 200, description = "The target groups", body = Vec<TargetGroup>),
        rollcall_http::openapi::BadQuery,
    ))]
pub async fn prometheus_targets(
    State(registry): State<Registry>,
    QueryParams(query): QueryParams<TargetsQuery>,
) -> Result<axum::Json<Vec<TargetGroup>>, ApiError> {
    let service = crate::api::error::optional_name(query.service, "service")?;
    let views = registry.discovered(service.as_ref()).await;
    Ok(axum::Json(views.iter().filter_map(target_group).collect()))
}

/// The target group of one instance (none if its URL has no host).
pub fn target_group(view: &InstanceView) -> Option<TargetGroup> {
    let url = url::Url::parse(view.url.as_str()).ok()?;
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    let mut labels = BTreeMap::new();
    labels.insert("service".to_owned(), view.name.to_string());
    labels.insert("__meta_rollcall_service".to_owned(), view.name.to_string());
    labels.insert("__meta_rollcall_url".to_owned(), view.url.to_string());
    for (key, value) in view.meta.iter() {
        labels.insert(
            format!("__meta_rollcall_meta_{}", label_name(key)),
            value.to_owned(),
        );
    }
    if let Some(path) = view.meta.get(METRICS_PATH)
        && path.starts_with('/')
    {
        // Under the instance's own path, if its URL has one.
        let base = url.path().trim_end_matches('/');
        labels.insert("__metrics_path__".to_owned(), format!("{base}{path}"));
    }
    if url.scheme() == "https" {
        labels.insert("__scheme__".to_owned(), "https".to_owned());
    }
    Some(TargetGroup {
        targets: vec![format!("{host}:{port}")],
        labels,
    })
}

/// `key` as a Prometheus label name's tail: anything but `[A-Za-z0-9_]`
/// becomes `_`.
fn label_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_prometheus_safe() {
        assert_eq!(label_name("rollcall.metrics_path"), "rollcall_metrics_path");
        assert_eq!(label_name("zone-a"), "zone_a");
        assert_eq!(label_name("version"), "version");
    }
}
