//! Tests of the parent module.

use super::*;
use rollcall_proto::ServiceName;

fn e(name: &str, port: u16) -> PatchEntry {
    PatchEntry::new(
        ServiceName::parse(name).unwrap(),
        ServiceUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
    )
}

fn set(entries: &[PatchEntry]) -> BTreeSet<PatchEntry> {
    entries.iter().cloned().collect()
}

fn receiver() -> Receiver {
    Receiver::new(
        ServiceUrl::parse("http://r:1/services").unwrap(),
        1,
        BTreeSet::new(),
    )
}

fn added(entries: &[PatchEntry]) -> Patch {
    Patch {
        added: entries.to_vec(),
        ..Patch::default()
    }
}

#[test]
fn patches_go_out_in_order_one_at_a_time() {
    let p = DeliveryPolicy::default();
    let mut r = receiver();
    r.push(&p, added(&[e("A", 1)]));
    r.push(&p, added(&[e("A", 2)]));
    let first = r.take_next(Timestamp(0), 1, BTreeSet::new).unwrap();
    assert_eq!(first.patch.added, vec![e("A", 1)]);
    assert!(
        r.take_next(Timestamp(0), 1, BTreeSet::new).is_none(),
        "one in flight"
    );
    r.succeeded(first.seq, Timestamp(0)).unwrap();
    let second = r.take_next(Timestamp(0), 1, BTreeSet::new).unwrap();
    assert_eq!(second.patch.added, vec![e("A", 2)]);
    r.succeeded(second.seq, Timestamp(0)).unwrap();
    assert_eq!(r.confirmed, set(&[e("A", 1), e("A", 2)]));
}

#[test]
fn a_failure_drops_the_queue_and_a_resync_sends_the_exact_difference() {
    let p = DeliveryPolicy::default();
    let mut r = receiver();
    r.confirmed = set(&[e("A", 1), e("A", 2)]);
    r.push(
        &p,
        Patch {
            removed: vec![e("A", 2)],
            ..Patch::default()
        },
    );
    r.push(&p, added(&[e("A", 3)]));
    let first = r.take_next(Timestamp(0), 1, BTreeSet::new).unwrap();
    assert_eq!(r.failed(&p, first.seq, Timestamp(10)), Some(1));
    // Back-off: about 1 s (±20 %): nothing before 0.8 s, work by 1.2 s.
    assert!(!r.has_work(Timestamp(790)));
    assert!(r.has_work(Timestamp(1210)));
    // Now A:1 and A:3 are desired. A:2 may or may not have been removed.
    let desired = set(&[e("A", 1), e("A", 3)]);
    let resync = r.take_next(Timestamp(1210), 2, || desired.clone()).unwrap();
    assert_eq!(resync.patch.added, vec![e("A", 3)]);
    assert_eq!(resync.patch.removed, vec![e("A", 2)]);
    assert!(
        !resync.patch.resync,
        "A:1 is certainly held, so this is a difference"
    );
    r.succeeded(resync.seq, Timestamp(1210)).unwrap();
    assert_eq!(r.confirmed, desired);
    // One more look settles the debt when nothing changed meanwhile.
    assert!(
        r.take_next(Timestamp(1210), 2, || desired.clone())
            .is_none()
    );
    assert!(r.resync.is_none());
}

#[test]
fn a_change_during_a_resync_in_flight_is_not_lost() {
    let p = DeliveryPolicy::default();
    let mut r = receiver();
    let first = {
        r.push(&p, added(&[e("A", 1)]));
        r.take_next(Timestamp(0), 1, BTreeSet::new).unwrap()
    };
    r.failed(&p, first.seq, Timestamp(0));
    let resync = r
        .take_next(Timestamp(5_000), 2, || set(&[e("A", 1)]))
        .unwrap();
    assert!(resync.patch.resync);
    // A:2 registers while the resync is in flight.
    assert_eq!(r.push(&p, added(&[e("A", 2)])), Pushed::Folded);
    r.succeeded(resync.seq, Timestamp(5_002)).unwrap();
    let catch_up = r
        .take_next(Timestamp(5_002), 3, || set(&[e("A", 1), e("A", 2)]))
        .unwrap();
    assert_eq!(catch_up.patch.added, vec![e("A", 2)]);
}

