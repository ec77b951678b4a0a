//! Tests of the catalog's rules, without sockets or sleeps: time is a number.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use rollcall_proto::{Patch, PatchEntry, Registration, ServiceName, ServiceUrl, Timestamp};

use super::health::{CheckOutcome, Health, Shown};
use super::records::{StoreOp, ViewChange};
use super::*;

fn name(n: &str) -> ServiceName {
    ServiceName::parse(n).unwrap()
}

fn url(port: u16) -> ServiceUrl {
    ServiceUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap()
}

fn reg(service: &str, port: u16, requires: &[&str]) -> Registration {
    let u = url(port);
    Registration {
        name: name(service),
        required: requires.iter().map(|r| name(r)).collect(),
        update_url: Some(ServiceUrl::parse(&u.join("/services")).unwrap()),
        heartbeat_url: Some(ServiceUrl::parse(&u.join("/heartbeat")).unwrap()),
        url: u,
        meta: rollcall_proto::Meta::default(),
    }
}

fn entry(service: &str, port: u16) -> PatchEntry {
    PatchEntry::new(name(service), url(port))
}

/// Drains the worker of `receiver`, acknowledging every patch; returns them.
fn deliver_all(c: &mut Catalog, receiver: &ServiceUrl, now: Timestamp) -> Vec<Patch> {
    let generation = c.get(receiver).unwrap().generation;
    let mut out = Vec::new();
    while let Some(d) = c.next_delivery(receiver, generation, now) {
        c.delivery_succeeded(&d.ticket, now);
        out.push(d.patch);
    }
    out
}

const T0: Timestamp = Timestamp(1_000_000);

fn at(ms: u64) -> Timestamp {
    T0.plus(Duration::from_millis(ms))
}

#[test]
fn a_dependent_registered_first_is_told_when_its_provider_arrives() {
    let mut c = Catalog::new(CatalogConfig::default());
    let r = c.register(reg("Grading", 6000, &["Log"]), T0);
    assert!(r.initial_patch.is_some());
    assert_eq!(r.effects.start_workers.len(), 1);
    let initial = deliver_all(&mut c, &url(6000), T0);
    assert_eq!(initial.len(), 1);
    assert!(initial[0].added.is_empty() && initial[0].resync);

    let r = c.register(reg("Log", 4000, &[]), at(1));
    assert_eq!(
        r.effects.patches_queued, 2,
        "the newcomer's own patch and one Added"
    );
    let patches = deliver_all(&mut c, &url(6000), at(1));
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].added, vec![entry("Log", 4000)]);
    assert_eq!(patches[0].revision, Some(c.revision()));
}

#[test]
fn a_dependent_registered_after_its_provider_gets_it_in_the_initial_patch() {
    let mut c = Catalog::new(CatalogConfig::default());
    c.register(reg("Log", 4000, &[]), T0);
    let r = c.register(reg("Grading", 6000, &["Log"]), at(1));
    let ticket = r.initial_patch.unwrap();
    let d = c
        .next_delivery(&url(6000), ticket.generation, at(1))
        .unwrap();
    assert_eq!(d.ticket, ticket);
    assert_eq!(d.patch.added, vec![entry("Log", 4000)]);
    assert!(d.patch.resync);
    assert_eq!(d.update_url.as_str(), "http://127.0.0.1:6000/services");
}

#[test]
fn registering_one_url_twice_keeps_one_instance_and_notifies_once() {
    let mut c = Catalog::new(CatalogConfig::default());
    c.register(reg("Grading", 6000, &["Log"]), T0);
    deliver_all(&mut c, &url(6000), T0);
    let first = c.register(reg("Log", 4000, &[]), at(1));
    assert_eq!(first.effects.events[0].kind, EventKind::Registered);
    let second = c.register(reg("Log", 4000, &[]), at(2));
    assert_eq!(second.effects.events[0].kind, EventKind::Reregistered);
    assert_eq!(c.len(), 2);
    let patches = deliver_all(&mut c, &url(6000), at(3));
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(c.healthy_providers(&name("Log")), vec![url(4000)]);
}

#[test]
fn re_registering_under_another_name_moves_the_instance() {
    let mut c = Catalog::new(CatalogConfig::default());
    c.register(reg("WantsA", 1, &["A"]), T0);
    c.register(reg("WantsB", 2, &["B"]), T0);
    deliver_all(&mut c, &url(1), T0);
    deliver_all(&mut c, &url(2), T0);
    c.register(reg("A", 9, &[]), at(1));
    c.register(reg("B", 9, &[]), at(2));
    let to_a = deliver_all(&mut c, &url(1), at(3));
    let to_b = deliver_all(&mut c, &url(2), at(3));
    assert_eq!(to_a[1].removed, vec![entry("A", 9)]);
    assert_eq!(to_b[0].added, vec![entry("B", 9)]);
    assert_eq!(c.len(), 3);
}

