//! The registry's workers: what it does to other services, each a step
//! function plus a thin loop, started by [`crate::start`].
//!
//! - [`checker`]: health checks on the catalog's schedule.
//! - [`notifier`]: patch delivery to receivers, one worker per receiver.
//! - [`held`]: keep-alive connections held to classic instances, whose
//!   closing says at once that one died.
//! - [`outbound`]: every call to another service (one client, bounded
//!   answers, no redirects).

pub mod checker;
pub mod held;
pub mod notifier;
pub mod outbound;
