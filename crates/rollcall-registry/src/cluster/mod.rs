//! A registry as one replica of several over etcd (`--etcd`).
//!
//! - **Membership**: the replica holds a lease (`--lease-ttl`) and announces
//!   itself under `{prefix}members/{its URL}` on it, renewing it every third
//!   of the TTL. Every write it makes holds only while that key is on that
//!   lease (the store's fence). A lease that could not be renewed in time
//!   — the replica was frozen, or cut off — makes it stop sending anything
//!   at once, and join again with a new lease.
//! - **The feed**: an etcd watch on the prefix, from the revision the
//!   catalog was loaded at, applies every other replica's records to this
//!   catalog in etcd's order, and follows who is a member.
//! - **Ownership**: each instance's checks and each receiver's deliveries
//!   belong to one live member (rendezvous hashing); when a member leaves,
//!   its share moves to the others, and the receivers a replica gains are
//!   resynced from their acknowledged views.
//!
//! The lease's timing is a step function ([`lease::Lease`]) on tokio's
//! clock; this module carries out what it says against etcd.

pub mod lease;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::lease::{Lease, Next};
use self::store::{Change, EtcdStore, Fence, Loaded};
use crate::Registry;
use crate::catalog::replica::Ownership;
use crate::etcd::EtcdError;

/// The longest an etcd watch may stay silent before it is opened again.
const WATCH_IDLE: Duration = Duration::from_secs(30);

/// Who is a member now, as this replica sees it.
#[derive(Debug, Default)]
struct View {
    members: BTreeSet<String>,
    /// The revision at which this replica's current membership key was
    /// written (none while it holds no lease).
    joined_at: Option<i64>,
    /// The last revision the feed applied.
    fed_to: i64,
    /// The members when it last counted itself one of them.
    last_counted: Option<BTreeSet<String>>,
}

impl View {
    /// This replica counts itself a member only once its feed has applied
    /// everything up to its own joining: what other replicas did while it
    /// was away (acknowledged views above all) is in its catalog before it
    /// acts on what it owns.
    fn counts_me(&self) -> bool {
        self.joined_at.is_some_and(|at| self.fed_to >= at)
    }
}

/// A lease this replica took, with its membership key's revision.
#[derive(Debug)]
struct Joined {
    lease: i64,
    at: i64,
    /// When it was asked for: the lease surely holds until TTL after.
    asked: Instant,
}

/// The replica's state shared by its lease loop and its feed.
#[derive(Debug)]
pub struct Replica {
    id: String,
    registry: Registry,
    store: Arc<EtcdStore>,
    ttl: Duration,
    view: Mutex<View>,
}

