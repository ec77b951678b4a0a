//! Deterministic pseudo-randomness for jitter: spreading health checks and
//! retry back-offs without a random-number crate, and reproducibly in tests.

use std::time::Duration;

/// A number in [0, 1) from `seed` (SplitMix64's finaliser).
pub fn unit_fraction(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// FNV-1a of a string: a stable seed per instance URL.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `d` scaled by a factor in [1 - spread, 1 + spread) drawn from `seed`.
pub fn spread(d: Duration, spread: f64, seed: u64) -> Duration {
    d.mul_f64(1.0 - spread + 2.0 * spread * unit_fraction(seed))
}

/// Exponential back-off, the one every retry in rollcall uses: `base`
/// doubled per attempt (1-based), capped at `max`, then spread ±20 %. `seed`
/// identifies the one retrying (hash its URL or name), so processes that failed
/// together do not retry in step; the attempt is mixed in, so one retrier's
/// waits differ from attempt to attempt.
pub fn backoff(base: Duration, max: Duration, attempt: u32, seed: u64) -> Duration {
    let doubled = base.saturating_mul(1 << attempt.saturating_sub(1).min(20));
    let mixed = seed ^ u64::from(attempt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    spread(doubled.min(max), 0.2, mixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_in_range_and_spread_out() {
        let values: Vec<f64> = (0..1000).map(unit_fraction).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let low = values.iter().filter(|v| **v < 0.5).count();
        assert!((400..600).contains(&low), "{low}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = |n| backoff(Duration::from_millis(100), Duration::from_secs(5), n, 7);
        assert!(b(1) >= Duration::from_millis(80) && b(1) < Duration::from_millis(120));
        assert!(b(3) >= Duration::from_millis(320) && b(3) < Duration::from_millis(480));
        assert!(b(30) < Duration::from_secs(6));
    }

    #[test]
    fn two_retriers_do_not_wait_in_step() {
        let (a, b) = (stable_hash("http://a:1"), stable_hash("http://b:1"));
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let same = (1..=8)
            .filter(|n| backoff(base, max, *n, a) == backoff(base, max, *n, b))
            .count();
        assert_eq!(same, 0);
    }
}
