//! Several `run` processes sharing one queue: what one of them learns from
//! the API (an account-level answer, a rate limit) holds for all of them,
//! through the queue's `fleet` row. On SQLite the processes share a host;
//! the same rules hold for hosts sharing a PostgreSQL queue.

use std::time::{Duration, Instant, SystemTime};

use minimax_sim::{ApiFault, ApiFaultRule, Faults, SimConfig};

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
async fn an_account_pause_stops_every_sqlite_process_and_one_probe_lifts_it_for_all() {
    an_account_pause_stops_every_process_and_one_probe_lifts_it_for_all(World::new()).await;
}

pub async fn an_account_pause_stops_every_process_and_one_probe_lifts_it_for_all(world: World) {
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
    let world = world
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
    let status = world.status().await;
    let message = status["pause"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("insufficient balance"),
        "status shows the pause: {status}"
    );
    let text = support::stdout(&world.run(&["status"]).await);
    assert!(
        text.lines()
            .any(|l| l.starts_with("paused") && l.contains("next probe in")),
        "{text}"
    );
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
async fn a_rate_limit_answer_to_one_sqlite_process_cools_every_process() {
    a_rate_limit_answer_to_one_process_cools_every_process(World::new()).await;
}

pub async fn a_rate_limit_answer_to_one_process_cools_every_process(world: World) {
    let once = ApiFaultRule::new(ApiFault::Code(1002, "rate limit exceeded".into())).limit(1);
    let sim = support::sim(SimConfig {
        faults: Faults {
            api: vec![once],
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = world
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
    let cooled_to = limited + minimax_dl::parts::FIRST_COOLDOWN - Duration::from_millis(300);
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

/// The most calls the simulator saw in any window of `window`.
fn most_calls_in_any(window: Duration, times: &[SystemTime]) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut most = 0;
    let mut start = 0;
    for (end, t) in sorted.iter().enumerate() {
        while t.duration_since(sorted[start]).unwrap_or_default() >= window {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}

/// Three `run` processes, each with its own archive (as on three hosts),
/// share one queue of 500 files on a CDN that drops connections, under a
/// request cap the batch cannot finish within in one minute; one process
/// is SIGKILLed part-way. Every file ends verified, done once; the cap
/// holds for the three together in every 60 s; the dead process's jobs are
/// finished by the others; the survivors stop on SIGTERM within 10 s.
pub async fn three_processes_share_one_queue_and_survive_the_loss_of_one(world: World) {
    use minimax_sim::{CdnFault, CdnFaultRule};
    const FILES: i64 = 500;
    const CAP: usize = 400;
    let sim = support::sim(SimConfig {
        default_file_size: 16 * 1024,
        faults: Faults {
            cdn: vec![CdnFaultRule::new(CdnFault::DropAfter(4096)).every(9)],
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = world
        .with_sim(&sim)
        .env("MINIMAX_DL_REQUESTS_PER_MINUTE", &CAP.to_string());
    let ids: Vec<String> = (1..=FILES).map(|i| i.to_string()).collect();
    assert_success(
        &world
            .run_with_stdin(&["enqueue", "--from", "-"], ids.join("\n").as_bytes())
            .await,
    );

    let outs: Vec<_> = (0..3).map(|n| world.path(&format!("host-{n}"))).collect();
    let mut hosts: Vec<_> = outs
        .iter()
        .map(|out| {
            world
                .command_archiving_to(out)
                .args(["run", "--concurrency", "4"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn minimax-dl")
        })
        .collect();
    let q = queue(&world).await;
    wait_for(Duration::from_secs(120), "a third of the batch", || async {
        (q.status().await.unwrap().done >= (FILES / 3) as u64).then_some(())
    })
    .await;
    let killed = hosts.remove(1);
    let killed_pid = killed.id().unwrap();
    signal(killed_pid, "-KILL");
    let _ = finish(killed, Duration::from_secs(10)).await;
    let held_by_killed: Vec<i64> = q
        .list(Some(minimax_dl::queue::JobState::Running), None)
        .await
        .unwrap()
        .into_iter()
        .filter(|job| {
            job.lease_owner
                .as_deref()
                .is_some_and(|o| o.contains(&format!(":{killed_pid}:")))
        })
        .map(|job| job.file_id)
        .collect();
    wait_for(Duration::from_secs(240), "every job done", || async {
        (q.status().await.unwrap().done == FILES as u64).then_some(())
    })
    .await;

    for child in hosts {
        let pid = child.id().unwrap();
        signal(pid, "-TERM");
        assert_success(&finish(child, Duration::from_secs(10)).await);
    }
    let most = most_calls_in_any(Duration::from_secs(60), &sim.stats().api_request_times);
    assert!(
        most <= CAP,
        "{most} retrieve calls in one 60 s window, cap {CAP}"
    );
    assert!(
        !held_by_killed.is_empty(),
        "the killed process held jobs when it died"
    );
    for id in 1..=FILES {
        let job = q.get(id).await.unwrap().unwrap();
        let done_lines = q
            .events(id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == "done")
            .count();
        assert_eq!(done_lines, 1, "job {id} done once: {job:?}");
        let path = std::path::PathBuf::from(job.final_path.clone().expect("a done job's path"));
        assert!(
            outs.iter().any(|out| path.starts_with(out)),
            "{path:?} in no archive"
        );
        assert_eq!(
            support::sha256_of(&path),
            sim.expected_sha256(id),
            "content of {id}"
        );
        if held_by_killed.contains(&id) {
            // Finished by a survivor: the lease was taken over. (Its file
            // may be where the killed process placed it before it could
            // record `done`: on one host, the survivor re-hashes and keeps it.)
            let kinds: Vec<String> = q
                .events(id)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.kind)
                .collect();
            assert!(
                kinds.iter().any(|k| k == "reclaimed"),
                "job {id}, held by the killed process, was reclaimed: {kinds:?}"
            );
        }
    }
    eprintln!(
        "{FILES} files by 3 processes, one killed holding {} jobs; at most {most} calls in 60 s (cap {CAP})",
        held_by_killed.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_processes_share_one_sqlite_queue_and_survive_the_loss_of_one() {
    three_processes_share_one_queue_and_survive_the_loss_of_one(World::new()).await;
}