#[test]
fn deregistration_tells_dependents_and_unknown_urls_are_not_found() {
    let mut c = Catalog::new(CatalogConfig::default());
    c.register(reg("Log", 4000, &[]), T0);
    c.register(reg("Grading", 6000, &["Log"]), T0);
    deliver_all(&mut c, &url(6000), T0);
    let fx = c.deregister(&url(4000), at(1)).unwrap();
    assert_eq!(fx.events[0].kind, EventKind::Deregistered);
    assert!(fx.persist.contains(&StoreOp::DeleteInstance(url(4000))));
    let patches = deliver_all(&mut c, &url(6000), at(1));
    assert_eq!(patches[0].removed, vec![entry("Log", 4000)]);
    assert!(c.deregister(&url(4000), at(2)).is_none());
    assert!(c.get(&url(4000)).is_none());
}

/// Runs every check due by `now` with the given result for `port`, passing all
/// others.
fn run_checks(c: &mut Catalog, now: Timestamp, failing: &[u16]) -> Effects {
    let mut effects = Effects::default();
    for req in c.take_due_checks(now, usize::MAX) {
        let fail = failing.iter().any(|p| url(*p) == req.url);
        let outcome = if fail {
            CheckOutcome::fail(Duration::from_millis(1), "connection refused")
        } else {
            CheckOutcome::pass(Duration::from_millis(1))
        };
        effects.merge(c.check_result(&req, &outcome, now));
    }
    effects
}

#[test]
fn a_failing_provider_goes_critical_after_two_checks_and_comes_back_after_two() {
    let mut c = Catalog::new(CatalogConfig::default());
    c.register(reg("Log", 4000, &[]), T0);
    c.register(reg("Grading", 6000, &["Log"]), T0);
    deliver_all(&mut c, &url(6000), T0);
    // First check within one interval; first failure is not enough.
    let fx = run_checks(&mut c, at(1000), &[4000]);
    assert!(fx.events.is_empty());
    assert_eq!(c.get(&url(4000)).unwrap().status(), Health::Passing);
    // The undecided instance is rechecked fast, not after a full interval.
    let next = c.get(&url(4000)).unwrap().next_check().unwrap();
    assert_eq!(next, at(1250));
    let fx = run_checks(&mut c, at(1250), &[4000]);
    assert_eq!(fx.events[0].kind, EventKind::Critical);
    assert_eq!(fx.events[0].detail.as_deref(), Some("connection refused"));
    assert!(fx.persist.iter().any(|op| matches!(
        op,
        StoreOp::SetStatus {
            status: Health::Critical,
            ..
        }
    )));
    let patches = deliver_all(&mut c, &url(6000), at(1250));
    assert_eq!(patches[0].removed, vec![entry("Log", 4000)]);
    assert!(c.healthy_providers(&name("Log")).is_empty());
    // Recovery takes two passes.
    let when = c.get(&url(4000)).unwrap().next_check().unwrap();
    assert!(run_checks(&mut c, when, &[]).events.is_empty());
    let when = c.get(&url(4000)).unwrap().next_check().unwrap();
    let fx = run_checks(&mut c, when, &[]);
    assert_eq!(fx.events[0].kind, EventKind::Recovered);
    let patches = deliver_all(&mut c, &url(6000), when);
    assert_eq!(patches[0].added, vec![entry("Log", 4000)]);
}

#[test]
fn a_status_change_the_store_refused_is_written_again_by_the_next_check_until_it_lands() {
    let mut c = Catalog::new(CatalogConfig::default());
    c.register(reg("Log", 4000, &[]), T0);
    let status_writes = |fx: &Effects| {
        fx.persist
            .iter()
            .filter(|op| {
                matches!(
                    op,
                    StoreOp::SetStatus {
                        status: Health::Critical,
                        ..
                    }
                )
            })
            .count()
    };
    let next = |c: &Catalog| c.get(&url(4000)).unwrap().next_check().unwrap();
    run_checks(&mut c, at(1000), &[4000]);
    let fx = run_checks(&mut c, at(1250), &[4000]);
    assert_eq!(status_writes(&fx), 1, "the change itself");
    // In flight: the next check does not write it twice.
    let when = next(&c);
    let fx = run_checks(&mut c, when, &[4000]);
    assert_eq!(status_writes(&fx), 0);
    // Refused (etcd unreachable): the next check writes it again, once.
    c.status_written(&url(4000), false);
    let when = next(&c);
    let fx = run_checks(&mut c, when, &[4000]);
    assert_eq!(status_writes(&fx), 1, "written again");
    assert!(fx.events.is_empty(), "no second event: nothing changed");
    let when = next(&c);
    let fx = run_checks(&mut c, when, &[4000]);
    assert_eq!(status_writes(&fx), 0, "in flight again");
    // Committed: nothing more to write.
    c.status_written(&url(4000), true);
    let when = next(&c);
    let fx = run_checks(&mut c, when, &[4000]);
    assert_eq!(status_writes(&fx), 0);
}

