//! The download engine against the simulator: each CDN fault and each class
//! of API error, driven through the real binary (`enqueue` + `run
//! --exit-when-idle`, or `fetch`), asserting on the queue (`show --json`),
//! the files on disk and the simulator's counters.
//!
//! Every test that lets the binary reach the CDN also checks that no
//! `Authorization` header ever got there (the API key stays on the API host).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use minimax_sim::{ApiFault, ApiFaultRule, CdnFault, CdnFaultRule, Faults, SimConfig, Simulator};
use serde_json::Value;

use crate::support::{
    self, World, assert_exit, assert_success, assert_verified, enqueue, files_under, ids,
    sha256_of, stderr, stdout,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// `support::small_files()`'s default size.
const SMALL: u64 = 64 * KIB;

fn sizes(pairs: &[(i64, u64)]) -> HashMap<i64, u64> {
    pairs.iter().copied().collect()
}

async fn run_idle(world: &World, concurrency: u32) -> Output {
    let n = concurrency.to_string();
    world
        .run(&["run", "--exit-when-idle", "--concurrency", &n])
        .await
}

fn config(world: &World, text: &str) {
    std::fs::write(&world.config, text).expect("write config");
}

#[track_caller]
fn assert_no_key_on_cdn(sim: &Simulator) {
    let stats = sim.stats();
    assert_eq!(
        stats.cdn_requests_with_authorization, 0,
        "an Authorization header reached the CDN: {stats:?}"
    );
}

fn cdn_bytes(sim: &Simulator, id: i64) -> u64 {
    sim.stats().cdn_bytes_by_file.get(&id).copied().unwrap_or(0)
}

fn api_calls(sim: &Simulator, id: i64) -> u64 {
    sim.stats()
        .api_requests_by_file
        .get(&id)
        .copied()
        .unwrap_or(0)
}

fn events(job: &Value) -> Vec<(String, String)> {
    job["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    (
                        e["kind"].as_str().unwrap_or_default().to_string(),
                        e["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
fn assert_event(job: &Value, kind: &str, needle: &str) {
    let events = events(job);
    assert!(
        events.iter().any(|(k, m)| k == kind && m.contains(needle)),
        "no {kind:?} event mentioning {needle:?} in {events:#?}"
    );
}

fn partial_path(world: &World, id: i64) -> PathBuf {
    world
        .out
        .join(minimax_dl::policy::PARTIAL_DIR)
        .join(format!("{id}.part"))
}

/// Everything `show --json` says about a done job, verified against the
/// simulator's content; returns the job.
async fn done_and_verified(world: &World, sim: &Simulator, id: i64) -> Value {
    let job = world.job(id).await;
    assert_verified(world, sim, &job);
    job
}

// ---------------------------------------------------------------------------
// The happy path and `fetch`
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn fetch_prints_the_absolute_final_path_and_sizes_come_from_the_cdn() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);

    let out = world.run(&["fetch", "7"]).await;
    assert_success(&out);
    let printed = stdout(&out);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 1, "fetch prints exactly the path: {printed:?}");
    let path = PathBuf::from(lines[0]);
    assert!(path.is_absolute(), "{path:?}");
    assert_eq!(path.parent(), Some(world.out.as_path()));
    assert_eq!(path.file_name().unwrap(), "7-output_aigc.mp4");
    assert_eq!(sha256_of(&path), sim.expected_sha256(7));

    let job = done_and_verified(&world, &sim, 7).await;
    assert_eq!(job["path"].as_str(), Some(lines[0]));
    assert_eq!(job["attempts"], 0);
    // retrieve says `bytes: 0`, as for real videos: the CDN's length counts.
    assert_eq!(job["size_source"], "cdn");
    assert_eq!(job["bytes_expected"], SMALL);
    let text = stdout(&world.run(&["show", "7"]).await);
    assert!(text.contains("(size from cdn)"), "{text}");

    // A second fetch of a done file prints the same path without a download.
    let before = sim.stats().cdn_bytes_sent;
    let again = world.run(&["fetch", "7"]).await;
    assert_success(&again);
    assert_eq!(stdout(&again).trim_end(), lines[0]);
    assert_eq!(sim.stats().cdn_bytes_sent, before);
    assert_no_key_on_cdn(&sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn report_bytes_verifies_against_the_api_size() {
    let sim = support::sim(SimConfig {
        report_bytes: true,
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=2)).await;
    assert_success(&run_idle(&world, 2).await);
    for id in 1..=2 {
        let job = done_and_verified(&world, &sim, id).await;
        assert_eq!(job["size_source"], "api", "{job}");
        assert_eq!(job["bytes_expected"], SMALL);
    }
    let text = stdout(&world.run(&["show", "1"]).await);
    assert!(text.contains("(size from api)"), "{text}");
    assert_no_key_on_cdn(&sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_cdn_still_gives_correct_files() {
    let sim = support::sim(SimConfig {
        sizes: sizes(&[(1, 256 * KIB), (2, 256 * KIB)]),
        faults: Faults {
            bandwidth_bytes_per_sec: Some(MIB),
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=2)).await;
    assert_success(&run_idle(&world, 2).await);
    for id in 1..=2 {
        let job = done_and_verified(&world, &sim, id).await;
        assert_eq!(job["attempts"], 0);
        assert_eq!(cdn_bytes(&sim, id), 256 * KIB, "each byte sent once");
    }
    assert_no_key_on_cdn(&sim);
}

// ---------------------------------------------------------------------------
// Rate limits: not counted, the whole pool cools down
// ---------------------------------------------------------------------------

/// One rate-limit answer on the first retrieve call of a 12-file batch run
/// with 4 workers. Asserts every job ends done with 0 attempts, the limited
/// job's history shows the release, and that between the limited call and
/// `quiet` later the API saw at most the 3 calls other workers already had
/// in flight (without the shared cooldown all 13 calls would land within
/// about a second).
async fn rate_limit_case(fault: ApiFault, needle: &str, quiet: Duration) {
    const FILES: i64 = 12;
    const CONCURRENCY: u32 = 4;
    let sim = support::sim(SimConfig {
        faults: Faults {
            api: vec![ApiFaultRule::new(fault).limit(1)],
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=FILES)).await;
    assert_success(&run_idle(&world, CONCURRENCY).await);

    let stats = sim.stats();
    assert_eq!(stats.faults_injected, 1);
    assert_eq!(stats.api_requests, FILES as u64 + 1, "{stats:?}");
    let limited: Vec<i64> = stats
        .api_requests_by_file
        .iter()
        .filter(|(_, n)| **n == 2)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(limited.len(), 1, "one job was rate limited: {stats:?}");

    for id in 1..=FILES {
        let job = done_and_verified(&world, &sim, id).await;
        assert_eq!(job["attempts"], 0, "rate limits never burn attempts: {job}");
    }
    let job = world.job(limited[0]).await;
    assert_event(&job, "released", needle);

    let mut times = stats.api_request_times.clone();
    times.sort();
    let first = times[0];
    let during_cooldown = times
        .iter()
        .filter(|t| t.duration_since(first).unwrap_or_default() < quiet)
        .count();
    let offsets: Vec<Duration> = times
        .iter()
        .map(|t| t.duration_since(first).unwrap_or_default())
        .collect();
    eprintln!("retrieve calls, offsets from the first: {offsets:?}");
    assert!(
        during_cooldown <= CONCURRENCY as usize,
        "{during_cooldown} retrieve calls within {quiet:?} of the rate-limit answer: {offsets:?}"
    );
    assert_no_key_on_cdn(&sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_code_1002_cools_the_pool_down_without_burning_attempts() {
    rate_limit_case(
        ApiFault::Code(1002, "rate limit exceeded(RPM)".into()),
        "status_code 1002",
        Duration::from_millis(4800),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_code_1039_cools_the_pool_down_without_burning_attempts() {
    rate_limit_case(
        ApiFault::Code(1039, "rate limit exceeded(TPM)".into()),
        "status_code 1039",
        Duration::from_millis(4800),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_429_retry_after_is_honoured_by_the_whole_pool() {
    // Retry-After 7 s is longer than the 5 s default cooldown: the pool must
    // wait the full 7 s.
    rate_limit_case(
        ApiFault::HttpRetryAfter(429, 7),
        "HTTP 429, Retry-After 7s",
        Duration::from_millis(6800),
    )
    .await;
}

// ---------------------------------------------------------------------------
// Transient API failures: counted, retried, done
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn gateway_errors_html_and_truncated_json_are_retried_to_done() {
    let rule = |fault, id| ApiFaultRule::new(fault).limit(1).for_files([id]);
    let sim = support::sim(SimConfig {
        faults: Faults {
            api: vec![
                rule(ApiFault::Http(502), 1),
                rule(ApiFault::Http(503), 2),
                rule(ApiFault::Html, 3),
                rule(ApiFault::TruncatedJson, 4),
            ],
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=4)).await;
    // The retry waits a full-jitter delay of 1-15 s; all four wait together.
    assert_success(&run_idle(&world, 4).await);
    let expected = [
        (1, "HTTP 502"),
        (2, "HTTP 503"),
        (3, "not the expected JSON"),
        (4, "not the expected JSON"),
    ];
    for (id, needle) in expected {
        let job = done_and_verified(&world, &sim, id).await;
        assert_eq!(job["attempts"], 1, "the failure was counted: {job}");
        assert_event(&job, "retry_scheduled", needle);
        assert_eq!(api_calls(&sim, id), 2);
    }
    assert_eq!(sim.stats().faults_injected, 4);
    assert_no_key_on_cdn(&sim);
}

// ---------------------------------------------------------------------------
// Permanent and unknown codes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn permanent_codes_fail_at_once_with_code_and_message() {
    let rule =
        |code, msg: &str, id| ApiFaultRule::new(ApiFault::Code(code, msg.into())).for_files([id]);
    let sim = support::sim(SimConfig {
        faults: Faults {
            api: vec![
                rule(1026, "input new_sensitive", 1),
                rule(1027, "output new_sensitive", 2),
                rule(2013, "invalid params, file_id", 3),
            ],
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=4)).await;
    assert_exit(&run_idle(&world, 4).await, 1);
    let expected = [
        (1, "status_code 1026 (input new_sensitive)"),
        (2, "status_code 1027 (output new_sensitive)"),
        (3, "status_code 2013 (invalid params, file_id)"),
    ];
    for (id, needle) in expected {
        let job = world.job(id).await;
        assert_eq!(job["state"], "failed", "{job}");
        assert_eq!(job["attempts"], 1, "{job}");
        let error = job["last_error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{error:?} lacks {needle:?}");
        assert_eq!(api_calls(&sim, id), 1, "no retry of a permanent error");
        assert!(!sim.stats().cdn_bytes_by_file.contains_key(&id));
    }
    // The others are not affected.
    done_and_verified(&world, &sim, 4).await;
    assert_no_key_on_cdn(&sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_file_fails_with_2013_in_run_and_fetch() {
    let sim = support::sim(SimConfig {
        faults: Faults {
            missing: HashSet::from([5, 6]),
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(4..=5)).await;
    assert_exit(&run_idle(&world, 2).await, 1);
    let job = world.job(5).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 1);
    let error = job["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("status_code 2013"), "{error}");
    done_and_verified(&world, &sim, 4).await;

    let out = world.run(&["fetch", "6"]).await;
    assert_exit(&out, 1);
    assert!(stdout(&out).is_empty(), "no path for a failed fetch");
    assert!(stderr(&out).contains("2013"), "{}", stderr(&out));
    let job = world.job(6).await;
    assert_eq!(job["state"], "failed");
    assert_eq!(api_calls(&sim, 6), 1);
    assert!(!sim.stats().cdn_bytes_by_file.contains_key(&6));
    assert_no_key_on_cdn(&sim);
}

/// An undocumented code is retried, but only up to
/// `UNKNOWN_ERROR_ATTEMPT_CAP` (5) attempts although `max_attempts` is the
/// default 25; a documented transient code keeps its full budget. `fetch`
/// claims its job at once whatever its retry time, so the attempts need no
/// waiting (each `fetch` makes one or, through the race described at
/// [`fetch_makes_one_attempt_per_invocation`], two of them).
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_code_is_retried_with_a_capped_budget() {
    use minimax_dl::queue::UNKNOWN_ERROR_ATTEMPT_CAP as CAP;
    let sim = support::sim(SimConfig {
        faults: Faults {
            api: vec![
                ApiFaultRule::new(ApiFault::Code(4242, "something new".into())).for_files([1]),
                ApiFaultRule::new(ApiFault::Code(1000, "unknown error".into())).for_files([2]),
            ],
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    let mut last = 0;
    for _ in 0..CAP {
        assert_exit(&world.run(&["fetch", "1"]).await, 1);
        let job = world.job(1).await;
        let attempts = job["attempts"].as_u64().unwrap();
        assert!(attempts > last, "every fetch makes an attempt: {job}");
        last = attempts;
        let error = job["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("status_code 4242 (something new)"),
            "{error}"
        );
        if job["state"] == "failed" {
            break;
        }
        assert_eq!(job["state"], "queued", "{job}");
        assert_event(&job, "retry_scheduled", "4242");
    }
    let job = world.job(1).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], CAP, "{job}");
    assert_eq!(api_calls(&sim, 1), CAP as u64);

    // A transient code is still queued well past that cap.
    for _ in 0..=CAP {
        assert_exit(&world.run(&["fetch", "2"]).await, 1);
    }
    let job = world.job(2).await;
    assert_eq!(job["state"], "queued", "{job}");
    assert!(job["attempts"].as_u64().unwrap() > CAP as u64, "{job}");
    assert_eq!(sim.stats().cdn_requests, 0);
}

/// `fetch ID` whose attempt fails with a counted error makes exactly one
/// attempt and exits 1 ("it stays queued"): the pool reads a job's outcome
/// before its permit lets it claim again (`claim_id` ignores retry times).
#[tokio::test(flavor = "multi_thread")]
async fn fetch_makes_one_attempt_per_invocation() {
    let sim = support::sim(SimConfig {
        faults: Faults {
            api: vec![ApiFaultRule::new(ApiFault::Code(
                1000,
                "unknown error".into(),
            ))],
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    for round in 1..=10u64 {
        assert_exit(&world.run(&["fetch", "1"]).await, 1);
        let job = world.job(1).await;
        assert_eq!(job["attempts"], round, "{job}");
        assert_eq!(api_calls(&sim, 1), round);
    }
}

// ---------------------------------------------------------------------------
// Account-level errors: stop, keep everything queued, burn nothing
// ---------------------------------------------------------------------------

async fn account_case(world: &World, sim: &Simulator, needle: &str) {
    enqueue(world, &ids(1..=3)).await;
    let out = run_idle(world, 2).await;
    assert_exit(&out, 3);
    assert!(stderr(&out).contains(needle), "{}", stderr(&out));
    let mut explained = 0;
    for id in 1..=3 {
        let job = world.job(id).await;
        assert_eq!(job["state"], "queued", "{job}");
        assert_eq!(job["attempts"], 0, "{job}");
        // A job that was tried says why it is waiting; one never claimed
        // has no error of its own.
        match job["last_error"].as_str() {
            Some(error) => {
                assert!(error.contains(needle), "{error}");
                explained += 1;
            }
            // ...or was stopped mid-call when the pool stopped for the others.
            None => assert!(
                api_calls(sim, id) == 0 || job.to_string().contains("stopped by shutdown"),
                "{job}"
            ),
        }
    }
    assert!(explained >= 1);
    assert_eq!(sim.stats().cdn_requests, 0, "nothing downloaded");
    assert!(
        files_under(&world.out).is_empty(),
        "{:?}",
        files_under(&world.out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_1004_stops_run_with_exit_3_and_jobs_queued() {
    let sim = support::sim(support::small_files()).await;
    let mut world = World::new().with_sim(&sim);
    world.api = Some((sim.api_base(), "not-the-test-key".into()));
    account_case(&world, &sim, "status_code 1004").await;
    assert!(sim.stats().api_requests_without_valid_key >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_balance_1008_stops_run_with_exit_3_and_jobs_queued() {
    let sim = support::sim(SimConfig {
        faults: Faults {
            api: vec![ApiFaultRule::new(ApiFault::Code(
                1008,
                "insufficient balance".into(),
            ))],
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    account_case(&world, &sim, "status_code 1008").await;
}

// ---------------------------------------------------------------------------
// CDN faults
// ---------------------------------------------------------------------------

fn cdn_faults(rules: Vec<CdnFaultRule>) -> Faults {
    Faults {
        cdn: rules,
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_resumes_with_range_and_refetches_nothing() {
    const SIZE: u64 = 4 * MIB;
    const DROP_AT: u64 = 1_500_000;
    let sim = support::sim(SimConfig {
        sizes: sizes(&[(1, SIZE)]),
        faults: cdn_faults(vec![
            CdnFaultRule::new(CdnFault::DropAfter(DROP_AT)).limit(1),
        ]),
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=1)).await;
    assert_success(&run_idle(&world, 1).await);
    let job = done_and_verified(&world, &sim, 1).await;
    assert_eq!(
        job["attempts"], 0,
        "a drop that made progress is not counted"
    );
    let stats = sim.stats();
    assert_eq!(stats.faults_injected, 1);
    assert!(stats.cdn_range_requests >= 1, "{stats:?}");
    // The fetcher checkpoints every byte it received before resuming, and
    // the simulator flushes the dropped bytes to the socket before the
    // abort: the resume asks for exactly the missing bytes.
    assert_eq!(cdn_bytes(&sim, 1), SIZE, "{stats:?}");
    assert_no_key_on_cdn(&sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ignored_range_restarts_from_zero() {
    const SIZE: u64 = 2 * MIB;
    const DROP_AT: u64 = 700_000;
    let sim = support::sim(SimConfig {
        sizes: sizes(&[(1, SIZE)]),
        faults: cdn_faults(vec![
            CdnFaultRule::new(CdnFault::DropAfter(DROP_AT)).limit(1),
            CdnFaultRule::new(CdnFault::IgnoreRange).limit(1),
        ]),
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=1)).await;
    assert_success(&run_idle(&world, 1).await);
    let job = done_and_verified(&world, &sim, 1).await;
    assert_eq!(job["attempts"], 0);
    assert_eq!(sim.stats().faults_injected, 2);
    // The partial prefix, then the whole file again from byte 0.
    assert_eq!(cdn_bytes(&sim, 1), DROP_AT + SIZE);
    assert_no_key_on_cdn(&sim);
}

/// The object changes while the download is stalled: the resume carries
/// `If-Range` with the old ETag, the CDN answers the whole new object, and
/// the old bytes are thrown away.
#[tokio::test(flavor = "multi_thread")]
async fn an_etag_change_before_the_resume_discards_the_old_bytes() {
    const SIZE: u64 = MIB;
    const STALL_AT: u64 = 300_000;
    let sim = support::sim(SimConfig {
        sizes: sizes(&[(1, SIZE)]),
        faults: cdn_faults(vec![
            CdnFaultRule::new(CdnFault::StallAfter(STALL_AT)).limit(1),
        ]),
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    config(&world, "read_timeout_secs = 1\n");
    let old_sha = sim.expected_sha256(1);
    enqueue(&world, &ids(1..=1)).await;
    let run = {
        let world_cmd = world.command();
        tokio::spawn(async move {
            let mut cmd = world_cmd;
            cmd.args(["run", "--exit-when-idle", "--concurrency", "1"]);
            support::run_bounded(&mut cmd, Duration::from_secs(60)).await
        })
    };
    // Wait until the first request has sent its bytes and stalled; the
    // fetcher only gives up on it after its 1 s read timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cdn_bytes(&sim, 1) < STALL_AT {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no download started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sim.bump_version(1);
    let out = run.await.expect("run task");
    assert_success(&out);
    let new_sha = sim.expected_sha256(1);
    assert_ne!(old_sha, new_sha);
    let job = done_and_verified(&world, &sim, 1).await;
    assert_eq!(job["sha256"].as_str(), Some(new_sha.as_str()));
    assert_eq!(cdn_bytes(&sim, 1), STALL_AT + SIZE);
    assert_no_key_on_cdn(&sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_but_truncated_chunked_body_is_resumed_not_accepted() {
    const SIZE: u64 = MIB;
    const CUT_AT: u64 = 200_000;
    let sim = support::sim(SimConfig {
        sizes: sizes(&[(1, SIZE)]),
        faults: cdn_faults(vec![
            CdnFaultRule::new(CdnFault::TruncateChunked(CUT_AT)).limit(1),
        ]),
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=1)).await;
    assert_success(&run_idle(&world, 1).await);
    let job = done_and_verified(&world, &sim, 1).await;
    assert_eq!(job["bytes_expected"], SIZE);
    assert_eq!(job["size_source"], "cdn");
    let stats = sim.stats();
    assert_eq!(stats.faults_injected, 1);
    assert!(stats.cdn_range_requests >= 1, "{stats:?}");
    assert_eq!(cdn_bytes(&sim, 1), SIZE, "only the missing bytes re-sent");
    assert_no_key_on_cdn(&sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_url_mid_download_gets_a_fresh_one_and_keeps_the_bytes() {
    const SIZE: u64 = 2 * MIB;
    const DROP_AT: u64 = 900_000;
    let sim = support::sim(SimConfig {
        sizes: sizes(&[(1, SIZE)]),
        faults: cdn_faults(vec![
            CdnFaultRule::new(CdnFault::DropAfter(DROP_AT)).limit(1),
            CdnFaultRule::new(CdnFault::Expired).limit(1),
        ]),
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=1)).await;
    assert_success(&run_idle(&world, 1).await);
    let job = done_and_verified(&world, &sim, 1).await;
    assert_eq!(job["attempts"], 0);
    assert_eq!(sim.stats().faults_injected, 2);
    assert_eq!(
        api_calls(&sim, 1),
        2,
        "retrieve asked again for a fresh URL"
    );
    assert_eq!(cdn_bytes(&sim, 1), SIZE, "the partial bytes were kept");
    assert_no_key_on_cdn(&sim);
}

/// A URL about to expire is not sent to the CDN: the resume after a drop
/// (4 s into an 8 s URL, inside the product's safety margin) asks retrieve
/// for a fresh one first, and the CDN refuses nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_url_near_its_expires_time_is_refreshed_before_the_cdn_refuses_it() {
    const SIZE: u64 = 6 * MIB;
    let sim = support::sim(SimConfig {
        sizes: sizes(&[(1, SIZE)]),
        url_ttl: Duration::from_secs(8),
        faults: Faults {
            cdn: vec![CdnFaultRule::new(CdnFault::DropAfter(4 * MIB + 1)).limit(1)],
            bandwidth_bytes_per_sec: Some(MIB),
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=1)).await;
    assert_success(&run_idle(&world, 1).await);
    let job = done_and_verified(&world, &sim, 1).await;
    assert_eq!(job["attempts"], 0);
    let log = sim.stats().cdn_log;
    assert!(
        log.iter().all(|r| [200, 206].contains(&r.status)),
        "the CDN refused a request: {log:?}"
    );
    let urls: HashSet<Option<u64>> = log.iter().map(|r| r.expires).collect();
    assert!(urls.len() >= 2, "the resume used a fresh URL: {log:?}");
    let resume = log.last().unwrap();
    assert!(resume.range_start() > Some(0), "{resume:?}");
    assert!(api_calls(&sim, 1) >= 2, "a fresh URL for the resume");
    assert_eq!(cdn_bytes(&sim, 1), SIZE);
    assert_no_key_on_cdn(&sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn cdn_server_errors_are_retried_to_done() {
    let sim = support::sim(SimConfig {
        faults: cdn_faults(vec![
            CdnFaultRule::new(CdnFault::Status(503))
                .limit(1)
                .for_files([1]),
            CdnFaultRule::new(CdnFault::Status(500))
                .limit(1)
                .for_files([2]),
        ]),
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=2)).await;
    // Counted: the retry waits a full-jitter delay of 1-15 s.
    assert_success(&run_idle(&world, 2).await);
    for (id, needle) in [(1, "HTTP 503"), (2, "HTTP 500")] {
        let job = done_and_verified(&world, &sim, id).await;
        assert_eq!(job["attempts"], 1, "{job}");
        assert_event(&job, "retry_scheduled", needle);
        assert_eq!(cdn_bytes(&sim, id), SMALL);
    }
    assert_no_key_on_cdn(&sim);
}

/// A CDN that says when to come back is not asked sooner, even when the
/// retry schedule would try again in seconds.
#[tokio::test(flavor = "multi_thread")]
async fn a_cdn_retry_after_sets_the_next_attempt() {
    let sim = support::sim(SimConfig {
        faults: cdn_faults(vec![
            CdnFaultRule::new(CdnFault::StatusRetryAfter(503, 1800))
                .limit(1)
                .for_files([1]),
        ]),
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=1)).await;
    let before = std::time::SystemTime::now();
    let out = world.run(&["fetch", "1"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let job = world.job(1).await;
    assert_eq!(job["state"], "queued", "{job}");
    assert_event(&job, "retry_scheduled", "next attempt in 30m");
    let next = humantime::parse_rfc3339(job["next_attempt_at"].as_str().unwrap()).unwrap();
    assert!(next >= before + Duration::from_secs(1790), "{job}");
}

/// 404 from the CDN: a fresh URL is asked for (three in all), then the
/// failure counts (with `max_attempts = 1` it is the last one).
#[tokio::test(flavor = "multi_thread")]
async fn a_cdn_404_gets_fresh_urls_then_counts_a_failure() {
    let sim = support::sim(SimConfig {
        faults: cdn_faults(vec![CdnFaultRule::new(CdnFault::NotFound).for_files([1])]),
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    config(&world, "max_attempts = 1\n");
    enqueue(&world, &ids(1..=2)).await;
    assert_exit(&run_idle(&world, 2).await, 1);
    let job = world.job(1).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    let error = job["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("3 fresh download URLs") && error.contains("HTTP 404"),
        "{error}"
    );
    assert_eq!(api_calls(&sim, 1), 3, "one retrieve per fresh URL");
    assert_eq!(sim.stats().faults_injected, 3);
    done_and_verified(&world, &sim, 2).await;

    // Once the object is back, fetch (which retries a failed job) gets it.
    sim.set_faults(Faults::default());
    let out = world.run(&["fetch", "1"]).await;
    assert_success(&out);
    let job = done_and_verified(&world, &sim, 1).await;
    assert_eq!(stdout(&out).trim_end(), job["path"].as_str().unwrap());
    assert_no_key_on_cdn(&sim);
}

// ---------------------------------------------------------------------------
// Sizes and names the API gets wrong
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_advertised_size_fails_and_leaves_nothing_behind() {
    let sim = support::sim(SimConfig {
        faults: Faults {
            wrong_bytes: HashMap::from([(1, 100_000), (2, 1_000)]),
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=3)).await;
    assert_exit(&run_idle(&world, 3).await, 1);
    for (id, advertised) in [(1, 100_000), (2, 1_000)] {
        let job = world.job(id).await;
        assert_eq!(job["state"], "failed", "{job}");
        assert_eq!(job["attempts"], 1);
        let error = job["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("expected {advertised} bytes"))
                && error.contains(&SMALL.to_string()),
            "{error}"
        );
        assert!(!world.out.join(format!("{id}-output_aigc.mp4")).exists());
        assert!(!partial_path(&world, id).exists(), "partial of {id} left");
    }
    done_and_verified(&world, &sim, 3).await;
    let left: Vec<PathBuf> = files_under(&world.out);
    assert_eq!(left, vec![world.out.join("3-output_aigc.mp4")], "{left:?}");
    assert_no_key_on_cdn(&sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_filenames_land_directly_inside_the_archive() {
    let hostile: Vec<String> = vec![
        "../../etc/passwd".into(),
        "..".into(),
        ".hidden".into(),
        "a/b/c.mp4".into(),
        "..\\..\\windows\\evil.mp4".into(),
        "nul\0byte.mp4".into(),
        "line\nbreak.mp4".into(),
        format!("{}.mp4", "x".repeat(300)),
        "/etc/shadow".into(),
        ".".into(),
    ];
    let filenames: HashMap<i64, String> = hostile
        .iter()
        .enumerate()
        .map(|(i, n)| (i as i64 + 1, n.clone()))
        .collect();
    let n = hostile.len() as i64;
    let sim = support::sim(SimConfig {
        faults: Faults {
            filenames,
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=n)).await;
    assert_success(&run_idle(&world, 4).await);
    let mut finals = HashSet::new();
    for id in 1..=n {
        let job = done_and_verified(&world, &sim, id).await;
        let path = PathBuf::from(job["path"].as_str().unwrap());
        assert_eq!(path.parent(), Some(world.out.as_path()), "{path:?}");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&id.to_string()), "{name:?}");
        assert!(!name.starts_with('.'), "{name:?}");
        assert!(!name.chars().any(char::is_control), "{name:?}");
        assert!(name.len() <= 255, "{} bytes", name.len());
        finals.insert(path);
    }
    assert_eq!(finals.len(), n as usize);
    // Nothing anywhere else in the test's directory but the queue and config.
    for file in files_under(world.dir.path()) {
        if finals.contains(&file) {
            continue;
        }
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            file.parent() == Some(world.dir.path())
                && (name == "config.toml" || name.starts_with("queue.db")),
            "unexpected file {file:?}"
        );
    }
    assert_no_key_on_cdn(&sim);
}

// ---------------------------------------------------------------------------
// Big files: flat memory
// ---------------------------------------------------------------------------

/// VmHWM (peak resident set) of a live process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_2_gib_fetch_keeps_memory_flat() {
    const SIZE: u64 = 2 << 30;
    let sim = support::sim(SimConfig {
        sizes: sizes(&[(1, SIZE)]),
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    let expected = {
        let size = sim.file_size(1);
        assert_eq!(size, SIZE);
        let seed = support::small_files().seed;
        tokio::task::spawn_blocking(move || minimax_sim::content_sha256(seed, 1, 0, SIZE))
    };
    let child = world
        .command()
        .args(["fetch", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn fetch");
    let pid = child.id().expect("pid");
    let poll = tokio::spawn(async move {
        let mut peak = 0;
        while let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    });
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("fetch of 2 GiB did not finish in 300 s")
        .expect("wait");
    let peak = poll.await.expect("poll task");
    eprintln!("fetch of 2 GiB: peak RSS (VmHWM) {} MiB", peak / 1024);
    assert_success(&out);
    assert!(peak > 0, "VmHWM was never read");
    assert!(peak < 256 * 1024, "peak RSS {} MiB", peak / 1024);
    let path = PathBuf::from(stdout(&out).trim_end());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), SIZE);
    let expected = expected.await.unwrap();
    let job = world.job(1).await;
    assert_eq!(job["sha256"].as_str(), Some(expected.as_str()));
    assert_eq!(sha256_of(&path), expected);
    assert_eq!(cdn_bytes(&sim, 1), SIZE);
    assert_no_key_on_cdn(&sim);
}
