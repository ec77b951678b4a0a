//! The catalog: the registry's functional core.
//!
//! Plain data. Every command takes the current time and returns [`Effects`]:
//! records to persist, delivery workers to start, events to log and show. It
//! never does I/O, spawns nothing and reads no clock, so every rule here is
//! tested without sockets or sleeps. The shell (`crate::server`) owns the
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

pub mod delivery;
pub mod health;
pub mod records;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rollcall_proto::{Patch, PatchEntry, Registration, ServiceName, ServiceUrl, Timestamp};
use serde::Serialize;

use delivery::{DeliveryPolicy, Pushed, Receiver};
use health::{CheckOutcome, Health, HealthPolicy, HealthState, Shown, Transition};
use records::{StoreOp, StoredInstance, StoredState};

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

/// One registered instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub registration: Registration,
    pub registered_at: Timestamp,
    pub health: HealthState,
    generation: u64,
    seed: u64,
    checks: u64,
    next_check: Option<Timestamp>,
    check_in_flight: bool,
    /// Set when the instance's watch stream closed without a deregistration.
    suspect_since: Option<Timestamp>,
    /// Since when an operator has held it out of discovery.
    maintenance: Option<Timestamp>,
    receiver: Option<Receiver>,
}

impl Instance {
    pub fn name(&self) -> &ServiceName {
        &self.registration.name
    }

    pub fn url(&self) -> &ServiceUrl {
        &self.registration.url
    }

    pub fn status(&self) -> Health {
        self.health.status
    }

    pub fn next_check(&self) -> Option<Timestamp> {
        self.next_check
    }

    /// Since when an operator has held it out of discovery, if they have.
    pub fn maintenance(&self) -> Option<Timestamp> {
        self.maintenance
    }

    /// Whether dependents are told about it: passing and not in maintenance.
    pub fn in_discovery(&self) -> bool {
        self.health.status == Health::Passing && self.maintenance.is_none()
    }

    /// The status people are shown.
    pub fn shown(&self) -> Shown {
        if self.maintenance.is_some() {
            Shown::Maintenance
        } else if self.health.status == Health::Critical {
            Shown::Critical
        } else if self.health.last_check.is_none() {
            Shown::Unchecked
        } else {
            Shown::Passing
        }
    }

    pub fn receiver(&self) -> Option<&Receiver> {
        self.receiver.as_ref()
    }
}

/// What happened, for the log, the metrics and the dashboard's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub at: Timestamp,
    pub revision: u64,
    pub kind: EventKind,
    pub service: ServiceName,
    pub url: ServiceUrl,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new instance.
    Registered,
    /// A known URL registered again; its entry was replaced.
    Reregistered,
    /// Removed by a deregistration.
    Deregistered,
    /// Failed its checks: out of discovery.
    Critical,
    /// Passed its checks again: back in discovery.
    Recovered,
    /// Critical for longer than `deregister_after`: removed.
    Expired,
    /// An operator took it out of discovery (it stays registered).
    MaintenanceOn,
    /// An operator put it back.
    MaintenanceOff,
    /// A patch could not be delivered to this receiver; a resync is owed.
    DeliveryFailed,
    /// A receiver that was owed a resync acknowledged the patch that settles
    /// it.
    Resynced,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Registered => "registered",
            EventKind::Reregistered => "reregistered",
            EventKind::Deregistered => "deregistered",
            EventKind::Critical => "critical",
            EventKind::Recovered => "recovered",
            EventKind::Expired => "expired",
            EventKind::MaintenanceOn => "maintenance_on",
            EventKind::MaintenanceOff => "maintenance_off",
            EventKind::DeliveryFailed => "delivery_failed",
            EventKind::Resynced => "resynced",
        }
    }
}

/// A delivery worker to start for `receiver` (none is running for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStart {
    pub receiver: ServiceUrl,
    pub generation: u64,
}

/// What a command asks the shell to do.
#[derive(Debug, Default)]
pub struct Effects {
    pub persist: Vec<StoreOp>,
    pub start_workers: Vec<WorkerStart>,
    pub events: Vec<Event>,
    /// The check schedule gained an earlier entry: wake the scheduler.
    pub schedule_changed: bool,
    pub patches_queued: u64,
    /// Queued patches merged into one because a receiver's queue was full.
    pub patches_coalesced: u64,
    /// Queued patches discarded after a failed delivery (covered by a resync).
    pub patches_dropped: u64,
}

