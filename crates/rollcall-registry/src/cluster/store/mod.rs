//! The catalog's durable state in etcd (cluster mode), under a prefix:
//!
//! - `{prefix}i/{url}`: one instance — its registration (the JSON the
//!   registry sends), registration time, health status and since when, and
//!   the maintenance switch;
//! - `{prefix}v/{receiver}`: the providers that receiver has acknowledged
//!   (its confirmed view), as `[[name, url], …]`;
//! - `{prefix}s/{url}`: a message, not state — a replica that lost contact
//!   with an instance it does not check puts it (on its lease) and deletes
//!   it again at once; the put reaches the replica that checks it through
//!   the watch.
//!
//! The catalog revision is etcd's own revision: nothing stores a count of
//! its own (a key every write touched would make every two replicas'
//! writes conflict).
//!
//! A batch is planned before it is written: the keys it touches are read in
//! one round trip (a read-only transaction), the ops are applied to those
//! values in order, and the final value of each key is written in one
//! transaction that holds only if none of them changed meanwhile (compare
//! on each key's `mod_revision`) — a concurrent writer on another replica
//! makes it plan again. etcd allows at most 128 operations per transaction,
//! so a larger group is written in parts; each part is atomic, and every op
//! is idempotent, so a retried batch lands the same.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rollcall_proto::{PatchEntry, ServiceUrl};

use crate::catalog::records::{StoreOp, StoredState, ViewChange};
use crate::etcd::{Etcd, Txn};
use crate::store::StoreError;

mod codec;
mod load;

use codec::{corrupt, decode_instance, decode_view, encode_instance, encode_view};

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// Attempts at a batch whose keys other replicas keep changing.
const ATTEMPTS: usize = 8;

/// The catalog kept in etcd.
#[derive(Debug)]
pub struct EtcdStore {
    etcd: Arc<Etcd>,
    prefix: String,
    runtime: tokio::runtime::Handle,
    /// What every write is fenced on (cluster mode): a replica whose lease
    /// lapsed writes nothing.
    fence: std::sync::Mutex<Fence>,
    /// Keys this replica wrote, and at which revision: the watch hands its
    /// own writes back, and older writes of those keys by others, which the
    /// catalog here is already past.
    own: std::sync::Mutex<std::collections::HashMap<Vec<u8>, i64>>,
    /// The revision of this replica's latest committed write.
    committed: std::sync::atomic::AtomicI64,
}

/// What the store held at start, and where the watch goes on from.
#[derive(Debug)]
pub struct Loaded {
    pub state: StoredState,
    /// etcd's revision of that state.
    pub revision: i64,
    /// The replicas holding a membership key (id → URL).
    pub members: BTreeMap<String, String>,
}

/// One change read back from etcd.
#[derive(Debug)]
pub enum Change {
    Record(StoreOp),
    /// A replica joined (`Some(url)`) or left (`None`).
    Member(String, Option<String>),
    /// Written by this replica (or superseded by its own later write).
    Own,
    /// A replica lost contact with this instance (its stream closed or went
    /// silent there): whoever checks it checks it at once.
    LostContact(ServiceUrl),
}

/// What a write must hold to be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// Nothing: a store used alone (tests, tools).
    Open,
    /// This replica holds no lease (not yet joined, or it lapsed): every
    /// write is refused — whatever was queued under a lease that is gone
    /// (a delivery's acknowledgement, a check's verdict) must not land
    /// after the replicas that took over wrote theirs.
    NoLease,
    /// Only while the membership key `.0` is on lease `.1`.
    Lease(Vec<u8>, i64),
}

/// A key's value as read for planning, and what the plan makes of it.
#[derive(Debug)]
struct Planned {
    /// `mod_revision` when read (0: absent): the write holds only if it is
    /// still that.
    read_at: i64,
    before: Option<Vec<u8>>,
    after: Option<Vec<u8>>,
}

