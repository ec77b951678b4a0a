//! Health rules for one instance: thresholds, transitions and when to check next.
//!
//! An instance starts `Passing` (it just proved it is alive by registering). It
//! goes `Critical` after `failures_to_critical` consecutive failed checks, and
//! back to `Passing` after `passes_to_recover` consecutive passes, so one lost
//! packet does not make it flap. While a transition is undecided (some failures
//! but not enough, or some passes while critical) the next check comes after
//! `fast_recheck` instead of the full interval, so a real crash is confirmed
//! quickly. A *suspect* instance (its SDK watch stream closed without a
//! deregistration) goes critical on its first failed check: the closed stream is
//! the first piece of evidence.

use std::time::Duration;

use rollcall_proto::Timestamp;
use serde::{Deserialize, Serialize};

/// The health of an instance as dependents see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// In discovery: dependents are told about it.
    Passing,
    /// Out of discovery: dependents were told it is gone.
    Critical,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Passing => "passing",
            Health::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "passing" => Some(Health::Passing),
            "critical" => Some(Health::Critical),
            _ => None,
        }
    }
}

/// What people are shown (part of the wire contract).
pub use rollcall_proto::views::Shown;

/// Health-check settings the rules use.
#[derive(Debug, Clone)]
pub struct HealthPolicy {
    /// Time between checks of a settled instance (jittered ±10 %).
    pub interval: Duration,
    /// Time to the next check while a transition is undecided.
    pub fast_recheck: Duration,
    /// Consecutive failures that take a passing instance out of discovery.
    pub failures_to_critical: u32,
    /// Consecutive passes that put a critical instance back.
    pub passes_to_recover: u32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            fast_recheck: Duration::from_millis(250),
            failures_to_critical: 2,
            passes_to_recover: 2,
        }
    }
}

/// The result of one check, as the shell observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub passed: bool,
    pub latency: Duration,
    /// Why it failed ("connection refused", "timed out after 500ms", "HTTP 500").
    pub error: Option<String>,
}

impl CheckOutcome {
    pub fn pass(latency: Duration) -> Self {
        Self {
            passed: true,
            latency,
            error: None,
        }
    }

    pub fn fail(latency: Duration, error: impl Into<String>) -> Self {
        Self {
            passed: false,
            latency,
            error: Some(error.into()),
        }
    }
}

/// The last completed check of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastCheck {
    pub at: Timestamp,
    pub latency: Duration,
    pub passed: bool,
    pub error: Option<String>,
}

/// One past check, compactly (for the dashboard's check history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckSample {
    pub at: Timestamp,
    pub latency_us: u32,
    pub passed: bool,
}

/// Checks kept per instance for its history.
pub const HISTORY: usize = 10;

/// Health bookkeeping for one instance.
#[derive(Debug, Clone)]
pub struct HealthState {
    pub status: Health,
    pub since: Timestamp,
    pub consecutive_passes: u32,
    pub consecutive_failures: u32,
    pub suspect: bool,
    /// What its checks said, once it has been checked (boxed: most of an
    /// instance's size otherwise, and many instances are never checked here).
    pub log: Option<Box<CheckLog>>,
}

/// What an instance's checks said.
#[derive(Debug, Clone, Default)]
pub struct CheckLog {
    pub last_check: Option<LastCheck>,
    /// The latest failed check, kept after it passes again.
    pub last_failure: Option<LastCheck>,
    /// The last [`HISTORY`] checks, oldest first.
    pub recent: std::collections::VecDeque<CheckSample>,
}

/// What one check result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    /// Passing → critical.
    WentCritical,
    /// Critical → passing.
    Recovered,
}

impl HealthState {
    pub fn new(status: Health, since: Timestamp) -> Self {
        Self {
            status,
            since,
            consecutive_passes: 0,
            consecutive_failures: 0,
            suspect: false,
            log: None,
        }
    }

    /// The last completed check.
    pub fn last_check(&self) -> Option<&LastCheck> {
        self.log.as_ref()?.last_check.as_ref()
    }

    /// The latest failed check, kept after it passes again.
    pub fn last_failure(&self) -> Option<&LastCheck> {
        self.log.as_ref()?.last_failure.as_ref()
    }

    /// The last [`HISTORY`] checks, oldest first.
    pub fn recent(&self) -> impl DoubleEndedIterator<Item = &CheckSample> {
        self.log.iter().flat_map(|log| log.recent.iter())
    }