impl Effects {
    pub fn merge(&mut self, other: Effects) {
        self.persist.extend(other.persist);
        self.start_workers.extend(other.start_workers);
        self.events.extend(other.events);
        self.schedule_changed |= other.schedule_changed;
        self.patches_queued += other.patches_queued;
        self.patches_coalesced += other.patches_coalesced;
        self.patches_dropped += other.patches_dropped;
    }
}

/// The answer to a registration.
#[derive(Debug)]
pub struct Registered {
    pub effects: Effects,
    /// The initial patch to the registrant, if it has an update URL: the
    /// registration is answered once this is delivered (or a timeout passes).
    pub initial_patch: Option<PatchTicket>,
}

/// Identifies one patch to one receiver.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PatchTicket {
    pub receiver: ServiceUrl,
    pub generation: u64,
    pub seq: u64,
}

/// A check the shell should run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    pub url: ServiceUrl,
    pub heartbeat_url: ServiceUrl,
    pub generation: u64,
    /// When it was due (the shell measures its lag from this).
    pub due: Timestamp,
    /// When it was handed out.
    pub started: Timestamp,
}

/// A patch the shell should deliver now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub ticket: PatchTicket,
    pub update_url: ServiceUrl,
    pub patch: Patch,
}

/// Why an instance left the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Deregistered,
    Expired,
}

/// The catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    config: CatalogConfig,
    instances: HashMap<ServiceUrl, Instance>,
    by_name: HashMap<ServiceName, BTreeSet<ServiceUrl>>,
    dependents: HashMap<ServiceName, BTreeSet<ServiceUrl>>,
    schedule: BTreeSet<(Timestamp, ServiceUrl)>,
    critical: BTreeSet<(Timestamp, ServiceUrl)>,
    owing: BTreeSet<ServiceUrl>,
    revision: u64,
    next_generation: u64,
}

