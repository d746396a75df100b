//! One gate every retrieve call passes through: an even spacing of calls
//! (governor, burst 1), a hard cap of N calls in any 60-second window kept in
//! the queue database (so it holds across restarts and across processes),
//! a cooldown after the API says "too many" (shared through the queue's
//! `fleet` row with every process using it), and a hold while the pool is
//! paused for an account-level error (the pool shares that pause through
//! the queue too: see `daemon::pool`).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

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

/// Why the pool is paused: the first account-level answer, as the worker
/// that met it saw it. Workers turned back by the hold report the same
/// problem, so the pool reports one cause whoever reports first.
#[derive(Clone, Debug, PartialEq)]
pub struct Hold {
    pub message: String,
    /// How long the API asked us to stay away (2056: an hour), if it did.
    pub pause: Option<Duration>,
}

pub struct RateGate {
    /// Replaced whole when the rate is reloaded (governor quotas are fixed).
    limiter: Mutex<Arc<DefaultDirectRateLimiter>>,
    per_minute: AtomicU32,
    window: Option<Queue>,
    cooldown: Mutex<Cooldown>,
    /// Set by the first account-level answer, cleared by the pool when its
    /// probe succeeds or a reload resumes it: until then, no worker calls
    /// the API (each further call would only meet the same answer).
    hold: Mutex<Option<Hold>>,
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("stopped while waiting for the API rate limit")]
    Cancelled,
    #[error("the pool is paused: {}", .0.message)]
    Held(Hold),
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
            hold: Mutex::new(None),
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

    /// Waits until one more retrieve call is allowed, and counts it. While
    /// the gate is held, returns [`GateError::Held`] instead, however long
    /// the caller has already waited.
    pub async fn acquire(&self, cancel: &CancellationToken) -> Result<(), GateError> {
        self.pass(cancel, true).await
    }

    /// [`acquire`](Self::acquire) for the pool's probe: the one call that
    /// may pass a held gate (still spaced and counted like any other).
    pub async fn acquire_probe(&self, cancel: &CancellationToken) -> Result<(), GateError> {
        self.pass(cancel, false).await
    }

    async fn pass(&self, cancel: &CancellationToken, honour_hold: bool) -> Result<(), GateError> {
        loop {
            if honour_hold && let Some(hold) = self.held() {
                return Err(GateError::Held(hold));
            }
            if let Some(wait) = self.cooldown_remaining() {
                sleep_or_cancel(wait, cancel).await?;
                continue;
            }
            let limiter = self.current_limiter();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(GateError::Cancelled),
                _ = limiter.until_ready() => {}
            }
            // The hold may have been set while we waited for our turn.
            if honour_hold && let Some(hold) = self.held() {
                return Err(GateError::Held(hold));
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

    /// The API said "too many": every worker waits, and through the queue
    /// every other process sharing it (whose next reservation answers with
    /// the cooldown's end). Returns the cooldown.
    pub async fn rate_limited(&self, retry_after: Option<Duration>) -> Duration {
        let wait = self.cool_here(retry_after);
        if let Some(queue) = &self.window
            && let Err(e) = queue.cool_fleet(wait).await
        {
            // This process still cools; the others learn of the limit
            // from their own answers.
            warn!("cannot share the rate-limit cooldown through the queue: {e}");
        }
        wait
    }

    fn cool_here(&self, retry_after: Option<Duration>) -> Duration {
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

    /// An account-level answer: stop every other caller before its next
    /// call. The first hold stands until [`release`](Self::release).
    pub fn hold(&self, hold: Hold) {
        let mut state = self.hold.lock().unwrap_or_else(|p| p.into_inner());
        state.get_or_insert(hold);
    }

    /// The pause is over: calls go through again.
    pub fn release(&self) {
        *self.hold.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn held(&self) -> Option<Hold> {
        self.hold.lock().unwrap_or_else(|p| p.into_inner()).clone()
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

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_answer_holds_every_caller_until_the_cooldown_ends() {
        let gate = RateGate::new(600, None);
        gate.rate_limited(Some(Duration::from_secs(30))).await;
        let started = Instant::now();
        gate.acquire(&CancellationToken::new()).await.unwrap();
        assert_eq!(
            started.elapsed().as_secs(),
            30,
            "the call waited the cooldown out, no less"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_waiting_out_a_cooldown_stops_when_cancelled() {
        let gate = Arc::new(RateGate::new(600, None));
        gate.rate_limited(Some(Duration::from_secs(30))).await;
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let waiting = tokio::spawn({
            let (gate, cancel) = (gate.clone(), cancel.clone());
            async move { gate.acquire(&cancel).await }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            !waiting.is_finished(),
            "still waiting 10 s into a 30 s cooldown"
        );
        cancel.cancel();
        let result = waiting.await.unwrap();
        assert!(matches!(result, Err(GateError::Cancelled)), "{result:?}");
        assert_eq!(started.elapsed().as_secs(), 10, "stopped when cancelled");
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_gate_turns_callers_back_and_lets_only_the_probe_through() {
        let gate = RateGate::new(600, None);
        let cancel = CancellationToken::new();
        let hold = Hold {
            message: "insufficient balance".into(),
            pause: None,
        };
        gate.hold(hold.clone());
        gate.hold(Hold {
            message: "a later answer".into(),
            pause: None,
        });
        match gate.acquire(&cancel).await {
            Err(GateError::Held(h)) => assert_eq!(h, hold, "the first cause stands"),
            other => panic!("expected Held, got {other:?}"),
        }
        gate.acquire_probe(&cancel).await.unwrap();
        gate.release();
        gate.acquire(&cancel).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_set_while_a_caller_waits_stops_it_before_its_call() {
        let gate = Arc::new(RateGate::new(600, None));
        gate.rate_limited(Some(Duration::from_secs(30))).await;
        let cancel = CancellationToken::new();
        let waiting = tokio::spawn({
            let (gate, cancel) = (gate.clone(), cancel.clone());
            async move { gate.acquire(&cancel).await }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        gate.hold(Hold {
            message: "insufficient balance".into(),
            pause: None,
        });
        let result = waiting.await.unwrap();
        assert!(matches!(result, Err(GateError::Held(_))), "{result:?}");
    }
}
