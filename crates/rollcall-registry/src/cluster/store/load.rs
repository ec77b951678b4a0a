//! Reading everything stored under the prefix (at start, and when the feed
//! lost its history), and the `Store` trait over the etcd store.

use std::collections::BTreeMap;

use rollcall_proto::{PatchEntry, ServiceUrl};

use super::codec::{corrupt, decode_instance, decode_view};
use super::{EtcdStore, Loaded, MAX_TXN_OPS, unavailable};
use crate::catalog::records::{StoreOp, StoredState};
use crate::store::{Store, StoreError};

impl EtcdStore {
    /// Everything stored (what [`Store::load`] does, for async callers).
    pub async fn load_async(&self) -> Result<StoredState, StoreError> {
        self.load_all().await.map(|loaded| loaded.state)
    }

    /// Everything stored, with etcd's revision and the live replicas.
    pub async fn load_all(&self) -> Result<Loaded, StoreError> {
        let snapshot = self
            .etcd
            .get_prefix(self.prefix.as_bytes())
            .await
            .map_err(unavailable)?;
        let (instances_at, views_at) = (format!("{}i/", self.prefix), format!("{}v/", self.prefix));
        let mut instances = Vec::new();
        let mut views: Vec<(ServiceUrl, PatchEntry)> = Vec::new();
        let mut members = BTreeMap::new();
        let members_at = format!("{}members/", self.prefix);
        for kv in &snapshot.kvs {
            if let Some(id) = kv.key.strip_prefix(members_at.as_bytes()) {
                members.insert(
                    String::from_utf8_lossy(id).into_owned(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                );
            } else if kv.key.starts_with(instances_at.as_bytes()) {
                instances.push(decode_instance(&kv.value)?);
            } else if let Some(receiver) = kv.key.strip_prefix(views_at.as_bytes()) {
                let receiver = std::str::from_utf8(receiver).map_err(corrupt)?;
                let receiver = ServiceUrl::parse(receiver).map_err(corrupt)?;
                for entry in decode_view(&kv.value)? {
                    views.push((receiver.clone(), entry));
                }
            }
        }
        // Views are deleted with their instance; none outlives it.
        views.retain(|(r, _)| instances.iter().any(|i| &i.registration.url == r));
        Ok(Loaded {
            state: StoredState {
                instances,
                views,
                revision: u64::try_from(snapshot.revision).unwrap_or(0),
            },
            revision: snapshot.revision,
            members,
        })
    }
}

impl Store for EtcdStore {
    /// From a thread outside the runtime (the store writer's).
    fn load(&self) -> Result<StoredState, StoreError> {
        self.runtime.block_on(self.load_async())
    }

    fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        self.runtime.block_on(async {
            // Parts of at most MAX_TXN_OPS keys, cut between ops.
            let mut start = 0;
            let mut keys: Vec<Vec<u8>> = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                let mine = self.keys_of(std::slice::from_ref(op));
                let new = mine.iter().filter(|k| !keys.contains(k)).count();
                if keys.len() + new > MAX_TXN_OPS && i > start {
                    self.apply_part(&ops[start..i], &keys).await?;
                    start = i;
                    keys.clear();
                }
                for k in mine {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
            }
            if start < ops.len() {
                self.apply_part(&ops[start..], &keys).await?;
            }
            Ok(())
        })
    }

    fn describe(&self) -> String {
        let endpoints: Vec<&str> = self
            .etcd
            .endpoints()
            .iter()
            .map(ServiceUrl::as_str)
            .collect();
        format!("etcd:{} (prefix {})", endpoints.join(","), self.prefix)
    }
}
