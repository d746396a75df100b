//! One gate every retrieve call passes through: an even spacing of calls
//! (governor, burst 1), a hard cap of N calls in any 60-second window kept in
//! the queue database (so it holds across restarts and across processes),
//! and a cooldown shared by the whole pool after the API says "too many".

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::queue::{Queue, QueueError, now_millis};

/// The window the cap is counted over, with a second of slack so calls that
/// leave a little late still fall inside a 60-second window at the server.
pub const WINDOW: Duration = Duration::from_secs(61);

/// First cooldown after a rate-limit answer without `Retry-After`; doubles
/// with each further one in a row, up to [`MAX_COOLDOWN`].
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(5);
pub const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// How long the pool waits after the `streak`-th rate-limit answer in a row
/// (1-based). `Retry-After` is honoured when it asks for longer.
pub fn cooldown_for(streak: u32, retry_after: Option<Duration>) -> Duration {
    let exponent = streak.saturating_sub(1).min(16);
    let backoff = FIRST_COOLDOWN
        .saturating_mul(1 << exponent)
        .min(MAX_COOLDOWN);
    retry_after.map_or(backoff, |ra| ra.max(backoff))
}

#[derive(Default)]
struct Cooldown {
    until: Option<Instant>,
    streak: u32,
}

pub struct RateGate {
    /// Replaced whole when the rate is reloaded (governor quotas are fixed).
    limiter: Mutex<Arc<DefaultDirectRateLimiter>>,
    per_minute: AtomicU32,
    window: Option<Queue>,
    cooldown: Mutex<Cooldown>,
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("stopped while waiting for the API rate limit")]
    Cancelled,
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl RateGate {
    /// `window`: the queue whose `api_calls` table carries the cap across
    /// restarts; `None` keeps it in memory only.
    pub fn new(per_minute: u32, window: Option<Queue>) -> RateGate {
        let per_minute = per_minute.max(1);
        RateGate {
            limiter: Mutex::new(Arc::new(spacing(per_minute))),
            per_minute: AtomicU32::new(per_minute),
            window,
            cooldown: Mutex::new(Cooldown::default()),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute.load(Ordering::Relaxed)
    }

    /// A new cap (SIGHUP), effective for the next call.
    pub fn set_per_minute(&self, per_minute: u32) {
        let per_minute = per_minute.max(1);
        if self.per_minute.swap(per_minute, Ordering::Relaxed) != per_minute {
            *self.limiter.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(spacing(per_minute));
        }
    }

    /// Waits until one more retrieve call is allowed, and counts it.
    pub async fn acquire(&self, cancel: &CancellationToken) -> Result<(), GateError> {
        loop {
            if let Some(wait) = self.cooldown_remaining() {
                sleep_or_cancel(wait, cancel).await?;
                continue;
            }
            let limiter = self.current_limiter();
            tokio::select! {
                _ = cancel.cancelled() => return Err(GateError::Cancelled),
                _ = limiter.until_ready() => {}
            }
            let Some(queue) = &self.window else {
                return Ok(());
            };
            match queue.reserve_api_call(self.per_minute(), WINDOW).await? {
                None => return Ok(()),
                Some(retry_at) => {
                    let wait = Duration::from_millis((retry_at - now_millis()).max(1) as u64);
                    sleep_or_cancel(wait, cancel).await?;
                }
            }
        }
    }

    fn current_limiter(&self) -> Arc<DefaultDirectRateLimiter> {
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The API said "too many": every worker waits. Returns the cooldown.
    pub fn rate_limited(&self, retry_after: Option<Duration>) -> Duration {
        let mut state = self.cooldown.lock().unwrap_or_else(|p| p.into_inner());
        state.streak = state.streak.saturating_add(1);
        let wait = cooldown_for(state.streak, retry_after);
        let until = Instant::now() + wait;
        state.until = Some(state.until.map_or(until, |u| u.max(until)));
        wait
    }

    /// A call went through: the next rate-limit answer starts a new streak.
    pub fn succeeded(&self) {
        let mut state = self.cooldown.lock().unwrap_or_else(|p| p.into_inner());
        state.streak = 0;
    }

    pub fn cooldown_remaining(&self) -> Option<Duration> {
        let state = self.cooldown.lock().unwrap_or_else(|p| p.into_inner());
        state
            .until
            .and_then(|u| u.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

/// Even spacing of `per_minute` calls: a bucket of one token.
fn spacing(per_minute: u32) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs(60).div_f64(f64::from(per_minute.max(1)));
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("a non-zero period")
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct(quota)
}

async fn sleep_or_cancel(wait: Duration, cancel: &CancellationToken) -> Result<(), GateError> {
    tokio::select! {
        _ = cancel.cancelled() => Err(GateError::Cancelled),
        _ = tokio::time::sleep(wait) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_doubles_per_streak_and_caps() {
        assert_eq!(cooldown_for(1, None), Duration::from_secs(5));
        assert_eq!(cooldown_for(2, None), Duration::from_secs(10));
        assert_eq!(cooldown_for(3, None), Duration::from_secs(20));
        assert_eq!(cooldown_for(50, None), MAX_COOLDOWN);
    }

    #[test]
    fn retry_after_is_honoured_when_longer() {
        assert_eq!(
            cooldown_for(1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            cooldown_for(1, Some(Duration::from_secs(1))),
            Duration::from_secs(5)
        );
        // A server that keeps saying "1 s" still gets the growing backoff.
        assert_eq!(
            cooldown_for(3, Some(Duration::from_secs(1))),
            Duration::from_secs(20)
        );
    }

    #[tokio::test]
    async fn a_reloaded_rate_applies_to_the_next_call() {
        let gate = RateGate::new(1, None);
        let cancel = CancellationToken::new();
        gate.acquire(&cancel).await.unwrap();
        let second = tokio::time::timeout(Duration::from_millis(300), gate.acquire(&cancel)).await;
        assert!(second.is_err(), "one a minute: the second call waits");
        gate.set_per_minute(600_000);
        assert_eq!(gate.per_minute(), 600_000);
        let third = tokio::time::timeout(Duration::from_millis(300), gate.acquire(&cancel)).await;
        assert!(third.is_ok(), "the new rate lets it through");
    }

    #[tokio::test]
    async fn a_rate_limit_answer_holds_every_caller() {
        let gate = RateGate::new(600, None);
        gate.rate_limited(Some(Duration::from_secs(30)));
        let remaining = gate.cooldown_remaining().unwrap();
        assert!(remaining > Duration::from_secs(25) && remaining <= Duration::from_secs(30));
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(matches!(
            gate.acquire(&cancel).await,
            Err(GateError::Cancelled)
        ));
    }
}
