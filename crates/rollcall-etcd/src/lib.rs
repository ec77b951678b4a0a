//! A small etcd v3 client over etcd's JSON gateway (`/v3/...`), through the
//! same reqwest every other call uses: no protoc, no gRPC stack, so the
//! default build needs nothing but Rust and the plain binary has cluster
//! mode. What the registry needs and no more: put, range over a prefix,
//! delete, transactions (compare-and-swap, create-if-absent), leases
//! (grant, keep-alive, revoke) and the streaming watch.
//!
//! Keys and values travel as base64, 64-bit numbers as strings, default
//! values are omitted (hence `#[serde(default)]` everywhere). Every call has
//! a timeout and a bounded answer; a member that does not answer, or answers
//! that it cannot serve (no leader, timed out), is skipped for the next
//! endpoint, and the one that answered is tried first next time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rollcall_proto::ServiceUrl;
use serde::Deserialize;
use serde_json::{Value, json};

mod txn;
mod watch;

use txn::put_op;
pub use txn::{Txn, TxnOutcome};
pub use watch::{Event, Watch, WatchBatch};

/// Most bytes of one answer (a whole catalog in a range, or one watch
/// message).
pub const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// What went wrong talking to etcd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint could serve the request (down, no quorum, timed out).
    #[error("etcd is unavailable: {0}")]
    Unavailable(String),
    /// etcd served the request and refused it.
    #[error("etcd refused the request: {0}")]
    Rejected(String),
    /// The answer was not what the gateway sends.
    #[error("etcd sent an answer rollcall cannot read: {0}")]
    Invalid(String),
    /// A watch asked for revisions etcd has compacted away.
    #[error("etcd has compacted revisions before {0}")]
    Compacted(i64),
}

fn num<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Text(String),
        Number(i64),
    }
    match Num::deserialize(d)? {
        Num::Number(n) => Ok(n),
        Num::Text(t) => t.parse().map_err(serde::de::Error::custom),
    }
}

fn bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    B64.decode(text).map_err(serde::de::Error::custom)
}

/// A key and its value, as etcd holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Kv {
    #[serde(default, deserialize_with = "bytes")]
    pub key: Vec<u8>,
    #[serde(default, deserialize_with = "bytes")]
    pub value: Vec<u8>,
    #[serde(default, deserialize_with = "num")]
    pub create_revision: i64,
    #[serde(default, deserialize_with = "num")]
    pub mod_revision: i64,
    #[serde(default, deserialize_with = "num")]
    pub lease: i64,
}

#[derive(Debug, Default, Deserialize)]
struct Header {
    #[serde(default, deserialize_with = "num")]
    revision: i64,
}

#[derive(Debug, Deserialize)]
struct RangeAnswer {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<Kv>,
    #[serde(default)]
    more: bool,
}

#[derive(Debug, Deserialize)]
struct WriteAnswer {
    #[serde(default)]
    header: Header,
}

#[derive(Debug, Deserialize)]
struct TxnAnswer {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    succeeded: bool,
}

#[derive(Debug, Deserialize)]
struct LeaseAnswer {
    #[serde(rename = "ID", default, deserialize_with = "num")]
    id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "num")]
    ttl: i64,
}

/// A prefix's keys at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub kvs: Vec<Kv>,
    pub revision: i64,
}

/// An etcd cluster, reached through any of its members.
#[derive(Debug)]
pub struct Etcd {
    client: reqwest::Client,
    endpoints: Vec<ServiceUrl>,
    preferred: AtomicUsize,
    timeout: Duration,
}

/// The first key after every key starting with `prefix` (etcd's
/// `range_end` for a prefix).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the keyspace.
    vec![0]
}

/// Whether an etcd error answer means "try another member".
fn retryable(status: reqwest::StatusCode, body: &Value) -> bool {
    // gRPC codes: 4 deadline exceeded, 14 unavailable (no leader, stopping).
    status.is_server_error() || matches!(body["code"].as_i64(), Some(4 | 14))
}