impl EtcdStore {
    /// The store under `prefix` (e.g. `/rollcall/`) in `etcd`; its blocking
    /// calls run on `runtime`.
    pub fn new(etcd: Arc<Etcd>, prefix: &str, runtime: tokio::runtime::Handle) -> Self {
        Self {
            etcd,
            prefix: prefix.to_owned(),
            runtime,
            fence: std::sync::Mutex::new(Fence::Open),
            own: std::sync::Mutex::new(std::collections::HashMap::new()),
            committed: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// The etcd revision of this replica's latest committed write.
    pub fn committed(&self) -> i64 {
        self.committed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The key under which replica `id` announces itself.
    pub fn member_key(&self, id: &str) -> Vec<u8> {
        format!("{}members/{id}", self.prefix).into_bytes()
    }

    pub fn etcd(&self) -> &Arc<Etcd> {
        &self.etcd
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Fences every later write (see [`Fence`]).
    pub fn set_fence(&self, fence: Fence) {
        *self
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fence;
    }

    fn fence(&self) -> Fence {
        self.fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Forgets this replica's writes up to `revision` (the feed will not see
    /// them: it reloaded past them), so the memory of them stays bounded.
    pub fn forget_own_through(&self, revision: i64) {
        self.own
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, at| *at > revision);
    }

    /// What a watched event means here.
    pub fn decode(&self, event: &crate::etcd::Event) -> Result<Change, StoreError> {
        let (key, revision) = match event {
            crate::etcd::Event::Put(kv) => (&kv.key, kv.mod_revision),
            crate::etcd::Event::Delete { key, mod_revision } => (key, *mod_revision),
        };
        {
            let mut own = self
                .own
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(mine) = own.get(key).copied()
                && mine >= revision
            {
                if mine == revision {
                    own.remove(key);
                }
                return Ok(Change::Own);
            }
        }
        let rest = |at: &str| key.strip_prefix(format!("{}{at}", self.prefix).as_bytes());
        let text = |bytes: &[u8]| {
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(corrupt)
        };
        if let Some(id) = rest("members/") {
            let url = match event {
                crate::etcd::Event::Put(kv) => Some(text(&kv.value)?),
                crate::etcd::Event::Delete { .. } => None,
            };
            return Ok(Change::Member(text(id)?, url));
        }
        if let Some(url) = rest(LOST_CONTACT_KEYS) {
            return Ok(match event {
                crate::etcd::Event::Put(_) => {
                    Change::LostContact(ServiceUrl::parse(&text(url)?).map_err(corrupt)?)
                }
                crate::etcd::Event::Delete { .. } => Change::Own,
            });
        }
        let op = match (event, rest("i/"), rest("v/")) {
            (crate::etcd::Event::Put(kv), Some(_), _) => StoreOp::PutInstance {
                instance: decode_instance(&kv.value)?,
                replaced: true,
            },
            (crate::etcd::Event::Delete { .. }, Some(url), _) => {
                StoreOp::DeleteInstance(ServiceUrl::parse(&text(url)?).map_err(corrupt)?)
            }
            (crate::etcd::Event::Put(kv), None, Some(receiver)) => StoreOp::ApplyView(ViewChange {
                receiver: ServiceUrl::parse(&text(receiver)?).map_err(corrupt)?,
                added: decode_view(&kv.value)?,
                removed: Vec::new(),
                replace: true,
            }),
            // A deleted view goes with its instance; anything else under the
            // prefix (a revision key an older version wrote) is not the
            // catalog's.
            _ => return Ok(Change::Own),
        };
        Ok(Change::Record(op))
    }

    fn instance_key(&self, url: &ServiceUrl) -> Vec<u8> {
        format!("{}i/{url}", self.prefix).into_bytes()
    }

    fn view_key(&self, url: &ServiceUrl) -> Vec<u8> {
        format!("{}v/{url}", self.prefix).into_bytes()
    }

    /// The keys `ops` read or write, in the order first met.
    fn keys_of(&self, ops: &[StoreOp]) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut add = |k: Vec<u8>| {
            if !keys.contains(&k) {
                keys.push(k);
            }
        };
        for op in ops {
            match op {
                StoreOp::PutInstance { instance, .. } => {
                    add(self.instance_key(&instance.registration.url));
                    add(self.view_key(&instance.registration.url));
                }
                StoreOp::SetStatus { url, .. } | StoreOp::SetMaintenance { url, .. } => {
                    add(self.instance_key(url));
                }
                StoreOp::DeleteInstance(url)
                | StoreOp::ApplyView(ViewChange { receiver: url, .. }) => {
                    add(self.instance_key(url));
                    add(self.view_key(url));
                }
                // The revision is etcd's own.
                StoreOp::SetRevision(_) => {}
            }
        }
        keys
    }

    /// Applies `ops` to the values read into `plan`.
    fn plan(
        &self,
        plan: &mut BTreeMap<Vec<u8>, Planned>,
        ops: &[StoreOp],
    ) -> Result<(), StoreError> {
        let set = |plan: &mut BTreeMap<Vec<u8>, Planned>, key: Vec<u8>, value: Option<Vec<u8>>| {
            if let Some(p) = plan.get_mut(&key) {
                p.after = value;
            }
        };
        for op in ops {
            match op {
                StoreOp::PutInstance { instance, replaced } => {
                    let url = &instance.registration.url;
                    set(
                        plan,
                        self.instance_key(url),
                        Some(encode_instance(instance)?),
                    );
                    if *replaced {
                        set(plan, self.view_key(url), None);
                    }
                }
                StoreOp::SetStatus { url, status, since } => {
                    let key = self.instance_key(url);
                    if let Some(mut i) = current(plan, &key)
                        .map(|v| decode_instance(&v))
                        .transpose()?
                    {
                        i.status = *status;
                        i.status_since = *since;
                        set(plan, key, Some(encode_instance(&i)?));
                    }
                }
                StoreOp::SetMaintenance { url, since } => {
                    let key = self.instance_key(url);
                    if let Some(mut i) = current(plan, &key)
                        .map(|v| decode_instance(&v))
                        .transpose()?
                    {
                        i.maintenance = *since;
                        set(plan, key, Some(encode_instance(&i)?));
                    }
                }
                StoreOp::DeleteInstance(url) => {
                    set(plan, self.instance_key(url), None);
                    set(plan, self.view_key(url), None);
                }
                StoreOp::ApplyView(change) => {
                    if current(plan, &self.instance_key(&change.receiver)).is_none() {
                        continue;
                    }
                    let key = self.view_key(&change.receiver);
                    let mut view: BTreeSet<PatchEntry> = match current(plan, &key) {
                        Some(bytes) => decode_view(&bytes)?.into_iter().collect(),
                        None => BTreeSet::new(),
                    };
                    change.apply_to(&mut view);
                    set(plan, key, Some(encode_view(view.iter())?));
                }
                StoreOp::SetRevision(_) => {}
            }
        }
        Ok(())
    }

    /// Reads `keys` (at most [`MAX_TXN_OPS`]) in one round trip.
    async fn read(&self, keys: &[Vec<u8>]) -> Result<BTreeMap<Vec<u8>, Planned>, StoreError> {
        let values = self.etcd.get_many(keys).await.map_err(unavailable)?;
        Ok(keys
            .iter()
            .cloned()
            .zip(values)
            .map(|(key, kv)| {
                let (read_at, before) = match kv {
                    Some(kv) => (kv.mod_revision, Some(kv.value)),
                    None => (0, None),
                };
                let after = before.clone();
                (
                    key,
                    Planned {
                        read_at,
                        before,
                        after,
                    },
                )
            })
            .collect())
    }

    /// New instances only (registrations of URLs the catalog did not hold):
    /// written in one transaction that holds if none of their keys exists,
    /// without reading first — half the round trips of a planned batch.
    /// `Ok(false)`: not such a batch, or a key exists after all (another
    /// replica registered it meanwhile): plan it instead.
    async fn apply_new(&self, ops: &[StoreOp]) -> Result<bool, StoreError> {
        let only_new = ops.iter().all(|op| {
            matches!(
                op,
                StoreOp::PutInstance {
                    replaced: false,
                    ..
                } | StoreOp::SetRevision(_)
            )
        });
        if !only_new {
            return Ok(false);
        }
        let (mut txn, _) = self.fenced_txn()?;
        let mut written: Vec<Vec<u8>> = Vec::new();
        for op in ops {
            if let StoreOp::PutInstance { instance, .. } = op {
                let key = self.instance_key(&instance.registration.url);
                if written.contains(&key) {
                    return Ok(false);
                }
                txn = txn
                    .if_absent(&key)
                    .then_put(&key, &encode_instance(instance)?, None);
                written.push(key);
            }
        }
        if written.is_empty() {
            return Ok(false);
        }
        let outcome = self.etcd.txn(txn).await.map_err(unavailable)?;
        if outcome.succeeded {
            self.remember_own(written, outcome.revision);
        }
        Ok(outcome.succeeded)
    }

    /// A transaction holding only while this replica's fence does (an
    /// error when it holds no lease), and the fence it was built on.
    fn fenced_txn(&self) -> Result<(Txn, Fence), StoreError> {
        let fence = self.fence();
        let txn = match &fence {
            Fence::Open => Txn::new(),
            Fence::NoLease => return Err(lapsed()),
            Fence::Lease(member, lease) => Txn::new().if_lease(member, *lease),
        };
        Ok((txn, fence))
    }

    /// This replica committed `keys` at `revision`: the feed skips them.
    fn remember_own(&self, keys: impl IntoIterator<Item = Vec<u8>>, revision: i64) {
        self.committed
            .fetch_max(revision, std::sync::atomic::Ordering::AcqRel);
        let mut own = self
            .own
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in keys {
            own.insert(key, revision);
        }
    }

    /// Plans and writes `ops`, whose keys number at most [`MAX_TXN_OPS`].
    async fn apply_part(&self, ops: &[StoreOp], keys: &[Vec<u8>]) -> Result<(), StoreError> {
        if self.apply_new(ops).await? {
            return Ok(());
        }
        for _ in 0..ATTEMPTS {
            let (mut txn, fence) = self.fenced_txn()?;
            let mut plan = self.read(keys).await?;
            self.plan(&mut plan, ops)?;
            let mut writes = 0;
            for (key, p) in &plan {
                txn = txn.if_mod_revision(key, p.read_at);
                if p.after == p.before {
                    continue;
                }
                writes += 1;
                txn = match &p.after {
                    Some(value) => txn.then_put(key, value, None),
                    None => txn.then_delete(key),
                };
            }
            if writes == 0 {
                return Ok(());
            }
            let outcome = self.etcd.txn(txn).await.map_err(unavailable)?;
            if outcome.succeeded {
                let written = plan
                    .into_iter()
                    .filter(|(_, p)| p.after != p.before)
                    .map(|(key, _)| key);
                self.remember_own(written, outcome.revision);
                return Ok(());
            }
            if let Fence::Lease(member, lease) = &fence
                && self
                    .etcd
                    .get(member)
                    .await
                    .map_err(unavailable)?
                    .is_none_or(|kv| kv.lease != *lease)
            {
                return Err(lapsed());
            }
            // Another replica wrote one of these keys since they were read.
        }
        Err(StoreError::Contended(ATTEMPTS))
    }
}

fn current(plan: &BTreeMap<Vec<u8>, Planned>, key: &[u8]) -> Option<Vec<u8>> {
    plan.get(key).and_then(|p| p.after.clone())
}

fn lapsed() -> StoreError {
    StoreError::NoLease
}

fn unavailable(e: crate::etcd::EtcdError) -> StoreError {
    StoreError::Etcd(e)
}

/// Where under the prefix the lost-contact messages go.
const LOST_CONTACT_KEYS: &str = "s/";

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
            .map(|url| format!("{}{LOST_CONTACT_KEYS}{url}", self.prefix).into_bytes())
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
