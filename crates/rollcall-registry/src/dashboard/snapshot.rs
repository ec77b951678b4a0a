//! The catalog part of the dashboard's page: a walk of the catalog a chunk
//! at a time, counting each service and keeping the best candidates for its
//! rows, then rows for the instances shown.

use super::*;
use rollcall_proto::ServiceName;

/// Whether `needle` (lower case) is in `name` or `url`, ignoring case.
fn matches(needle: &str, name: &str, url: &str) -> bool {
    needle.is_empty()
        || name.to_ascii_lowercase().contains(needle)
        || url.to_ascii_lowercase().contains(needle)
}

/// One service as the dashboard's walk of the catalog has seen it so far.
#[derive(Default)]
struct Tally {
    passing: usize,
    critical: usize,
    requires: BTreeSet<String>,
    /// Instances matching the search: how many, how many in discovery, whether
    /// one needs attention, and the best candidates for its rows.
    shown: usize,
    shown_in_discovery: usize,
    attention: bool,
    candidates: Vec<RowKey>,
}

/// A group's order: critical first, then the rest, then passing, by URL.
type RowKey = (bool, bool, ServiceUrl);

fn row_key(i: &Instance) -> RowKey {
    let shown = i.shown();
    (
        shown != Shown::Critical,
        shown == Shown::Passing,
        i.url().clone(),
    )
}

/// Keeps the `rows` best of `candidates` (once it holds twice as many).
fn keep_best(candidates: &mut Vec<RowKey>, rows: usize, force: bool) {
    if candidates.len() > rows && (force || candidates.len() >= 2 * rows) {
        candidates.select_nth_unstable(rows);
        candidates.truncate(rows);
    }
}

/// The catalog part of the page (no I/O beyond the lock). The catalog is
/// walked [`crate::shell::CHUNK`] instances per hold of the lock, yielding in
/// between, so a large catalog never holds its writers up for long; what a
/// chunk keeps is counts and the best candidates for each group's rows, and
/// rows are made at the end, only for the instances shown. (A view of a
/// catalog changing meanwhile mixes moments; its revision is the last.)
pub(super) async fn snapshot(
    registry: &Registry,
    now: Timestamp,
    query: &str,
) -> (Live, Option<String>) {
    let log_name = registry.config().log_service.clone();
    let needle = query.trim().to_ascii_lowercase();
    let mut tallies: BTreeMap<ServiceName, Tally> = BTreeMap::new();
    let mut after: Option<(ServiceName, ServiceUrl)> = None;
    loop {
        let more = registry.read(|c| {
            let (chunk, more) = c.page(
                None,
                after.as_ref().map(|(n, u)| (n, u)),
                crate::shell::CHUNK,
                |_| true,
            );
            for i in &chunk {
                let tally = match tallies.get_mut(i.name()) {
                    Some(tally) => tally,
                    None => tallies.entry(i.name().clone()).or_default(),
                };
                if i.in_discovery() {
                    tally.passing += 1;
                } else {
                    tally.critical += 1;
                }
                for required in &i.registration.required {
                    if !tally.requires.contains(required.as_str()) {
                        tally.requires.insert(required.to_string());
                    }
                }
                if matches(&needle, i.name().as_str(), i.url().as_str()) {
                    let shown = i.shown();
                    tally.shown += 1;
                    // The same count as the cards and the graph (an
                    // instance not yet checked is in discovery).
                    tally.shown_in_discovery += usize::from(i.in_discovery());
                    tally.attention |= matches!(shown, Shown::Critical | Shown::Maintenance);
                    tally.candidates.push(row_key(i));
                    keep_best(&mut tally.candidates, OPEN_ROWS, false);
                }
            }
            after = chunk.last().map(|i| (i.name().clone(), i.url().clone()));
            more
        });
        if !more {
            break;
        }
        tokio::task::yield_now().await;
    }
    let groups = tallies.values().filter(|t| t.shown > 0).count();
    let many = groups > OPEN_UP_TO && needle.is_empty();
    let mut services: Vec<(ServiceGroup, Vec<ServiceUrl>)> = Vec::new();
    let mut infos: Vec<ServiceInfo> = Vec::with_capacity(tallies.len());
    for (name, mut tally) in tallies {
        if tally.shown > 0 {
            let open = tally.attention || !many;
            let rows = if open { OPEN_ROWS } else { FOLDED_ROWS };
            keep_best(&mut tally.candidates, rows, true);
            tally.candidates.sort();
            services.push((
                ServiceGroup {
                    open,
                    attention: tally.attention,
                    passing: tally.shown_in_discovery,
                    other: tally.shown - tally.shown_in_discovery,
                    name: name.to_string(),
                    more: tally.shown - tally.candidates.len(),
                    instances: Vec::new(),
                },
                tally
                    .candidates
                    .into_iter()
                    .map(|(_, _, url)| url)
                    .collect(),
            ));
        }
        infos.push(ServiceInfo {
            name: name.to_string(),
            passing: tally.passing,
            critical: tally.critical,
            requires: tally.requires,
        });
    }
    // Services that need attention first; past MAX_GROUPS, a count.
    services.sort_by(|(a, _), (b, _)| (!a.attention, &a.name).cmp(&(!b.attention, &b.name)));
    let more_services = services.len().saturating_sub(MAX_GROUPS);
    services.truncate(MAX_GROUPS);
    // Rows for the instances shown (at most MAX_GROUPS × OPEN_ROWS), a few
    // groups per hold; one that left meanwhile is not shown.
    let mut shown = Vec::with_capacity(services.len());
    for batch in services.chunks_mut(crate::shell::CHUNK / OPEN_ROWS) {
        registry.read(|c| {
            for (group, urls) in batch.iter_mut() {
                group.instances = urls
                    .iter()
                    .filter_map(|url| c.get(url))
                    .map(|i| instance_row(i, now))
                    .collect();
            }
        });
        tokio::task::yield_now().await;
    }
    for (group, _) in services {
        shown.push(group);
    }
    let (revision, log_url) = registry.read(|c| {
        let log_url = c
            .healthy_providers(&log_name)
            .into_iter()
            .next()
            .map(|u| u.to_string());
        (c.revision(), log_url)
    });
    let services = shown;
    let passing = infos.iter().map(|s| s.passing).sum();
    let critical = infos.iter().map(|s| s.critical).sum();
    let total_services = infos.len();
    // Past MAX_GRAPH services a drawing is no longer read, only scrolled.
    let graph = if total_services <= MAX_GRAPH {
        graph::layout(&infos)
    } else {
        Graph {
            width: 0,
            height: 0,
            nodes: Vec::new(),
            edges: Vec::new(),
        }
    };
    let events = fold_events(registry.recent_events(TIMELINE_WINDOW), TIMELINE);
    let live = Live {
        revision,
        passing,
        critical,
        total_services,
        query: query.to_owned(),
        services,
        more_services,
        graph,
        events,
        logs: LogPanel::NoLogService,
        log_name: log_name.to_string(),
        node_w: graph::NODE_W,
        node_h: graph::NODE_H,
        generated: clock(now),
        stale: registry.is_stale(),
    };
    (live, log_url)
}