impl Replica {
    /// Joins the cluster (one attempt; the lease loop goes on trying) and
    /// starts the lease loop and the feed for `registry`, loaded from
    /// `store` as `loaded`; `id` is the replica's own URL.
    pub async fn start(
        registry: Registry,
        store: Arc<EtcdStore>,
        loaded: &Loaded,
        id: String,
        ttl: Duration,
        shutdown: CancellationToken,
    ) -> Arc<Replica> {
        let replica = Arc::new(Replica {
            id,
            registry: registry.clone(),
            store,
            ttl,
            view: Mutex::new(View {
                members: loaded.members.keys().cloned().collect(),
                joined_at: None,
                fed_to: loaded.revision,
                last_counted: None,
            }),
        });
        registry.follow(replica.store.clone(), loaded.revision);
        // Until it holds a lease, it owns nothing, sends nothing and writes
        // nothing.
        replica.store.set_fence(Fence::NoLease);
        registry.set_lease_until(Instant::now());
        replica.publish();
        let first = match replica.join().await {
            Ok(joined) => {
                replica.hold(&joined);
                Some(joined)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot join the cluster yet; retrying");
                None
            }
        };
        registry.spawn(replica.clone().lease_loop(first, shutdown.clone()));
        registry.spawn(replica.clone().feed(loaded.revision + 1, shutdown));
        replica
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands the catalog who owns what now. The view stays locked until
    /// the catalog has it, so the feed and the lease loop cannot hand it
    /// over in the wrong order (an older view last).
    fn publish(&self) {
        let mut view = self.view();
        let mut members = view.members.clone();
        let ownership = if view.counts_me() {
            view.last_counted = Some(members.clone());
            Ownership::member(&self.id, members)
        } else {
            members.remove(&self.id);
            match &view.last_counted {
                // Lapsed: it goes on checking its share from before.
                Some(last) if view.joined_at.is_none() => {
                    Ownership::lapsed(&self.id, members, last.clone())
                }
                _ => Ownership::member(&self.id, members),
            }
        };
        if self.registry.read(|c| c.ownership() != &ownership) {
            tracing::info!(members = ?ownership.members(), "cluster membership changed");
            self.registry.set_ownership(ownership);
        }
        drop(view);
    }

    fn set_joined(&self, joined_at: Option<i64>) {
        self.view().joined_at = joined_at;
        self.publish();
    }

    /// Takes a lease and puts the membership key on it.
    async fn join(&self) -> Result<Joined, EtcdError> {
        let asked = Instant::now();
        let etcd = self.store.etcd();
        let lease = etcd.grant(self.ttl).await?;
        let at = etcd
            .put(
                &self.store.member_key(&self.id),
                self.id.as_bytes(),
                Some(lease),
            )
            .await?;
        Ok(Joined { lease, at, asked })
    }

    /// Acts on a lease just taken: writes are fenced on it, and the replica
    /// counts itself a member once its feed has caught up.
    fn hold(&self, joined: &Joined) {
        self.registry.set_stale(false);
        self.store
            .set_fence(Fence::Lease(self.store.member_key(&self.id), joined.lease));
        self.registry.set_lease_until(joined.asked + self.ttl);
        self.set_joined(Some(joined.at));
        self.registry.metrics().cluster_joins.inc();
        tracing::info!(id = %self.id, lease = joined.lease, "joined the cluster");
    }

    /// Stops acting on a lease that may be gone.
    fn lapse(&self) {
        tracing::warn!(id = %self.id, "the lease lapsed: acting on nothing until it joins again");
        self.store.set_fence(Fence::NoLease);
        self.registry.set_lease_until(Instant::now());
        self.set_joined(None);
    }

    /// Holds the lease taken at start (`first`), renewing it; joins again
    /// with a new one whenever it lapses. Revokes it at shutdown, so the
    /// others take over at once. When to do what is [`Lease`]'s to say.
    async fn lease_loop(self: Arc<Self>, first: Option<Joined>, shutdown: CancellationToken) {
        let etcd = self.store.etcd().clone();
        let mut lease = Lease::new(self.ttl);
        if let Some(first) = first {
            lease.joined(first.lease, first.asked);
        }
        loop {
            let next = lease.next(Instant::now());
            if shutdown.is_cancelled() {
                break;
            }
            match next {
                Next::Wait(time) => tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(time) => {}
                },
                Next::Join => {
                    // Whatever was queued for the store under the lease that
                    // lapsed is refused before a new lease lets writes
                    // through again.
                    let _ = self.registry.flush().await;
                    match self.join().await {
                        Ok(joined) => {
                            lease.joined(joined.lease, joined.asked);
                            self.hold(&joined);
                        }
                        Err(e) => {
                            self.registry.set_stale(true);
                            if lease.join_failed(Instant::now()) {
                                tracing::warn!(error = %e, "cannot join the cluster; retrying");
                            }
                        }
                    }
                }
                Next::Renew(id) => {
                    let asked = Instant::now();
                    match etcd.keep_alive(id).await {
                        Ok(_) => {
                            lease.renewed(asked);
                            if let Some(until) = lease.valid_until() {
                                self.registry.set_lease_until(until);
                            }
                            self.registry.set_stale(false);
                        }
                        Err(EtcdError::Rejected(e)) => {
                            tracing::warn!(error = %e, "the lease is gone");
                            lease.renewal_failed(Instant::now(), true);
                        }
                        Err(e) => {
                            self.registry.set_stale(true);
                            tracing::warn!(error = %e, "cannot renew the lease");
                            lease.renewal_failed(Instant::now(), false);
                        }
                    }
                }
                Next::Lapsed(_) => self.lapse(),
            }
        }
        if let Some(id) = lease.id() {
            let _ = etcd.revoke(id).await;
        }
        self.store.set_fence(Fence::NoLease);
    }

