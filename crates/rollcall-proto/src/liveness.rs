//! Liveness beats on a watch stream bound to an instance (`GET /v1/watch?
//! instance=URL`): the client sends the header [`BEAT_HEADER`] (`250ms`) and
//! then one byte of its chunked request body at that interval for as long as
//! the stream lives. The registry reads them; silence for
//! [`silence_limit`] (after the first beat) makes the instance suspect: it is
//! checked at once and taken out on the first failure. A hung process
//! (SIGSTOP, a deadlock that stops its runtime) stops beating, while its
//! socket — still open — would tell nothing.
//!
//! A registry that does not know the header ignores it and never reads the
//! body; a client that sends no beats is checked as before.

use std::time::Duration;

/// The request header that promises beats, with their interval.
pub const BEAT_HEADER: &str = "x-rollcall-beat";

/// The interval the SDK beats at.
pub const BEAT: Duration = Duration::from_millis(200);

/// The shortest interval a client may promise.
pub const MIN_BEAT: Duration = Duration::from_millis(50);

/// The longest interval a client may promise.
pub const MAX_BEAT: Duration = Duration::from_secs(10);

/// How long without a beat makes the instance suspect: two beats, and
/// 100 ms for scheduling.
pub fn silence_limit(beat: Duration) -> Duration {
    beat * 2 + Duration::from_millis(100)
}

/// The most bytes one beat may carry (more ends the reading of beats).
pub const MAX_BEAT_BYTES: usize = 64;
