//! The store's writer: one thread that owns all writes.
//!
//! Callers reserve a place in a bounded queue *before* they change the catalog,
//! then send the ops while still holding the catalog lock, so the store sees
//! changes in exactly the catalog's order. The thread takes everything waiting
//! (up to [`MAX_GROUP`] batches) and commits it in one transaction — group
//! commit: under load, many registrations share one commit. If a group fails,
//! each batch is retried alone so one bad batch cannot sink the others.

use std::sync::Arc;
use std::time::Instant;

use rollcall_proto::prom::{Counter, Histogram};
use tokio::sync::{mpsc, oneshot};

use super::{Store, StoreError};
use crate::catalog::records::StoreOp;

/// Most batches committed in one transaction.
pub const MAX_GROUP: usize = 1024;

/// One caller's ops, and where to say whether they were committed.
#[derive(Debug)]
pub struct Batch {
    pub ops: Vec<StoreOp>,
    pub done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

/// Figures about the writer, for `/metrics`.
#[derive(Debug, Default)]
pub struct WriterMetrics {
    pub commits: Counter,
    pub batches: Counter,
    pub ops: Counter,
    pub errors: Counter,
    pub commit_seconds: Histogram,
}

/// The sending side of the writer.
#[derive(Debug, Clone)]
pub struct StoreWriter {
    tx: mpsc::Sender<Batch>,
    pub metrics: Arc<WriterMetrics>,
}

impl StoreWriter {
    /// Starts the writer thread for `store`, with room for `capacity` batches.
    /// The thread ends when every `StoreWriter` clone is dropped, after writing
    /// what is queued.
    pub fn spawn(
        store: Arc<dyn Store>,
        capacity: usize,
    ) -> Result<(Self, std::thread::JoinHandle<()>), StoreError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let metrics = Arc::new(WriterMetrics::default());
        let thread_metrics = metrics.clone();
        let handle = std::thread::Builder::new()
            .name("rollcall-store".into())
            .spawn(move || write_loop(store, rx, thread_metrics))
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        Ok((Self { tx, metrics }, handle))
    }

    /// Reserves a place for one batch; waits while the queue is full.
    pub async fn reserve(&self) -> Result<mpsc::OwnedPermit<Batch>, StoreError> {
        self.tx
            .clone()
            .reserve_owned()
            .await
            .map_err(|_| StoreError::Stopped)
    }

    /// Reserves a place without waiting (for code that cannot wait).
    pub fn try_reserve(&self) -> Option<mpsc::OwnedPermit<Batch>> {
        self.tx.clone().try_reserve_owned().ok()
    }

    /// Batches waiting to be written.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// The ops of a group, minus revision writes that a later one in the group
/// overwrites anyway (every registration bumps the revision).
fn coalesce(ops: impl Iterator<Item = StoreOp>) -> Vec<StoreOp> {
    let mut ops: Vec<StoreOp> = ops.collect();
    if let Some(last) = ops
        .iter()
        .rposition(|op| matches!(op, StoreOp::SetRevision(_)))
    {
        let mut i = 0;
        ops.retain(|op| {
            let keep = !matches!(op, StoreOp::SetRevision(_)) || i == last;
            i += 1;
            keep
        });
    }
    ops
}

fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Batch>, metrics: Arc<WriterMetrics>) {
    let mut group: Vec<Batch> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(batch) => group.push(batch),
                Err(_) => break,
            }
        }
        let ops = coalesce(group.iter().flat_map(|b| b.ops.iter().cloned()));
        let started = Instant::now();
        let result = store.apply(&ops);
        metrics.commit_seconds.observe(started.elapsed());
        metrics.commits.inc();
        metrics.batches.inc_by(group.len() as u64);
        metrics.ops.inc_by(ops.len() as u64);
        match result {
            Ok(()) => {
                for batch in group.drain(..) {
                    if let Some(done) = batch.done {
                        let _ = done.send(Ok(()));
                    }
                }
            }
            Err(group_error) => {
                tracing::warn!(error = %group_error, batches = group.len(), "store commit failed; retrying batches one by one");
                for batch in group.drain(..) {
                    let result = store.apply(&batch.ops);
                    if let Err(e) = &result {
                        metrics.errors.inc();
                        tracing::error!(error = %e, "store write failed");
                    }
                    if let Some(done) = batch.done {
                        let _ = done.send(result);
                    }
                }
            }
        }
    }
}
