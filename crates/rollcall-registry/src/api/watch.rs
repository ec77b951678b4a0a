//! `GET /v1/watch`: a Server-Sent Events stream of catalog changes.
//!
//! Query parameters (all optional):
//! - `service=NAME`: only changes of that service.
//! - `requires=A,B`: also send `patch` events that keep a provider table for
//!   those names current: first a complete one (`Resync: true`), then
//!   differences — for services that cannot take inbound webhooks.
//! - `instance=URL`: binds the stream to a registered instance (the SDK does
//!   this). If the stream closes while the instance is still registered — the
//!   process died and the kernel closed its socket — the registry checks it at
//!   once and takes it out on the first failure, so dependents learn of a crash
//!   in milliseconds instead of after the next interval. With the header
//!   `X-Rollcall-Beat: 200ms` the client also sends a byte of its request body
//!   every beat ([`rollcall_proto::liveness`]); silence for two beats makes
//!   the instance suspect the same way, so a *hung* process is noticed too.
//!
//! Events: `hello` (`{"revision"}`), `change` (a catalog [`Event`]), `patch`
//! (a classic patch), `lagged` (`{"missed"}`: the stream fell behind; `patch`
//! subscribers get a fresh difference), `removed` (`{"kind"}`: the instance a
//! bound stream belongs to was deregistered or expired; the stream then ends,
//! and the SDK registers again). A comment every 15 s keeps idle
//! connections alive through proxies and lets dead peers be noticed.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use rollcall_http::QueryParams;
use rollcall_proto::{Patch, PatchEntry, ServiceName, ServiceUrl, liveness};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::api::error::ApiError;
use crate::catalog::{Event, EventKind};
use crate::shell::Registry;
use crate::shell::fanout::{Interest, Lagged, Subscription};

/// Interval of keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchQuery {
    /// Only changes of this service.
    pub service: Option<String>,
    /// Comma-separated names: also stream patches for them.
    pub requires: Option<String>,
    /// Bind the stream to this registered instance (a URL).
    pub instance: Option<String>,
}

/// A validated watch request.
#[derive(Debug, Clone, Default)]
pub struct WatchFilter {
    pub service: Option<ServiceName>,
    pub requires: Vec<ServiceName>,
    pub instance: Option<ServiceUrl>,
}

impl TryFrom<WatchQuery> for WatchFilter {
    type Error = ApiError;

    fn try_from(q: WatchQuery) -> Result<Self, ApiError> {
        let service = crate::api::error::optional_name(q.service, "service")?;
        let requires = rollcall_proto::names::parse_name_list(&q.requires.unwrap_or_default())
            .map_err(|reason| ApiError::InvalidName {
                param: "requires",
                reason,
            })?;
        let instance = q
            .instance
            .filter(|s| !s.is_empty())
            .map(|s| ServiceUrl::parse(&s))
            .transpose()
            .map_err(|e| ApiError::InvalidQuery {
                param: "instance",
                reason: e.to_string(),
            })?;
        Ok(Self {
            service,
            requires,
            instance,
        })
    }
}

/// Reports a closed stream of a bound instance, and counts open streams.
struct StreamGuard {
    registry: Registry,
    instance: Option<ServiceUrl>,
    /// Stops the reading of the stream's beats.
    beats: CancellationToken,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.beats.cancel();
        self.registry.metrics().watch_streams.dec();
        if let Some(url) = &self.instance {
            tracing::debug!(%url, "watch stream of an instance closed");
            self.registry.watch_closed(url);
        }
    }
}

struct WatchState {
    registry: Registry,
    filter: WatchFilter,
    events: Subscription,
    /// What this stream's `patch` subscriber holds.
    view: BTreeSet<PatchEntry>,
    /// Events up to this one (by `Event::seq`) are in the snapshot.
    seen_seq: u64,
    pending: std::collections::VecDeque<SseEvent>,
    /// The bound instance left the catalog: end after what is pending.
    ending: bool,
    _guard: StreamGuard,
}

fn json_event(name: &str, value: &impl serde::Serialize) -> SseEvent {
    SseEvent::default()
        .event(name)
        .json_data(value)
        .unwrap_or_else(|_| SseEvent::default().event(name).data("{}"))
}

