//! The streaming watch: one JSON message per line, in revision order.

use serde::Deserialize;
use serde_json::Value;

use super::{EtcdError, Header, Kv, MAX_ANSWER};

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(Kv),
    Delete { key: Vec<u8>, mod_revision: i64 },
}

/// The events of one watch message, all at or below `revision`.
#[derive(Debug, Clone, Default)]
pub struct WatchBatch {
    pub revision: i64,
    pub events: Vec<Event>,
}

/// A running watch: one message at a time, in revision order.
#[derive(Debug)]
pub struct Watch {
    pub(super) response: reqwest::Response,
    pub(super) buffer: Vec<u8>,
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    kv: Kv,
}

impl Watch {
    /// The next JSON message (one per line).
    pub(super) async fn message(&mut self) -> Result<Value, EtcdError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line)
                    .map_err(|e| EtcdError::Invalid(e.to_string()));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => {
                    if self.buffer.len() + chunk.len() > MAX_ANSWER {
                        return Err(EtcdError::Invalid("a watch message is too large".into()));
                    }
                    self.buffer.extend_from_slice(&chunk);
                }
                Ok(None) => return Err(EtcdError::Unavailable("the watch stream ended".into())),
                Err(e) => {
                    return Err(EtcdError::Unavailable(format!(
                        "the watch stream broke: {e}"
                    )));
                }
            }
        }
    }

    /// The next batch of events. An error ends the watch: start another
    /// from the revision after the last one seen (or reload, when
    /// `Compacted`).
    pub async fn next(&mut self) -> Result<WatchBatch, EtcdError> {
        loop {
            let message = self.message().await?;
            let result = &message["result"];
            if let Some(error) = message.get("error") {
                return Err(EtcdError::Unavailable(error.to_string()));
            }
            if result["canceled"] == true {
                let compacted = result["compact_revision"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                return Err(if compacted > 0 {
                    EtcdError::Compacted(compacted)
                } else {
                    EtcdError::Unavailable(format!("etcd canceled the watch: {result}"))
                });
            }
            let Some(events) = result["events"].as_array() else {
                // Progress notifications and the like: nothing changed.
                continue;
            };
            let header: Header =
                serde_json::from_value(result["header"].clone()).unwrap_or_default();
            let mut batch = WatchBatch {
                revision: header.revision,
                events: Vec::with_capacity(events.len()),
            };
            for event in events {
                let raw: RawEvent = serde_json::from_value(event.clone())
                    .map_err(|e| EtcdError::Invalid(e.to_string()))?;
                batch.events.push(match raw.kind.as_deref() {
                    Some("DELETE") => Event::Delete {
                        key: raw.kv.key,
                        mod_revision: raw.kv.mod_revision,
                    },
                    _ => Event::Put(raw.kv),
                });
            }
            return Ok(batch);
        }
    }
}