impl Etcd {
    /// A client for the members at `endpoints`; each request waits at most
    /// `timeout` for one member before trying the next.
    pub fn new(
        endpoints: Vec<ServiceUrl>,
        client: reqwest::Client,
        timeout: Duration,
    ) -> Result<Self, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::Invalid("no etcd endpoint given".into()));
        }
        Ok(Self {
            client,
            endpoints,
            preferred: AtomicUsize::new(0),
            timeout,
        })
    }

    pub fn endpoints(&self) -> &[ServiceUrl] {
        &self.endpoints
    }

    /// POSTs `body` to `path` on the preferred member, then the others.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, EtcdError> {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let url = format!("{}{path}", self.endpoints[i].as_str().trim_end_matches('/'));
            let attempt = async {
                let response = self
                    .client
                    .post(&url)
                    .json(body)
                    .send()
                    .await
                    .map_err(|e| (true, e.to_string()))?;
                let status = response.status();
                let answer: Value = rollcall_http::bounded::json(response, MAX_ANSWER)
                    .await
                    .map_err(|e| (true, e.to_string()))?;
                if status.is_success() && answer.get("error").is_none() {
                    return Ok(answer);
                }
                let message = answer["message"]
                    .as_str()
                    .or(answer["error"].as_str())
                    .unwrap_or("no reason given")
                    .to_owned();
                Err((retryable(status, &answer), message))
            };
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(answer)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return serde_json::from_value(answer)
                        .map_err(|e| EtcdError::Invalid(e.to_string()));
                }
                Ok(Err((false, message))) => return Err(EtcdError::Rejected(message)),
                Ok(Err((true, message))) => failures.push(format!("{url}: {message}")),
                Err(_) => failures.push(format!("{url}: no answer within {:?}", self.timeout)),
            }
        }
        Err(EtcdError::Unavailable(failures.join("; ")))
    }

    /// Writes `key`; the store's revision after it.
    pub async fn put(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<i64>,
    ) -> Result<i64, EtcdError> {
        let mut op = put_op(key, value, lease);
        let mut body = op["request_put"].take();
        body["prev_kv"] = json!(false);
        let answer: WriteAnswer = self.call("/v3/kv/put", &body).await?;
        Ok(answer.header.revision)
    }

    /// One key, if it exists.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Kv>, EtcdError> {
        let body = json!({"key": B64.encode(key)});
        let answer: RangeAnswer = self.call("/v3/kv/range", &body).await?;
        Ok(answer.kvs.into_iter().next())
    }

    /// Several keys in one round trip (a transaction of reads), in order.
    pub async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Kv>>, EtcdError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let reads: Vec<Value> = keys
            .iter()
            .map(|k| json!({"request_range": {"key": B64.encode(k)}}))
            .collect();
        let body = json!({"compare": [], "success": reads, "failure": []});
        let answer: Value = self.call("/v3/kv/txn", &body).await?;
        let responses = answer["responses"].as_array().cloned().unwrap_or_default();
        if responses.len() != keys.len() {
            return Err(EtcdError::Invalid(format!(
                "{} answers to {} reads",
                responses.len(),
                keys.len()
            )));
        }
        responses
            .into_iter()
            .map(|r| {
                let range: RangeAnswer = serde_json::from_value(r["response_range"].clone())
                    .map_err(|e| EtcdError::Invalid(e.to_string()))?;
                Ok(range.kvs.into_iter().next())
            })
            .collect()
    }

    /// Every key under `prefix`, at one revision (linearizable: what a
    /// quorum holds now).
    pub async fn get_prefix(&self, prefix: &[u8]) -> Result<Snapshot, EtcdError> {
        let body = json!({"key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix))});
        let answer: RangeAnswer = self.call("/v3/kv/range", &body).await?;
        if answer.more {
            return Err(EtcdError::Invalid("the range answer was cut short".into()));
        }
        Ok(Snapshot {
            kvs: answer.kvs,
            revision: answer.header.revision,
        })
    }

    /// Deletes `key`; the store's revision after it.
    pub async fn delete(&self, key: &[u8]) -> Result<i64, EtcdError> {
        let body = json!({"key": B64.encode(key)});
        let answer: WriteAnswer = self.call("/v3/kv/deleterange", &body).await?;
        Ok(answer.header.revision)
    }

    /// Runs `txn` atomically.
    pub async fn txn(&self, txn: Txn) -> Result<TxnOutcome, EtcdError> {
        let body = json!({"compare": txn.compare, "success": txn.success, "failure": txn.failure});
        let answer: TxnAnswer = self.call("/v3/kv/txn", &body).await?;
        Ok(TxnOutcome {
            succeeded: answer.succeeded,
            revision: answer.header.revision,
        })
    }

    /// A new lease of `ttl` seconds; its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let body = json!({"TTL": ttl.as_secs().max(1).to_string()});
        let answer: LeaseAnswer = self.call("/v3/lease/grant", &body).await?;
        Ok(answer.id)
    }

    /// Renews lease `id`; the seconds it has left. A lease that has already
    /// expired cannot be renewed: that is a `Rejected`.
    pub async fn keep_alive(&self, id: i64) -> Result<i64, EtcdError> {
        let body = json!({"ID": id.to_string()});
        let answer: Value = self.call("/v3/lease/keepalive", &body).await?;
        let result: LeaseAnswer = serde_json::from_value(answer["result"].clone())
            .map_err(|e| EtcdError::Invalid(e.to_string()))?;
        if result.ttl <= 0 {
            return Err(EtcdError::Rejected(format!("lease {id} has expired")));
        }
        Ok(result.ttl)
    }

    /// Ends lease `id` now, deleting its keys.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        let body = json!({"ID": id.to_string()});
        let _: Value = self.call("/v3/lease/revoke", &body).await?;
        Ok(())
    }

    /// Watches every key under `prefix` from `start_revision` on (the
    /// stream answers through the member that took it).
    pub async fn watch(&self, prefix: &[u8], start_revision: i64) -> Result<Watch, EtcdError> {
        let body = json!({"create_request": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix)),
            "start_revision": start_revision.to_string(),
        }});
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let url = format!(
                "{}/v3/watch",
                self.endpoints[i].as_str().trim_end_matches('/')
            );
            let sent =
                tokio::time::timeout(self.timeout, self.client.post(&url).json(&body).send());
            match sent.await {
                Ok(Ok(response)) if response.status().is_success() => {
                    let mut watch = Watch {
                        response,
                        buffer: Vec::new(),
                    };
                    // The first message says the watch was created.
                    match tokio::time::timeout(self.timeout, watch.message()).await {
                        Ok(Ok(first)) if first["result"]["created"] == true => return Ok(watch),
                        Ok(Ok(other)) => failures.push(format!("{url}: {other}")),
                        Ok(Err(e)) => failures.push(format!("{url}: {e}")),
                        Err(_) => failures.push(format!("{url}: the watch was not created")),
                    }
                }
                Ok(Ok(response)) => failures.push(format!("{url}: HTTP {}", response.status())),
                Ok(Err(e)) => failures.push(format!("{url}: {e}")),
                Err(_) => failures.push(format!("{url}: no answer within {:?}", self.timeout)),
            }
        }
        Err(EtcdError::Unavailable(failures.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_the_next_key() {
        assert_eq!(prefix_end(b"/rollcall/"), b"/rollcall0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }

    #[test]
    fn numbers_come_as_text_and_defaults_are_omitted() {
        let kv: Kv = serde_json::from_value(json!({
            "key": B64.encode("k"), "mod_revision": "12", "lease": 7
        }))
        .unwrap();
        assert_eq!(kv.key, b"k");
        assert_eq!((kv.mod_revision, kv.lease, kv.create_revision), (12, 7, 0));
        assert!(kv.value.is_empty());
    }
}
