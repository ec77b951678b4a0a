//! Registering and staying registered: the loop that registers with
//! back-off, holds the watch stream, notices being forgotten (a broken stream,
//! a `removed` event, a classic registry gone silent) and registers again;
//! deregistering at shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use futures_util::StreamExt;
use rollcall_proto::{Registration, ServiceUrl};
use rollcall_proto::{jitter, liveness};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::error::SdkError;

fn registration(inner: &Inner) -> Result<Registration, SdkError> {
    let parse = |path: &str| {
        ServiceUrl::parse(&inner.url.join(path)).map_err(|e| SdkError::Config(e.to_string()))
    };
    Ok(Registration {
        name: inner.name.clone(),
        url: inner.url.clone(),
        required: inner.providers.required().to_vec(),
        update_url: Some(parse("/services")?),
        heartbeat_url: Some(parse("/heartbeat")?),
        meta: inner.meta.clone(),
    })
}

async fn register_once(inner: &Inner, registry: &ServiceUrl) -> Result<(), SdkError> {
    let reg = registration(inner)?;
    let url = registry.join("/services");
    let request = inner.client.post(&url).timeout(REGISTER_TIMEOUT).json(&reg);
    let response = crate::args::bearer(request, inner.token.as_ref())
        .send()
        .await
        .map_err(|e| SdkError::from_reqwest(&url, e))?;
    expect_success(&url, response).await
}

/// Deregisters through the current replica, or the next ones if it does
/// not answer.
pub(super) async fn deregister(inner: &Inner) -> Result<(), SdkError> {
    let mut last = Ok(());
    for registry in inner.registries.in_order() {
        last = deregister_at(inner, &registry).await;
        if !matches!(last, Err(SdkError::Unreachable { .. })) {
            return last;
        }
    }
    last
}

async fn deregister_at(inner: &Inner, registry: &ServiceUrl) -> Result<(), SdkError> {
    let url = registry.join("/services");
    let request = inner
        .client
        .delete(&url)
        .timeout(DEREGISTER_TIMEOUT)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(inner.url.to_string());
    let response = crate::args::bearer(request, inner.token.as_ref())
        .send()
        .await
        .map_err(|e| SdkError::from_reqwest(&url, e))?;
    if response.status() == StatusCode::NOT_FOUND {
        return Ok(());
    }
    expect_success(&url, response).await
}

/// `Ok` for a 2xx answer; otherwise a `Rejected` with (the start of) the body.
pub(crate) async fn expect_success(url: &str, response: reqwest::Response) -> Result<(), SdkError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = crate::bounded::start_of(response, 4096).await;
    Err(SdkError::Rejected {
        url: url.to_owned(),
        status: status.as_u16(),
        body: body.chars().take(300).collect(),
    })
}

/// Why a watch stream ended.
enum WatchEnd {
    /// The registry has no watch stream (an original registry): it answered
    /// 404, 405 or 501, or never answered the open (Go's `net/http` answers
    /// only once it has read a request's whole body, and the beats never
    /// end), or closed the connection without an answer.
    Unsupported(String),
    /// The registry removed this instance (deregistered or expired).
    Removed(String),
    Closed(String),
}

/// Finds `event: removed` in an SSE stream split into arbitrary chunks.
#[derive(Default)]
struct RemovedScanner {
    line: Vec<u8>,
    removed: bool,
}

