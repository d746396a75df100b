//! The rate of API calls (issue #24): `requests_per_minute = "auto"` finds
//! a hidden limit by itself and the fleet shares what it found; a fixed
//! number is never exceeded in any window, bursts included; a burst lets a
//! handful of files start at once. The minute is scaled down through the
//! test hook `MINIMAX_DL_TEST_RATE_WINDOW_MS` (and the simulator's hidden
//! limit counts over the same shorter window), so minutes of the real
//! thing run in seconds; BENCHMARKS.md has the full-size run.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use minimax_dl::parts::RateGate;
use minimax_dl::parts::{RateSettings, RequestRate};
use minimax_dl::queue::{DbLocation, Queue};
use minimax_sim::{HiddenLimit, SimConfig};
use tokio_util::sync::CancellationToken;

use crate::support::{self, PgTestDb, World, assert_success, enqueue, finish, ids, spawn};

/// The most calls in any `window` (sliding, over the sorted times).
fn most_in_any(window: Duration, times: &[SystemTime]) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let (mut most, mut start) = (0, 0);
    for (end, t) in sorted.iter().enumerate() {
        while t.duration_since(sorted[start]).unwrap_or_default() >= window {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}

fn tiny_files() -> SimConfig {
    SimConfig {
        default_file_size: 512,
        ..SimConfig::default()
    }
}

/// The Done-when of #24, with the minute scaled to 20 s: against a hidden
/// limit of 300 calls a window and a ceiling of 600, two processes on one
/// queue fetch 3,000 tiny files; in the settled part of the run the fleet
/// makes 80–100% of the limit's calls, under 5% of all calls draw a 1002,
/// and the rate both found (one row, `status`) ends within 80–100% of
/// the limit. (At 10 s the limit is 30 calls a second, and the settled
/// rate then measured the machine: on 2 loaded cores the fleet made 224
/// calls a window while the rate it had found was 274. At 20 s it needs
/// 15 a second, half what the same machine has shown it does.)
#[tokio::test(flavor = "multi_thread")]
async fn auto_finds_a_hidden_limit_and_two_processes_share_it() {
    const WINDOW: Duration = Duration::from_secs(20);
    const LIMIT: u32 = 300;
    const FILES: i64 = 3000;
    let sim = support::sim(SimConfig {
        hidden_limit: Some(HiddenLimit {
            calls: LIMIT,
            window: WINDOW,
        }),
        ..tiny_files()
    })
    .await;
    let world = World::new()
        .with_sim(&sim)
        .env("MINIMAX_DL_REQUESTS_PER_MINUTE", "auto")
        .env(
            "MINIMAX_DL_TEST_RATE_WINDOW_MS",
            &WINDOW.as_millis().to_string(),
        );
    std::fs::write(
        &world.config,
        "max_requests_per_minute = 600\nsidecar = false\n",
    )
    .unwrap();
    enqueue(&world, &ids(1..=FILES)).await;
    let runs: Vec<_> = (0..2)
        .map(|_| spawn(&world, &["run", "--exit-when-idle", "--concurrency", "8"]))
        .collect();
    for run in runs {
        let out = finish(run, Duration::from_secs(540)).await;
        assert_success(&out);
    }
    let status = world.status().await;
    assert_eq!(status["done"], FILES, "{status}");

    let stats = sim.stats();
    let refused = stats.hidden_limit_refusals as f64 / stats.api_requests as f64;
    let mut times = stats.api_request_times.clone();
    times.sort();
    // The settled part: after the doubling found the limit (call 1000 of
    // 3000 or more), before the queue runs dry (the last 300).
    let (from, to) = (times[1000], times[times.len() - 300]);
    let windows = to.duration_since(from).unwrap().as_secs_f64() / WINDOW.as_secs_f64();
    let settled = (times.len() - 1300) as f64 / windows;
    // The gate counts its cap over the window plus a second of slack (21 s
    // here): per 20 s of the simulator's window that is 20/21 of it.
    let window_secs = WINDOW.as_secs_f64();
    let found = status["rate"]["per_minute"].as_u64().unwrap_or_default() as f64 * window_secs
        / (window_secs + 1.0);
    eprintln!(
        "{} calls, {} refused ({:.1}%), {settled:.0} calls a window when settled, rate found {found:.0} a window, {} decreases",
        stats.api_requests,
        stats.hidden_limit_refusals,
        refused * 100.0,
        status["rate"]["decreases"]
    );
    assert!(refused < 0.05, "{:.1}% of calls refused", refused * 100.0);
    let limit = f64::from(LIMIT);
    assert!(
        settled >= 0.8 * limit && settled <= 1.05 * limit,
        "settled at {settled:.0} calls a window, limit {LIMIT}"
    );
    assert_eq!(status["rate"]["mode"], "auto", "{status}");
    assert!(
        (0.8 * limit..=limit).contains(&found),
        "the rate found: {found:.0} a window (limit {LIMIT})"
    );
}

/// A fixed `requests_per_minute` with bursts is never exceeded in any
/// window, counted by the simulator over every call it received.
#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_rate_is_never_exceeded_in_any_window_bursts_included() {
    const WINDOW: Duration = Duration::from_secs(3);
    const CAP: usize = 30;
    let sim = support::sim(tiny_files()).await;
    let world = World::new()
        .with_sim(&sim)
        .env("MINIMAX_DL_REQUESTS_PER_MINUTE", &CAP.to_string())
        .env(
            "MINIMAX_DL_TEST_RATE_WINDOW_MS",
            &WINDOW.as_millis().to_string(),
        );
    std::fs::write(&world.config, "burst = 10\n").unwrap();
    enqueue(&world, &ids(1..=120)).await;
    let runs: Vec<_> = (0..2)
        .map(|_| spawn(&world, &["run", "--exit-when-idle", "--concurrency", "8"]))
        .collect();
    for run in runs {
        assert_success(&finish(run, Duration::from_secs(120)).await);
    }
    assert_eq!(world.status().await["done"], 120);
    let times = sim.stats().api_request_times;
    let most = most_in_any(WINDOW, &times);
    assert!(
        most <= CAP,
        "{most} calls in one {WINDOW:?} window, cap {CAP}"
    );
    assert!(
        most >= CAP / 2,
        "the cap was in use ({most} calls at most in a window): the test proves nothing otherwise"
    );
}

