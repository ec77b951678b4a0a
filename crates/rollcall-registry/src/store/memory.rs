//! The in-memory store: what `--in-memory` uses. It keeps the same state the
//! SQLite store does (so the contract tests mean something), in this process
//! only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use rollcall_proto::{PatchEntry, ServiceUrl};

use super::{Store, StoreError};
use crate::catalog::records::{StoreOp, StoredInstance, StoredState};

#[derive(Debug, Default, Clone)]
struct State {
    instances: BTreeMap<ServiceUrl, StoredInstance>,
    views: BTreeMap<ServiceUrl, BTreeSet<PatchEntry>>,
    revision: u64,
}

impl State {
    fn apply(&mut self, op: &StoreOp) {
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
            StoreOp::ApplyView {
                receiver,
                added,
                removed,
                replace,
            } => {
                if !self.instances.contains_key(receiver) {
                    return;
                }
                let view = self.views.entry(receiver.clone()).or_default();
                crate::catalog::records::apply_view(view, added, removed, *replace);
            }
            StoreOp::SetRevision(revision) => self.revision = *revision,
        }
    }

    fn snapshot(&self) -> StoredState {
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

/// Keeps the catalog's durable state in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl Store for MemoryStore {
    fn load(&self) -> Result<StoredState, StoreError> {
        let state = self.state.lock().map_err(|_| StoreError::Stopped)?;
        Ok(state.snapshot())
    }

    fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let mut state = self.state.lock().map_err(|_| StoreError::Stopped)?;
        // Applying in memory cannot fail part-way, so this is all or none.
        for op in ops {
            state.apply(op);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "memory (nothing is kept on disk)".to_owned()
    }
}

/// The state `ops` leave behind, applied to an empty store (for tests).
pub fn replay(ops: &[StoreOp]) -> StoredState {
    let mut state = State::default();
    for op in ops {
        state.apply(op);
    }
    state.snapshot()
}
