//! The catalog as one replica of several (cluster mode): changes other
//! replicas made arrive as store records (from etcd's watch) and are applied
//! with the notifications they imply, and work is divided — each instance's
//! checks and each receiver's deliveries belong to exactly one live replica,
//! chosen by rendezvous hashing of its URL over the members.
//!
//! Applying a record that the catalog already reflects (the replica's own
//! writes come back through the watch too) changes nothing and tells
//! nobody. Records are applied in etcd's order on every replica, so every
//! replica ends with the same instances and statuses.

use std::collections::BTreeSet;

use rollcall_proto::{PatchEntry, ServiceUrl, Timestamp};

use super::delivery;
use super::health::{self, Health, HealthState};
use super::records::{StoreOp, StoredInstance};
use super::*;

/// Which replica does what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    /// This replica's id; `None`: not clustered, it owns everything.
    me: Option<String>,
    /// The live replicas (this one included while its lease holds).
    members: BTreeSet<String>,
    /// While this replica's lease has lapsed (etcd unreachable, or it was
    /// frozen): the members it last counted itself among. It goes on
    /// checking its share of them, so that what it reads out stays as
    /// current as it can keep it, but owns nothing: it delivers nothing,
    /// and the status changes it sees wait for etcd.
    lapsed_from: Option<BTreeSet<String>>,
}

impl Ownership {
    /// One replica among `members` (a replica missing from them — its lease
    /// expired — owns nothing).
    pub fn member(me: &str, members: BTreeSet<String>) -> Self {
        Self {
            me: Some(me.to_owned()),
            members,
            lapsed_from: None,
        }
    }

    /// A replica whose lease lapsed, out of `members`, that last counted
    /// itself among `last`.
    pub fn lapsed(me: &str, members: BTreeSet<String>, last: BTreeSet<String>) -> Self {
        Self {
            lapsed_from: Some(last),
            ..Self::member(me, members)
        }
    }

    /// Whether this replica checks `url`: what it owns, and while its lease
    /// has lapsed, its share from before.
    pub fn checks(&self, url: &ServiceUrl) -> bool {
        self.owns(url)
            || match (&self.me, &self.lapsed_from) {
                (Some(me), Some(last)) => owner(last, url) == Some(me.as_str()),
                _ => false,
            }
    }

    /// Whether this replica checks `url` and delivers to it.
    pub fn owns(&self, url: &ServiceUrl) -> bool {
        match &self.me {
            None => true,
            Some(me) => owner(&self.members, url) == Some(me.as_str()),
        }
    }

    /// Whether this catalog is one replica of several.
    pub fn is_clustered(&self) -> bool {
        self.me.is_some()
    }

    pub fn members(&self) -> &BTreeSet<String> {
        &self.members
    }

    /// The member that owns `url` (none when not clustered).
    fn owner_of(&self, url: &ServiceUrl) -> Option<&str> {
        self.me.as_ref()?;
        owner(&self.members, url)
    }
}

/// The member that owns `url`: the highest hash of (member, url)
/// (rendezvous hashing — when a member leaves only its share moves).
pub fn owner<'a>(members: &'a BTreeSet<String>, url: &ServiceUrl) -> Option<&'a str> {
    let of_url = mix(health::stable_hash(url.as_str()));
    members
        .iter()
        .max_by_key(|m| mix(health::stable_hash(m) ^ of_url))
        .map(String::as_str)
}

