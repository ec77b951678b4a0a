//! How an instance and an acknowledged view are written in etcd: an
//! instance as JSON (its registration as the registry sends it), a view as
//! `[[name, url], …]`.

use rollcall_proto::{PatchEntry, Registration, ServiceName, ServiceUrl, Timestamp};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::catalog::health::Health;
use crate::catalog::records::StoredInstance;

#[derive(Debug, Serialize, Deserialize)]
struct InstanceRecord {
    registration: serde_json::Value,
    registered_at: u64,
    status: String,
    status_since: u64,
    #[serde(default)]
    maintenance: Option<u64>,
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(super) fn encode_instance(i: &StoredInstance) -> Result<Vec<u8>, StoreError> {
    let record = InstanceRecord {
        registration: serde_json::to_value(&i.registration).map_err(corrupt)?,
        registered_at: i.registered_at.as_millis(),
        status: i.status.as_str().to_owned(),
        status_since: i.status_since.as_millis(),
        maintenance: i.maintenance.map(|t| t.as_millis()),
    };
    serde_json::to_vec(&record).map_err(corrupt)
}

pub(super) fn decode_instance(bytes: &[u8]) -> Result<StoredInstance, StoreError> {
    let record: InstanceRecord = serde_json::from_slice(bytes).map_err(corrupt)?;
    let registration = Registration::from_json(record.registration.to_string().as_bytes())
        .map_err(|e| corrupt(format!("a stored registration: {e}")))?;
    Ok(StoredInstance {
        registration,
        registered_at: Timestamp(record.registered_at),
        status: Health::parse(&record.status)
            .ok_or_else(|| corrupt(format!("status {:?}", record.status)))?,
        status_since: Timestamp(record.status_since),
        maintenance: record.maintenance.map(Timestamp),
    })
}

pub(super) fn encode_view<'a>(
    view: impl Iterator<Item = &'a PatchEntry>,
) -> Result<Vec<u8>, StoreError> {
    let pairs: Vec<(&str, &str)> = view.map(|e| (e.name.as_str(), e.url.as_str())).collect();
    serde_json::to_vec(&pairs).map_err(corrupt)
}

pub(super) fn decode_view(bytes: &[u8]) -> Result<Vec<PatchEntry>, StoreError> {
    let pairs: Vec<(String, String)> = serde_json::from_slice(bytes).map_err(corrupt)?;
    pairs
        .into_iter()
        .map(|(name, url)| {
            Ok(PatchEntry::new(
                ServiceName::parse(&name).map_err(corrupt)?,
                ServiceUrl::parse(&url).map_err(corrupt)?,
            ))
        })
        .collect()
}
