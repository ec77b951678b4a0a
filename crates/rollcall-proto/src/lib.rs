//! rollcall's wire contract (see `docs/PROTOCOL.md`): validated newtypes for what
//! crosses the wire ([`ServiceName`], [`ServiceUrl`]), the classic messages
//! ([`Registration`], [`Patch`]), the JSON error body every rollcall service
//! answers with ([`ErrorBody`]), timestamps, default paths, and a tiny Prometheus
//! text writer.
//!
//! Everything here is plain data: no I/O, no async; the only inputs from the
//! outside are `Timestamp::system_now` and `paths::default_data_dir`, kept small
//! and separate. Invalid values cannot be constructed: every constructor and
//! every `Deserialize` goes through the same check.

pub mod error;
pub mod jitter;
pub mod liveness;
pub mod log_row;
pub mod meta;
pub mod names;
pub mod patch;
pub mod paths;
pub mod prom;
pub mod registration;
pub mod schema;
pub mod text;
pub mod time;
pub mod units;
pub mod views;

pub use error::{ErrorBody, ErrorDetail};
pub use meta::Meta;
pub use names::{InvalidName, InvalidUrl, ServiceName, ServiceUrl};
pub use patch::{Patch, PatchEntry};
pub use registration::Registration;
pub use time::Timestamp;
