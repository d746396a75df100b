//! What the dashboard shows as it happens: downloads in flight with their
//! rate, the pause and its reason, the most recent errors. Plain data
//! updated by the observer; every method takes the time it is told, so the
//! tests need no clock.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

/// How long the rate of a transfer is averaged over.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Errors the dashboard lists.
pub(crate) const RECENT_ERRORS: usize = 20;

/// Bytes per second of one transfer, over about the last second; a
/// transfer that stalls decays toward zero instead of showing its last
/// rate forever.
#[derive(Clone, Debug)]
pub(crate) struct RateMeter {
    window_start: Instant,
    window_bytes: u64,
    rate: f64,
    /// A whole window has been measured (before that, the rate so far).
    measured: bool,
}

impl RateMeter {
    pub(crate) fn new(now: Instant) -> RateMeter {
        RateMeter {
            window_start: now,
            window_bytes: 0,
            rate: 0.0,
            measured: false,
        }
    }

    pub(crate) fn add(&mut self, bytes: u64, now: Instant) {
        self.window_bytes += bytes;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= RATE_WINDOW {
            self.rate = self.window_bytes as f64 / elapsed.as_secs_f64();
            self.window_start = now;
            self.window_bytes = 0;
            self.measured = true;
        }
    }

    pub(crate) fn rate(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.window_start);
        let so_far = || self.window_bytes as f64 / elapsed.as_secs_f64();
        if elapsed >= 2 * RATE_WINDOW || (!self.measured && !elapsed.is_zero()) {
            so_far()
        } else {
            self.rate
        }
    }
}

/// One download in flight.
#[derive(Clone, Debug)]
pub(crate) struct Flight {
    pub started: Instant,
    /// Bytes of the file on hand (resumed ones included).
    pub bytes_done: u64,
    pub total: Option<u64>,
    /// Bytes received in this turn: what the throughput is made of.
    pub turn_bytes: u64,
    pub meter: RateMeter,
}

/// A download in flight as the dashboard shows it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FlightView {
    /// A string: JavaScript numbers lose digits past 2^53.
    pub file_id: String,
    pub bytes_done: u64,
    pub total: Option<u64>,
    pub bytes_per_sec: f64,
    pub elapsed_secs: f64,
}

/// A turn that ended in an error, for the dashboard's list.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RecentError {
    pub file_id: String,
    pub at_ms: u64,
    pub outcome: &'static str,
    pub error: String,
}

/// Why the pool is paused, since when, and when it next checks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct PauseView {
    /// "account" or "disk".
    pub reason: &'static str,
    pub message: String,
    pub since_ms: u64,
    pub next_probe_ms: u64,
}

/// The live state behind the dashboard.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub flights: HashMap<i64, Flight>,
    pub errors: VecDeque<RecentError>,
    pub pause: Option<PauseView>,
}

impl Live {
    pub(crate) fn started(&mut self, file_id: i64, bytes_done: u64, now: Instant) {
        let flight = Flight {
            started: now,
            bytes_done,
            total: None,
            turn_bytes: 0,
            meter: RateMeter::new(now),
        };
        self.flights.insert(file_id, flight);
    }

    pub(crate) fn transferred(&mut self, file_id: i64, bytes: u64, now: Instant) {
        if let Some(f) = self.flights.get_mut(&file_id) {
            f.bytes_done += bytes;
            f.turn_bytes += bytes;
            f.meter.add(bytes, now);
        }
    }

    pub(crate) fn error(&mut self, file_id: i64, outcome: &'static str, error: &str) {
        if self.errors.len() == RECENT_ERRORS {
            self.errors.pop_back();
        }
        self.errors.push_front(RecentError {
            file_id: file_id.to_string(),
            at_ms: unix_ms(SystemTime::now()),
            outcome,
            error: error.to_string(),
        });
    }

    /// The downloads in flight, oldest first.
    pub(crate) fn flights(&self, now: Instant) -> Vec<FlightView> {
        let mut flights: Vec<(&i64, &Flight)> = self.flights.iter().collect();
        flights.sort_by_key(|(id, f)| (f.started, **id));
        flights
            .into_iter()
            .map(|(id, f)| FlightView {
                file_id: id.to_string(),
                bytes_done: f.bytes_done,
                total: f.total,
                bytes_per_sec: f.meter.rate(now),
                elapsed_secs: now.saturating_duration_since(f.started).as_secs_f64(),
            })
            .collect()
    }

    /// A pause reported by the pool: the same reason keeps its start time.
    pub(crate) fn pause(&mut self, reason: &'static str, message: &str, until_probe: Duration) {
        let now = SystemTime::now();
        let since_ms = match &self.pause {
            Some(p) if p.reason == reason => p.since_ms,
            _ => unix_ms(now),
        };
        self.pause = Some(PauseView {
            reason,
            message: message.to_string(),
            since_ms,
            next_probe_ms: unix_ms(now + until_probe),
        });
    }
}

pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_the_last_second_and_decays_when_the_transfer_stalls() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(t0);
        assert_eq!(m.rate(t0), 0.0);
        m.add(500_000, t0 + Duration::from_millis(500));
        assert_eq!(
            m.rate(t0 + Duration::from_millis(500)),
            1_000_000.0,
            "the rate so far"
        );
        m.add(500_000, t0 + Duration::from_secs(1));
        assert_eq!(m.rate(t0 + Duration::from_millis(1500)), 1_000_000.0);
        // Nothing for 4 s: the rate shown falls to what came in since.
        assert_eq!(m.rate(t0 + Duration::from_secs(5)), 0.0);
    }

    #[test]
    fn flights_count_resumed_bytes_and_this_turns_bytes_apart() {
        let t0 = Instant::now();
        let mut live = Live::default();
        live.started(7, 1000, t0);
        live.transferred(7, 24, t0);
        live.transferred(8, 99, t0); // not in flight: ignored
        let f = &live.flights[&7];
        assert_eq!((f.bytes_done, f.turn_bytes), (1024, 24));
        let views = live.flights(t0);
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].file_id, "7");
    }

    #[test]
    fn recent_errors_keep_the_newest_first_and_at_most_their_number() {
        let mut live = Live::default();
        for id in 0..(RECENT_ERRORS as i64 + 5) {
            live.error(id, "retry", "boom");
        }
        assert_eq!(live.errors.len(), RECENT_ERRORS);
        assert_eq!(live.errors[0].file_id, (RECENT_ERRORS + 4).to_string());
    }

    #[test]
    fn a_pause_reported_again_keeps_its_start_and_moves_its_probe() {
        let mut live = Live::default();
        live.pause("account", "1008 no balance", Duration::from_secs(60));
        let first = live.pause.clone().unwrap();
        live.pause("account", "1008 no balance", Duration::from_secs(3600));
        let again = live.pause.clone().unwrap();
        assert_eq!(again.since_ms, first.since_ms);
        assert!(again.next_probe_ms > first.next_probe_ms);
    }
}