/// `burst = 5` under 6 calls a minute: five files start at once instead of
/// one every ten seconds.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_starts_a_handful_of_files_at_once() {
    let sim = support::sim(tiny_files()).await;
    let world = World::new()
        .with_sim(&sim)
        .env("MINIMAX_DL_REQUESTS_PER_MINUTE", "6");
    std::fs::write(&world.config, "burst = 5\n").unwrap();
    enqueue(&world, &ids(1..=5)).await;
    let run = spawn(&world, &["run", "--exit-when-idle", "--concurrency", "5"]);
    // Evenly spaced, the fifth call would wait 40 s.
    assert_success(&finish(run, Duration::from_secs(30)).await);
    assert_eq!(world.status().await["done"], 5);
    assert_eq!(sim.stats().api_requests, 5);
}

/// Auto under a ceiling of 600, a burst wide enough that the test's calls
/// never wait for their spacing.
fn auto(window: Duration) -> RateSettings {
    RateSettings {
        requests: RequestRate::Auto { ceiling: 600 },
        burst: 30,
        window,
    }
}

/// Two gates on two handles of one queue (as two processes have): a
/// rate-limit answer met by one lowers the rate the other applies, and
/// a gate opened later (a restart) starts from it.
async fn two_gates_share_one_rate(location: DbLocation) {
    // A first cooldown of a second (a twelfth of the window).
    let window = Duration::from_secs(12);
    let (a, b) = (
        Queue::open_for_workers(&location).await.unwrap(),
        Queue::open_for_workers(&location).await.unwrap(),
    );
    let first = Arc::new(RateGate::configured(auto(window), Some(a)));
    let second = Arc::new(RateGate::configured(auto(window), Some(b.clone())));
    let cancel = CancellationToken::new();
    for _ in 0..30 {
        first.acquire(&cancel).await.unwrap();
    }
    assert_eq!((first.per_minute(), second.per_minute()), (60, 60));
    first.rate_limited(Some(Duration::from_millis(300))).await;
    // 30 calls of a rate of 60 went: the fleet's rate is 85% of 30.
    assert_eq!(first.per_minute(), 25);
    assert_eq!(first.decreases(), 1);
    // The other gate reads the rate before its call; the call itself then
    // waits for the window (30 calls in it, a cap of 25): not awaited here.
    let _ = tokio::time::timeout(Duration::from_secs(2), second.acquire(&cancel)).await;
    assert_eq!(second.per_minute(), 25, "the other process applies it");
    assert_eq!(second.rate_state().decreases, 1);
    let restarted = RateGate::configured(auto(window), Some(b));
    let _ = tokio::time::timeout(Duration::from_secs(2), restarted.acquire(&cancel)).await;
    assert_eq!(restarted.per_minute(), 25, "a restart starts from it");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gates_on_one_sqlite_queue_share_one_rate() {
    let dir = tempfile::tempdir().unwrap();
    let location = DbLocation(dir.path().join("q.db").to_string_lossy().into_owned());
    two_gates_share_one_rate(location).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gates_on_one_postgres_queue_share_one_rate() {
    let Some(db) = PgTestDb::create().await else {
        return;
    };
    two_gates_share_one_rate(db.location()).await;
}
