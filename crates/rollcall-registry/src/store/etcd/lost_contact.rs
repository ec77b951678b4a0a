//! Lost contact, told through etcd: `{prefix}s/{url}` is a message, not
//! state. A replica that lost contact with an instance it does not check
//! puts the key and deletes it again at once; the put reaches every
//! replica's feed (`Change::LostContact`), and the one that checks the
//! instance checks it at once.

use std::collections::BTreeSet;

use rollcall_proto::ServiceUrl;

use super::{EtcdStore, Fence, MAX_TXN_OPS, StoreError, lapsed, unavailable};
use crate::etcd::Txn;

/// Where under the prefix the messages go.
pub(super) const KEYS: &str = "s/";

impl EtcdStore {
    /// Tells whichever replica checks them that this one lost contact with
    /// `urls` (see the module's `s/` keys): one transaction puts a key per
    /// instance, fenced on and attached to this replica's lease, a second
    /// deletes them (should it fail, the lease takes them with it).
    pub async fn report_lost_contact(&self, urls: &[ServiceUrl]) -> Result<(), StoreError> {
        let lease = match self.fence() {
            Fence::Lease(_, lease) => Some(lease),
            Fence::Open => None,
            Fence::NoLease => return Err(lapsed()),
        };
        // A URL twice is one key (etcd refuses a key twice in a transaction).
        let keys: BTreeSet<Vec<u8>> = urls
            .iter()
            .map(|url| format!("{}{KEYS}{url}", self.prefix).into_bytes())
            .collect();
        let keys: Vec<Vec<u8>> = keys.into_iter().collect();
        for part in keys.chunks(MAX_TXN_OPS) {
            let (mut put, _) = self.fenced_txn()?;
            let mut delete = Txn::new();
            for key in part {
                put = put.then_put(key, b"", lease);
                delete = delete.then_delete(key);
            }
            if !self.etcd.txn(put).await.map_err(unavailable)?.succeeded {
                return Err(lapsed());
            }
            self.etcd.txn(delete).await.map_err(unavailable)?;
        }
        Ok(())
    }
}