#[test]
fn a_newcomer_is_checked_at_once_and_shows_unchecked_until_then() {
    let mut c = Catalog::new(CatalogConfig::default());
    let fx = c.register(reg("Log", 4000, &[]), T0).effects;
    assert!(fx.schedule_changed);
    assert_eq!(c.next_check_due(), Some(T0), "due the moment it registers");
    let log = c.get(&url(4000)).unwrap();
    assert_eq!(log.shown(), Shown::Unchecked);
    assert!(log.in_discovery(), "dependents are still told at once");
    run_checks(&mut c, at(3), &[]);
    assert_eq!(c.get(&url(4000)).unwrap().shown(), Shown::Passing);
}

#[test]
fn a_fast_recheck_wakes_the_check_loop() {
    // The loop sleeps until the earliest entry it saw; a recheck scheduled by
    // a failed check must wake it, or it runs up to a whole interval late.
    let mut c = Catalog::new(CatalogConfig::default());
    c.register(reg("Log", 4000, &[]), T0);
    c.register(reg("Other", 4001, &[]), T0);
    run_checks(&mut c, T0, &[]);
    let reqs = c.take_due_checks(at(1200), 10);
    let of = |port| reqs.iter().find(|r| r.url == url(port)).unwrap();
    let pass = CheckOutcome::pass(Duration::from_millis(1));
    // Other passes: due again about an interval later.
    c.check_result(of(4001), &pass, at(1201));
    let other_next = c.get(&url(4001)).unwrap().next_check().unwrap();
    assert!(other_next >= at(2101));
    // Log fails: its recheck comes first, and the loop is told.
    let fx = c.check_result(
        of(4000),
        &CheckOutcome::fail(Duration::from_millis(1), "refused"),
        at(1202),
    );
    assert_eq!(c.next_check_due(), Some(at(1452)));
    assert!(fx.schedule_changed, "the recheck is the earliest entry");
    // A pass that schedules after what is already due does not wake it.
    let reqs = c.take_due_checks(at(1452), 10);
    let fx = c.check_result(&reqs[0], &pass, at(1453));
    assert_eq!(c.next_check_due(), Some(other_next));
    assert!(!fx.schedule_changed);
}

#[test]
fn maintenance_takes_an_instance_out_of_discovery_and_outlives_reregistration() {
    let mut c = Catalog::new(CatalogConfig::default());
    c.register(reg("Log", 4000, &[]), T0);
    c.register(reg("Grading", 6000, &["Log"]), T0);
    deliver_all(&mut c, &url(6000), T0);
    assert!(c.set_maintenance(&url(9), true, at(1)).is_none());
    let fx = c.set_maintenance(&url(4000), true, at(1)).unwrap();
    assert_eq!(fx.events[0].kind, EventKind::MaintenanceOn);
    assert!(fx.persist.contains(&StoreOp::SetMaintenance {
        url: url(4000),
        since: Some(at(1)),
    }));
    let patches = deliver_all(&mut c, &url(6000), at(1));
    assert_eq!(patches[0].removed, vec![entry("Log", 4000)]);
    assert_eq!(c.get(&url(4000)).unwrap().shown(), Shown::Maintenance);
    // Switching it on again changes nothing.
    let fx = c.set_maintenance(&url(4000), true, at(2)).unwrap();
    assert!(fx.events.is_empty() && fx.persist.is_empty());
    // The SDK registers again (its stream broke): still held out, nobody told.
    c.register(reg("Log", 4000, &[]), at(3));
    assert!(deliver_all(&mut c, &url(6000), at(3)).is_empty());
    assert!(c.healthy_providers(&name("Log")).is_empty());
    // It fails and recovers meanwhile: dependents hear nothing.
    run_checks(&mut c, at(3), &[4000]);
    run_checks(&mut c, at(300), &[4000]);
    assert_eq!(c.get(&url(4000)).unwrap().status(), Health::Critical);
    assert!(deliver_all(&mut c, &url(6000), at(300)).is_empty());
    let when = c.get(&url(4000)).unwrap().next_check().unwrap();
    run_checks(&mut c, when, &[]);
    let when = c.get(&url(4000)).unwrap().next_check().unwrap();
    run_checks(&mut c, when, &[]);
    assert!(deliver_all(&mut c, &url(6000), when).is_empty());
    // Off again: back in discovery.
    let fx = c.set_maintenance(&url(4000), false, when).unwrap();
    assert_eq!(fx.events[0].kind, EventKind::MaintenanceOff);
    let patches = deliver_all(&mut c, &url(6000), when);
    assert_eq!(patches[0].added, vec![entry("Log", 4000)]);
}