impl Catalog {
    pub fn new(config: CatalogConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

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
            catalog.insert(stored, confirmed, now);
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

    pub fn config(&self) -> &CatalogConfig {
        &self.config
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    pub fn get(&self, url: &ServiceUrl) -> Option<&Instance> {
        self.instances.get(url)
    }

    /// All instances, in no particular order.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values()
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
            .filter_map(|url| self.instances.get(url))
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
            .filter_map(|url| self.instances.get(url))
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
            .filter(|url| self.instances.get(*url).is_some_and(Instance::in_discovery))
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

    // ----- commands -------------------------------------------------------

    /// Registers (or re-registers) an instance.
    pub fn register(&mut self, registration: Registration, now: Timestamp) -> Registered {
        let mut effects = Effects::default();
        self.revision += 1;
        let url = registration.url.clone();
        let name = registration.name.clone();
        let previous = self.remove_entry(&url);
        let previously_in = previous
            .as_ref()
            .filter(|p| p.in_discovery())
            .map(|p| p.name().clone());
        // An operator's maintenance switch outlives re-registrations: an SDK
        // service registers again whenever its stream to the registry breaks.
        let maintenance = previous.as_ref().and_then(Instance::maintenance);
        let stored = StoredInstance {
            registration,
            registered_at: now,
            status: Health::Passing,
            status_since: now,
            maintenance,
        };
        self.insert(stored.clone(), BTreeSet::new(), now);
        // Checked at once: it shows `unchecked` until this first result.
        if let Some(instance) = self.instances.get_mut(&url)
            && let Some(at) = instance.next_check.replace(now)
        {
            self.schedule.remove(&(at, url.clone()));
            self.schedule.insert((now, url.clone()));
        }
        // The newcomer learns of itself (should it require its own name) from
        // its initial patch, not from a change.
        let me = Some(&url);
        let now_in = maintenance.is_none();
        match (previously_in, now_in) {
            (Some(old), true) if old == name => {}
            (Some(old), now_in) => {
                self.notify(&old, &url, Change::Removed, me, now, &mut effects);
                if now_in {
                    self.notify(&name, &url, Change::Added, me, now, &mut effects);
                }
            }
            (None, true) => self.notify(&name, &url, Change::Added, me, now, &mut effects),
            (None, false) => {}
        }
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
        effects.persist.push(StoreOp::PutInstance {
            instance: stored,
            replaced: previous.is_some(),
        });
        effects.persist.push(StoreOp::SetRevision(self.revision));
        let kind = if previous.is_some() {
            EventKind::Reregistered
        } else {
            EventKind::Registered
        };
        effects
            .events
            .push(self.event(now, kind, &name, &url, None));
        effects.schedule_changed = true;
        Registered {
            effects,
            initial_patch,
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
        self.revision += 1;
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

    /// Hands out the checks due at `now`, at most `max` of them.
    pub fn take_due_checks(&mut self, now: Timestamp, max: usize) -> Vec<CheckRequest> {
        let mut due = Vec::new();
        while due.len() < max {
            let Some((at, _)) = self.schedule.first() else {
                break;
            };
            if *at > now {
                break;
            }
            let Some((at, url)) = self.schedule.pop_first() else {
                break;
            };
            let Some(instance) = self.instances.get_mut(&url) else {
                continue;
            };
            let Some(heartbeat_url) = instance.registration.heartbeat_url.clone() else {
                instance.next_check = None;
                continue;
            };
            instance.next_check = None;
            instance.check_in_flight = true;
            due.push(CheckRequest {
                url,
                heartbeat_url,
                generation: instance.generation,
                due: at,
                started: now,
            });
        }
        due
    }

    /// Records the result of a check handed out by [`Catalog::take_due_checks`].
    pub fn check_result(
        &mut self,
        request: &CheckRequest,
        outcome: &CheckOutcome,
        now: Timestamp,
    ) -> Effects {
        let mut effects = Effects::default();
        let policy = self.config.health.clone();
        let Some(instance) = self.instances.get_mut(&request.url) else {
            return effects;
        };
        if instance.generation != request.generation || !instance.check_in_flight {
            return effects;
        }
        instance.check_in_flight = false;
        let was_failing =
            instance.health.consecutive_failures > 0 || instance.status() == Health::Critical;
        // Suspicion raised while this check was in flight is not answered by a
        // pass of it: check again at once.
        let raised_in_flight = instance
            .suspect_since
            .is_some_and(|since| since > request.started);
        instance.health.suspect = instance.suspect_since.is_some();
        let transition = instance.health.observe(&policy, outcome, now);
        instance.checks += 1;
        let next = if outcome.passed && raised_in_flight {
            now
        } else {
            instance.suspect_since = None;
            if instance.health.undecided() {
                now.plus(policy.fast_recheck)
            } else {
                now.plus(health::jittered(
                    policy.interval,
                    instance.seed ^ instance.checks,
                ))
            }
        };
        instance.next_check = Some(next);
        let url = request.url.clone();
        let name = instance.name().clone();
        let since = instance.health.since;
        let held_out = instance.maintenance.is_some();
        // The check loop sleeps until the earliest entry it saw; a recheck of
        // its own (the fast one after a failure) may come before that.
        effects.schedule_changed = self.schedule.first().is_none_or(|(at, _)| next < *at);
        self.schedule.insert((next, url.clone()));
        match transition {
            Transition::None => {}
            Transition::WentCritical => {
                self.revision += 1;
                self.critical.insert((since, url.clone()));
                if !held_out {
                    self.notify(&name, &url, Change::Removed, None, now, &mut effects);
                }
                effects.persist.push(StoreOp::SetStatus {
                    url: url.clone(),
                    status: Health::Critical,
                    since,
                });
                effects.persist.push(StoreOp::SetRevision(self.revision));
                let detail = outcome.error.clone();
                effects
                    .events
                    .push(self.event(now, EventKind::Critical, &name, &url, detail));
            }
            Transition::Recovered => {
                self.revision += 1;
                self.critical.retain(|(_, u)| u != &url);
                if !held_out {
                    self.notify(&name, &url, Change::Added, None, now, &mut effects);
                }
                effects.persist.push(StoreOp::SetStatus {
                    url: url.clone(),
                    status: Health::Passing,
                    since,
                });
                effects.persist.push(StoreOp::SetRevision(self.revision));
                effects
                    .events
                    .push(self.event(now, EventKind::Recovered, &name, &url, None));
            }
        }
        if outcome.passed && was_failing {
            if let Some(receiver) = self.receiver_mut(&url) {
                receiver.reachable_again(now);
            }
            self.wake(&url, now, &mut effects);
        }
        effects
    }

    /// The instance's watch stream closed while it was still registered: check
    /// it at once, and take it out on the first failure.
    pub fn watch_closed(&mut self, url: &ServiceUrl, now: Timestamp) -> Effects {
        let mut effects = Effects::default();
        let Some(instance) = self.instances.get_mut(url) else {
            return effects;
        };
        if instance.registration.heartbeat_url.is_none() {
            return effects;
        }
        instance.suspect_since = Some(now);
        if !instance.check_in_flight {
            if let Some(at) = instance.next_check.replace(now) {
                self.schedule.remove(&(at, url.clone()));
            }
            self.schedule.insert((now, url.clone()));
            effects.schedule_changed = true;
        }
        effects
    }

    /// Periodic work: expire instances critical for too long; start workers for
    /// receivers whose resync back-off has passed.
    pub fn tick(&mut self, now: Timestamp) -> Effects {
        let mut effects = Effects::default();
        let limit = now.minus(self.config.deregister_after);
        while let Some((since, url)) = self.critical.first().cloned() {
            if since > limit {
                break;
            }
            self.critical.pop_first();
            if let Some(more) = self.remove(&url, Removal::Expired, now) {
                effects.merge(more);
            }
        }
        let owing: Vec<ServiceUrl> = self.owing.iter().cloned().collect();
        for url in owing {
            match self.receiver_mut(&url) {
                Some(r) if r.resync.is_some() => self.wake(&url, now, &mut effects),
                _ => {
                    self.owing.remove(&url);
                }
            }
        }
        effects
    }

    /// The next patch for the worker of `receiver` (generation `generation`) to
    /// send. `None` means the worker should stop: nothing to send now, or it is
    /// stale.
    pub fn next_delivery(
        &mut self,
        receiver: &ServiceUrl,
        generation: u64,
        now: Timestamp,
    ) -> Option<Delivery> {
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
        Some(Delivery {
            ticket: PatchTicket {
                receiver: receiver.clone(),
                generation,
                seq: outgoing.seq,
            },
            update_url: state.update_url.clone(),
            patch: outgoing.patch,
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
        effects.persist.push(StoreOp::ApplyView {
            receiver: ticket.receiver.clone(),
            added: patch.added,
            removed: patch.removed,
            replace: patch.resync,
        });
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

    /// A patch could not be delivered (after the shell's retries).
    pub fn delivery_failed(
        &mut self,
        ticket: &PatchTicket,
        error: &str,
        now: Timestamp,
    ) -> Effects {
        let mut effects = Effects::default();
        let policy = self.config.delivery.clone();
        let Some(receiver) = self.receiver_of(ticket) else {
            return effects;
        };
        let Some(dropped) = receiver.failed(&policy, ticket.seq, now) else {
            return effects;
        };
        effects.patches_dropped += dropped as u64;
        self.owing.insert(ticket.receiver.clone());
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

    // ----- internals -------------------------------------------------------

    fn event(
        &self,
        at: Timestamp,
        kind: EventKind,
        service: &ServiceName,
        url: &ServiceUrl,
        detail: Option<String>,
    ) -> Event {
        Event {
            at,
            revision: self.revision,
            kind,
            service: service.clone(),
            url: url.clone(),
            detail,
        }
    }

    fn receiver_mut(&mut self, url: &ServiceUrl) -> Option<&mut Receiver> {
        self.instances.get_mut(url)?.receiver.as_mut()
    }

    fn receiver_of(&mut self, ticket: &PatchTicket) -> Option<&mut Receiver> {
        let instance = self.instances.get_mut(&ticket.receiver)?;
        if instance.generation != ticket.generation {
            return None;
        }
        instance.receiver.as_mut()
    }

    /// Asks for a worker for `url` if it has work and none is running.
    fn wake(&mut self, url: &ServiceUrl, now: Timestamp, effects: &mut Effects) {
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
    fn notify(
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

    /// Adds an instance to every index and schedules its first check somewhere
    /// in the coming interval.
    fn insert(&mut self, stored: StoredInstance, confirmed: BTreeSet<PatchEntry>, now: Timestamp) {
        let StoredInstance {
            registration,
            registered_at,
            status,
            status_since,
            maintenance,
        } = stored;
        let health = HealthState::new(status, status_since);
        self.next_generation += 1;
        let generation = self.next_generation;
        let url = registration.url.clone();
        let seed = health::stable_hash(url.as_str()) ^ generation;
        let next_check = registration.heartbeat_url.as_ref().map(|_| {
            let offset = self
                .config
                .health
                .interval
                .mul_f64(health::unit_fraction(seed));
            now.plus(offset)
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
            Receiver::new(update_url, generation, confirmed)
        });
        self.by_name
            .entry(registration.name.clone())
            .or_default()
            .insert(url.clone());
        self.instances.insert(
            url,
            Instance {
                registration,
                registered_at,
                health,
                generation,
                seed,
                checks: 0,
                next_check,
                check_in_flight: false,
                suspect_since: None,
                maintenance,
                receiver,
            },
        );
    }

    /// Takes an instance out of every index (no notifications).
    fn remove_entry(&mut self, url: &ServiceUrl) -> Option<Instance> {
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
        Some(instance)
    }

    fn remove(&mut self, url: &ServiceUrl, why: Removal, now: Timestamp) -> Option<Effects> {
        let instance = self.remove_entry(url)?;
        let mut effects = Effects::default();
        self.revision += 1;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Added,
    Removed,
}

#[cfg(test)]
mod tests;