/// Whether an event changes who provides `name`.
fn changes_providers(event: &Event) -> bool {
    !matches!(event.kind, EventKind::DeliveryFailed | EventKind::Resynced)
}

impl WatchState {
    /// The difference between this stream's view and the catalog, as a patch
    /// event (none if nothing changed).
    fn diff(&mut self) -> Option<SseEvent> {
        let (desired, revision) = self
            .registry
            .read(|c| (c.desired_for_names(&self.filter.requires), c.revision()));
        let patch = Patch {
            added: desired.difference(&self.view).cloned().collect(),
            removed: self.view.difference(&desired).cloned().collect(),
            revision: Some(revision),
            resync: false,
        };
        self.view = desired;
        (!patch.added.is_empty() || !patch.removed.is_empty()).then(|| json_event("patch", &patch))
    }

    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.ending {
                return None;
            }
            match self.events.recv().await {
                Ok(event) => {
                    let event: &Event = &event;
                    if event.seq <= self.seen_seq && event.kind != EventKind::Resynced {
                        continue;
                    }
                    if matches!(event.kind, EventKind::Deregistered | EventKind::Expired)
                        && self.filter.instance.as_ref() == Some(&event.url)
                    {
                        self.pending.push_back(json_event(
                            "removed",
                            &serde_json::json!({ "kind": event.kind }),
                        ));
                        self.ending = true;
                        continue;
                    }
                    let wanted = self
                        .filter
                        .service
                        .as_ref()
                        .is_none_or(|s| *s == event.service);
                    if wanted {
                        self.pending.push_back(json_event("change", event));
                    }
                    if changes_providers(event)
                        && self.filter.requires.contains(&event.service)
                        && let Some(patch) = self.diff()
                    {
                        self.pending.push_back(patch);
                    }
                }
                Err(Lagged(missed)) => {
                    self.registry.metrics().watch_events_lagged.inc_by(missed);
                    self.pending.push_back(json_event(
                        "lagged",
                        &serde_json::json!({ "missed": missed }),
                    ));
                    if !self.filter.requires.is_empty()
                        && let Some(patch) = self.diff()
                    {
                        self.pending.push_back(patch);
                    }
                }
            }
        }
    }
}

/// How a bound stream's client beats: its request body and the interval.
#[derive(Debug)]
pub struct Beats {
    pub body: axum::body::Body,
    pub every: Duration,
}

/// Reads `url`'s liveness beats until the stream ends (`stop`) or the client
/// stops sending them; silence past the limit (once the first beat came)
/// makes the instance suspect, once per silence.
async fn read_beats(registry: Registry, url: ServiceUrl, beats: Beats, stop: CancellationToken) {
    use http_body_util::BodyExt as _;
    let limit = liveness::silence_limit(beats.every);
    let mut body = beats.body;
    let (mut armed, mut silent) = (false, false);
    let shutdown = registry.shutdown_token().clone();
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return,
            () = shutdown.cancelled() => return,
            next = tokio::time::timeout(limit, body.frame()) => next,
        };
        match next {
            Ok(Some(Ok(frame))) => {
                if frame
                    .data_ref()
                    .is_some_and(|d| d.len() > liveness::MAX_BEAT_BYTES)
                {
                    tracing::debug!(%url, "a beat too large: its beats are no longer read");
                    return;
                }
                armed = true;
                silent = false;
            }
            // The client stopped beating (or the connection went): a closed
            // stream is noticed by its own end.
            Ok(Some(Err(_)) | None) => return,
            Err(_) if armed && !silent => {
                silent = true;
                registry.metrics().watch_streams_silent.inc();
                tracing::debug!(%url, "an instance's watch stream went silent; checking it now");
                registry.contact_lost(&url);
            }
            Err(_) => {}
        }
    }
}

/// Opens a watch stream.
pub fn open(
    registry: Registry,
    filter: WatchFilter,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    open_with_beats(registry, filter, None)
}

