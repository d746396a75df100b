//! The chaos test: a daemon working a faulty batch is SIGKILLed at random
//! moments, again and again, and restarted. At the end every job is done,
//! every file matches, nothing is left running, kills were resumed from
//! the bytes already written, and the bytes re-sent stay near the total.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use minimax_sim::{ApiFault, ApiFaultRule, CdnFault, CdnFaultRule, CdnRequest, Faults, SimConfig};

use crate::support::{self, World, assert_success, assert_verified};

/// A small deterministic generator, seeded from the clock and printed so a
/// failing run can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

/// Files whose first request in a run (the log from `runs[i]` to
/// `runs[i + 1]`) resumed a partial file left by a killed run.
fn resumes_after_kills(log: &[CdnRequest], runs: &[usize]) -> usize {
    runs.windows(2)
        .map(|w| {
            let mut seen = std::collections::HashSet::new();
            log[w[0]..w[1]]
                .iter()
                .filter(|r| r.method == "GET" && seen.insert(r.file_id))
                .filter(|r| r.status == 206 && r.range_start() > Some(0))
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_loses_nothing() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("chaos seed {seed} (rerun with CHAOS_SEED={seed})");
    let mut rng = Lcg(seed);

    let files = 40i64;
    let sizes: HashMap<i64, u64> = (1..=files)
        .map(|id| (id, rng.between(256 * 1024, 3 * 1024 * 1024)))
        .collect();
    let total: u64 = sizes.values().sum();
    let sim = support::sim(SimConfig {
        sizes,
        faults: Faults {
            api: vec![
                ApiFaultRule::new(ApiFault::Code(1002, "rate limit exceeded(RPM)".into()))
                    .every(29)
                    .limit(1),
            ],
            cdn: vec![
                CdnFaultRule::new(CdnFault::DropAfter(200_000)).every(7),
                CdnFaultRule::new(CdnFault::Expired).every(13),
                CdnFaultRule::new(CdnFault::IgnoreRange).every(5),
            ],
            bandwidth_bytes_per_sec: Some(4 * 1024 * 1024),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    let ids: Vec<String> = (1..=files).map(|i| i.to_string()).collect();
    let mut args = vec!["enqueue"];
    args.extend(ids.iter().map(String::as_str));
    assert_success(&world.run(&args).await);

    let kills = 12;
    // Where each run's requests start in the simulator's log.
    let mut runs = vec![0];
    for round in 0..kills {
        let mut child = world
            .command()
            .args(["run", "--concurrency", "4"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let after = Duration::from_millis(rng.between(150, 900));
        tokio::time::sleep(after).await;
        child.start_kill().unwrap();
        let _ = child.wait().await;
        let done = world.status().await["done"].as_u64().unwrap();
        eprintln!("kill {}: after {after:?}, {done}/{files} done", round + 1);
        runs.push(sim.stats().cdn_log.len());
    }

    sim.set_faults(Faults::default());
    let out = world
        .run(&["run", "--exit-when-idle", "--concurrency", "4"])
        .await;
    assert_success(&out);
    let status = world.status().await;
    assert_eq!(status["done"], files, "{status}");
    let q = minimax_dl::queue::Queue::open(&minimax_dl::queue::DbLocation(
        world.db.to_string_lossy().into_owned(),
    ))
    .await
    .unwrap();
    assert_eq!(
        q.status().await.unwrap(),
        q.status_by_scan().await.unwrap(),
        "trigger-kept counts drifted"
    );
    assert_eq!(status["running"], 0);
    for job in world.jobs().await {
        assert_verified(&world, &sim, &job);
    }
    let stats = sim.stats();
    runs.push(stats.cdn_log.len());
    let ratio = stats.cdn_bytes_sent as f64 / total as f64;
    let resumed = resumes_after_kills(&stats.cdn_log, &runs);
    eprintln!(
        "sent {} bytes for {total} ({ratio:.2}x, {:.1}% re-sent), {resumed} resumes after a kill, \
         {} API calls, {} faults",
        stats.cdn_bytes_sent,
        (ratio - 1.0) * 100.0,
        stats.api_requests,
        stats.faults_injected
    );
    assert!(resumed >= 1, "no killed transfer was resumed");
    assert_eq!(stats.cdn_requests_with_authorization, 0);
    assert!(
        ratio < 3.0,
        "re-downloaded far too much: {ratio:.2}x the batch"
    );
    let leftovers: Vec<_> = std::fs::read_dir(world.out.join(".minimax-dl-partial"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "partial files left behind: {leftovers:?}"
    );
}
