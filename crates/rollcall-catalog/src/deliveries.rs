//! Deliveries: what each receiver's worker sends next, its outcomes, and
//! queueing a change for every receiver that requires a name.

use std::collections::BTreeSet;

use rollcall_proto::{Patch, PatchEntry, ServiceName, ServiceUrl, Timestamp};

use super::delivery::Pushed;
use super::records::{StoreOp, ViewChange};
use super::*;

impl Catalog {
    /// The next patch for the worker of `receiver` (generation `generation`) to
    /// send. `None` means the worker should stop: nothing to send now, or it is
    /// stale.
    pub fn next_delivery(
        &mut self,
        receiver: &ServiceUrl,
        generation: u64,
        now: Timestamp,
    ) -> Option<Delivery> {
        if !self.ownership.owns(receiver) {
            // Its deliveries moved to another replica: this worker stops.
            if let Some(r) = self.receiver_mut(receiver) {
                r.worker_active = false;
            }
            return None;
        }
        let resync_due = match self.instances.get(receiver) {
            Some(i) if i.generation == generation => i
                .receiver
                .as_ref()
                .is_some_and(|r| r.resync.is_some_and(|o| o.not_before <= now)),
            _ => return None,
        };
        let desired = if resync_due {
            self.desired_for(receiver)
        } else {
            BTreeSet::new()
        };
        let revision = self.revision;
        let state = self.instances.get_mut(receiver)?.receiver.as_mut()?;
        let Some(outgoing) = state.take_next(now, revision, || desired) else {
            state.worker_active = false;
            if state.resync.is_some() {
                self.owing.insert(receiver.clone());
            }
            return None;
        };
        let mut patch = outgoing.patch;
        if self.ownership.is_clustered() {
            // etcd's revision as this replica has followed it: on every
            // replica the same number for the same state (a queued change
            // was numbered before etcd had committed it).
            patch.revision = Some(revision);
        }
        Some(Delivery {
            ticket: PatchTicket {
                receiver: receiver.clone(),
                generation,
                seq: outgoing.seq,
            },
            update_url: state.update_url.clone(),
            patch,
        })
    }

    /// The receiver acknowledged a patch.
    pub fn delivery_succeeded(&mut self, ticket: &PatchTicket, now: Timestamp) -> Effects {
        let mut effects = Effects::default();
        let Some(receiver) = self.receiver_of(ticket) else {
            return effects;
        };
        let was_owed = receiver.resync.is_some();
        let Some(patch) = receiver.succeeded(ticket.seq, now) else {
            return effects;
        };
        receiver.failing = false;
        effects.persist.push(StoreOp::ApplyView(ViewChange {
            receiver: ticket.receiver.clone(),
            added: patch.added,
            removed: patch.removed,
            replace: patch.resync,
        }));
        if was_owed && let Some(instance) = self.instances.get(&ticket.receiver) {
            let name = instance.name().clone();
            effects.events.push(self.event(
                now,
                EventKind::Resynced,
                &name,
                &ticket.receiver,
                None,
            ));
        }
        effects
    }

    /// A patch was never sent (this replica may no longer own the
    /// receiver): it is dropped without marking anything owed; whoever owns
    /// the receiver resyncs it from the recorded view.
    pub fn delivery_abandoned(&mut self, ticket: &PatchTicket) -> Effects {
        if let Some(receiver) = self.receiver_of(ticket)
            && receiver
                .in_flight
                .as_ref()
                .is_some_and(|o| o.seq == ticket.seq)
        {
            receiver.in_flight = None;
            receiver.worker_active = false;
        }
        Effects::default()
    }

    /// A patch could not be delivered (after the shell's retries).
    pub fn delivery_failed(
        &mut self,
        ticket: &PatchTicket,
        error: &str,
        now: Timestamp,
    ) -> Effects {
        let mut effects = Effects::default();
        let policy = self.config.delivery.clone();
        let owned = self.ownership.owns(&ticket.receiver);
        let Some(receiver) = self.receiver_of(ticket) else {
            return effects;
        };
        if !owned {
            // It belongs to another replica now, which settles it from the
            // recorded view; nothing is owed from here.
            if receiver
                .in_flight
                .as_ref()
                .is_some_and(|o| o.seq == ticket.seq)
            {
                receiver.in_flight = None;
            }
            return effects;
        }
        let Some(dropped) = receiver.failed(&policy, ticket.seq, now) else {
            return effects;
        };
        effects.patches_dropped += dropped as u64;
        // One event when deliveries start failing (and `Resynced` when they
        // work again): a receiver that stays down, a crashed instance
        // waiting out `--deregister-after`, does not log every retry.
        let already_failing = std::mem::replace(&mut receiver.failing, true);
        self.owing.insert(ticket.receiver.clone());
        if already_failing {
            return effects;
        }
        if let Some(instance) = self.instances.get(&ticket.receiver) {
            let name = instance.name().clone();
            effects.events.push(self.event(
                now,
                EventKind::DeliveryFailed,
                &name,
                &ticket.receiver,
                Some(error.to_owned()),
            ));
        }
        effects
    }

    /// Asks for a worker for `url` if it has work and none is running.
    pub(super) fn wake(&mut self, url: &ServiceUrl, now: Timestamp, effects: &mut Effects) {
        if !self.ownership.owns(url) {
            // Another replica delivers to it.
            return;
        }
        let Some(instance) = self.instances.get_mut(url) else {
            return;
        };
        let generation = instance.generation;
        let Some(receiver) = instance.receiver.as_mut() else {
            return;
        };
        if !receiver.worker_active && receiver.has_work(now) {
            receiver.worker_active = true;
            effects.start_workers.push(WorkerStart {
                receiver: url.clone(),
                generation,
            });
        }
    }

    /// Tells every receiver that requires `name` that `url` came or went.
    pub(super) fn notify(
        &mut self,
        name: &ServiceName,
        url: &ServiceUrl,
        change: Change,
        skip: Option<&ServiceUrl>,
        now: Timestamp,
        effects: &mut Effects,
    ) {
        let Some(receivers) = self.dependents.get(name) else {
            return;
        };
        let receivers: Vec<ServiceUrl> = receivers.iter().cloned().collect();
        let entry = PatchEntry::new(name.clone(), url.clone());
        let policy = self.config.delivery.clone();
        let revision = self.revision;
        for receiver_url in receivers {
            if skip == Some(&receiver_url) {
                continue;
            }
            let Some(receiver) = self.receiver_mut(&receiver_url) else {
                continue;
            };
            let mut patch = Patch {
                revision: Some(revision),
                ..Patch::default()
            };
            match change {
                Change::Added => patch.added.push(entry.clone()),
                Change::Removed => patch.removed.push(entry.clone()),
            }
            match receiver.push(&policy, patch) {
                Pushed::Queued { .. } => effects.patches_queued += 1,
                Pushed::Folded => {}
                Pushed::Coalesced { merged } => {
                    effects.patches_queued += 1;
                    effects.patches_coalesced += merged as u64;
                }
            }
            self.wake(&receiver_url, now, effects);
        }
    }
}
