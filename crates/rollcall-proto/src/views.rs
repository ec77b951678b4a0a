//! What the registry's reads answer, as types both sides share: the registry
//! writes them, the CLI, the tests and the bench read them typed.
//! `GET /services` is a list of [`InstanceView`]s (classic fields in Go
//! casing, then the instance's health).

use serde::{Deserialize, Serialize};

use crate::{Meta, ServiceName, ServiceUrl, Timestamp};

/// What people are shown: the health as dependents see it, told apart from
/// "never checked yet" and "taken out by an operator".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Shown {
    /// Checked and in discovery.
    Passing,
    /// Out of discovery: it failed its checks.
    Critical,
    /// In discovery (classic clients expect a newcomer to be announced at
    /// once) but no check has finished yet, or it has no heartbeat URL.
    Unchecked,
    /// Out of discovery by an operator's maintenance switch; still registered
    /// and still checked.
    Maintenance,
}

impl Shown {
    pub const ALL: [Shown; 4] = [
        Shown::Passing,
        Shown::Critical,
        Shown::Unchecked,
        Shown::Maintenance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Shown::Passing => "passing",
            Shown::Critical => "critical",
            Shown::Unchecked => "unchecked",
            Shown::Maintenance => "maintenance",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One instance as `GET /services` shows it: the classic fields (Go casing)
/// plus its health. Fields a registry before them did not send read as their
/// defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceView {
    #[serde(rename = "ServiceName")]
    pub name: ServiceName,
    #[serde(rename = "ServiceURL")]
    pub url: ServiceUrl,
    #[serde(rename = "RequiredServices", default)]
    pub required: Vec<ServiceName>,
    #[serde(rename = "ServiceUpdateURL", default)]
    pub update_url: String,
    #[serde(rename = "HeartbeatURL", default)]
    pub heartbeat_url: String,
    /// The instance's own labels (absent when it has none).
    #[serde(rename = "Meta", default, skip_serializing_if = "Meta::is_empty")]
    #[schema(value_type = Object)]
    pub meta: Meta,
    /// `passing`, `critical`, `unchecked` (no check finished yet) or
    /// `maintenance`.
    #[serde(rename = "Status")]
    pub status: Shown,
    /// Whether dependents are told about it (passing or unchecked, and not in
    /// maintenance).
    #[serde(rename = "InDiscovery", default)]
    pub in_discovery: bool,
    #[serde(
        rename = "MaintenanceSince",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub maintenance_since: Option<Timestamp>,
    #[serde(rename = "StatusSince", default)]
    pub status_since: Timestamp,
    #[serde(rename = "RegisteredAt", default)]
    pub registered_at: Timestamp,
    #[serde(rename = "LastCheck", default)]
    pub last_check: Option<Timestamp>,
    #[serde(rename = "LastCheckLatencyMs", default)]
    pub last_check_latency_ms: Option<f64>,
    #[serde(rename = "LastCheckError", default)]
    pub last_check_error: Option<String>,
    #[serde(rename = "ConsecutiveFailures", default)]
    pub consecutive_failures: u32,
    #[serde(rename = "NextCheck", default)]
    pub next_check: Option<Timestamp>,
    #[serde(rename = "Delivery", default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryView>,
}

impl InstanceView {
    /// Whether dependents are told about it; a registry that did not say
    /// (older) says `passing`.
    pub fn usable(&self) -> bool {
        self.in_discovery || self.status == Shown::Passing
    }
}

/// A receiver's delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryView {
    #[serde(rename = "Delivered")]
    pub delivered: u64,
    #[serde(rename = "Failed")]
    pub failed: u64,
    #[serde(rename = "Queued")]
    pub queued: usize,
    #[serde(rename = "ResyncOwed")]
    pub resync_owed: bool,
}

/// What happened, for the log, the metrics and the dashboard's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub at: Timestamp,
    /// The catalog revision after the change (in cluster mode etcd's, as
    /// far as this replica had followed it).
    pub revision: u64,
    /// This registry's own count of events (a watch stream skips those its
    /// first state already shows).
    #[serde(skip)]
    pub seq: u64,
    pub kind: EventKind,
    pub service: ServiceName,
    pub url: ServiceUrl,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

/// What `DELETE /services` answers: `live` says the instance still holds a
/// watch stream (a running SDK service, which registers again), and `note`
/// then points at maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deregistered {
    pub deregistered: ServiceUrl,
    #[serde(default)]
    pub live: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_reads_back_as_it_was_written_and_older_answers_read_too() {
        let view = InstanceView {
            name: ServiceName::parse("A").unwrap(),
            url: ServiceUrl::parse("http://127.0.0.1:1").unwrap(),
            required: vec![ServiceName::parse("B").unwrap()],
            update_url: String::new(),
            heartbeat_url: "http://127.0.0.1:1/heartbeat".into(),
            meta: Meta::default(),
            status: Shown::Unchecked,
            in_discovery: true,
            maintenance_since: None,
            status_since: Timestamp(5),
            registered_at: Timestamp(5),
            last_check: None,
            last_check_latency_ms: None,
            last_check_error: None,
            consecutive_failures: 0,
            next_check: Some(Timestamp(6)),
            delivery: Some(DeliveryView {
                delivered: 1,
                failed: 0,
                queued: 0,
                resync_owed: false,
            }),
        };
        let text = serde_json::to_string(&view).unwrap();
        assert_eq!(serde_json::from_str::<InstanceView>(&text).unwrap(), view);
        let classic: InstanceView = serde_json::from_str(
            r#"{"ServiceName":"A","ServiceURL":"http://127.0.0.1:1","Status":"passing"}"#,
        )
        .unwrap();
        assert!(classic.usable() && classic.required.is_empty());
    }
}
