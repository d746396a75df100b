//! The adaptive rate (`requests_per_minute = "auto"`): how many API calls a
//! minute the whole fleet may make, found by trying. MiniMax publishes no
//! limit for retrieve or query, so the rate climbs while no call in a window
//! draws a rate-limit answer and drops when one does: additive increase,
//! multiplicative decrease, as TCP does with its window (and a "slow start"
//! that doubles until the first rate-limit answer).
//!
//! Pure: a [`RateState`] and an event with the time it happened (database
//! milliseconds, so every process of a fleet reads one clock) give the next
//! state. The queue stores the state (so it is shared and survives
//! restarts); the gate applies it. Nothing here sleeps or reads a clock.

/// Milliseconds on the clock that orders the events (the queue database's).
pub type Millis = i64;

/// The lowest rate the search goes to: one call every six seconds. Below
/// this a rate-limit answer only lengthens the cooldown.
pub const FLOOR: u32 = 10;

/// Where the search starts: the fixed default of earlier versions.
pub const START: u32 = 60;

/// Default ceiling (`max_requests_per_minute`).
pub const DEFAULT_CEILING: u32 = 600;

/// What a rate-limit answer multiplies the rate by. Above one half (TCP's
/// Reno) so the sawtooth stays within 85–100% of the account's limit.
pub const DECREASE: f64 = 0.85;

/// The bounds of the search and the window it is counted over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    pub floor: u32,
    /// `max_requests_per_minute`: never more, whatever the API allows.
    pub ceiling: u32,
    /// The window a cap is counted over (60 s; shorter only in tests).
    pub window_ms: Millis,
}

impl RateLimits {
    pub fn new(ceiling: u32, window_ms: Millis) -> RateLimits {
        let ceiling = ceiling.max(1);
        RateLimits {
            floor: FLOOR.min(ceiling),
            ceiling,
            window_ms: window_ms.max(1),
        }
    }

    /// What one clean window adds once the first rate-limit answer ended
    /// the doubling: a sixtieth of the ceiling (10 a minute under 600).
    pub fn step(&self) -> f64 {
        (f64::from(self.ceiling) / 60.0).max(1.0)
    }

    /// Rate-limit answers within this time of a decrease are the same
    /// event (calls already in flight when it happened): one decrease.
    pub fn settle_ms(&self) -> Millis {
        (self.window_ms / 12).max(1)
    }

    fn clamp(&self, rate: f64) -> f64 {
        rate.clamp(f64::from(self.floor), f64::from(self.ceiling))
    }
}

/// The shared state of the search, as the queue stores it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateState {
    /// Calls a minute; 0 while the search has not begun.
    pub per_minute: f64,
    /// When the current window of observation began.
    pub window_start: Millis,
    /// Still doubling: no rate-limit answer has been met yet.
    pub probing: bool,
    /// Rate-limit answers that lowered the rate, ever.
    pub decreases: u64,
    pub last_decrease: Option<Millis>,
}

impl Default for RateState {
    /// The stored row before anything happened: the search has not begun.
    fn default() -> RateState {
        RateState {
            per_minute: 0.0,
            window_start: 0,
            probing: true,
            decreases: 0,
            last_decrease: None,
        }
    }
}

/// What an event did to the rate (for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    Increased,
    Decreased,
}

impl RateState {
    /// The search's first state at `now`.
    pub fn fresh(limits: &RateLimits, now: Millis) -> RateState {
        RateState {
            per_minute: limits.clamp(f64::from(START)),
            window_start: now,
            ..RateState::default()
        }
    }

    /// The cap in force: whole calls a minute, within the bounds (a
    /// ceiling lowered since the rate was found applies at once).
    pub fn cap(&self, limits: &RateLimits) -> u32 {
        if self.per_minute <= 0.0 {
            return RateState::fresh(limits, 0).cap(limits);
        }
        limits.clamp(self.per_minute).floor() as u32
    }

    fn begun(self, limits: &RateLimits, now: Millis) -> RateState {
        if self.per_minute <= 0.0 {
            return RateState::fresh(limits, now);
        }
        RateState {
            per_minute: limits.clamp(self.per_minute),
            // A clock that stepped back restarts the window rather than
            // waiting for it to come round again.
            window_start: self.window_start.min(now),
            ..self
        }
    }

