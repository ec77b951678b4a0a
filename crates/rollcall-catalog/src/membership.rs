//! Membership: who is registered. Restoring from the store, registering,
//! deregistering, maintenance, and the indexes every entry lives in.

use std::collections::{BTreeSet, HashMap};

use rollcall_proto::{Patch, PatchEntry, Registration, ServiceName, ServiceUrl, Timestamp};

use super::delivery::{self, Pushed};
use super::health::{self, Health, HealthState};
use super::records::{StoreOp, StoredInstance, StoredState};
use super::*;

impl Catalog {
    /// Rebuilds the catalog from the store. Every receiver whose confirmed view
    /// differs from what it should hold is owed a resync at once.
    pub fn restore(config: CatalogConfig, state: StoredState, now: Timestamp) -> (Self, Effects) {
        let mut catalog = Self::new(config);
        catalog.revision = state.revision;
        let mut views: HashMap<ServiceUrl, BTreeSet<PatchEntry>> = HashMap::new();
        for (receiver, entry) in state.views {
            views.entry(receiver).or_default().insert(entry);
        }
        for stored in state.instances {
            let confirmed = views.remove(&stored.registration.url).unwrap_or_default();
            catalog.insert(stored, confirmed, now, FirstCheck::Spread);
        }
        let mut effects = Effects::default();
        let receivers: Vec<ServiceUrl> = catalog
            .instances
            .values()
            .filter(|i| i.receiver.is_some())
            .map(|i| i.url().clone())
            .collect();
        for url in receivers {
            let desired = catalog.desired_for(&url);
            if let Some(receiver) = catalog.receiver_mut(&url)
                && receiver.confirmed != desired
            {
                receiver.resync = Some(delivery::ResyncOwed {
                    not_before: now,
                    failures: 0,
                });
                catalog.wake(&url, now, &mut effects);
            }
        }
        effects.schedule_changed = true;
        (catalog, effects)
    }

    /// Registers (or re-registers) an instance.
    pub fn register(&mut self, registration: Registration, now: Timestamp) -> Registered {
        // An operator's maintenance switch outlives re-registrations: an SDK
        // service registers again whenever its stream to the registry breaks.
        let maintenance = self.get(&registration.url).and_then(Instance::maintenance);
        let stored = StoredInstance {
            registration,
            registered_at: now,
            status: Health::Passing,
            status_since: now,
            maintenance,
        };
        let (mut effects, initial_patch, replaced) = self.admit(stored.clone(), now);
        effects.persist.push(StoreOp::PutInstance {
            instance: stored,
            replaced,
        });
        effects.persist.push(StoreOp::SetRevision(self.revision));
        Registered {
            effects,
            initial_patch,
        }
    }

    /// Puts back an instance as it was stored before a change the store
    /// refused (a re-registration): its registration, health and
    /// maintenance, live and written again.
    pub fn reinstate(&mut self, previous: StoredInstance, now: Timestamp) -> Effects {
        let (mut effects, _, replaced) = self.admit(previous.clone(), now);
        effects.persist.push(StoreOp::PutInstance {
            instance: previous,
            replaced,
        });
        effects.persist.push(StoreOp::SetRevision(self.revision));
        effects
    }