#[test]
fn a_closed_watch_stream_triggers_an_immediate_check_that_needs_one_failure() {
    let mut c = Catalog::new(CatalogConfig::default());
    c.register(reg("Log", 4000, &[]), T0);
    run_checks(&mut c, T0, &[]);
    let fx = c.lost_contact(&url(4000), at(5));
    assert!(fx.schedule_changed);
    assert_eq!(c.next_check_due(), Some(at(5)));
    let fx = run_checks(&mut c, at(5), &[4000]);
    assert_eq!(fx.events[0].kind, EventKind::Critical);
}

#[test]
fn closing_streams_over_and_over_pulls_checks_forward_at_most_once_per_fast_recheck() {
    let mut c = Catalog::new(CatalogConfig::default());
    let gap = CatalogConfig::default().health.fast_recheck;
    c.register(reg("Log", 4000, &[]), T0);
    run_checks(&mut c, T0, &[]);
    c.lost_contact(&url(4000), at(10));
    assert_eq!(c.next_check_due(), Some(at(10)), "the first one at once");
    run_checks(&mut c, at(10), &[]);
    // Streams bound to it open and close again and again (someone hammering
    // it through the registry): the next check waits for the gap.
    for ms in [20, 30, 40] {
        c.lost_contact(&url(4000), at(ms));
        assert_eq!(c.next_check_due(), Some(at(10).plus(gap)), "at {ms} ms");
    }
}

#[test]
fn suspicion_raised_during_a_check_is_not_cleared_by_it() {
    let mut c = Catalog::new(CatalogConfig::default());
    c.register(reg("Log", 4000, &[]), T0);
    let reqs = c.take_due_checks(at(1000), 10);
    assert_eq!(reqs.len(), 1);
    // The stream closes while the check is in flight; the check then passes.
    c.lost_contact(&url(4000), at(1001));
    c.check_result(
        &reqs[0],
        &CheckOutcome::pass(Duration::from_millis(1)),
        at(1002),
    );
    assert_eq!(c.next_check_due(), Some(at(1002)), "checked again at once");
    let fx = run_checks(&mut c, at(1002), &[4000]);
    assert_eq!(fx.events[0].kind, EventKind::Critical);
}

#[test]
fn the_check_bound_is_respected_and_results_of_stale_checks_are_ignored() {
    let mut c = Catalog::new(CatalogConfig::default());
    for port in 1..=10 {
        c.register(reg("S", port, &[]), T0);
    }
    let reqs = c.take_due_checks(at(2000), 4);
    assert_eq!(reqs.len(), 4);
    assert_eq!(c.take_due_checks(at(2000), 100).len(), 6);
    // The instance re-registers while its check is out: the old result is stale.
    let stale = &reqs[0];
    c.register(
        reg("S", stale.url.as_str()[17..].parse().unwrap(), &[]),
        at(2001),
    );
    let fx = c.check_result(
        stale,
        &CheckOutcome::fail(Duration::ZERO, "refused"),
        at(2002),
    );
    assert!(fx.events.is_empty());
    assert_eq!(c.get(&stale.url).unwrap().health.consecutive_failures, 0);
}

#[test]
fn an_instance_critical_for_too_long_expires() {
    let config = CatalogConfig {
        deregister_after: Duration::from_secs(60),
        ..CatalogConfig::default()
    };
    let mut c = Catalog::new(config);
    c.register(reg("Log", 4000, &[]), T0);
    run_checks(&mut c, at(1000), &[4000]);
    run_checks(&mut c, at(1250), &[4000]);
    assert_eq!(c.get(&url(4000)).unwrap().status(), Health::Critical);
    assert!(c.tick(at(1250 + 59_000)).events.is_empty());
    let fx = c.tick(at(1250 + 60_000));
    assert_eq!(fx.events[0].kind, EventKind::Expired);
    assert!(c.is_empty());
}

#[test]
fn a_receiver_that_fails_is_resynced_when_it_answers_again() {
    let mut c = Catalog::new(CatalogConfig::default());
    c.register(reg("Grading", 6000, &["Log"]), T0);
    deliver_all(&mut c, &url(6000), T0);
    c.register(reg("Log", 4000, &[]), at(1));
    let generation = c.get(&url(6000)).unwrap().generation;
    let d = c.next_delivery(&url(6000), generation, at(1)).unwrap();
    let fx = c.delivery_failed(&d.ticket, "timed out", at(2));
    assert_eq!(fx.events[0].kind, EventKind::DeliveryFailed);
    // While the back-off runs, changes fold into the debt.
    c.register(reg("Log", 4001, &[]), at(3));
    assert!(c.next_delivery(&url(6000), generation, at(3)).is_none());
    // Its heartbeat passes after failing: resync at once, not after back-off.
    let reqs = c.take_due_checks(at(900), 100);
    let mine: Vec<_> = reqs.iter().filter(|r| r.url == url(6000)).collect();
    c.check_result(
        mine[0],
        &CheckOutcome::fail(Duration::ZERO, "refused"),
        at(900),
    );
    let reqs = c.take_due_checks(at(1150), 100);
    let mine: Vec<_> = reqs.iter().filter(|r| r.url == url(6000)).collect();
    let fx = c.check_result(mine[0], &CheckOutcome::pass(Duration::ZERO), at(1150));
    assert_eq!(fx.start_workers.len(), 1);
    let patches = deliver_all(&mut c, &url(6000), at(1150));
    assert_eq!(patches.len(), 1);
    let mut added = patches[0].added.clone();
    added.sort();
    assert_eq!(added, vec![entry("Log", 4000), entry("Log", 4001)]);
    assert!(patches[0].resync, "it certainly held nothing");
}

