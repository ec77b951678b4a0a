//! Delivery state for one receiver (an instance with a `ServiceUpdateURL`).
//!
//! A receiver has one ordered, bounded queue of patches and at most one patch in
//! flight, so patches arrive in order. When the queue is full, what waits in it
//! is merged into one patch with the same net effect (so a slow receiver gets
//! fewer, larger patches, and the queue's memory stays bounded). What the
//! receiver holds is tracked in two sets: `confirmed`, what it certainly holds
//! (every patch it acknowledged, applied in order), and `uncertain`, entries of
//! patches whose delivery failed (it may or may not have applied them). A failed
//! delivery drops the queue and leaves the receiver *owed a resync*: once it can
//! be reached again it is sent exactly the difference between what it may hold
//! and what it should hold — computed from the catalog at send time, never
//! guessed. That keeps the invariant: the patches a receiver applied, in order,
//! equal the healthy providers of the names it requires.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use rollcall_proto::{Patch, PatchEntry, ServiceUrl, Timestamp};

/// Delivery settings the rules use.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Most patches waiting per receiver; one more merges the waiting ones
    /// into one.
    pub queue_limit: usize,
    /// First wait before a resync after a failed delivery; doubles per failure.
    pub resync_backoff_min: Duration,
    /// Longest wait between resync attempts.
    pub resync_backoff_max: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            queue_limit: 64,
            resync_backoff_min: Duration::from_secs(1),
            resync_backoff_max: Duration::from_secs(60),
        }
    }
}

/// A patch waiting for, or in, delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub seq: u64,
    pub patch: Patch,
}

/// A receiver's debt after a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResyncOwed {
    pub not_before: Timestamp,
    pub failures: u32,
}

/// Everything the catalog knows about delivering to one receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub update_url: ServiceUrl,
    /// Bumped when the instance registers again; a worker of an older generation
    /// stops.
    pub generation: u64,
    pub confirmed: BTreeSet<PatchEntry>,
    pub uncertain: BTreeSet<PatchEntry>,
    pub queue: VecDeque<Outgoing>,
    pub in_flight: Option<Outgoing>,
    pub worker_active: bool,
    pub next_seq: u64,
    pub resync: Option<ResyncOwed>,
    /// A complete list (`Resync: true`) failed to arrive: the receiver may hold
    /// anything, so the resync must be a complete list too, even an empty one.
    pub full_resync_owed: bool,
    pub delivered: u64,
    pub failed: u64,
}

/// What [`Receiver::push`] did with a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued as `seq`.
    Queued { seq: u64 },
    /// The receiver owes a resync already; the change will be part of it.
    Folded,
    /// The queue was full: it was merged, with this patch, into one patch;
    /// `merged` patches became one.
    Coalesced { merged: usize },
}