    /// Puts `stored` in the catalog in place of what was at its URL: the
    /// receivers of its name (and of its old one) are told, its own initial
    /// patch is queued (everything it requires), its first check is due at
    /// once. Returns the effects (nothing to persist yet), the initial
    /// patch's ticket, and whether it replaced an instance.
    pub(super) fn admit(
        &mut self,
        stored: StoredInstance,
        now: Timestamp,
    ) -> (Effects, Option<PatchTicket>, bool) {
        let mut effects = Effects::default();
        self.bump_revision();
        let url = stored.registration.url.clone();
        let name = stored.registration.name.clone();
        let previous = self.remove_entry(&url);
        let previously_in = previous
            .as_ref()
            .filter(|p| p.in_discovery())
            .map(|p| p.name().clone());
        // Checked at once: it shows `unchecked` until this first result.
        self.insert(stored, BTreeSet::new(), now, FirstCheck::Now);
        let now_in = self.get(&url).is_some_and(Instance::in_discovery);
        self.tell_of_arrival(&url, previously_in, now_in, now, &mut effects);
        let desired = self.desired_for(&url);
        let revision = self.revision;
        let policy = self.config.delivery.clone();
        let mut initial_patch = None;
        if let Some(instance) = self.instances.get_mut(&url)
            && let Some(receiver) = instance.receiver.as_mut()
        {
            let patch = Patch {
                added: desired.into_iter().collect(),
                removed: Vec::new(),
                revision: Some(revision),
                resync: true,
            };
            if let Pushed::Queued { seq } = receiver.push(&policy, patch) {
                initial_patch = Some(PatchTicket {
                    receiver: url.clone(),
                    generation: instance.generation,
                    seq,
                });
                effects.patches_queued += 1;
            }
        }
        self.wake(&url, now, &mut effects);
        let kind = if previous.is_some() {
            EventKind::Reregistered
        } else {
            EventKind::Registered
        };
        effects
            .events
            .push(self.event(now, kind, &name, &url, None));
        effects.schedule_changed = true;
        (effects, initial_patch, previous.is_some())
    }

    /// Tells the receivers of `url`'s old name (it was in discovery under it)
    /// that it left, and those of its new name that it came (it is in
    /// discovery now) — nothing where nothing changed. The instance itself
    /// learns of itself from its initial patch, not from a change.
    pub(super) fn tell_of_arrival(
        &mut self,
        url: &ServiceUrl,
        previously_in: Option<rollcall_proto::ServiceName>,
        now_in: bool,
        now: Timestamp,
        effects: &mut Effects,
    ) {
        let Some(name) = self.instances.get(url).map(|i| i.name().clone()) else {
            return;
        };
        let me = Some(url);
        match (previously_in, now_in) {
            (Some(old), true) if old == name => {}
            (Some(old), now_in) => {
                self.notify(&old, url, Change::Removed, me, now, effects);
                if now_in {
                    self.notify(&name, url, Change::Added, me, now, effects);
                }
            }
            (None, true) => self.notify(&name, url, Change::Added, me, now, effects),
            (None, false) => {}
        }
    }

    /// Removes an instance; `None` if it is not registered.
    pub fn deregister(&mut self, url: &ServiceUrl, now: Timestamp) -> Option<Effects> {
        self.remove(url, Removal::Deregistered, now)
    }

    /// Switches an instance's maintenance on or off: out of discovery while on
    /// (dependents are told, as for a crash), still registered and checked.
    /// `None` if it is not registered; no effects if it already was so.
    pub fn set_maintenance(
        &mut self,
        url: &ServiceUrl,
        on: bool,
        now: Timestamp,
    ) -> Option<Effects> {
        let instance = self.instances.get_mut(url)?;
        let mut effects = Effects::default();
        if instance.maintenance.is_some() == on {
            return Some(effects);
        }
        let passing = instance.status() == Health::Passing;
        let since = on.then_some(now);
        instance.maintenance = since;
        let name = instance.name().clone();
        self.bump_revision();
        if passing {
            let change = if on { Change::Removed } else { Change::Added };
            self.notify(&name, url, change, None, now, &mut effects);
        }
        effects.persist.push(StoreOp::SetMaintenance {
            url: url.clone(),
            since,
        });
        effects.persist.push(StoreOp::SetRevision(self.revision));
        let kind = if on {
            EventKind::MaintenanceOn
        } else {
            EventKind::MaintenanceOff
        };
        effects.events.push(self.event(now, kind, &name, url, None));
        Some(effects)
    }