#[test]
fn a_receiver_that_keeps_failing_is_one_event_until_it_answers_again() {
    let mut c = Catalog::new(CatalogConfig::default());
    c.register(reg("Grading", 6000, &["Log"]), T0);
    deliver_all(&mut c, &url(6000), T0);
    let generation = c.get(&url(6000)).unwrap().generation;
    let mut failed_events = 0;
    let mut clock = at(1);
    for port in 4000..4005 {
        c.register(reg("Log", port, &[]), clock);
        // Due whenever its back-off allows.
        let d = (0..10_000)
            .find_map(|_| {
                clock = clock.plus(Duration::from_millis(100));
                c.next_delivery(&url(6000), generation, clock)
            })
            .expect("a delivery comes due");
        let fx = c.delivery_failed(&d.ticket, "connection refused", clock);
        failed_events += fx
            .events
            .iter()
            .filter(|e| e.kind == EventKind::DeliveryFailed)
            .count();
    }
    assert_eq!(failed_events, 1, "one event when it starts failing");
    // It answers again: resynced; a later failure is news again.
    let later = clock.plus(Duration::from_secs(3600));
    let patches = deliver_all(&mut c, &url(6000), later);
    assert!(patches[0].resync);
    c.register(reg("Log", 4010, &[]), later);
    let d = c.next_delivery(&url(6000), generation, later).unwrap();
    let fx = c.delivery_failed(&d.ticket, "refused", later);
    assert_eq!(fx.events[0].kind, EventKind::DeliveryFailed);
}

#[test]
fn restore_rebuilds_the_catalog_and_resyncs_receivers_that_are_behind() {
    let mut c = Catalog::new(CatalogConfig::default());
    let mut ops = Vec::new();
    let r = c.register(reg("Grading", 6000, &["Log"]), T0);
    ops.extend(r.effects.persist);
    for p in deliver_all(&mut c, &url(6000), T0) {
        let _ = p;
    }
    // The delivery's ApplyView is persisted by delivery_succeeded; collect it.
    ops.push(StoreOp::ApplyView(ViewChange {
        receiver: url(6000),
        added: vec![],
        removed: vec![],
        replace: true,
    }));
    // Log registers; the patch to Grading is lost in a crash before delivery.
    ops.extend(c.register(reg("Log", 4000, &[]), at(1)).effects.persist);
    let state = crate::records::replay(&ops);
    let (mut restored, fx) = Catalog::restore(CatalogConfig::default(), state, at(10));
    assert_eq!(restored.len(), 2);
    assert_eq!(restored.revision(), c.revision());
    assert_eq!(fx.start_workers.len(), 1, "Grading is owed Log");
    let patches = deliver_all(&mut restored, &url(6000), at(10));
    assert_eq!(patches[0].added, vec![entry("Log", 4000)]);
}

// ----- the invariant, as a property ---------------------------------------

/// A receiver's table, kept the way the SDK keeps it.
fn apply(table: &mut BTreeSet<PatchEntry>, patch: &Patch) {
    if patch.resync {
        *table = patch.added.iter().cloned().collect();
        return;
    }
    for e in &patch.removed {
        table.remove(e);
    }
    table.extend(patch.added.iter().cloned());
}

#[derive(Debug, Clone)]
enum Cmd {
    Register {
        port: u16,
        service: u8,
        requires: Vec<u8>,
    },
    Deregister {
        port: u16,
    },
    Checks {
        advance_ms: u64,
        failing: Vec<u16>,
    },
    Deliver {
        port: u16,
        ok: bool,
        applied_anyway: bool,
    },
    WatchClosed {
        port: u16,
    },
    Tick {
        advance_ms: u64,
    },
    Maintenance {
        port: u16,
        on: bool,
    },
}

const NAMES: [&str; 3] = ["A", "B", "C"];

