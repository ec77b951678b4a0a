//! Timestamps: milliseconds since the Unix epoch.
//!
//! rollcall's logic takes `now` as a [`Timestamp`] instead of reading a clock, so
//! tests pass plain numbers. Services make one with a clock that is monotonic
//! within a process (wall time at start plus elapsed monotonic time), so a step
//! of the system clock never makes a health check fire early or late.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since 1970-01-01T00:00:00Z. Serialised as RFC 3339 text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    pub fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// The system clock's current time (for shells; logic takes `now` as input).
    pub fn system_now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        Self(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// This time plus `d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// This time minus `d`, saturating at the epoch.
    pub fn minus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// How long after `earlier` this is (zero if it is not after it).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The latest time RFC 3339 can write (9999-12-31T23:59:59.999Z); later
    /// ones are written as this (the format has four-digit years).
    pub const MAX_RFC3339: Timestamp = Timestamp(253_402_300_799_999);

    /// RFC 3339 text with millisecond precision, in UTC (`humantime`).
    pub fn to_rfc3339(self) -> String {
        self.rfc3339().to_string()
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, written without allocating (catalog
    /// listings format several per instance). Years past 9999 are clamped.
    fn rfc3339(self) -> humantime::Rfc3339Timestamp {
        humantime::format_rfc3339_millis(self.min(Self::MAX_RFC3339).to_system_time())
    }

    /// Parses RFC 3339 text (`2026-11-21T10:00:00Z`, fractions and offsets `Z`
    /// only, as humantime accepts).
    pub fn parse_rfc3339(text: &str) -> Result<Self, humantime::TimestampError> {
        humantime::parse_rfc3339_weak(text.trim()).map(Self::from_system_time)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.rfc3339(), f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// How long ago, for people: `3.2s ago`, `5m ago`, `2h ago`.
pub fn format_ago(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s ago")
    } else if secs < 3600.0 {
        format!("{}m ago", (secs / 60.0) as u64)
    } else {
        format!("{}h ago", (secs / 3600.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp(1_763_700_000_123);
        let text = t.to_rfc3339();
        assert_eq!(text, "2025-11-21T04:40:00.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&text).unwrap(), t);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    #[test]
    fn times_past_year_9999_are_written_as_its_last_millisecond() {
        let far = Timestamp(u64::MAX);
        assert_eq!(far.to_rfc3339(), "9999-12-31T23:59:59.999Z");
        let json = serde_json::to_string(&far).unwrap();
        assert_eq!(
            serde_json::from_str::<Timestamp>(&json).unwrap(),
            Timestamp::MAX_RFC3339,
            "what is written reads back"
        );
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn ago_reads_well() {
        assert_eq!(format_ago(Duration::from_millis(3_210)), "3.2s ago");
        assert_eq!(format_ago(Duration::from_secs(300)), "5m ago");
        assert_eq!(format_ago(Duration::from_secs(7_300)), "2h ago");
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Timestamp(5).minus(Duration::from_secs(1)), Timestamp(0));
        assert_eq!(Timestamp(5).since(Timestamp(9)), Duration::ZERO);
        assert_eq!(Timestamp(5).plus(Duration::from_millis(5)), Timestamp(10));
    }
}