    /// Adds an instance to every index and schedules its first check: at
    /// once (`FirstCheck::Now`, a newcomer) or somewhere in the coming interval
    /// (`Spread`, instances restored together).
    pub(super) fn insert(
        &mut self,
        stored: StoredInstance,
        confirmed: BTreeSet<PatchEntry>,
        now: Timestamp,
        first: FirstCheck,
    ) {
        let StoredInstance {
            registration,
            registered_at,
            status,
            status_since,
            maintenance,
        } = stored;
        let mut registration = registration;
        registration.name = self.intern(&registration.name);
        registration.required = registration
            .required
            .iter()
            .map(|name| self.intern(name))
            .collect();
        let health = HealthState::new(status, status_since);
        self.next_generation += 1;
        let generation = self.next_generation;
        let url = registration.url.clone();
        let seed = health::stable_hash(url.as_str()) ^ generation;
        let next_check = registration.heartbeat_url.as_ref().map(|_| match first {
            FirstCheck::Now => now,
            FirstCheck::Spread => now.plus(
                self.config
                    .health
                    .interval
                    .mul_f64(health::unit_fraction(seed)),
            ),
        });
        if let Some(at) = next_check {
            self.schedule.insert((at, url.clone()));
        }
        if health.status == Health::Critical {
            self.critical.insert((health.since, url.clone()));
        }
        let receiver = registration.update_url.clone().map(|update_url| {
            for name in &registration.required {
                self.dependents
                    .entry(name.clone())
                    .or_default()
                    .insert(url.clone());
            }
            Box::new(Receiver::new(update_url, generation, confirmed))
        });
        self.by_name
            .entry(registration.name.clone())
            .or_default()
            .insert(url.clone());
        self.instances.insert(
            url,
            Box::new(Instance {
                registration,
                registered_at,
                health,
                generation,
                seed,
                checks: 0,
                next_check,
                check_in_flight: false,
                suspect_since: None,
                pulled_forward_at: None,
                maintenance,
                receiver,
                checked_elsewhere: false,
                status_write: StatusWrite::Recorded,
            }),
        );
    }

    /// `name`, sharing the text of the same name already in the catalog
    /// (a thousand instances of a service hold its name once).
    fn intern(&self, name: &ServiceName) -> ServiceName {
        self.by_name
            .get_key_value(name)
            .map(|(k, _)| k)
            .or_else(|| self.dependents.get_key_value(name).map(|(k, _)| k))
            .unwrap_or(name)
            .clone()
    }

    /// Takes an instance out of every index (no notifications).
    pub(super) fn remove_entry(&mut self, url: &ServiceUrl) -> Option<Instance> {
        let instance = self.instances.remove(url)?;
        if let Some(set) = self.by_name.get_mut(instance.name()) {
            set.remove(url);
            if set.is_empty() {
                self.by_name.remove(instance.name());
            }
        }
        if instance.receiver.is_some() {
            for name in &instance.registration.required {
                if let Some(set) = self.dependents.get_mut(name) {
                    set.remove(url);
                    if set.is_empty() {
                        self.dependents.remove(name);
                    }
                }
            }
        }
        if let Some(at) = instance.next_check {
            self.schedule.remove(&(at, url.clone()));
        }
        if instance.status() == Health::Critical {
            self.critical.remove(&(instance.health.since, url.clone()));
        }
        self.owing.remove(url);
        // Memory goes back as instances leave: a table is halved once it is
        // a quarter full.
        if self.instances.capacity() > 1024 && self.instances.len() < self.instances.capacity() / 4
        {
            self.instances.shrink_to(self.instances.len() * 2);
        }
        Some(*instance)
    }

    pub(super) fn remove(
        &mut self,
        url: &ServiceUrl,
        why: Removal,
        now: Timestamp,
    ) -> Option<Effects> {
        let instance = self.remove_entry(url)?;
        let mut effects = Effects::default();
        self.bump_revision();
        if instance.in_discovery() {
            self.notify(
                instance.name(),
                url,
                Change::Removed,
                None,
                now,
                &mut effects,
            );
        }
        effects.persist.push(StoreOp::DeleteInstance(url.clone()));
        effects.persist.push(StoreOp::SetRevision(self.revision));
        let kind = match why {
            Removal::Deregistered => EventKind::Deregistered,
            Removal::Expired => EventKind::Expired,
        };
        effects
            .events
            .push(self.event(now, kind, instance.name(), url, None));
        Some(effects)
    }
}

/// When a newly inserted instance is first checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FirstCheck {
    /// At once: a registration.
    Now,
    /// Somewhere in the coming interval: a restart restores many at once.
    Spread,
}