fn cmd() -> impl Strategy<Value = Cmd> {
    let port = 1u16..7;
    prop_oneof![
        3 => (port.clone(), 0u8..3, proptest::collection::vec(0u8..3, 0..3)).prop_map(
            |(port, service, requires)| Cmd::Register { port, service, requires }
        ),
        1 => port.clone().prop_map(|port| Cmd::Deregister { port }),
        3 => (0u64..1500, proptest::collection::vec(1u16..7, 0..4))
            .prop_map(|(advance_ms, failing)| Cmd::Checks { advance_ms, failing }),
        4 => (port.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(port, ok, applied_anyway)| Cmd::Deliver { port, ok, applied_anyway }),
        1 => port.clone().prop_map(|port| Cmd::WatchClosed { port }),
        1 => (0u64..5000).prop_map(|advance_ms| Cmd::Tick { advance_ms }),
        1 => (port.clone(), any::<bool>()).prop_map(|(port, on)| Cmd::Maintenance { port, on }),
    ]
}

#[derive(Default)]
struct Sim {
    tables: BTreeMap<ServiceUrl, BTreeSet<PatchEntry>>,
    workers: BTreeSet<(ServiceUrl, u64)>,
}

impl Sim {
    fn absorb(&mut self, fx: &Effects) {
        for w in &fx.start_workers {
            assert!(
                self.workers.insert((w.receiver.clone(), w.generation)),
                "a second worker for one receiver"
            );
        }
    }

