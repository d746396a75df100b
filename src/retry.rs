//! The retry schedule (pure): how many counted failures a job may have and
//! how long it waits after each, doubling with full jitter. A plain value
//! set by the configuration (`max_attempts`) and applied by the queue's
//! rules and the worker's policy; it imports nothing of the crate.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// How long to wait between counted failures, and how many are allowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Generous, like Sidekiq's 25 retries: a batch must come through a flaky
    /// night on its own. Delays double from 15 s up to 12 h, so the 25th
    /// attempt comes after about a week in the worst case.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 25,
            base_delay: Duration::from_secs(15),
            max_delay: Duration::from_secs(12 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The capped exponential delay before retry number `attempt` (1-based),
    /// before jitter.
    pub fn base_delay_for(&self, attempt: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(self.max_delay)
    }

    /// Full jitter (AWS's recommendation): a uniform draw in (0, base], so a
    /// batch that failed together does not retry together. `unit` is the
    /// random draw in [0, 1); passing it in keeps this function pure. Never
    /// less than one second.
    pub fn delay_for(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay_for(attempt);
        let jittered = base.mul_f64(unit.clamp(0.0, 1.0));
        jittered
            .max(Duration::from_secs(1))
            .min(base.max(Duration::from_secs(1)))
    }

    /// After `attempts` counted failures, is the job out of attempts?
    pub fn exhausted(&self, attempts: u32, cap: Option<u32>) -> bool {
        let limit = cap.map_or(self.max_attempts, |c| c.min(self.max_attempts));
        attempts >= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_then_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.base_delay_for(1), Duration::from_secs(15));
        assert_eq!(policy.base_delay_for(2), Duration::from_secs(30));
        assert_eq!(policy.base_delay_for(3), Duration::from_secs(60));
        assert_eq!(policy.base_delay_for(25), Duration::from_secs(12 * 3600));
        assert_eq!(policy.base_delay_for(1000), Duration::from_secs(12 * 3600));
    }

    #[test]
    fn jitter_stays_within_zero_and_base() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay_for(3, 0.5), Duration::from_secs(30));
        assert_eq!(policy.delay_for(3, 0.0), Duration::from_secs(1));
        assert_eq!(
            policy.delay_for(3, 0.999_999),
            Duration::from_secs(60).mul_f64(0.999_999)
        );
        assert_eq!(policy.delay_for(3, 7.0), Duration::from_secs(60));
    }

    #[test]
    fn default_budget_spans_days_not_minutes() {
        let policy = RetryPolicy::default();
        let worst_case: Duration = (1..policy.max_attempts)
            .map(|a| policy.base_delay_for(a))
            .sum();
        assert!(
            worst_case > Duration::from_secs(5 * 24 * 3600),
            "{worst_case:?}"
        );
    }
}