impl RemovedScanner {
    /// Feeds a chunk; the `data:` line of a `removed` event once it is seen.
    fn feed(&mut self, chunk: &[u8]) -> Option<String> {
        for &byte in chunk {
            if byte != b'\n' {
                // Only the start of a line matters; bound what is kept.
                if self.line.len() < 256 {
                    self.line.push(byte);
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.line).trim_end().to_owned();
            self.line.clear();
            if line == "event: removed" || line == "event:removed" {
                self.removed = true;
            } else if self.removed && line.starts_with("data:") {
                return Some(line["data:".len()..].trim().to_owned());
            } else if line.is_empty() && self.removed {
                return Some(String::new());
            }
        }
        None
    }
}

async fn hold_watch(inner: &Inner, registry: &ServiceUrl) -> WatchEnd {
    let url = registry.join("/v1/watch");
    // Liveness beats: a byte of the request body every beat, for as long as
    // the stream lives; a hung process stops sending them.
    let beats = futures_util::stream::unfold(
        tokio::time::interval(liveness::BEAT),
        |mut every| async move {
            every.tick().await;
            Some((Ok::<_, std::io::Error>(&b"\n"[..]), every))
        },
    );
    let request = inner
        .client
        .get(&url)
        .query(&[
            ("instance", inner.url.as_str()),
            ("service", inner.name.as_str()),
        ])
        .header(
            liveness::BEAT_HEADER,
            format!("{}ms", liveness::BEAT.as_millis()),
        )
        // Said explicitly: hyper sends no body with a GET otherwise.
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(reqwest::Body::wrap_stream(beats));
    let request = crate::args::bearer(request, inner.token.as_ref()).send();
    let response = match tokio::time::timeout(REGISTER_TIMEOUT, request).await {
        Ok(Ok(r)) => r,
        // Refused or unreachable: the registry is down, not classic.
        Ok(Err(e)) if e.is_connect() || e.is_timeout() => {
            return WatchEnd::Closed(SdkError::from_reqwest(&url, e).to_string());
        }
        Ok(Err(e)) => {
            return WatchEnd::Unsupported(format!(
                "the connection closed without an answer ({})",
                root_cause(&e)
            ));
        }
        Err(_) => {
            return WatchEnd::Unsupported(format!(
                "no answer to the watch stream in {}s",
                REGISTER_TIMEOUT.as_secs()
            ));
        }
    };
    if matches!(
        response.status(),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED
    ) {
        return WatchEnd::Unsupported(format!("HTTP {}", response.status().as_u16()));
    }
    if !response.status().is_success() {
        return WatchEnd::Closed(format!("HTTP {}", response.status().as_u16()));
    }
    let mut body = response.bytes_stream();
    let mut scanner = RemovedScanner::default();
    loop {
        match tokio::time::timeout(WATCH_SILENCE, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                if let Some(data) = scanner.feed(&chunk) {
                    return WatchEnd::Removed(data);
                }
            }
            Ok(Some(Err(e))) => {
                return WatchEnd::Closed(format!("the stream broke: {}", root_cause(&e)));
            }
            Ok(None) => return WatchEnd::Closed("the registry closed the stream".into()),
            Err(_) => return WatchEnd::Closed("the stream went silent".into()),
        }
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

pub(super) async fn registration_loop(inner: Arc<Inner>, stop: CancellationToken) {
    if !inner.registries.any() {
        return;
    }
    let seed = jitter::stable_hash(inner.url.as_str());
    let mut failures: u32 = 0;
    loop {
        // The replica to use now (the next one after a failure).
        let Some(registry) = inner.registries.current() else {
            return;
        };
        let result = tokio::select! {
            () = stop.cancelled() => return,
            r = register_once(&inner, &registry) => r,
        };
        match result {
            Ok(()) => {
                failures = 0;
                inner.metrics.registrations.inc();
                inner.registered.send_replace(true);
                inner.heard_from_registry();
                tracing::info!(service = %inner.name, url = %inner.url, %registry, "registered");
                if !stay_registered(&inner, &registry, &stop).await {
                    return;
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                inner.metrics.registration_failures.inc();
                inner.registries.fail_over();
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(%registry, error = %e, attempts = failures, "cannot register yet; retrying");
                }
                let wait = jitter::backoff(RETRY_MIN, RETRY_MAX, failures, seed);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Holds the watch stream to `registry`, or lives as a classic client of it,
/// until the registry forgets this instance: `true` then (register again),
/// `false` once `stop` fires.
///
/// Against a registry without a watch stream the service registers once and
/// carries on the classic way (patches and heartbeats), registering again only
/// when the registry stops calling it for `classic_silence`. It asks for the
/// stream again now and then (from [`CLASSIC_PROBE_MIN`], doubling to
/// [`CLASSIC_PROBE_MAX`]), without registering, so a rollcall registry that
/// was merely slow to answer the first time gets its stream back.
async fn stay_registered(inner: &Inner, registry: &ServiceUrl, stop: &CancellationToken) -> bool {
    if !inner.watch_stream {
        return wait_for_silence(inner, registry, stop).await;
    }
    let mut probe = CLASSIC_PROBE_MIN;
    let mut said_classic = false;
    loop {
        let ended = tokio::select! {
            () = stop.cancelled() => return false,
            e = hold_watch(inner, registry) => e,
        };
        match ended {
            WatchEnd::Unsupported(reason) => {
                if !said_classic {
                    said_classic = true;
                    inner.metrics.classic_fallbacks.inc();
                    tracing::info!(%registry, %reason, "the registry has no watch stream; staying registered the classic way (registering again only if it stops checking us)");
                }
                // (`wait_for_silence` answers `false` itself once `stop` fires.)
                tokio::select! {
                    forgotten = wait_for_silence(inner, registry, stop) => return forgotten,
                    () = tokio::time::sleep(probe) => {}
                }
                probe = (probe * 2).min(CLASSIC_PROBE_MAX);
            }
            WatchEnd::Removed(detail) => {
                inner.metrics.watch_reconnects.inc();
                inner.registered.send_replace(false);
                tracing::warn!(%registry, %detail, "the registry removed this instance while it runs; registering again (use maintenance to hold a running instance out of discovery)");
                return true;
            }
            WatchEnd::Closed(reason) => {
                inner.metrics.watch_reconnects.inc();
                inner.registered.send_replace(false);
                inner.registries.fail_over();
                tracing::warn!(%registry, %reason, "lost the registry; registering again");
                return true;
            }
        }
    }
}

/// Stays registered until the registry stops calling us for
/// `classic_silence` (true: register again) or `stop` fires (false).
async fn wait_for_silence(inner: &Inner, registry: &ServiceUrl, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => return false,
        () = registry_silent(inner) => {}
    }
    inner.registered.send_replace(false);
    tracing::warn!(
        %registry,
        silence_s = inner.classic_silence.as_secs_f64(),
        "no heartbeat from the registry: it may have restarted; registering again"
    );
    true
}

/// Returns once the registry has not called us for `classic_silence`.
async fn registry_silent(inner: &Inner) {
    loop {
        let silence = inner.silence();
        if silence >= inner.classic_silence {
            return;
        }
        let left = inner.classic_silence - silence;
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
}
