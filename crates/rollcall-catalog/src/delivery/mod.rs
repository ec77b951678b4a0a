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
    /// Deliveries to it fail (since the last that arrived): its next
    /// failures back off quietly, without an event each.
    pub failing: bool,
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
            failing: false,
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
            not_before: now.plus(resync_backoff(
                policy,
                failures,
                rollcall_proto::jitter::stable_hash(self.update_url.as_str()),
            )),
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

/// How long to wait before resync attempt number `failures` (1-based), for
/// the receiver `seed` identifies (receivers that failed together spread out).
pub fn resync_backoff(policy: &DeliveryPolicy, failures: u32, seed: u64) -> Duration {
    rollcall_proto::jitter::backoff(
        policy.resync_backoff_min,
        policy.resync_backoff_max,
        failures,
        seed,
    )
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
mod tests;
