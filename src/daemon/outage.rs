//! The queue database out of reach (PostgreSQL restarting, a network cut):
//! the pool backs off and logs once per interval instead of once per try,
//! and a batch gives up after a grace period with its own exit code.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

/// First wait after a failed claim; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// One log line per this much time while the database stays out of reach.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// How long `run --exit-when-idle` keeps trying before it exits with
/// `exit::DB_UNREACHABLE`.
pub(crate) const BATCH_GRACE: Duration = Duration::from_secs(15);

/// The wait before try `attempt` (1-based) of a claim after failures.
pub(crate) fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(MAX_BACKOFF)
}

/// An ongoing failure to reach the queue database.
#[derive(Debug)]
pub(crate) struct Outage {
    since: Instant,
    attempts: u32,
    logged_at: Option<Instant>,
}

impl Outage {
    pub(crate) fn new(now: Instant) -> Outage {
        Outage {
            since: now,
            attempts: 0,
            logged_at: None,
        }
    }

    /// Records one more failure (`what` failed with `error`), logs it if
    /// none was logged in the last [`LOG_INTERVAL`], and returns the wait
    /// before the next try.
    pub(crate) fn failed(
        &mut self,
        now: Instant,
        what: &str,
        error: &dyn std::fmt::Display,
    ) -> Duration {
        self.attempts = self.attempts.saturating_add(1);
        let wait = backoff(self.attempts);
        if self.logged_at.is_none_or(|at| now >= at + LOG_INTERVAL) {
            self.logged_at = Some(now);
            warn!(
                attempts = self.attempts,
                down_for_s = now.duration_since(self.since).as_secs(),
                "{what}: {error}; retrying (next try in {} ms, logged once a minute while it lasts)",
                wait.as_millis()
            );
        }
        wait
    }

    /// How long the database has been out of reach.
    pub(crate) fn lasted(&self, now: Instant) -> Duration {
        now.duration_since(self.since)
    }

    /// The database answered again.
    pub(crate) fn ended(self, now: Instant) {
        info!(
            attempts = self.attempts,
            down_for_s = now.duration_since(self.since).as_secs(),
            "the queue database answers again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_half_a_second_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(8), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_counts_its_tries_and_its_length() {
        let start = Instant::now();
        let mut outage = Outage::new(start);
        assert_eq!(outage.failed(start, "claim", &"refused"), backoff(1));
        let later = start + Duration::from_secs(5);
        assert_eq!(outage.failed(later, "claim", &"refused"), backoff(2));
        assert_eq!(outage.lasted(later), Duration::from_secs(5));
        assert_eq!(
            outage.logged_at,
            Some(start),
            "one line a minute, not one a try"
        );
        let minute = start + LOG_INTERVAL;
        outage.failed(minute, "claim", &"refused");
        assert_eq!(outage.logged_at, Some(minute));
    }
}
