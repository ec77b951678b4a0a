//! The in-memory store: what `--in-memory` uses. It keeps the same state the
//! SQLite store does (so the contract tests mean something), in this process
//! only.

use std::sync::Mutex;

use super::{Store, StoreError};
use crate::catalog::records::{StoreImage, StoreOp, StoredState};

/// Keeps the catalog's durable state in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<StoreImage>,
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