    /// Applies one check result and says whether the status changed.
    pub fn observe(
        &mut self,
        policy: &HealthPolicy,
        outcome: &CheckOutcome,
        now: Timestamp,
    ) -> Transition {
        let check = LastCheck {
            at: now,
            latency: outcome.latency,
            passed: outcome.passed,
            error: outcome.error.clone(),
        };
        let log = self.log.get_or_insert_with(Box::default);
        if !outcome.passed {
            log.last_failure = Some(check.clone());
        }
        log.last_check = Some(check);
        if log.recent.len() == HISTORY {
            log.recent.pop_front();
        }
        log.recent.push_back(CheckSample {
            at: now,
            latency_us: u32::try_from(outcome.latency.as_micros()).unwrap_or(u32::MAX),
            passed: outcome.passed,
        });
        let suspect = std::mem::take(&mut self.suspect);
        if outcome.passed {
            self.consecutive_passes = self.consecutive_passes.saturating_add(1);
            self.consecutive_failures = 0;
            if self.status == Health::Critical
                && self.consecutive_passes >= policy.passes_to_recover
            {
                self.status = Health::Passing;
                self.since = now;
                return Transition::Recovered;
            }
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_passes = 0;
            if self.status == Health::Passing
                && (suspect || self.consecutive_failures >= policy.failures_to_critical)
            {
                self.status = Health::Critical;
                self.since = now;
                return Transition::WentCritical;
            }
        }
        Transition::None
    }

    /// Whether a transition is under way and deserves a fast recheck.
    pub fn undecided(&self) -> bool {
        match self.status {
            Health::Passing => self.consecutive_failures > 0,
            Health::Critical => self.consecutive_passes > 0,
        }
    }
}

/// The delay before the next check of a settled instance: the interval scaled by
/// a factor in [0.9, 1.1) drawn from `seed`, so instances registered together do
/// not stay in lock step. Deterministic, so the logic needs no random source.
pub fn jittered(interval: Duration, seed: u64) -> Duration {
    rollcall_proto::jitter::spread(interval, 0.1, seed)
}

pub use rollcall_proto::jitter::{stable_hash, unit_fraction};

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn needs_consecutive_failures_to_go_critical_and_passes_to_recover() {
        let p = HealthPolicy::default();
        let mut h = HealthState::new(Health::Passing, Timestamp(0));
        assert_eq!(
            h.observe(&p, &CheckOutcome::fail(ms(1), "refused"), Timestamp(1)),
            Transition::None
        );
        assert!(h.undecided());
        // A pass in between resets the count: no flapping.
        assert_eq!(
            h.observe(&p, &CheckOutcome::pass(ms(1)), Timestamp(2)),
            Transition::None
        );
        assert!(!h.undecided());
        h.observe(&p, &CheckOutcome::fail(ms(1), "refused"), Timestamp(3));
        assert_eq!(
            h.observe(&p, &CheckOutcome::fail(ms(1), "refused"), Timestamp(4)),
            Transition::WentCritical
        );
        assert_eq!(h.since, Timestamp(4));
        assert_eq!(
            h.observe(&p, &CheckOutcome::pass(ms(1)), Timestamp(5)),
            Transition::None
        );
        assert_eq!(
            h.observe(&p, &CheckOutcome::pass(ms(1)), Timestamp(6)),
            Transition::Recovered
        );
        assert_eq!(h.status, Health::Passing);
    }

    #[test]
    fn a_suspect_goes_critical_on_its_first_failure() {
        let p = HealthPolicy::default();
        let mut h = HealthState::new(Health::Passing, Timestamp(0));
        h.suspect = true;
        assert_eq!(
            h.observe(&p, &CheckOutcome::fail(ms(1), "refused"), Timestamp(1)),
            Transition::WentCritical
        );
        // Suspicion is used up by one check.
        let mut h = HealthState::new(Health::Passing, Timestamp(0));
        h.suspect = true;
        h.observe(&p, &CheckOutcome::pass(ms(1)), Timestamp(1));
        assert!(!h.suspect);
        assert_eq!(
            h.observe(&p, &CheckOutcome::fail(ms(1), "refused"), Timestamp(2)),
            Transition::None
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for seed in 0..10_000 {
            let d = jittered(Duration::from_secs(1), seed);
            assert!(d >= ms(900) && d < ms(1100), "{d:?}");
        }
    }
}
