//! The catalog: the registry's functional core.
//!
//! Plain data. Every command takes the current time and returns [`Effects`]:
//! records to persist, delivery workers to start, events to log and show. It
//! never does I/O, spawns nothing and reads no clock, so every rule here is
//! tested without sockets or sleeps. The registry's shell (`rollcall_registry::shell`) owns the
//! clock, the sockets, the store and the workers, and only carries out what the
//! catalog returned.
//!
//! Data: instances keyed by `ServiceURL`; an index from a service name to its
//! instances, one from a name to the receivers that require it, the check
//! schedule, and a revision that grows with every change of membership or health.
//!
//! Invariant: for every receiver, the patches it acknowledged, applied in order,
//! equal the healthy providers of the names it requires, once its queue drains.
//! (Tested as a property over random command sequences in `tests`.)

mod checks;
mod deliveries;
pub mod delivery;
pub mod health;
mod membership;
pub mod records;
pub mod replica;
mod types;

pub use types::*;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rollcall_proto::{PatchEntry, ServiceName, ServiceUrl, Timestamp};

use delivery::{DeliveryPolicy, Receiver};
use health::HealthPolicy;

/// Everything the catalog's rules depend on.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    pub health: HealthPolicy,
    pub delivery: DeliveryPolicy,
    /// An instance critical this long leaves the catalog.
    pub deregister_after: Duration,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            health: HealthPolicy::default(),
            delivery: DeliveryPolicy::default(),
            deregister_after: Duration::from_secs(600),
        }
    }
}

/// The catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    config: CatalogConfig,
    /// Boxed: a table of a million entries is twice their number of slots.
    instances: HashMap<ServiceUrl, Box<Instance>>,
    /// Ordered, so the catalog can be read a page at a time.
    by_name: std::collections::BTreeMap<ServiceName, BTreeSet<ServiceUrl>>,
    dependents: HashMap<ServiceName, BTreeSet<ServiceUrl>>,
    schedule: BTreeSet<(Timestamp, ServiceUrl)>,
    critical: BTreeSet<(Timestamp, ServiceUrl)>,
    owing: BTreeSet<ServiceUrl>,
    revision: u64,
    next_generation: u64,
    /// What this replica checks and delivers to (everything, unless
    /// clustered).
    ownership: replica::Ownership,
    ownership_epoch: u64,
    /// Events made so far (see [`Event::seq`]).
    events_made: std::cell::Cell<u64>,
}

impl Catalog {
    pub fn new(config: CatalogConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    pub fn config(&self) -> &CatalogConfig {
        &self.config
    }

    /// The catalog revision: a count of changes on one registry; in
    /// cluster mode etcd's revision, as far as this replica has followed it
    /// (the same number for the same state on every replica).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Events made so far: the next one's `seq` is higher.
    pub fn events_made(&self) -> u64 {
        self.events_made.get()
    }

    /// A change happened here. In cluster mode the revision is etcd's
    /// and moves only with [`Catalog::advance_revision`].
    fn bump_revision(&mut self) {
        if !self.ownership.is_clustered() {
            self.revision += 1;
        }
    }

    /// The catalog has followed etcd's history up to `revision`.
    pub fn advance_revision(&mut self, revision: u64) {
        self.revision = self.revision.max(revision);
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// How many instances are critical (without walking the catalog).
    pub fn critical_count(&self) -> usize {
        self.critical.len()
    }

    /// How many receivers are owed a resync (walking only those that may
    /// be).
    pub fn owed_resyncs(&self) -> usize {
        self.owing
            .iter()
            .filter(|url| {
                self.instances
                    .get(*url)
                    .and_then(|i| i.receiver.as_ref())
                    .is_some_and(|r| r.resync.is_some())
            })
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    pub fn get(&self, url: &ServiceUrl) -> Option<&Instance> {
        self.instances.get(url).map(|i| &**i)
    }

    /// All instances, in no particular order.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values().map(|i| &**i)
    }

    /// At most `limit` instances in (name, URL) order — of `only` when
    /// given — after `after`, those `keep` accepts; and whether more follow.
    /// Costs the page, not the catalog (the name index is ordered).
    pub fn page(
        &self,
        only: Option<&ServiceName>,
        after: Option<(&ServiceName, &ServiceUrl)>,
        limit: usize,
        keep: impl Fn(&Instance) -> bool,
    ) -> (Vec<&Instance>, bool) {
        use std::ops::Bound;
        let names: Box<dyn Iterator<Item = (&ServiceName, &BTreeSet<ServiceUrl>)>> = match only {
            Some(name) => Box::new(self.by_name.get_key_value(name).into_iter()),
            None => Box::new(match after {
                Some((name, _)) => self
                    .by_name
                    .range::<ServiceName, _>((Bound::Included(name), Bound::Unbounded)),
                None => self.by_name.range::<ServiceName, _>(..),
            }),
        };
        let mut out = Vec::new();
        for (name, urls) in names {
            let urls: Box<dyn Iterator<Item = &ServiceUrl>> = match after {
                Some((after_name, after_url)) if after_name == name => Box::new(
                    urls.range::<ServiceUrl, _>((Bound::Excluded(after_url), Bound::Unbounded)),
                ),
                Some((after_name, _)) if name < after_name => continue,
                _ => Box::new(urls.iter()),
            };
            for instance in urls.filter_map(|u| self.instances.get(u)) {
                if !keep(instance) {
                    continue;
                }
                if out.len() == limit {
                    return (out, true);
                }
                out.push(instance);
            }
        }
        (out, false)
    }

    /// Every registered service name, in order.
    pub fn service_names(&self) -> impl Iterator<Item = &ServiceName> {
        self.by_name
            .iter()
            .filter(|(_, urls)| !urls.is_empty())
            .map(|(name, _)| name)
    }

    /// The instances of `name` (through the name index: no scan).
    pub fn instances_of<'a>(
        &'a self,
        name: &ServiceName,
    ) -> impl Iterator<Item = &'a Instance> + 'a {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|url| self.instances.get(url).map(|i| &**i))
    }