/// Opens a watch stream whose bound instance beats (`beats`).
pub fn open_with_beats(
    registry: Registry,
    filter: WatchFilter,
    beats: Option<Beats>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    // Subscribe before the snapshot, so nothing falls between them. A stream
    // with `service` follows that name and its `requires` only, so other
    // changes do not wake it; one without sends every change.
    let names = filter.service.as_ref().map(|service| {
        let mut names = filter.requires.clone();
        names.push(service.clone());
        names
    });
    let events = registry.subscribe(Interest {
        names,
        instance: filter.instance.clone(),
    });
    let (revision, seen_seq, view) = registry.read(|c| {
        (
            c.revision(),
            c.events_made(),
            c.desired_for_names(&filter.requires),
        )
    });
    registry.metrics().watch_streams.inc();
    if let Some(url) = &filter.instance {
        registry.watch_opened(url);
    }
    let mut pending = std::collections::VecDeque::new();
    pending.push_back(json_event(
        "hello",
        &serde_json::json!({ "revision": revision }),
    ));
    if !filter.requires.is_empty() {
        let patch = Patch {
            added: view.iter().cloned().collect(),
            removed: Vec::new(),
            revision: Some(revision),
            resync: true,
        };
        pending.push_back(json_event("patch", &patch));
    }
    let stop_beats = CancellationToken::new();
    if let (Some(url), Some(beats)) = (&filter.instance, beats) {
        registry.spawn(read_beats(
            registry.clone(),
            url.clone(),
            beats,
            stop_beats.clone(),
        ));
    }
    let state = WatchState {
        _guard: StreamGuard {
            registry: registry.clone(),
            instance: filter.instance.clone(),
            beats: stop_beats,
        },
        registry,
        filter,
        events,
        view,
        seen_seq,
        pending,
        ending: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let shutdown = state.registry.shutdown_token().clone();
        tokio::select! {
            () = shutdown.cancelled() => None,
            event = state.next() => event.map(|e| (Ok(e), state)),
        }
    })
}

/// Server-Sent Events stream of catalog changes
///
/// Events: `hello` {revision}; `change` (an Event); `patch` (a Patch: the
/// first is complete, `Resync` true, then differences) when `requires` is
/// given; `lagged` {missed}; `removed` when the bound instance was taken out.
/// A comment every 15 s keeps the connection alive. With `instance`, the
/// stream is that instance's liveness session: if it closes (or, with
/// `X-Rollcall-Beat`, its beats stop) while the instance is registered, the
/// instance is checked at once.
#[utoipa::path(get, path = "/v1/watch", tag = "rollcall", params(WatchQuery,
        ("X-Rollcall-Beat" = Option<String>, Header, description = "With `instance`: the client sends a byte of its chunked request body at this interval (`200ms`; 50ms–10s); silence for two beats makes the instance suspect")),
    responses(
        (status = 200, description = "The stream", content_type = "text/event-stream"),
        rollcall_http::openapi::BadQuery,
    ))]
pub async fn watch(
    State(registry): State<Registry>,
    peer: rollcall_http::access::Peer,
    QueryParams(query): QueryParams<WatchQuery>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let filter = WatchFilter::try_from(query)?;
    let beat = headers
        .get(liveness::BEAT_HEADER)
        .map(|value| parse_beat(value.to_str().unwrap_or("")))
        .transpose()?;
    let max = registry.config().max_watch_streams;
    if registry.metrics().watch_streams.get() >= i64::try_from(max).unwrap_or(i64::MAX) {
        return Err(ApiError::TooManyStreams(max));
    }
    // Binding a stream to an instance is its liveness session: only the
    // instance's own address may hold it (the callback guard).
    if let Some(instance) = &filter.instance {
        crate::callbacks::claim(
            "instance",
            instance.clone(),
            peer,
            &registry.config().allow_callbacks,
        )?;
    }
    let beats = beat
        .filter(|_| filter.instance.is_some())
        .map(|every| Beats { body, every });
    Ok(Sse::new(open_with_beats(registry, filter, beats))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The interval of `X-Rollcall-Beat`, within the bounds.
fn parse_beat(value: &str) -> Result<Duration, ApiError> {
    let invalid = |reason: String| ApiError::InvalidQuery {
        param: "X-Rollcall-Beat",
        reason,
    };
    let every = rollcall_proto::units::parse_duration(value).map_err(|e| invalid(e.to_string()))?;
    if !(liveness::MIN_BEAT..=liveness::MAX_BEAT).contains(&every) {
        return Err(invalid(format!(
            "must be between {} and {}",
            humantime::format_duration(liveness::MIN_BEAT),
            humantime::format_duration(liveness::MAX_BEAT)
        )));
    }
    Ok(every)
}