/// SplitMix64's finalizer: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Catalog {
    pub fn ownership(&self) -> &Ownership {
        &self.ownership
    }

    /// Whether this replica checks and delivers to `url`.
    pub fn owns(&self, url: &ServiceUrl) -> bool {
        self.ownership.owns(url)
    }

    /// Grows whenever who owns what changes: a delivery is carried on only
    /// under the ownership it started with (a replica that lost a receiver
    /// and got it back must not finish a patch from before).
    pub fn ownership_epoch(&self) -> u64 {
        self.ownership_epoch
    }

    /// The live replicas changed (or this one's lease did): what this replica
    /// newly owns is checked at once, and every receiver it newly owns is
    /// resynced — from its acknowledged view when its previous owner is
    /// still a member, with the complete list when that owner is gone
    /// (whatever a patch queued here before said).
    pub fn set_ownership(&mut self, ownership: Ownership, now: Timestamp) -> Effects {
        if ownership == self.ownership {
            return Effects::default();
        }
        // Deliveries started under the old ownership stop (see
        // `ownership_epoch`), even where it comes back to the same owner.
        self.ownership_epoch += 1;
        let before = std::mem::replace(&mut self.ownership, ownership);
        let mut effects = Effects::default();
        // What it no longer owns, it owes nothing: the new owner settles it
        // from the recorded view.
        let lost: Vec<ServiceUrl> = self
            .instances
            .keys()
            .filter(|url| before.owns(url) && !self.ownership.owns(url))
            .cloned()
            .collect();
        for url in lost {
            self.owing.remove(&url);
            if let Some(r) = self.receiver_mut(&url) {
                r.uncertain.clear();
                r.resync = None;
                r.full_resync_owed = false;
                r.queue.clear();
            }
        }
        let gained: Vec<ServiceUrl> = self
            .instances
            .keys()
            .filter(|url| self.ownership.owns(url) && !before.owns(url))
            .cloned()
            .collect();
        for url in gained {
            let desired = self.desired_for(&url);
            // Every instance it could hold: a classic receiver reads only
            // `Added`/`Removed`, so a complete list names what is out too.
            let known: BTreeSet<PatchEntry> = self
                .get(&url)
                .map(|i| i.registration.required.clone())
                .unwrap_or_default()
                .iter()
                .flat_map(|name| {
                    self.instances_of(name)
                        .map(|i| PatchEntry::new(name.clone(), i.url().clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let Some(instance) = self.instances.get_mut(&url) else {
                continue;
            };
            if let Some(at) = instance.next_check
                && at > now
            {
                self.schedule.remove(&(at, url.clone()));
                self.schedule.insert((now, url.clone()));
                instance.next_check = Some(now);
                effects.schedule_changed = true;
            }
            // Taken from a replica that is gone (killed, frozen, cut off):
            // its last acknowledgements may never have reached the store, so
            // the receiver may hold more than its recorded view. It gets the
            // complete list, guessing nothing. Taken over from one still
            // here (a replica joined), the recorded view is its state.
            let from_gone = before
                .owner_of(&url)
                .is_some_and(|previous| !self.ownership.members.contains(previous));
            if let Some(receiver) = instance.receiver.as_mut() {
                receiver.queue.clear();
                if from_gone {
                    receiver.full_resync_owed = true;
                    receiver.uncertain.extend(known);
                }
                if from_gone || receiver.confirmed != desired || !receiver.uncertain.is_empty() {
                    receiver.resync = Some(delivery::ResyncOwed {
                        not_before: now,
                        failures: 0,
                    });
                }
            }
            self.wake(&url, now, &mut effects);
        }
        effects
    }

    /// Applies a record another replica (or this one) wrote, as read back
    /// from the store. Returns what it implies here — notifications,
    /// events — and never anything to persist.
    pub fn apply_remote(&mut self, op: StoreOp, now: Timestamp) -> Effects {
        let mut effects = match op {
            StoreOp::PutInstance { instance, .. } => self.remote_put(instance, now),
            StoreOp::SetStatus { url, status, since } => {
                self.remote_status(&url, status, since, now)
            }
            StoreOp::SetMaintenance { url, since } => self.remote_maintenance(&url, since, now),
            StoreOp::DeleteInstance(url) => self
                .remove(&url, Removal::Deregistered, now)
                .unwrap_or_default(),
            StoreOp::ApplyView(change) => {
                // Another replica delivered this (this replica's own writes
                // never come back here): it is what the receiver holds.
                let owned = self.owns(&change.receiver);
                if let Some(r) = self.receiver_mut(&change.receiver) {
                    if !owned {
                        // What this replica tried and failed to send while
                        // it owned the receiver is settled by the owner now.
                        r.uncertain.clear();
                        r.resync = None;
                        r.full_resync_owed = false;
                        r.queue.clear();
                    }
                    change.apply_to(&mut r.confirmed);
                }
                Effects::default()
            }
            StoreOp::SetRevision(revision) => {
                self.revision = self.revision.max(revision);
                Effects::default()
            }
        };
        effects.persist.clear();
        effects
    }

    fn remote_put(&mut self, stored: StoredInstance, now: Timestamp) -> Effects {
        let url = stored.registration.url.clone();
        if let Some(local) = self.instances.get(&url)
            && local.registration == stored.registration
            && local.registered_at == stored.registered_at
        {
            // The same registration: only its status or maintenance moved.
            let mut effects = self.remote_maintenance(&url, stored.maintenance, now);
            effects.merge(self.remote_status(&url, stored.status, stored.status_since, now));
            return effects;
        }
        // A new instance, or a registration that replaced one: its first
        // patch is sent by its owner.
        self.admit(stored, now).0
    }

    fn remote_status(
        &mut self,
        url: &ServiceUrl,
        status: Health,
        since: Timestamp,
        now: Timestamp,
    ) -> Effects {
        let mut effects = Effects::default();
        let Some(instance) = self.instances.get_mut(url) else {
            return effects;
        };
        // Another replica's verdict is in the store now, newer than any
        // this one failed to write.
        instance.status_write = StatusWrite::Recorded;
        if instance.health.status == status {
            return effects;
        }
        let old_since = instance.health.since;
        // Keep what this replica saw of its checks; take the status.
        let mut health = HealthState::new(status, since);
        health.log = instance.health.log.take();
        instance.health = health;
        let held_out = instance.maintenance.is_some();
        let name = instance.name().clone();
        self.bump_revision();
        let (change, kind) = match status {
            Health::Critical => {
                self.critical.insert((since, url.clone()));
                (Change::Removed, EventKind::Critical)
            }
            Health::Passing => {
                self.critical.remove(&(old_since, url.clone()));
                (Change::Added, EventKind::Recovered)
            }
        };
        if !held_out {
            self.notify(&name, url, change, None, now, &mut effects);
        }
        effects.events.push(self.event(now, kind, &name, url, None));
        effects
    }

    fn remote_maintenance(
        &mut self,
        url: &ServiceUrl,
        since: Option<Timestamp>,
        now: Timestamp,
    ) -> Effects {
        let on = since.is_some();
        match self.instances.get_mut(url) {
            Some(instance) if instance.maintenance.is_some() != on => {
                // The switch itself, with the notifications it implies; then
                // the time it was thrown, as stored.
                let mut effects = self.set_maintenance(url, on, now).unwrap_or_default();
                if let Some(instance) = self.instances.get_mut(url) {
                    instance.maintenance = since;
                }
                effects.persist.clear();
                effects
            }
            _ => Effects::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(port: u16) -> ServiceUrl {
        ServiceUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap()
    }

    #[test]
    fn every_url_has_one_owner_and_a_leaving_member_moves_only_its_share() {
        let three: BTreeSet<String> = ["a", "b", "c"].map(str::to_owned).into();
        let two: BTreeSet<String> = ["a", "b"].map(str::to_owned).into();
        let mut counts = std::collections::BTreeMap::new();
        for port in 1..=3000 {
            let owner3 = owner(&three, &url(port)).unwrap();
            *counts.entry(owner3).or_insert(0) += 1;
            let owner2 = owner(&two, &url(port)).unwrap();
            if owner3 != "c" {
                assert_eq!(owner3, owner2, "only c's share moves");
            }
            let owned_by: Vec<_> = ["a", "b", "c"]
                .iter()
                .filter(|m| Ownership::member(m, three.clone()).owns(&url(port)))
                .collect();
            assert_eq!(owned_by.len(), 1);
        }
        for (member, n) in counts {
            assert!((800..1200).contains(&n), "{member} owns {n} of 3000");
        }
        assert!(
            !Ownership::member("gone", three).owns(&url(1)),
            "a lapsed member owns nothing"
        );
        assert!(
            Ownership::default().owns(&url(1)),
            "not clustered: everything"
        );
    }
}
