//! One gate every API call passes through: a spacing of calls (governor,
//! with a burst of `burst` calls at once), a hard cap of N calls in any
//! window (60 s) kept in the queue database (so it holds across restarts
//! and across processes), a cooldown after the API says "too many" (shared
//! through the queue's `fleet` row with every process using it), and a hold
//! while the pool is paused for an account-level error (the pool shares
//! that pause through the queue too: see `daemon::pool`).
//!
//! N is either fixed (`requests_per_minute = 60`), or found by the fleet
//! (`"auto"`): the queue's `api_rate` row holds the rate every process
//! obeys, moved by [`crate::rate`]'s rules. Each process reads it at least
//! every twelfth of a window (and after every wait the window imposed),
//! which is also when a window without a rate-limit answer raises it; a
//! rate-limit answer lowers it at once, with the fleet's cooldown, in the
//! same transaction.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{DEFAULT_BURST, RATE_WINDOW, RateSettings, RequestRate};
use crate::queue::{Queue, QueueError, now_millis};
use crate::rate::{Change, RateEvent, RateLimits, RateState};

/// The window the cap is counted over, with a second of slack so calls that
/// leave a little late still fall inside a 60-second window at the server.
pub(crate) const WINDOW: Duration = Duration::from_secs(61);

/// The counting window for a nominal one: [`WINDOW`] for 60 s. The slack
/// is a second whatever the window (a test's shorter one too): it covers
/// the spread of the delay between a reservation and the call reaching
/// the server, which does not shrink with the window.
pub(crate) fn counting_window(nominal: Duration) -> Duration {
    nominal + Duration::from_secs(1)
}

/// First cooldown after a rate-limit answer without `Retry-After`; doubles
/// with each further one in a row, up to five minutes. (A test's
/// shorter window shortens both in proportion.)
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(5);