    /// Time passed: a window with no rate-limit answer, in which at least
    /// half the rate was used, raises it (doubling until the first
    /// rate-limit answer, then one step). An unused rate proves nothing
    /// about the limit, so it does not grow (RFC 7661's reasoning).
    /// `calls_in_window`: calls the fleet made in the last window.
    pub fn tick(
        self,
        limits: &RateLimits,
        now: Millis,
        calls_in_window: u64,
    ) -> (RateState, Change) {
        let mut s = self.begun(limits, now);
        if now - s.window_start < limits.window_ms {
            return (s, Change::None);
        }
        s.window_start = now;
        let used = calls_in_window as f64 >= s.per_minute / 2.0;
        if !used || s.per_minute >= f64::from(limits.ceiling) {
            return (s, Change::None);
        }
        let raised = if s.probing {
            s.per_minute * 2.0
        } else {
            s.per_minute + limits.step()
        };
        s.per_minute = limits.clamp(raised);
        (s, Change::Increased)
    }

    /// A call drew a rate-limit answer (1002, 1039, 429). The rate drops to
    /// [`DECREASE`] times what was really being sent: the calls in the
    /// window, when they were at least half the rate (in a doubling that
    /// overshot, the calls that went are the better guess of the limit),
    /// else half the rate. Answers within [`RateLimits::settle_ms`] of a
    /// decrease are the same event. Either way the window starts over.
    pub fn limited(
        self,
        limits: &RateLimits,
        now: Millis,
        calls_in_window: u64,
    ) -> (RateState, Change) {
        let mut s = self.begun(limits, now);
        s.window_start = now;
        if s.last_decrease
            .is_some_and(|at| at <= now && now - at < limits.settle_ms())
        {
            return (s, Change::None);
        }
        let sent = (calls_in_window as f64).max(s.per_minute / 2.0);
        s.per_minute = limits.clamp(sent.min(s.per_minute) * DECREASE);
        s.probing = false;
        s.decreases += 1;
        s.last_decrease = Some(now);
        (s, Change::Decreased)
    }
}

/// What happened, for a store that applies it to the state it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateEvent {
    /// Time passed ([`RateState::tick`]).
    Tick(RateLimits),
    /// A rate-limit answer ([`RateState::limited`]).
    Limited(RateLimits),
}

