//! The shell's side of cluster mode: whether this replica may act (its
//! lease), whether its reads may be behind (etcd unreachable), records read
//! back from etcd, who owns what, and waiting for its own writes to come
//! back through the feed.

use super::*;

/// Lost contacts waiting to be told to the replicas that check them; past
/// it they are dropped (counted), and the checker's own interval finds them.
const LOST_CONTACT_QUEUE: usize = 4096;

impl Registry {
    /// Whether this replica may act on what it owns: always, unless it is
    /// clustered and its lease may have lapsed.
    pub fn may_act(&self) -> bool {
        let until = *self
            .inner
            .lease_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        until.is_none_or(|t| tokio::time::Instant::now() < t)
    }

    /// Whether reads may be behind (cluster mode, etcd unreachable).
    pub fn is_stale(&self) -> bool {
        self.inner.stale.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Marks reads as possibly behind (or current again).
    pub fn set_stale(&self, stale: bool) {
        let was = self
            .inner
            .stale
            .swap(stale, std::sync::atomic::Ordering::Relaxed);
        if was != stale {
            if stale {
                tracing::warn!(
                    "etcd does not answer: reads are served from this replica's catalog, possibly behind"
                );
            } else {
                tracing::info!("etcd answers again");
            }
        }
    }

    /// Records until when this replica's lease surely holds.
    pub fn set_lease_until(&self, until: tokio::time::Instant) {
        *self
            .inner
            .lease_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(until);
    }

    /// Cluster mode: this replica writes through `store` and follows etcd
    /// from `revision` on.
    pub fn follow(&self, store: Arc<crate::cluster::store::EtcdStore>, revision: i64) {
        let (tx, rx) = mpsc::channel(LOST_CONTACT_QUEUE);
        if self.inner.lost_elsewhere.set(tx).is_ok() {
            self.spawn(self.clone().report_lost_contact(store.clone(), rx));
        }
        let _ = self.inner.followed.set(store);
        self.inner.fed.send_replace(revision);
    }

    /// Tells the replicas that check them about the instances this one lost
    /// contact with, up to a transaction's worth at a time.
    async fn report_lost_contact(
        self,
        store: Arc<crate::cluster::store::EtcdStore>,
        mut queue: mpsc::Receiver<ServiceUrl>,
    ) {
        let mut urls = Vec::new();
        loop {
            urls.clear();
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                n = queue.recv_many(&mut urls, crate::cluster::store::MAX_TXN_OPS) => if n == 0 {
                    return;
                },
            }
            let metrics = &self.inner.metrics;
            match store.report_lost_contact(&urls).await {
                Ok(()) => {
                    metrics.lost_contact_reported.inc_by(urls.len() as u64);
                }
                Err(e) => {
                    metrics
                        .lost_contact_reports_dropped
                        .inc_by(urls.len() as u64);
                    tracing::warn!(error = %e, instances = urls.len(), "cannot tell the replica that checks them of lost contact");
                }
            }
        }
    }

    /// Another replica lost contact with `url`: checked at once if this
    /// replica checks it.
    pub fn contact_lost_elsewhere(&self, url: &ServiceUrl) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        self.run_now(|core, now| ((), core.catalog.lost_contact_elsewhere(url, now)));
    }

    /// Applies records read back from the store (other replicas' changes),
    /// each with the etcd revision it was written at; the catalog has then
    /// followed etcd through `through`.
    pub fn apply_remote(&self, ops: Vec<(crate::catalog::records::StoreOp, i64)>, through: i64) {
        let revision = |r: i64| u64::try_from(r).unwrap_or(0);
        self.run_now(|core, now| {
            let mut effects = Effects::default();
            for (op, at) in ops {
                if let crate::catalog::records::StoreOp::ApplyView(change) = &op
                    && change.replace
                    && let Some(waiter) = core.told_elsewhere.remove(&change.receiver)
                {
                    let _ = waiter.send(true);
                }
                // Its events carry the revision it was written at.
                core.catalog.advance_revision(revision(at));
                effects.merge(core.catalog.apply_remote(op, now));
            }
            core.catalog.advance_revision(revision(through));
            ((), effects)
        });
        self.inner.fed.send_if_modified(|fed| {
            let moved = through > *fed;
            *fed = (*fed).max(through);
            moved
        });
    }

    /// Cluster mode: waits (at most `SETTLE`) until the writes this replica
    /// queued so far are committed in etcd and its catalog has followed
    /// etcd past them — so a patch tells nothing etcd has not committed,
    /// and carries the revision every replica gives that state.
    pub async fn settle_own_writes(&self) {
        const SETTLE: Duration = Duration::from_secs(5);
        let Some(store) = self.inner.followed.get() else {
            return;
        };
        let _ = tokio::time::timeout(SETTLE, async {
            if self.flush().await.is_err() {
                return;
            }
            let target = store.committed();
            let mut fed = self.inner.fed.subscribe();
            let _ = fed.wait_for(|r| *r >= target).await;
        })
        .await;
    }

    /// Who does what changed (cluster mode).
    pub fn set_ownership(&self, ownership: crate::catalog::replica::Ownership) {
        self.run_now(|core, now| ((), core.catalog.set_ownership(ownership, now)));
    }
}
