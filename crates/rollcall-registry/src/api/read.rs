//! `GET /services`: the catalog read.
//!
//! - **Cached**: an answer is serialized once and shared by every reader
//!   until the catalog changes (the registry counts the commands it runs; a
//!   cached answer is good while the count has not moved), so a read costs
//!   what sending it costs.
//! - **Paged**: `limit` instances at a time in (name, URL) order; the
//!   `X-Rollcall-Next-Cursor` header says where the next page starts (the
//!   `cursor` to send). A page costs the page under the lock, not the
//!   catalog; an instance present for the whole walk is on exactly one page.
//! - **Chunked**: any answer's views are built [`CHUNK`] instances per hold
//!   of the catalog's lock, and still form one moment of the catalog (see
//!   [`read_views`]); the JSON is written after the lock is released.
//! - **Blocking** (Consul's `?index=`): with `index` (the
//!   `X-Rollcall-Revision` of an earlier answer) the answer waits until the
//!   revision moves past it, or `wait` (default 5 min, at most 10) is over —
//!   for HTTP clients that cannot use the SSE watch.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rollcall_http::QueryParams;
use rollcall_proto::{ServiceName, ServiceUrl};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::error::ApiError;
use crate::catalog::Instance;
use crate::catalog::health::Shown;
use crate::shell::{CachedRead, Registry, Views};
use rollcall_proto::views::InstanceView;

/// Most instances one page may ask for.
pub const MAX_PAGE: usize = 10_000;
/// How long a blocking read waits when `wait` is not given, and at most.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
pub const MAX_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only instances of this service.
    service: Option<String>,
    /// Only instances shown so.
    #[param(value_type = Option<Shown>)]
    status: Option<String>,
    /// Only instances whose `Meta` holds this pair: `key=value`
    /// (`version=2`; `version:2` is read the same).
    meta: Option<String>,
    /// At most this many instances (1–10,000): a page. The
    /// `X-Rollcall-Next-Cursor` header says where the next starts.
    limit: Option<usize>,
    /// Where a page starts: the `X-Rollcall-Next-Cursor` of the one before.
    cursor: Option<String>,
    /// A blocking read: answer once the catalog revision is past this (the
    /// `X-Rollcall-Revision` of an earlier answer), or when `wait` is over.
    index: Option<u64>,
    /// How long a blocking read may wait (`30s`, `5m`; default 5m, at most
    /// 10m).
    wait: Option<String>,
}

/// A page's cursor: where the last instance of a page was, opaque to
/// clients.
fn encode_cursor(name: &ServiceName, url: &ServiceUrl) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{name}\n{url}"))
}

fn decode_cursor(text: &str) -> Option<(ServiceName, ServiceUrl)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (name, url) = text.split_once('\n')?;
    Some((ServiceName::parse(name).ok()?, ServiceUrl::parse(url).ok()?))
}

/// The catalog
///
/// Instances sorted by name then URL; `?service=` and `?status=` filter it;
/// `?limit=` pages it (`X-Rollcall-Next-Cursor` names the next page's
/// `cursor`); `?index=` blocks until the revision moves past it (`wait`).
/// The `X-Rollcall-Revision` header carries the catalog revision. Unknown
/// query parameters are a 400 that lists the known ones.
#[utoipa::path(get, path = "/services", tag = "classic", params(ListQuery),
    responses(
        (status = 200, description = "The instances", body = Vec<InstanceView>,
            headers(
                ("X-Rollcall-Revision" = u64, description = "The catalog revision"),
                ("X-Rollcall-Next-Cursor" = String, description = "Where the next page starts (only when one follows)"),
            )),
        rollcall_http::openapi::BadQuery,
    ))]