impl RateEvent {
    pub fn apply(self, state: RateState, now: Millis, calls_in_window: u64) -> (RateState, Change) {
        match self {
            RateEvent::Tick(l) => state.tick(&l, now, calls_in_window),
            RateEvent::Limited(l) => state.limited(&l, now, calls_in_window),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Millis = 60_000;

    fn limits() -> RateLimits {
        RateLimits::new(600, MINUTE)
    }

    #[test]
    fn the_search_starts_at_the_old_default_within_the_bounds() {
        let cases = [(600, 60), (30, 30), (5, 5)];
        for (ceiling, start) in cases {
            let l = RateLimits::new(ceiling, MINUTE);
            assert_eq!(RateState::default().cap(&l), start, "ceiling {ceiling}");
            let (s, _) = RateState::default().tick(&l, 1_000, 0);
            assert_eq!(s.cap(&l), start);
            assert_eq!(
                s.window_start, 1_000,
                "the window starts when the search does"
            );
        }
    }

    #[test]
    fn a_clean_used_window_raises_the_rate() {
        // (probing, rate, calls in window, elapsed, expected rate, change)
        let cases = [
            (true, 60.0, 60, MINUTE, 120.0, Change::Increased),
            (true, 400.0, 400, MINUTE, 600.0, Change::Increased),
            (false, 255.0, 255, MINUTE, 265.0, Change::Increased),
            (false, 255.0, 128, MINUTE, 265.0, Change::Increased),
            // Less than half the rate used: nothing learnt.
            (false, 255.0, 100, MINUTE, 255.0, Change::None),
            // The window is not over yet.
            (false, 255.0, 255, MINUTE - 1, 255.0, Change::None),
            (false, 600.0, 600, MINUTE, 600.0, Change::None),
        ];
        for (probing, rate, calls, elapsed, expected, change) in cases {
            let s = RateState {
                per_minute: rate,
                window_start: 0,
                probing,
                ..RateState::default()
            };
            let (next, did) = s.tick(&limits(), elapsed, calls);
            assert_eq!(
                (next.per_minute, did),
                (expected, change),
                "{s:?} after {elapsed}"
            );
            let restarted = if elapsed >= MINUTE { elapsed } else { 0 };
            assert_eq!(next.window_start, restarted);
        }
    }

    #[test]
    fn a_rate_limit_answer_lowers_the_rate_once_per_event() {
        let s = RateState {
            per_minute: 480.0,
            window_start: 0,
            probing: true,
            ..RateState::default()
        };
        // A doubling overshot: 316 calls went out when the answer came.
        let (s, did) = s.limited(&limits(), 20_000, 316);
        assert_eq!(did, Change::Decreased);
        assert!((s.per_minute - 316.0 * DECREASE).abs() < 1e-9, "{s:?}");
        assert!(!s.probing, "the doubling is over");
        assert_eq!((s.decreases, s.last_decrease), (1, Some(20_000)));
        // Calls in flight at the time answer the same within the settle time.
        let (same, did) = s.limited(&limits(), 20_000 + limits().settle_ms() - 1, 320);
        assert_eq!(did, Change::None);
        assert_eq!(same.per_minute, s.per_minute);
        assert_eq!(
            same.window_start,
            20_000 + limits().settle_ms() - 1,
            "the window starts over"
        );
        // A later answer is a new event.
        let (lower, did) = same.limited(&limits(), 20_000 + limits().settle_ms(), 300);
        assert_eq!(did, Change::Decreased);
        assert!(
            (lower.per_minute - 268.6 * DECREASE).abs() < 1e-9,
            "{lower:?}"
        );
        assert_eq!(lower.decreases, 2);
    }

    #[test]
    fn a_decrease_goes_by_half_the_rate_when_little_was_sent_and_stops_at_the_floor() {
        let cases = [
            // (rate, calls, expected)
            (60.0, 3, 30.0 * DECREASE),
            (600.0, 116, 300.0 * DECREASE),
            (600.0, 700, 600.0 * DECREASE),
            (11.0, 11, f64::from(FLOOR)),
        ];
        for (rate, calls, expected) in cases {
            let s = RateState {
                per_minute: rate,
                ..RateState::default()
            };
            let (next, _) = s.limited(&limits(), 1_000, calls);
            assert!(
                (next.per_minute - expected).abs() < 1e-9,
                "{rate} {calls}: {next:?}"
            );
        }
    }

    #[test]
    fn a_lowered_ceiling_applies_at_once_and_a_clock_step_back_restarts_the_window() {
        let s = RateState {
            per_minute: 500.0,
            window_start: 100_000,
            probing: false,
            ..RateState::default()
        };
        let low = RateLimits::new(200, MINUTE);
        assert_eq!(s.cap(&low), 200);
        let (next, did) = s.tick(&low, 50_000, 500);
        assert_eq!(did, Change::None);
        assert_eq!((next.per_minute, next.window_start), (200.0, 50_000));
    }

    /// A simulated minute-by-minute run against a server that answers
    /// "too many" beyond `limit` accepted calls in any 60 s, with a client
    /// that always has work: the rate settles within 80–100% of the limit
    /// and under 5% of calls are refused.
    #[test]
    fn the_search_settles_under_a_hidden_limit() {
        for limit in [50_usize, 300, 550] {
            let (sent, refused, settled) = simulate(limit, 30 * MINUTE);
            let share = refused as f64 / sent as f64;
            assert!(share < 0.05, "limit {limit}: {refused} of {sent} refused");
            let (low, high) = (0.8 * limit as f64, limit as f64);
            assert!(
                settled >= low && settled <= high,
                "limit {limit}: settled at {settled:.0} a minute"
            );
        }
    }

    /// Steps of 100 ms: the client spaces calls evenly at its cap and
    /// holds at most the cap in its own window (as the gate does), cools
    /// down 5 s after a refusal. Returns (sent, refused, calls accepted a
    /// minute over the last half).
    fn simulate(limit: usize, length: Millis) -> (usize, usize, f64) {
        use std::collections::VecDeque;
        let l = limits();
        let mut state = RateState::default();
        let (mut ours, mut accepted) = (VecDeque::new(), VecDeque::new());
        let (mut sent, mut refused, mut late) = (0, 0, 0);
        let mut credit = 0.0;
        let mut cool_until = 0;
        let mut now = 0;
        while now < length {
            now += 100;
            while ours.front().is_some_and(|t| now - t >= MINUTE) {
                ours.pop_front();
            }
            while accepted.front().is_some_and(|t| now - t >= MINUTE) {
                accepted.pop_front();
            }
            state = state.tick(&l, now, ours.len() as u64).0;
            let cap = state.cap(&l);
            credit = (credit + f64::from(cap) / 600.0).min(1.0 + f64::from(cap) / 600.0);
            while credit >= 1.0 && now >= cool_until && ours.len() < cap as usize {
                credit -= 1.0;
                sent += 1;
                ours.push_back(now);
                if accepted.len() >= limit {
                    refused += 1;
                    state = state.limited(&l, now, ours.len() as u64).0;
                    cool_until = now + 5_000;
                } else {
                    accepted.push_back(now);
                    late += usize::from(now >= length / 2);
                }
            }
        }
        (
            sent,
            refused,
            late as f64 / ((length / 2) as f64 / MINUTE as f64),
        )
    }
}
