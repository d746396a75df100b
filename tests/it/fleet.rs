//! Several `run` processes sharing one queue: what one of them learns from
//! the API (an account-level answer, a rate limit) holds for all of them,
//! through the queue's `fleet` row. On SQLite the processes share a host;
//! the same rules hold for hosts sharing a PostgreSQL queue.

use std::time::{Duration, Instant, SystemTime};

use minimax_dl::sim::{ApiFault, ApiFaultRule, Faults, SimConfig};

use crate::support::{
    self, World, assert_success, assert_verified, finish, queue, signal, spawn, wait_for,
};

/// Calls the simulator saw at or after `from`, before `to`.
fn calls_between(times: &[SystemTime], from: SystemTime, to: SystemTime) -> usize {
    times.iter().filter(|t| **t >= from && **t < to).count()
}

/// Two daemons on one queue. When the balance runs out, the first 1008
/// pauses both: neither claims, and the probe is taken by one process at a
/// time, so while the account stays empty the API sees one call per probe
/// interval, not one per process. One successful probe resumes both.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_pause_stops_every_process_and_one_probe_lifts_it_for_all() {
    const INTERVAL: Duration = Duration::from_secs(3);
    let no_balance = ApiFaultRule::new(ApiFault::Code(1008, "insufficient balance".into()));
    let sim = support::sim(SimConfig {
        faults: Faults {
            api: vec![no_balance],
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new()
        .with_sim(&sim)
        .env("MINIMAX_DL_REQUESTS_PER_MINUTE", "600");
    std::fs::write(
        &world.config,
        format!("probe_interval_secs = {}\n", INTERVAL.as_secs()),
    )
    .unwrap();
    let ids: Vec<String> = (1..=8).map(|i| i.to_string()).collect();
    let mut args = vec!["enqueue"];
    args.extend(ids.iter().map(String::as_str));
    assert_success(&world.run(&args).await);
    let first = spawn(&world, &["run", "--concurrency", "2"]);
    let second = spawn(&world, &["run", "--concurrency", "2"]);
    let q = queue(&world).await;
    wait_for(Duration::from_secs(20), "the queue's pause", || async {
        q.fleet_state().await.unwrap().pause
    })
    .await;
    // Every worker that was already on its way has called by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let watched_from = SystemTime::now();
    tokio::time::sleep(INTERVAL * 3).await;
    let watched_to = SystemTime::now();
    let probes = calls_between(&sim.stats().api_request_times, watched_from, watched_to);
    assert!(
        (1..=4).contains(&probes),
        "one probe per interval for the two processes together ({INTERVAL:?} over {:?}), saw {probes}",
        INTERVAL * 3
    );
    assert_eq!(
        q.status().await.unwrap().done,
        0,
        "nothing claimed while paused"
    );

    sim.set_faults(Faults::default());
    let topped_up = Instant::now();
    wait_for(INTERVAL * 5, "every job done", || async {
        (q.status().await.unwrap().done == 8).then_some(())
    })
    .await;
    eprintln!(
        "{probes} probes in {:?}; done {:?} after the top-up",
        INTERVAL * 3,
        topped_up.elapsed()
    );
    assert_eq!(q.fleet_state().await.unwrap().pause, None, "lifted");
    for child in [first, second] {
        signal(child.id().unwrap(), "-TERM");
        assert_success(&finish(child, Duration::from_secs(30)).await);
    }
    for job in world.jobs().await {
        assert_verified(&world, &sim, &job);
        assert_eq!(job["attempts"], 0, "a pause burns no attempt: {job}");
    }
}

/// A rate-limit answer to one process cools the other too: after it, the
/// API sees no call from either until the cooldown (5 s for a first answer
/// without Retry-After) has passed.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_answer_to_one_process_cools_every_process() {
    let once = ApiFaultRule::new(ApiFault::Code(1002, "rate limit exceeded".into())).limit(1);
    let sim = support::sim(SimConfig {
        faults: Faults {
            api: vec![once],
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new()
        .with_sim(&sim)
        .env("MINIMAX_DL_REQUESTS_PER_MINUTE", "600");
    let ids: Vec<String> = (1..=6).map(|i| i.to_string()).collect();
    let mut args = vec!["enqueue"];
    args.extend(ids.iter().map(String::as_str));
    assert_success(&world.run(&args).await);
    let first = spawn(&world, &["run", "--concurrency", "2"]);
    let second = spawn(&world, &["run", "--concurrency", "2"]);
    let q = queue(&world).await;
    wait_for(Duration::from_secs(60), "every job done", || async {
        (q.status().await.unwrap().done == 6).then_some(())
    })
    .await;
    let times = sim.stats().api_request_times;
    let limited = times[0];
    // Calls already past the gate when the answer came may still land in
    // the first moments; after that, nothing until the cooldown ends.
    let settled = limited + Duration::from_millis(500);
    let cooled_to = limited + minimax_dl::gate::FIRST_COOLDOWN - Duration::from_millis(300);
    let during = calls_between(&times, settled, cooled_to);
    assert_eq!(
        during, 0,
        "no call from either process during the cooldown: {times:?}"
    );
    for child in [first, second] {
        signal(child.id().unwrap(), "-TERM");
        assert_success(&finish(child, Duration::from_secs(30)).await);
    }
    for job in world.jobs().await {
        assert_verified(&world, &sim, &job);
    }
}