pub async fn list_services(
    State(registry): State<Registry>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
    let invalid = |param: &'static str, reason: String| ApiError::InvalidQuery { param, reason };
    let service = crate::api::error::optional_name(query.service, "service")?;
    let status = query
        .status
        .filter(|s| !s.is_empty())
        .map(|s: String| {
            Shown::parse(&s).ok_or_else(|| {
                invalid(
                    "status",
                    format!("`{s}` is not one of passing, critical, unchecked, maintenance"),
                )
            })
        })
        .transpose()?;
    let meta = query
        .meta
        .filter(|m| !m.is_empty())
        .map(|m: String| {
            rollcall_proto::meta::parse_filter(&m).ok_or_else(|| {
                invalid(
                    "meta",
                    format!("`{m}` is not key=value with a valid metadata key"),
                )
            })
        })
        .transpose()?;
    if let Some(limit) = query.limit
        && !(1..=MAX_PAGE).contains(&limit)
    {
        return Err(invalid(
            "limit",
            format!("{limit} is not from 1 to {MAX_PAGE}"),
        ));
    }
    let after = query
        .cursor
        .filter(|c| !c.is_empty())
        .map(|c| {
            decode_cursor(&c)
                .ok_or_else(|| invalid("cursor", "not a cursor this registry gave out".to_owned()))
        })
        .transpose()?;
    let wait = query
        .wait
        .filter(|w| !w.is_empty())
        .map(|w| {
            humantime::parse_duration(&w)
                .map_err(|e| invalid("wait", format!("`{w}` is not a duration: {e}")))
        })
        .transpose()?
        .unwrap_or(DEFAULT_WAIT)
        .min(MAX_WAIT);
    if let Some(index) = query.index {
        // Waits only while the revision is the client's: one behind it
        // answers at once, and so does one ahead of it (the client's index
        // is from elsewhere — another registry — and it must start over).
        let mut revisions = registry.revision_changes();
        let shutdown = registry.shutdown_token().clone();
        tokio::select! {
            _ = tokio::time::timeout(wait, revisions.wait_for(|r| *r != index)) => {}
            () = shutdown.cancelled() => {}
        }
    }
    let key = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}",
        service.as_ref().map(ServiceName::as_str),
        status.map(Shown::as_str),
        meta,
        query.limit,
        after.as_ref().map(|(n, u)| (n.as_str(), u.as_str()))
    );
    let read = match registry.cached_read(&key) {
        Some(read) => read,
        None => {
            let read = build(
                &registry,
                service.as_ref(),
                status,
                meta.as_ref(),
                query.limit,
                after.as_ref(),
            )
            .await?;
            registry.cache_read(key, read.clone());
            read
        }
    };
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        read.body.clone(),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&read.revision.to_string()) {
        headers.insert("x-rollcall-revision", value);
    }
    if let Some(next) = &read.next
        && let Ok(value) = HeaderValue::from_str(next)
    {
        headers.insert("x-rollcall-next-cursor", value);
    }
    Ok(response)
}

/// Reads and serializes one answer (the views a chunk at a time under the
/// lock, the JSON outside it).
async fn build(
    registry: &Registry,
    service: Option<&ServiceName>,
    status: Option<Shown>,
    meta: Option<&(String, String)>,
    limit: Option<usize>,
    after: Option<&(ServiceName, ServiceUrl)>,
) -> Result<CachedRead, ApiError> {
    let Views {
        views,
        more,
        revision,
        changes,
    } = registry
        .read_views(
            service,
            |i: &Instance| {
                status.is_none_or(|s| s == i.shown())
                    && meta.is_none_or(|(k, v)| i.registration.meta.matches(k, v))
            },
            limit.unwrap_or(usize::MAX),
            after,
        )
        .await;
    let next = more
        .then(|| views.last().map(|v| encode_cursor(&v.name, &v.url)))
        .flatten();
    // Sized up front: one allocation instead of a buffer grown piece by piece.
    let mut body = Vec::with_capacity(64 + views.len() * 600);
    if let Err(e) = serde_json::to_writer(&mut body, &views) {
        tracing::error!(error = %e, "cannot encode the catalog");
        return Err(ApiError::Internal);
    }
    Ok(CachedRead {
        changes,
        revision,
        body: bytes::Bytes::from(body),
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_anything_else_is_refused() {
        let name = ServiceName::parse("Grading").unwrap();
        let url = ServiceUrl::parse("http://127.0.0.1:6000/a?b=c").unwrap();
        let cursor = encode_cursor(&name, &url);
        assert_eq!(decode_cursor(&cursor), Some((name, url)));
        assert_eq!(decode_cursor("not base64!"), None);
        assert_eq!(decode_cursor("Zm9v"), None, "no newline");
    }
}
