//! What the catalog asks the shell to persist, and what it is rebuilt from.
//!
//! The durable state is small: every instance's registration and health status,
//! the catalog revision, and for every receiver the providers it has
//! acknowledged (its confirmed view). After a restart the catalog compares each
//! confirmed view with what the receiver should hold and sends the difference,
//! so a patch lost in a crash is re-derived, not forgotten.

use std::collections::{BTreeMap, BTreeSet};

use rollcall_proto::{PatchEntry, Registration, ServiceUrl, Timestamp};

use super::health::Health;

/// One instance as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInstance {
    pub registration: Registration,
    pub registered_at: Timestamp,
    pub status: Health,
    pub status_since: Timestamp,
    /// Since when an operator has held it out of discovery, if they have.
    pub maintenance: Option<Timestamp>,
}

/// One change to the durable state. A batch of ops is applied atomically and in
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Insert or replace an instance; its confirmed view starts empty.
    /// `replaced` says whether it was registered already (a new instance has
    /// no view to clear).
    PutInstance {
        instance: StoredInstance,
        replaced: bool,
    },
    /// An instance's health status changed.
    SetStatus {
        url: ServiceUrl,
        status: Health,
        since: Timestamp,
    },
    /// An operator switched maintenance on (`Some(since)`) or off (`None`).
    SetMaintenance {
        url: ServiceUrl,
        since: Option<Timestamp>,
    },
    /// Remove an instance and its confirmed view.
    DeleteInstance(ServiceUrl),
    /// A receiver acknowledged a patch.
    ApplyView(ViewChange),
    /// The catalog revision.
    SetRevision(u64),
}

/// Everything the store holds, as loaded at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    pub instances: Vec<StoredInstance>,
    /// `(receiver, provider)` pairs of confirmed views.
    pub views: Vec<(ServiceUrl, PatchEntry)>,
    pub revision: u64,
}

/// What a patch a receiver acknowledged changes in its confirmed view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewChange {
    pub receiver: ServiceUrl,
    pub added: Vec<PatchEntry>,
    pub removed: Vec<PatchEntry>,
    /// The view becomes exactly `added`.
    pub replace: bool,
}

impl ViewChange {
    /// The receiver's view after it (what [`StoreOp::ApplyView`] means, for
    /// every store and replica alike).
    pub fn apply_to(&self, view: &mut BTreeSet<PatchEntry>) {
        if self.replace {
            view.clear();
        }
        for e in &self.removed {
            view.remove(e);
        }
        view.extend(self.added.iter().cloned());
    }
}

/// The durable state as a store holds it, with what each [`StoreOp`] does to
/// it: the memory store keeps one, and tests replay ops into one to compare
/// with what a real store holds.
#[derive(Debug, Default, Clone)]
pub struct StoreImage {
    instances: BTreeMap<ServiceUrl, StoredInstance>,
    views: BTreeMap<ServiceUrl, BTreeSet<PatchEntry>>,
    revision: u64,
}

impl StoreImage {
    /// Applies one op (an op about an unknown instance changes nothing).
    pub fn apply(&mut self, op: &StoreOp) {
        match op {
            StoreOp::PutInstance { instance, .. } => {
                let url = instance.registration.url.clone();
                self.views.remove(&url);
                self.instances.insert(url, instance.clone());
            }
            StoreOp::SetStatus { url, status, since } => {
                if let Some(i) = self.instances.get_mut(url) {
                    i.status = *status;
                    i.status_since = *since;
                }
            }
            StoreOp::SetMaintenance { url, since } => {
                if let Some(i) = self.instances.get_mut(url) {
                    i.maintenance = *since;
                }
            }
            StoreOp::DeleteInstance(url) => {
                self.instances.remove(url);
                self.views.remove(url);
            }
            StoreOp::ApplyView(change) => {
                if !self.instances.contains_key(&change.receiver) {
                    return;
                }
                change.apply_to(self.views.entry(change.receiver.clone()).or_default());
            }
            StoreOp::SetRevision(revision) => self.revision = *revision,
        }
    }

    /// Everything held, as a store loads it.
    pub fn snapshot(&self) -> StoredState {
        StoredState {
            instances: self.instances.values().cloned().collect(),
            views: self
                .views
                .iter()
                .flat_map(|(r, set)| set.iter().map(move |e| (r.clone(), e.clone())))
                .collect(),
            revision: self.revision,
        }
    }
}

/// The state `ops` leave behind, applied to an empty store.
pub fn replay(ops: &[StoreOp]) -> StoredState {
    let mut image = StoreImage::default();
    for op in ops {
        image.apply(op);
    }
    image.snapshot()
}