    /// Applies every change etcd reports under the prefix, in order, from
    /// `next` on; reconnects where it left off.
    async fn feed(self: Arc<Self>, mut next: i64, shutdown: CancellationToken) {
        let etcd = self.store.etcd().clone();
        let prefix = self.store.prefix().as_bytes().to_vec();
        while !shutdown.is_cancelled() {
            let watch = tokio::select! {
                () = shutdown.cancelled() => break,
                watch = etcd.watch(&prefix, next) => watch,
            };
            let mut watch = match watch {
                Ok(watch) => watch,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot watch etcd; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
            };
            loop {
                // A stream silent this long may be held by a member that is
                // cut off: start another from where this one left off (it
                // loses nothing: it resumes from the next revision).
                let batch = tokio::select! {
                    () = shutdown.cancelled() => return,
                    batch = tokio::time::timeout(WATCH_IDLE, watch.next()) => match batch {
                        Ok(batch) => batch,
                        Err(_) => break,
                    },
                };
                match batch {
                    Ok(batch) => {
                        let last = self.apply(&batch.events);
                        next = next.max(last + 1);
                    }
                    Err(EtcdError::Compacted(at)) => {
                        // The history it missed is gone: read the whole state
                        // again and apply the difference.
                        tracing::warn!(
                            compacted = at,
                            "the watch fell behind etcd's history; reloading"
                        );
                        match self.store.load_all().await {
                            Ok(loaded) => {
                                self.store.forget_own_through(loaded.revision);
                                self.reload(loaded.state, loaded.revision);
                                next = loaded.revision + 1;
                                {
                                    let mut view = self.view();
                                    view.members = loaded.members.keys().cloned().collect();
                                    view.fed_to = view.fed_to.max(loaded.revision);
                                }
                                self.publish();
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot reload from etcd"),
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "the etcd watch ended; resuming");
                        break;
                    }
                }
            }
        }
    }

    /// Applies one batch of events; the highest revision seen.
    fn apply(&self, events: &[crate::etcd::Event]) -> i64 {
        let mut records = Vec::new();
        let mut lost_contact = Vec::new();
        let mut members_changed = false;
        let mut last = 0;
        for event in events {
            last = last.max(match event {
                crate::etcd::Event::Put(kv) => kv.mod_revision,
                crate::etcd::Event::Delete { mod_revision, .. } => *mod_revision,
            });
            match self.store.decode(event) {
                Ok(Change::Record(op)) => records.push((op, last)),
                Ok(Change::Member(id, url)) => {
                    let mut view = self.view();
                    members_changed |= match url {
                        Some(_) => view.members.insert(id),
                        None => view.members.remove(&id),
                    };
                }
                Ok(Change::LostContact(url)) => lost_contact.push(url),
                Ok(Change::Own) => {}
                Err(e) => tracing::error!(error = %e, "an unreadable record in etcd; skipped"),
            }
        }
        self.registry.apply_remote(records, last);
        for url in &lost_contact {
            self.registry.contact_lost_elsewhere(url);
        }
        let caught_up = {
            let mut view = self.view();
            let before = view.counts_me();
            view.fed_to = view.fed_to.max(last);
            !before && view.counts_me()
        };
        if members_changed || caught_up {
            self.publish();
        }
        last
    }

    /// Brings the catalog to `state` (after the feed lost its history).
    fn reload(&self, state: crate::catalog::records::StoredState, revision: i64) {
        use crate::catalog::records::{StoreOp, ViewChange};
        let present: BTreeSet<_> = state
            .instances
            .iter()
            .map(|i| i.registration.url.clone())
            .collect();
        let gone: Vec<_> = self.registry.read(|c| {
            c.instances()
                .map(|i| i.url().clone())
                .filter(|u| !present.contains(u))
                .collect()
        });
        let mut ops: Vec<StoreOp> = gone.into_iter().map(StoreOp::DeleteInstance).collect();
        ops.extend(
            state
                .instances
                .into_iter()
                .map(|instance| StoreOp::PutInstance {
                    instance,
                    replaced: true,
                }),
        );
        let mut views: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for (receiver, entry) in state.views {
            views.entry(receiver).or_default().push(entry);
        }
        ops.extend(views.into_iter().map(|(receiver, added)| {
            StoreOp::ApplyView(ViewChange {
                receiver,
                added,
                removed: Vec::new(),
                replace: true,
            })
        }));
        self.registry
            .apply_remote(ops.into_iter().map(|op| (op, revision)).collect(), revision);
    }
}