    /// The instances that require `name` (and take patches).
    pub fn dependents_of<'a>(
        &'a self,
        name: &ServiceName,
    ) -> impl Iterator<Item = &'a Instance> + 'a {
        self.dependents
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|url| self.instances.get(url).map(|i| &**i))
    }

    /// The names that some registered receiver requires.
    pub fn required_names(&self) -> impl Iterator<Item = &ServiceName> {
        self.dependents
            .iter()
            .filter(|(_, set)| !set.is_empty())
            .map(|(name, _)| name)
    }

    /// Healthy instances of `name`.
    pub fn healthy_providers(&self, name: &ServiceName) -> Vec<ServiceUrl> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter(|url| self.instances.get(*url).is_some_and(|i| i.in_discovery()))
            .cloned()
            .collect()
    }

    /// Healthy providers of every name in `names`, as patch entries.
    pub fn desired_for_names<'a>(
        &self,
        names: impl IntoIterator<Item = &'a ServiceName>,
    ) -> BTreeSet<PatchEntry> {
        names
            .into_iter()
            .flat_map(|name| {
                self.healthy_providers(name)
                    .into_iter()
                    .map(move |url| PatchEntry::new(name.clone(), url))
            })
            .collect()
    }

    /// What the receiver at `url` should hold.
    pub fn desired_for(&self, url: &ServiceUrl) -> BTreeSet<PatchEntry> {
        match self.instances.get(url) {
            Some(i) => self.desired_for_names(&i.registration.required),
            None => BTreeSet::new(),
        }
    }

    /// Earliest scheduled check.
    pub fn next_check_due(&self) -> Option<Timestamp> {
        self.schedule.first().map(|(at, _)| *at)
    }

    fn event(
        &self,
        at: Timestamp,
        kind: EventKind,
        service: &ServiceName,
        url: &ServiceUrl,
        detail: Option<String>,
    ) -> Event {
        let seq = self.events_made.get() + 1;
        self.events_made.set(seq);
        Event {
            at,
            revision: self.revision,
            seq,
            kind,
            service: service.clone(),
            url: url.clone(),
            detail,
        }
    }

    fn receiver_mut(&mut self, url: &ServiceUrl) -> Option<&mut Receiver> {
        self.instances.get_mut(url)?.receiver.as_deref_mut()
    }

    fn receiver_of(&mut self, ticket: &PatchTicket) -> Option<&mut Receiver> {
        let instance = self.instances.get_mut(&ticket.receiver)?;
        if instance.generation != ticket.generation {
            return None;
        }
        instance.receiver.as_deref_mut()
    }
}

#[cfg(test)]
mod tests;
