//! Transactions: comparisons, then the operations for either outcome.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// A transaction: if every comparison holds, the `then` operations, else
/// the `otherwise` ones — atomically.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    pub(super) compare: Vec<Value>,
    pub(super) success: Vec<Value>,
    pub(super) failure: Vec<Value>,
}

pub(super) fn put_op(key: &[u8], value: &[u8], lease: Option<i64>) -> Value {
    let mut put = json!({"key": B64.encode(key), "value": B64.encode(value)});
    if let Some(lease) = lease {
        put["lease"] = json!(lease.to_string());
    }
    json!({"request_put": put})
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds when `key` does not exist.
    pub fn if_absent(mut self, key: &[u8]) -> Self {
        self.compare.push(
            json!({"key": B64.encode(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}),
        );
        self
    }

    /// Holds when `key` is attached to `lease` (a lease that expired has
    /// taken its keys with it, so this fences a holder whose lease is gone).
    pub fn if_lease(mut self, key: &[u8], lease: i64) -> Self {
        self.compare.push(
            json!({"key": B64.encode(key), "target": "LEASE", "result": "EQUAL", "lease": lease.to_string()}),
        );
        self
    }

    /// Holds when `key` was last written at `revision` (0: absent).
    pub fn if_mod_revision(mut self, key: &[u8], revision: i64) -> Self {
        self.compare.push(
            json!({"key": B64.encode(key), "target": "MOD", "result": "EQUAL", "mod_revision": revision.to_string()}),
        );
        self
    }

    pub fn then_put(mut self, key: &[u8], value: &[u8], lease: Option<i64>) -> Self {
        self.success.push(put_op(key, value, lease));
        self
    }

    pub fn then_delete(mut self, key: &[u8]) -> Self {
        self.success
            .push(json!({"request_delete_range": {"key": B64.encode(key)}}));
        self
    }

    pub fn otherwise_put(mut self, key: &[u8], value: &[u8], lease: Option<i64>) -> Self {
        self.failure.push(put_op(key, value, lease));
        self
    }
}

/// What a transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnOutcome {
    pub succeeded: bool,
    /// The store's revision after it.
    pub revision: i64,
}
