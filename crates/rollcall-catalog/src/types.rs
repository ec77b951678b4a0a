//! The catalog's values: an instance, the events it emits, and the effects a
//! command returns for the shell to carry out.

use rollcall_proto::views::{DeliveryView, InstanceView};
use rollcall_proto::{Patch, Registration, ServiceName, ServiceUrl, Timestamp};

use super::delivery::Receiver;
use super::health::{Health, HealthState, Shown};
use super::records::StoreOp;

/// One registered instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub registration: Registration,
    pub registered_at: Timestamp,
    pub health: HealthState,
    pub(super) generation: u64,
    pub(super) seed: u64,
    pub(super) checks: u64,
    pub(super) next_check: Option<Timestamp>,
    pub(super) check_in_flight: bool,
    /// Set when the instance's watch stream closed without a deregistration.
    pub(super) suspect_since: Option<Timestamp>,
    /// When a closed watch stream last pulled a check forward (at most one
    /// per `fast_recheck`).
    pub(super) pulled_forward_at: Option<Timestamp>,
    /// Since when an operator has held it out of discovery.
    pub(super) maintenance: Option<Timestamp>,
    pub(super) receiver: Option<Box<Receiver>>,
    /// Another replica checks it (cluster mode): its status is that
    /// replica's verdict, never "unchecked" here.
    pub(super) checked_elsewhere: bool,
    /// Whether its latest status change is in the store.
    pub(super) status_write: StatusWrite,
}

/// Where a status change stands with the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatusWrite {
    /// Stored (or nothing to store).
    #[default]
    Recorded,
    /// Handed to the store, not committed yet.
    Pending,
    /// The store could not commit it (etcd unreachable, a full disk): the
    /// next check writes the status again.
    Failed,
}

impl Instance {
    /// The instance as every reader is shown it (`GET /services`, the watch
    /// stream, the dashboard, DNS): the wire contract's read view.
    pub fn view(&self) -> InstanceView {
        let reg = &self.registration;
        let last = self.health.last_check();
        InstanceView {
            name: reg.name.clone(),
            url: reg.url.clone(),
            required: reg.required.clone(),
            update_url: reg
                .update_url
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            heartbeat_url: reg
                .heartbeat_url
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            meta: reg.meta.clone(),
            status: self.shown(),
            in_discovery: self.in_discovery(),
            maintenance_since: self.maintenance(),
            status_since: self.health.since,
            registered_at: self.registered_at,
            last_check: last.map(|c| c.at),
            last_check_latency_ms: last.map(|c| (c.latency.as_secs_f64() * 1e6).round() / 1e3),
            last_check_error: last.and_then(|c| c.error.clone()),
            consecutive_failures: self.health.consecutive_failures,
            next_check: self.next_check(),
            delivery: self.receiver().map(|r| DeliveryView {
                delivered: r.delivered,
                failed: r.failed,
                queued: r.queue.len() + usize::from(r.in_flight.is_some()),
                resync_owed: r.resync.is_some(),
            }),
        }
    }

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

    /// What the store holds of it.
    pub fn stored(&self) -> super::records::StoredInstance {
        super::records::StoredInstance {
            registration: self.registration.clone(),
            registered_at: self.registered_at,
            status: self.health.status,
            status_since: self.health.since,
            maintenance: self.maintenance,
        }
    }

    /// Since when an operator has held it out of discovery, if they have.
    pub fn maintenance(&self) -> Option<Timestamp> {
        self.maintenance
    }

    /// Whether another replica checks it (cluster mode): its checks' results
    /// are not here.
    pub fn checked_elsewhere(&self) -> bool {
        self.checked_elsewhere
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
        } else if self.health.last_check().is_none() && !self.checked_elsewhere {
            Shown::Unchecked
        } else {
            Shown::Passing
        }
    }

    pub fn receiver(&self) -> Option<&Receiver> {
        self.receiver.as_deref()
    }
}

/// What happened, and its kinds (part of the wire contract: the watch
/// stream's `change` events and `GET /v1/events`).
pub use rollcall_proto::views::{Event, EventKind};

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
    /// Instances this replica lost contact with but does not check (cluster
    /// mode): the replica that checks them is told through etcd.
    pub tell_checker: Vec<ServiceUrl>,
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
        self.tell_checker.extend(other.tell_checker);
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
    /// Contact was lost (see [`super::Catalog::lost_contact`]): one failure
    /// takes it out, and it has less time to answer.
    pub suspect: bool,
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
pub(super) enum Removal {
    Deregistered,
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Added,
    Removed,
}