#[test]
fn a_full_queue_is_merged_into_one_patch_with_the_same_net_effect() {
    let p = DeliveryPolicy {
        queue_limit: 3,
        ..DeliveryPolicy::default()
    };
    let mut r = receiver();
    r.confirmed = set(&[e("A", 1), e("A", 2)]);
    let removed = |entries: &[PatchEntry]| Patch {
        removed: entries.to_vec(),
        ..Patch::default()
    };
    r.push(&p, added(&[e("A", 3)]));
    r.push(&p, removed(&[e("A", 1)]));
    r.push(&p, added(&[e("A", 4)]));
    // A:2 goes and comes back; A:4 comes and goes: neither changes.
    assert_eq!(
        r.push(&p, removed(&[e("A", 2), e("A", 4)])),
        Pushed::Coalesced { merged: 4 }
    );
    r.push(&p, added(&[e("A", 2)]));
    assert_eq!(r.queue.len(), 2);
    let merged = r.take_next(Timestamp(0), 1, BTreeSet::new).unwrap();
    assert_eq!(merged.patch.added, vec![e("A", 3)]);
    assert_eq!(merged.patch.removed, vec![e("A", 1), e("A", 2)]);
    r.succeeded(merged.seq, Timestamp(0)).unwrap();
    let last = r.take_next(Timestamp(0), 1, BTreeSet::new).unwrap();
    r.succeeded(last.seq, Timestamp(0)).unwrap();
    assert_eq!(r.confirmed, set(&[e("A", 2), e("A", 3)]));
    assert!(r.resync.is_none(), "no resync: nothing was lost");
}

#[test]
fn a_failed_complete_list_is_owed_as_a_complete_list_even_when_empty() {
    let p = DeliveryPolicy::default();
    let mut r = receiver();
    r.push(
        &p,
        Patch {
            resync: true,
            ..Patch::default()
        },
    );
    let initial = r.take_next(Timestamp(0), 1, BTreeSet::new).unwrap();
    r.failed(&p, initial.seq, Timestamp(0));
    let again = r.take_next(Timestamp(5_000), 2, BTreeSet::new).unwrap();
    assert!(
        again.patch.resync && again.patch.added.is_empty(),
        "sent although empty"
    );
    r.succeeded(again.seq, Timestamp(5_000));
    assert!(!r.full_resync_owed);
    assert!(r.take_next(Timestamp(5_000), 2, BTreeSet::new).is_none());
    assert!(r.resync.is_none());
}

#[test]
fn a_merged_initial_patch_stays_a_complete_list() {
    let p = DeliveryPolicy {
        queue_limit: 1,
        ..DeliveryPolicy::default()
    };
    let mut r = receiver();
    r.push(
        &p,
        Patch {
            added: vec![e("C", 4)],
            resync: true,
            ..Patch::default()
        },
    );
    r.push(
        &p,
        Patch {
            removed: vec![e("C", 4)],
            ..Patch::default()
        },
    );
    let merged = r.take_next(Timestamp(0), 1, BTreeSet::new).unwrap();
    assert!(merged.patch.resync);
    assert!(merged.patch.added.is_empty() && merged.patch.removed.is_empty());
}

#[test]
fn back_off_doubles_and_is_capped() {
    let p = DeliveryPolicy::default();
    let within = |d: Duration, secs: f64| {
        let s = d.as_secs_f64();
        s >= secs * 0.8 && s < secs * 1.2
    };
    assert!(within(resync_backoff(&p, 1, 7), 1.0));
    assert!(within(resync_backoff(&p, 3, 7), 4.0));
    assert!(within(resync_backoff(&p, 30, 7), 60.0));
}

#[test]
fn stale_outcomes_are_ignored() {
    let p = DeliveryPolicy::default();
    let mut r = receiver();
    r.push(&p, added(&[e("A", 1)]));
    let first = r.take_next(Timestamp(0), 1, BTreeSet::new).unwrap();
    assert!(r.succeeded(first.seq + 1, Timestamp(0)).is_none());
    assert!(r.failed(&p, first.seq + 1, Timestamp(0)).is_none());
    assert!(r.succeeded(first.seq, Timestamp(0)).is_some());
}