    /// One step of the worker of `port`.
    fn step(&mut self, c: &mut Catalog, port: u16, ok: bool, applied: bool, now: Timestamp) {
        let Some((receiver, generation)) =
            self.workers.iter().find(|(u, _)| *u == url(port)).cloned()
        else {
            return;
        };
        let Some(d) = c.next_delivery(&receiver, generation, now) else {
            self.workers.remove(&(receiver, generation));
            return;
        };
        assert!(
            d.patch.added.iter().all(|e| !d.patch.removed.contains(e)),
            "an entry both added and removed: receivers disagree on the order"
        );
        // A re-registered instance may still hold its old table: only the
        // initial patch's `Resync` (complete list) sets it right.
        let table = self.tables.entry(receiver.clone()).or_default();
        if ok || applied {
            apply(table, &d.patch);
        }
        let fx = if ok {
            c.delivery_succeeded(&d.ticket, now)
        } else {
            c.delivery_failed(&d.ticket, "injected", now)
        };
        self.absorb(&fx);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_receiver_ends_up_holding_exactly_the_healthy_providers(
        cmds in proptest::collection::vec(cmd(), 1..60),
        queue_limit in prop_oneof![Just(2usize), Just(64usize)],
    ) {
        let config = CatalogConfig {
            deregister_after: Duration::from_secs(86_400),
            delivery: delivery::DeliveryPolicy {
                queue_limit,
                ..delivery::DeliveryPolicy::default()
            },
            ..CatalogConfig::default()
        };
        let mut c = Catalog::new(config);
        let mut sim = Sim::default();
        let mut now = T0;
        for cmd in cmds {
            match cmd {
                Cmd::Register { port, service, requires } => {
                    let requires: Vec<&str> = requires.iter().map(|i| NAMES[*i as usize]).collect();
                    // A re-registration replaces the worker's generation.
                    sim.workers.retain(|(u, _)| *u != url(port));
                    let r = c.register(reg(NAMES[service as usize], port, &requires), now);
                    sim.absorb(&r.effects);
                }
                Cmd::Deregister { port } => {
                    if let Some(fx) = c.deregister(&url(port), now) {
                        sim.absorb(&fx);
                    }
                    sim.workers.retain(|(u, _)| *u != url(port));
                    sim.tables.remove(&url(port));
                }
                Cmd::Checks { advance_ms, failing } => {
                    now = now.plus(Duration::from_millis(advance_ms));
                    let fx = run_checks(&mut c, now, &failing);
                    sim.absorb(&fx);
                }
                Cmd::Deliver { port, ok, applied_anyway } => {
                    sim.step(&mut c, port, ok, applied_anyway, now);
                }
                Cmd::WatchClosed { port } => {
                    let fx = c.lost_contact(&url(port), now);
                    sim.absorb(&fx);
                }
                Cmd::Tick { advance_ms } => {
                    now = now.plus(Duration::from_millis(advance_ms));
                    let fx = c.tick(now);
                    sim.absorb(&fx);
                }
                Cmd::Maintenance { port, on } => {
                    if let Some(fx) = c.set_maintenance(&url(port), on, now) {
                        sim.absorb(&fx);
                    }
                }
            }
        }
        // Quiesce: every receiver answers from now on.
        for _ in 0..200 {
            now = now.plus(Duration::from_secs(61));
            let fx = c.tick(now);
            sim.absorb(&fx);
            let ports: Vec<u16> = sim
                .workers
                .iter()
                .map(|(u, _)| u.as_str()[17..].parse().unwrap())
                .collect();
            if ports.is_empty() {
                break;
            }
            for port in ports {
                for _ in 0..10 {
                    sim.step(&mut c, port, true, true, now);
                }
            }
        }
        prop_assert!(sim.workers.is_empty(), "workers never went idle");
        // The counts /metrics shows without walking the catalog.
        let critical = c.instances().filter(|i| i.status() == Health::Critical).count();
        prop_assert_eq!(c.critical_count(), critical);
        let owed = c
            .instances()
            .filter(|i| i.receiver().is_some_and(|r| r.resync.is_some()))
            .count();
        prop_assert_eq!(c.owed_resyncs(), owed);
        for instance in c.instances() {
            if instance.receiver().is_none() {
                continue;
            }
            let held = sim.tables.get(instance.url()).cloned().unwrap_or_default();
            let desired = c.desired_for(instance.url());
            prop_assert_eq!(&held, &desired, "receiver {}", instance.url());
            let r = instance.receiver().unwrap();
            prop_assert_eq!(&r.confirmed, &desired);
            prop_assert!(r.resync.is_none());
        }
    }
}

/// What the store keeps of every instance.
fn durable(c: &Catalog) -> BTreeMap<ServiceUrl, (Registration, Health, Option<Timestamp>)> {
    c.instances()
        .map(|i| {
            (
                i.url().clone(),
                (i.registration.clone(), i.status(), i.maintenance()),
            )
        })
        .collect()
}

/// A change as etcd hands it back: the whole instance record.
fn as_read_back(op: StoreOp, writer: &Catalog) -> StoreOp {
    match op {
        StoreOp::SetStatus { url, .. } | StoreOp::SetMaintenance { url, .. } => {
            let i = writer.get(&url).unwrap();
            StoreOp::PutInstance {
                instance: super::records::StoredInstance {
                    registration: i.registration.clone(),
                    registered_at: i.registered_at,
                    status: i.status(),
                    status_since: i.health.since,
                    maintenance: i.maintenance(),
                },
                replaced: true,
            }
        }
        other => other,
    }
}

/// Feeds what `writer` persisted in `effects` to `follower`, as read back.
fn feed(follower: &mut Catalog, writer: &Catalog, effects: Effects, now: Timestamp) -> Effects {
    let mut out = Effects::default();
    for op in effects.persist {
        let op = as_read_back(op, writer);
        out.merge(follower.apply_remote(op.clone(), now));
        // Its own write coming back, or a record seen twice: nothing more.
        let again = follower.apply_remote(op, now);
        assert!(
            again.events.is_empty() && again.patches_queued == 0,
            "{again:?}"
        );
    }
    assert!(
        out.persist.is_empty(),
        "a replica never writes back what it read"
    );
    out
}

#[test]
fn a_replica_fed_the_records_ends_where_the_writer_is_and_tells_its_receivers() {
    let mut writer = Catalog::new(CatalogConfig::default());
    let mut replica = Catalog::new(CatalogConfig::default());
    let fx = writer.register(reg("Grading", 6000, &["Log"]), T0).effects;
    feed(&mut replica, &writer, fx, T0);
    let fx = writer.register(reg("Log", 4000, &[]), at(1)).effects;
    feed(&mut replica, &writer, fx, at(1));
    assert_eq!(durable(&writer), durable(&replica));
    // The writer checks; the replica learns the verdicts from the records.
    run_checks(&mut writer, at(1000), &[4000]);
    let fx = run_checks(&mut writer, at(1250), &[4000]);
    let told = feed(&mut replica, &writer, fx, at(1250));
    assert_eq!(told.events[0].kind, EventKind::Critical);
    assert_eq!(durable(&writer), durable(&replica));
    let fx = writer.set_maintenance(&url(6000), true, at(2000)).unwrap();
    feed(&mut replica, &writer, fx, at(2000));
    let when = writer.get(&url(4000)).unwrap().next_check().unwrap();
    run_checks(&mut writer, when, &[]);
    let when = writer.get(&url(4000)).unwrap().next_check().unwrap();
    let fx = run_checks(&mut writer, when, &[]);
    let told = feed(&mut replica, &writer, fx, when);
    assert_eq!(told.events[0].kind, EventKind::Recovered);
    assert_eq!(durable(&writer), durable(&replica));
    // The replica's receiver ends with exactly what it should hold.
    let mut held = BTreeSet::new();
    for p in deliver_all(&mut replica, &url(6000), when) {
        for e in p.removed {
            held.remove(&e);
        }
        held.extend(p.added);
    }
    assert_eq!(held, writer.desired_for(&url(6000)));
    let fx = writer.deregister(&url(4000), at(9000)).unwrap();
    let told = feed(&mut replica, &writer, fx, at(9000));
    assert_eq!(told.events[0].kind, EventKind::Deregistered);
    assert_eq!(durable(&writer), durable(&replica));
}

#[test]
fn a_replica_delivers_only_to_what_it_owns_and_resyncs_what_it_gains() {
    use super::replica::{Ownership, owner};
    let members: BTreeSet<String> = ["r1", "r2"].map(str::to_owned).into();
    let other = owner(&members, &url(6000)).unwrap().to_owned();
    let me = members.iter().find(|m| **m != other).unwrap().clone();
    let mut c = Catalog::new(CatalogConfig::default());
    c.set_ownership(Ownership::member(&me, members.clone()), T0);
    let fx = c.apply_remote(as_read_back_put(reg("Grading", 6000, &["Log"]), T0), T0);
    assert!(
        fx.start_workers.is_empty(),
        "another replica delivers to it"
    );
    c.apply_remote(as_read_back_put(reg("Log", 4000, &[]), T0), at(1));
    assert!(deliver_all(&mut c, &url(6000), at(1)).is_empty());
    assert!(
        c.take_due_checks(at(1), usize::MAX)
            .iter()
            .all(|r| c.owns(&r.url)),
        "it checks only what it owns"
    );
    // The owner goes: its receiver is ours now, resynced from what it
    // acknowledged (nothing).
    let fx = c.set_ownership(Ownership::member(&me, [me.clone()].into()), at(2));
    assert!(
        fx.start_workers.iter().any(|w| w.receiver == url(6000)),
        "{fx:?}"
    );
    let patches = deliver_all(&mut c, &url(6000), at(2));
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0].added, vec![entry("Log", 4000)]);
}