impl Receiver {
    pub fn new(update_url: ServiceUrl, generation: u64, confirmed: BTreeSet<PatchEntry>) -> Self {
        Self {
            update_url,
            generation,
            confirmed,
            uncertain: BTreeSet::new(),
            queue: VecDeque::new(),
            in_flight: None,
            worker_active: false,
            next_seq: 1,
            resync: None,
            full_resync_owed: false,
            delivered: 0,
            failed: 0,
        }
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Queues a patch, unless a resync is owed (it will include the change).
    pub fn push(&mut self, policy: &DeliveryPolicy, patch: Patch) -> Pushed {
        if self.resync.is_some() {
            return Pushed::Folded;
        }
        if self.queue.len() >= policy.queue_limit {
            let merged = self.queue.len() + 1;
            let mut all: Vec<Patch> = self.queue.drain(..).map(|o| o.patch).collect();
            all.push(patch);
            let combined = self.merge(&all);
            let seq = self.next_seq();
            self.queue.push_back(Outgoing {
                seq,
                patch: combined,
            });
            return Pushed::Coalesced { merged };
        }
        let seq = self.next_seq();
        self.queue.push_back(Outgoing { seq, patch });
        Pushed::Queued { seq }
    }

    /// What the receiver holds once the in-flight patch is applied (assuming it
    /// succeeds; if it fails the queue is dropped anyway) — for the entries
    /// asked about only, so this costs O(log n) per entry, not a scan.
    fn held_before_queue(&self, entry: &PatchEntry) -> bool {
        match &self.in_flight {
            Some(o) if o.patch.resync => o.patch.added.contains(entry),
            Some(o) if o.patch.removed.contains(entry) => false,
            Some(o) if o.patch.added.contains(entry) => true,
            _ => self.confirmed.contains(entry),
        }
    }

    /// One patch with the net effect of `patches` applied in order: an entry is
    /// added if it ends present and was not held before, removed if it ends
    /// absent and was held. No entry is in both lists, so receivers that apply
    /// `Added` first (the Go originals) and those that apply `Removed` first
    /// agree. If one of them is a resync (a complete list), so is the result:
    /// the list after it, with the later patches applied.
    fn merge(&self, patches: &[Patch]) -> Patch {
        let revision = patches.iter().rev().find_map(|p| p.revision);
        if let Some(start) = patches.iter().rposition(|p| p.resync) {
            let base = &patches[start];
            let mut state: BTreeSet<PatchEntry> = base.added.iter().cloned().collect();
            for p in &patches[start + 1..] {
                for e in &p.removed {
                    state.remove(e);
                }
                state.extend(p.added.iter().cloned());
            }
            return Patch {
                removed: base
                    .removed
                    .iter()
                    .filter(|e| !state.contains(*e))
                    .cloned()
                    .collect(),
                added: state.into_iter().collect(),
                revision,
                resync: true,
            };
        }
        let mut last: std::collections::BTreeMap<&PatchEntry, bool> =
            std::collections::BTreeMap::new();
        for p in patches {
            for e in &p.removed {
                last.insert(e, false);
            }
            for e in &p.added {
                last.insert(e, true);
            }
        }
        let mut combined = Patch {
            revision,
            ..Patch::default()
        };
        for (entry, present) in last {
            match (self.held_before_queue(entry), present) {
                (false, true) => combined.added.push(entry.clone()),
                (true, false) => combined.removed.push(entry.clone()),
                _ => {}
            }
        }
        combined
    }

    /// Whether the worker has something to send at `now`.
    pub fn has_work(&self, now: Timestamp) -> bool {
        match self.resync {
            Some(owed) => owed.not_before <= now,
            None => !self.queue.is_empty(),
        }
    }

    /// Takes the next patch to send. `desired` is called only for a resync and
    /// must give the healthy providers the receiver should hold.
    pub fn take_next(
        &mut self,
        now: Timestamp,
        revision: u64,
        desired: impl FnOnce() -> BTreeSet<PatchEntry>,
    ) -> Option<Outgoing> {
        if self.in_flight.is_some() {
            return None;
        }
        let next = match self.resync {
            Some(owed) if owed.not_before > now => return None,
            Some(_) if self.full_resync_owed => {
                let desired = desired();
                let patch = Patch {
                    removed: self
                        .confirmed
                        .union(&self.uncertain)
                        .filter(|e| !desired.contains(*e))
                        .cloned()
                        .collect(),
                    added: desired.into_iter().collect(),
                    revision: Some(revision),
                    resync: true,
                };
                let seq = self.next_seq();
                Outgoing { seq, patch }
            }
            Some(_) => {
                let patch = resync_patch(&self.confirmed, &self.uncertain, &desired(), revision);
                if patch.added.is_empty() && patch.removed.is_empty() {
                    // Nothing is owed after all (whatever the `Resync` flag:
                    // "you hold nothing and should hold nothing" needs no
                    // saying).
                    self.resync = None;
                    self.uncertain.clear();
                    return None;
                }
                let seq = self.next_seq();
                Outgoing { seq, patch }
            }
            None => self.queue.pop_front()?,
        };
        self.in_flight = Some(next.clone());
        Some(next)
    }

    /// The in-flight patch `seq` was acknowledged: what it carried is now
    /// confirmed. Returns that patch, or `None` if `seq` is not the one in flight.
    pub fn succeeded(&mut self, seq: u64, now: Timestamp) -> Option<Patch> {
        if self.in_flight.as_ref().map(|o| o.seq) != Some(seq) {
            return None;
        }
        let done = self.in_flight.take()?.patch;
        if done.resync {
            // A resync carries the complete list: nothing else may be held.
            self.confirmed = done.added.iter().cloned().collect();
            self.full_resync_owed = false;
        } else {
            for entry in &done.removed {
                self.confirmed.remove(entry);
            }
            self.confirmed.extend(done.added.iter().cloned());
        }
        for entry in done.added.iter().chain(&done.removed) {
            self.uncertain.remove(entry);
        }
        if let Some(owed) = &mut self.resync {
            // Changes folded into the resync while it was in flight are not in
            // it: compute the difference once more, now. It is empty, and the
            // debt is settled, if nothing changed.
            owed.not_before = now;
            owed.failures = 0;
        }
        self.delivered += 1;
        Some(done)
    }

    /// The in-flight patch `seq` could not be delivered. The receiver may or may
    /// not have applied it; everything queued after it is dropped (a resync will
    /// cover it). Returns how many queued patches were dropped, or `None` if
    /// `seq` is not the one in flight.
    pub fn failed(&mut self, policy: &DeliveryPolicy, seq: u64, now: Timestamp) -> Option<usize> {
        if self.in_flight.as_ref().map(|o| o.seq) != Some(seq) {
            return None;
        }
        let failed = self.in_flight.take()?.patch;
        self.uncertain
            .extend(failed.added.iter().chain(&failed.removed).cloned());
        if failed.resync {
            self.full_resync_owed = true;
        }
        let dropped = self.queue.len();
        self.queue.clear();
        let failures = self.resync.map_or(0, |o| o.failures).saturating_add(1);
        self.resync = Some(ResyncOwed {
            not_before: now.plus(resync_backoff(policy, failures)),
            failures,
        });
        self.failed += 1;
        Some(dropped)
    }

    /// The receiver answered something else (its heartbeat passed after
    /// failing): if a resync is owed, try it now instead of after the back-off.
    pub fn reachable_again(&mut self, now: Timestamp) {
        if let Some(owed) = &mut self.resync {
            owed.not_before = owed.not_before.min(now);
        }
    }
}

/// How long to wait before resync attempt number `failures` (1-based).
pub fn resync_backoff(policy: &DeliveryPolicy, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    policy
        .resync_backoff_min
        .saturating_mul(1 << doublings)
        .min(policy.resync_backoff_max)
}

/// The patch that takes a receiver from what it may hold to `desired`:
/// everything desired that it does not certainly hold is added, everything it
/// may hold that is not desired is removed. When it certainly holds none of what
/// is desired, `Added` is the complete list and the patch says so (`Resync`).
pub fn resync_patch(
    confirmed: &BTreeSet<PatchEntry>,
    uncertain: &BTreeSet<PatchEntry>,
    desired: &BTreeSet<PatchEntry>,
    revision: u64,
) -> Patch {
    let certainly_held = |e: &PatchEntry| confirmed.contains(e) && !uncertain.contains(e);
    let added: Vec<PatchEntry> = desired
        .iter()
        .filter(|e| !certainly_held(e))
        .cloned()
        .collect();
    let removed: Vec<PatchEntry> = confirmed
        .union(uncertain)
        .filter(|e| !desired.contains(*e))
        .cloned()
        .collect();
    let resync = !confirmed.iter().any(certainly_held);
    Patch {
        resync: resync && added.len() == desired.len(),
        added,
        removed,
        revision: Some(revision),
    }
}

#[cfg(test)]
mod tests {
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
        // Back-off: nothing before 1 s has passed.
        assert!(!r.has_work(Timestamp(500)));
        assert!(r.has_work(Timestamp(1010)));
        // Now A:1 and A:3 are desired. A:2 may or may not have been removed.
        let desired = set(&[e("A", 1), e("A", 3)]);
        let resync = r.take_next(Timestamp(1010), 2, || desired.clone()).unwrap();
        assert_eq!(resync.patch.added, vec![e("A", 3)]);
        assert_eq!(resync.patch.removed, vec![e("A", 2)]);
        assert!(
            !resync.patch.resync,
            "A:1 is certainly held, so this is a difference"
        );
        r.succeeded(resync.seq, Timestamp(1010)).unwrap();
        assert_eq!(r.confirmed, desired);
        // One more look settles the debt when nothing changed meanwhile.
        assert!(
            r.take_next(Timestamp(1010), 2, || desired.clone())
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
        assert_eq!(resync_backoff(&p, 1), Duration::from_secs(1));
        assert_eq!(resync_backoff(&p, 3), Duration::from_secs(4));
        assert_eq!(resync_backoff(&p, 30), Duration::from_secs(60));
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
}