/// How long the pool waits after the `streak`-th rate-limit answer in a row
/// (1-based), under a cap's window of `window` (60 s in production).
/// `Retry-After` is honoured when it asks for longer.
pub(crate) fn cooldown_in(
    window: Duration,
    streak: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let first = window / 12;
    let exponent = streak.saturating_sub(1).min(16);
    let backoff = first.saturating_mul(1 << exponent).min(window * 5);
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

/// The adaptive rate as this process last read it from the queue.
struct Adaptive {
    /// When the shared rate was last read (and ticked).
    read_at: Option<Instant>,
    /// The state read, or kept here when there is no queue.
    state: RateState,
}

pub struct RateGate {
    /// Replaced whole when the cap changes (governor quotas are fixed).
    limiter: Mutex<Arc<DefaultDirectRateLimiter>>,
    /// The cap in force: the fixed number, or the fleet's current rate.
    per_minute: AtomicU32,
    settings: Mutex<RateSettings>,
    window: Option<Queue>,
    adaptive: Mutex<Adaptive>,
    /// Decreases of the adaptive rate this process made.
    decreases: AtomicU64,
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
    /// A fixed cap of `per_minute` with the default burst. `window`: the
    /// queue whose `api_calls` table carries the cap across restarts;
    /// `None` keeps it in memory only.
    pub fn new(per_minute: u32, window: Option<Queue>) -> RateGate {
        RateGate::configured(
            RateSettings {
                requests: RequestRate::Fixed(per_minute.max(1)),
                burst: DEFAULT_BURST,
                window: RATE_WINDOW,
            },
            window,
        )
    }

    /// A gate as the settings say. Without a queue, `auto` starts at
    /// [`crate::rate::START`] and only goes down (nothing counts the
    /// calls a window made, so nothing proves a higher rate).
    pub fn configured(settings: RateSettings, window: Option<Queue>) -> RateGate {
        let limits = limits_of(&settings);
        let per_minute = match settings.requests {
            RequestRate::Fixed(n) => n.max(1),
            RequestRate::Auto { .. } => RateState::default().cap(&limits),
        };
        RateGate {
            limiter: Mutex::new(Arc::new(spacing(&settings, per_minute))),
            per_minute: AtomicU32::new(per_minute),
            settings: Mutex::new(settings),
            window,
            adaptive: Mutex::new(Adaptive {
                read_at: None,
                state: RateState::fresh(&limits, 0),
            }),
            decreases: AtomicU64::new(0),
            cooldown: Mutex::new(Cooldown::default()),
            hold: Mutex::new(None),
        }
    }

    /// The cap in force now (calls in any window).
    pub fn per_minute(&self) -> u32 {
        self.per_minute.load(Ordering::Relaxed)
    }

    pub fn settings(&self) -> RateSettings {
        *lock(&self.settings)
    }

    /// The adaptive rate's ceiling; `None` for a fixed cap.
    pub fn ceiling(&self) -> Option<u32> {
        match self.settings().requests {
            RequestRate::Auto { ceiling } => Some(ceiling),
            RequestRate::Fixed(_) => None,
        }
    }

    /// Decreases of the adaptive rate this process made.
    pub fn decreases(&self) -> u64 {
        self.decreases.load(Ordering::Relaxed)
    }

    /// The adaptive rate as last read (all processes' decreases included).
    pub fn rate_state(&self) -> RateState {
        lock(&self.adaptive).state
    }

    /// A new fixed cap (a test's reload), effective for the next call.
    pub fn set_per_minute(&self, per_minute: u32) {
        let settings = RateSettings {
            requests: RequestRate::Fixed(per_minute.max(1)),
            ..self.settings()
        };
        self.set_settings(settings);
    }

    /// New settings (SIGHUP), effective for the next call: an adaptive
    /// rate is read again from the queue at once.
    pub fn set_settings(&self, settings: RateSettings) {
        *lock(&self.settings) = settings;
        lock(&self.adaptive).read_at = None;
        let cap = match settings.requests {
            RequestRate::Fixed(n) => n.max(1),
            RequestRate::Auto { .. } => self.rate_state().cap(&limits_of(&settings)),
        };
        self.set_cap(cap, &settings, true);
    }

    fn set_cap(&self, per_minute: u32, settings: &RateSettings, force: bool) {
        let per_minute = per_minute.max(1);
        if self.per_minute.swap(per_minute, Ordering::Relaxed) != per_minute || force {
            *lock(&self.limiter) = Arc::new(spacing(settings, per_minute));
        }
    }

    /// Waits until one more API call is allowed, and counts it. While
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
            self.read_rate().await?;
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
            let window = counting_window(self.settings().window);
            match queue.reserve_api_call(self.per_minute(), window).await? {
                None => return Ok(()),
                Some(retry_at) => {
                    // Another process may have lowered the rate (its
                    // cooldown is why we wait): read it again after.
                    lock(&self.adaptive).read_at = None;
                    let wait = Duration::from_millis((retry_at - now_millis()).max(1) as u64);
                    sleep_or_cancel(wait, cancel).await?;
                }
            }
        }
    }

    /// Auto: reads the fleet's rate (and lets a window that passed
    /// without a rate-limit answer raise it) when the last read is a
    /// twelfth of a window old.
    async fn read_rate(&self) -> Result<(), QueueError> {
        let settings = self.settings();
        let (RequestRate::Auto { .. }, Some(queue)) = (settings.requests, &self.window) else {
            return Ok(());
        };
        let due = lock(&self.adaptive)
            .read_at
            .is_none_or(|at| at.elapsed() >= settings.window / 12);
        if !due {
            return Ok(());
        }
        let limits = limits_of(&settings);
        let event = RateEvent::Tick(limits);
        let (state, change) = queue
            .move_rate(counting_window(settings.window), None, event)
            .await?;
        if change == Change::Increased {
            info!(
                requests_per_minute = state.cap(&limits),
                "no rate-limit answer for a window: the API rate goes up"
            );
        }
        self.adopt(state, &settings);
        Ok(())
    }

    fn adopt(&self, state: RateState, settings: &RateSettings) {
        {
            let mut adaptive = lock(&self.adaptive);
            adaptive.state = state;
            adaptive.read_at = Some(Instant::now());
        }
        self.set_cap(state.cap(&limits_of(settings)), settings, false);
    }

    fn current_limiter(&self) -> Arc<DefaultDirectRateLimiter> {
        lock(&self.limiter).clone()
    }

    /// The API said "too many": every worker waits, and through the queue
    /// every other process sharing it (whose next reservation answers with
    /// the cooldown's end). An adaptive rate goes down, for the whole
    /// fleet, in the same transaction. Returns the cooldown.
    pub async fn rate_limited(&self, retry_after: Option<Duration>) -> Duration {
        let settings = self.settings();
        let wait = self.cool_here(retry_after, settings.window);
        let auto = matches!(settings.requests, RequestRate::Auto { .. });
        let Some(queue) = &self.window else {
            if auto {
                let now = now_millis();
                let (state, change) = self.rate_state().limited(&limits_of(&settings), now, 0);
                self.lowered(state, change, &settings);
            }
            return wait;
        };
        let shared = match auto {
            false => queue.cool_fleet(wait).await,
            true => {
                let event = RateEvent::Limited(limits_of(&settings));
                let window = counting_window(settings.window);
                match queue.move_rate(window, Some(wait), event).await {
                    Ok((state, change)) => {
                        self.lowered(state, change, &settings);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = shared {
            // This process still cools; the others learn of the limit
            // from their own answers.
            warn!("cannot share the rate-limit cooldown through the queue: {e}");
        }
        wait
    }

    fn lowered(&self, state: RateState, change: Change, settings: &RateSettings) {
        if change == Change::Decreased {
            self.decreases.fetch_add(1, Ordering::Relaxed);
            info!(
                requests_per_minute = state.cap(&limits_of(settings)),
                "a rate-limit answer: the API rate goes down for every process"
            );
        }
        self.adopt(state, settings);
    }

    fn cool_here(&self, retry_after: Option<Duration>, window: Duration) -> Duration {
        let mut state = lock(&self.cooldown);
        state.streak = state.streak.saturating_add(1);
        let wait = cooldown_in(window, state.streak, retry_after);
        let until = Instant::now() + wait;
        state.until = Some(state.until.map_or(until, |u| u.max(until)));
        wait
    }

    /// A call went through: the next rate-limit answer starts a new streak.
    pub fn succeeded(&self) {
        lock(&self.cooldown).streak = 0;
    }

    /// An account-level answer: stop every other caller before its next
    /// call. The first hold stands until [`release`](Self::release).
    pub fn hold(&self, hold: Hold) {
        lock(&self.hold).get_or_insert(hold);
    }

    /// The pause is over: calls go through again.
    pub fn release(&self) {
        *lock(&self.hold) = None;
    }

    pub fn held(&self) -> Option<Hold> {
        lock(&self.hold).clone()
    }

    pub fn cooldown_remaining(&self) -> Option<Duration> {
        let state = lock(&self.cooldown);
        state
            .until
            .and_then(|u| u.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

/// The adaptive rate's bounds under these settings (a fixed cap has a
/// ceiling of itself, for a gate switched to auto by a reload).
pub(crate) fn limits_of(settings: &RateSettings) -> RateLimits {
    let window_ms = settings.window.as_millis().min(i64::MAX as u128) as i64;
    RateLimits::new(settings.requests.most(), window_ms)
}

/// `per_minute` calls a window (a minute), up to `burst` of them at once
/// (never more than the cap itself): GCRA with that bucket. The window's
/// hard cap is the queue's; this only spreads the calls.
fn spacing(settings: &RateSettings, per_minute: u32) -> DefaultDirectRateLimiter {
    let burst = settings.burst;
    let period = settings.window.div_f64(f64::from(per_minute.max(1)));
    let burst = NonZeroU32::new(burst.clamp(1, per_minute.max(1))).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("a non-zero period")
        .allow_burst(burst);
    RateLimiter::direct(quota)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

    fn cooldown_for(streak: u32, retry_after: Option<Duration>) -> Duration {
        cooldown_in(RATE_WINDOW, streak, retry_after)
    }

    #[test]
    fn cooldown_doubles_per_streak_and_caps() {
        assert_eq!(cooldown_for(1, None), Duration::from_secs(5));
        assert_eq!(cooldown_for(2, None), Duration::from_secs(10));
        assert_eq!(cooldown_for(3, None), Duration::from_secs(20));
        assert_eq!(cooldown_for(50, None), Duration::from_secs(300));
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
    async fn a_burst_lets_that_many_calls_go_at_once_then_spaces_the_rest() {
        let gate = RateGate::configured(
            RateSettings {
                requests: RequestRate::Fixed(6),
                burst: 5,
                window: RATE_WINDOW,
            },
            None,
        );
        let cancel = CancellationToken::new();
        for n in 1..=5 {
            let call = tokio::time::timeout(Duration::from_secs(5), gate.acquire(&cancel)).await;
            assert!(call.is_ok(), "call {n} of the burst went at once");
        }
        let sixth = tokio::time::timeout(Duration::from_millis(300), gate.acquire(&cancel)).await;
        assert!(sixth.is_err(), "the sixth waits its turn (10 s)");
    }

    #[test]
    fn a_burst_is_never_wider_than_the_cap() {
        let settings = RateSettings {
            requests: RequestRate::Fixed(2),
            burst: 10,
            window: RATE_WINDOW,
        };
        let limiter = spacing(&settings, 2);
        assert!(limiter.check_n(NonZeroU32::new(2).unwrap()).is_ok());
        assert!(limiter.check().is_err(), "two a minute: no third at once");
    }

    #[tokio::test(start_paused = true)]
    async fn an_auto_rate_drops_on_a_rate_limit_answer_and_reports_it() {
        let gate = RateGate::configured(
            RateSettings {
                requests: RequestRate::Auto { ceiling: 600 },
                burst: DEFAULT_BURST,
                window: RATE_WINDOW,
            },
            None,
        );
        assert_eq!((gate.per_minute(), gate.ceiling()), (60, Some(600)));
        let wait = gate.rate_limited(None).await;
        assert_eq!(wait, FIRST_COOLDOWN);
        assert_eq!(gate.per_minute(), 25, "half of 60, times 0.85");
        assert_eq!(gate.decreases(), 1);
        // Calls in flight answering the same at once count once.
        gate.rate_limited(None).await;
        assert_eq!((gate.per_minute(), gate.decreases()), (25, 1));
    }

    #[test]
    fn a_shorter_test_window_shortens_the_cooldowns_in_proportion() {
        let window = Duration::from_secs(6);
        assert_eq!(cooldown_in(window, 1, None), Duration::from_millis(500));
        assert_eq!(cooldown_in(window, 50, None), Duration::from_secs(30));
        assert_eq!(counting_window(window), Duration::from_secs(7));
        assert_eq!(counting_window(RATE_WINDOW), WINDOW);
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