#[test]
fn lost_contact_at_a_replica_that_does_not_check_is_told_to_the_one_that_does() {
    use super::replica::{Ownership, owner};
    let members: BTreeSet<String> = ["r1", "r2"].map(str::to_owned).into();
    let checker = owner(&members, &url(4000)).unwrap().to_owned();
    let other = members.iter().find(|m| **m != checker).unwrap().clone();
    let gap = CatalogConfig::default().health.fast_recheck;
    let replica = |me: &str| {
        let mut c = Catalog::new(CatalogConfig::default());
        c.set_ownership(Ownership::member(me, members.clone()), T0);
        c.apply_remote(as_read_back_put(reg("Log", 4000, &[]), T0), T0);
        run_checks(&mut c, T0, &[]);
        c
    };
    // The stream closes at a replica that does not check it: it tells,
    // and no oftener than the checker would check (once per fast recheck).
    let mut elsewhere = replica(&other);
    let fx = elsewhere.lost_contact(&url(4000), at(10));
    assert_eq!(fx.tell_checker, vec![url(4000)]);
    assert!(!fx.schedule_changed, "it does not check it");
    let fx = elsewhere.lost_contact(&url(4000), at(20));
    assert!(fx.tell_checker.is_empty(), "{fx:?}");
    let fx = elsewhere.lost_contact(&url(4000), at(10).plus(gap));
    assert_eq!(fx.tell_checker, vec![url(4000)]);
    assert!(
        elsewhere
            .lost_contact_elsewhere(&url(4000), at(30))
            .tell_checker
            .is_empty()
    );
    // Told, the checker checks at once and takes it out on one failure;
    // told of it, the others do nothing (and tell nobody: no echo).
    let mut checks = replica(&checker);
    let fx = checks.lost_contact_elsewhere(&url(4000), at(10).plus(gap));
    assert!(fx.schedule_changed && fx.tell_checker.is_empty());
    let fx = run_checks(&mut checks, at(10).plus(gap), &[4000]);
    assert_eq!(fx.events[0].kind, EventKind::Critical);
    let mut bystander = replica(&other);
    let fx = bystander.lost_contact_elsewhere(&url(4000), at(10));
    assert!(!fx.schedule_changed && fx.tell_checker.is_empty());
    // Not clustered: nobody to tell.
    let mut alone = Catalog::new(CatalogConfig::default());
    alone.register(reg("Log", 4000, &[]), T0);
    run_checks(&mut alone, T0, &[]);
    assert!(
        alone
            .lost_contact(&url(4000), at(10))
            .tell_checker
            .is_empty()
    );
}

fn as_read_back_put(registration: Registration, now: Timestamp) -> StoreOp {
    StoreOp::PutInstance {
        instance: super::records::StoredInstance {
            registration,
            registered_at: now,
            status: Health::Passing,
            status_since: now,
            maintenance: None,
        },
        replaced: false,
    }
}

#[test]
fn an_instance_stays_small() {
    // A catalog of a million instances holds a million of these (boxed)
    // and twice as many table slots: what is rare (a receiver, check
    // history) is boxed, so the common case stays small.
    assert!(std::mem::size_of::<super::Instance>() <= 256);
    assert!(std::mem::size_of::<super::health::HealthState>() <= 40);
}
