//! Crash points, leases, signals and the pool: nothing enqueued is lost and
//! nothing verified is downloaded twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use minimax_dl::queue::JobState;
use minimax_dl::queue::testing::{self, JobPatch};
use minimax_sim::{ApiFault, ApiFaultRule, CdnRequest, Faults, SimConfig};

use crate::support::{
    self, World, assert_exit, assert_success, assert_verified, finish, queue, signal, spawn,
    wait_for,
};

async fn crash_then_recover(point: &str) {
    let sim = support::sim(SimConfig {
        default_file_size: 700_000,
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    let crashed = world
        .command()
        .env("MINIMAX_DL_CRASH_AT", point)
        .args(["fetch", "42"])
        .output()
        .await
        .unwrap();
    assert!(
        !crashed.status.success(),
        "the crash hook must abort the process"
    );
    let q = queue(&world).await;
    let job = q.get(42).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Running, "killed mid-job");
    assert_eq!(
        job.sha256.as_deref(),
        Some(sim.expected_sha256(42).as_str()),
        "digest recorded before the rename"
    );
    let sent_before = sim.stats().cdn_bytes_sent;
    assert_eq!(sent_before, 700_000);

    let out = world.run(&["run", "--exit-when-idle"]).await;
    assert_success(&out);
    let job = world.job(42).await;
    assert_verified(&world, &sim, &job);
    assert_eq!(
        sim.stats().cdn_bytes_sent,
        sent_before,
        "a verified file is never downloaded again"
    );
    let events = support::event_kinds(&job);
    assert!(events.contains(&"recovered".into()), "{events:?}");
    assert!(!world.out.join(".minimax-dl-partial/42.part").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_digest_is_recorded_finishes_without_downloading_again() {
    crash_then_recover("after-verified").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_rename_finishes_without_downloading_again() {
    crash_then_recover("after-rename").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_verified_file_is_downloaded_again_not_accepted() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    let crashed = world
        .command()
        .env("MINIMAX_DL_CRASH_AT", "after-rename")
        .args(["fetch", "9"])
        .output()
        .await
        .unwrap();
    assert!(!crashed.status.success());
    let path = world.out.join("9-output_aigc.mp4");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    assert_verified(&world, &sim, &world.job(9).await);
    assert_eq!(sim.stats().cdn_bytes_sent, 2 * 64 * 1024);
}

/// A bug in a worker (a panic) does not leave its job under a lease that
/// the heartbeat would renew for ever: the job is retried like any
/// transient failure, fails after its attempts with the panic's message,
/// and the batch ends. Without the bug, a retry finishes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_worker_fails_its_job_with_the_panic_and_the_batch_ends() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    std::fs::write(&world.config, "max_attempts = 2\n").unwrap();
    assert_success(&world.run(&["enqueue", "3", "4"]).await);
    let mut buggy = world.command();
    buggy
        .env("MINIMAX_DL_CRASH_AT", "panic:after-reserve")
        .args(["run", "--exit-when-idle", "--concurrency", "2"]);
    let out = support::run_bounded(&mut buggy, Duration::from_secs(120)).await;
    assert_exit(&out, 1);
    assert!(support::stderr(&out).contains("a test panic at after-reserve"));
    for id in [3, 4] {
        let job = world.job(id).await;
        assert_eq!(job["state"], "failed", "{job}");
        assert_eq!(job["attempts"], 2, "{job}");
        let error = job["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("internal error") && error.contains("a test panic at after-reserve"),
            "{job}"
        );
    }

    assert_success(&world.run(&["retry", "3", "4"]).await);
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    for id in [3, 4] {
        assert_verified(&world, &sim, &world.job(id).await);
    }
}

/// A simulator serving 4 MiB files at 1 MiB/s: slow enough to interrupt a
/// download part way. Returns the file size and the simulator.
async fn slow_4_mib_files() -> (u64, minimax_sim::Simulator) {
    let size = 4 * 1024 * 1024;
    let sim = support::throttled_sim(size, 1024 * 1024).await;
    (size, sim)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_daemon_is_resumed_from_its_durable_bytes_not_from_zero() {
    let (size, sim) = slow_4_mib_files().await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "5"]).await);
    let mut child = spawn(&world, &["run"]);
    let q = queue(&world).await;
    let durable = wait_for(Duration::from_secs(20), "a checkpoint", || async {
        q.get(5)
            .await
            .unwrap()
            .filter(|j| j.bytes_done > 0)
            .map(|j| j.bytes_done)
    })
    .await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let job = q.get(5).await.unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Running,
        "SIGKILL leaves the lease behind"
    );
    let durable = durable.max(job.bytes_done);

    sim.set_faults(Faults::default());
    let before = sim.stats().cdn_bytes_by_file.get(&5).copied().unwrap_or(0);
    let started = Instant::now();
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    // The dead owner's lease was taken at once, not after 30 s.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let job = world.job(5).await;
    assert_verified(&world, &sim, &job);
    let resent = sim.stats().cdn_bytes_by_file[&5] - before;
    assert!(
        resent <= size - durable,
        "re-sent {resent} bytes; {durable} were durable of {size}"
    );
    let kinds: Vec<&str> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"reclaimed"), "{kinds:?}");
}

/// The first GET for `id` the CDN saw from request number `from` on.
fn first_get(sim: &minimax_sim::Simulator, id: i64, from: usize) -> CdnRequest {
    sim.stats().cdn_log[from..]
        .iter()
        .find(|r| r.file_id == Some(id) && r.method == "GET")
        .cloned()
        .unwrap_or_else(|| panic!("no GET for {id} after request {from}"))
}

fn partial_len(world: &World, id: i64) -> u64 {
    std::fs::metadata(world.out.join(format!(".minimax-dl-partial/{id}.part")))
        .map_or(0, |m| m.len())
}

/// A crash loop (a daemon killed well before its first 2 s checkpoint)
/// still makes progress: what `write()` handed to the kernel survives the
/// process, so the next run asks for the rest, with `If-Range`.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_half_a_second_in_resumes_from_the_bytes_it_wrote() {
    let (size, sim) = slow_4_mib_files().await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "5"]).await);
    let mut child = spawn(&world, &["run"]);
    wait_for(Duration::from_secs(20), "the first bytes", || async {
        sim.stats().cdn_bytes_by_file.contains_key(&5).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let written = partial_len(&world, 5);
    assert!(written > 0 && written < size, "{written} of {size} written");

    sim.set_faults(Faults::default());
    let seen = sim.stats().cdn_log.len();
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    let resume = first_get(&sim, 5, seen);
    assert_eq!(resume.range_start(), Some(written), "{resume:?}");
    assert!(resume.if_range, "the validator was recorded: {resume:?}");
    assert_eq!(resume.status, 206, "{resume:?}");
    assert_verified(&world, &sim, &world.job(5).await);
}

/// A reboot (simulated through the boot-id test hook) may have lost what
/// was never fsynced: the resume keeps only the recorded `bytes_done`.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_reboot_a_resume_keeps_only_the_fsynced_bytes() {
    let (_, sim) = slow_4_mib_files().await;
    let world = World::new();
    let boot_id = world.path("boot_id");
    std::fs::write(&boot_id, "boot-one\n").unwrap();
    let world = world
        .with_sim(&sim)
        .env("MINIMAX_DL_BOOT_ID_FILE", boot_id.to_str().unwrap());
    assert_success(&world.run(&["enqueue", "6"]).await);
    let mut child = spawn(&world, &["run"]);
    let q = queue(&world).await;
    let checkpoint = wait_for(Duration::from_secs(20), "a checkpoint", || async {
        q.get(6)
            .await
            .unwrap()
            .map(|j| j.bytes_done)
            .filter(|n| *n > 0)
    })
    .await;
    wait_for(Duration::from_secs(20), "bytes past it", || async {
        (partial_len(&world, 6) > checkpoint).then_some(())
    })
    .await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let fsynced = q.get(6).await.unwrap().unwrap().bytes_done;
    let written = partial_len(&world, 6);
    assert!(written > fsynced, "{written} written, {fsynced} fsynced");

    std::fs::write(&boot_id, "boot-two\n").unwrap();
    sim.set_faults(Faults::default());
    let seen = sim.stats().cdn_log.len();
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    let resume = first_get(&sim, 6, seen);
    assert_eq!(resume.range_start(), Some(fsynced), "{resume:?}");
    assert!(resume.if_range, "{resume:?}");
    assert_verified(&world, &sim, &world.job(6).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_foreign_lease_is_respected_and_an_expired_one_resumed() {
    // A worker on another host got 1+ MiB in and then went silent.
    let (size, sim) = slow_4_mib_files().await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "11"]).await);
    let mut first = spawn(&world, &["run"]);
    let q = queue(&world).await;
    support::wait_for_checkpoint(&q, 11, Duration::from_secs(20)).await;
    first.start_kill().unwrap();
    let _ = first.wait().await;
    let far = minimax_dl::queue::now_millis() + 600_000;
    let foreign = JobPatch {
        lease_owner: Some("other-host:1:1:aa".into()),
        lease_expires_at: Some(far),
        ..JobPatch::default()
    };
    assert!(testing::patch_job(&q, 11, &foreign).await.unwrap());
    let durable = q.get(11).await.unwrap().unwrap().bytes_done;
    sim.set_faults(Faults::default());
    let before = sim.stats();

    let child = spawn(&world, &["run"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sim.stats().api_requests,
        before.api_requests,
        "a lease held by a live worker elsewhere is not stolen"
    );
    let expired = JobPatch {
        lease_expires_at: Some(1),
        ..JobPatch::default()
    };
    assert!(testing::patch_job(&q, 11, &expired).await.unwrap());
    wait_for(
        Duration::from_secs(10),
        "the expired lease to be reclaimed",
        || async {
            q.get(11)
                .await
                .unwrap()
                .filter(|j| j.state == JobState::Done)
                .map(|_| ())
        },
    )
    .await;
    signal(child.id().unwrap(), "-TERM");
    assert_success(&finish(child, Duration::from_secs(30)).await);
    let job = world.job(11).await;
    assert_verified(&world, &sim, &job);
    let reclaimed = job["events"].as_array().unwrap().iter().any(|e| {
        e["kind"] == "reclaimed" && e["message"].as_str().unwrap_or("").contains("other-host")
    });
    assert!(reclaimed, "{job}");
    let resent = sim.stats().cdn_bytes_sent - before.cdn_bytes_sent;
    assert!(
        resent <= size - durable,
        "resumed from {durable}: re-sent {resent} of {size}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_on_one_database_never_download_the_same_file() {
    let sim = support::sim(SimConfig {
        default_file_size: 32 * 1024,
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    let ids: Vec<String> = (1..=120).map(|i| i.to_string()).collect();
    let mut args = vec!["enqueue"];
    args.extend(ids.iter().map(String::as_str));
    assert_success(&world.run(&args).await);
    let a = spawn(&world, &["run", "--exit-when-idle", "--concurrency", "4"]);
    let b = spawn(&world, &["run", "--exit-when-idle", "--concurrency", "4"]);
    let (a, b) = tokio::join!(
        finish(a, Duration::from_secs(120)),
        finish(b, Duration::from_secs(120))
    );
    assert_success(&a);
    assert_success(&b);
    let stats = sim.stats();
    for id in 1..=120i64 {
        assert_eq!(
            stats.api_requests_by_file.get(&id),
            Some(&1),
            "file {id} resolved more than once"
        );
        assert_eq!(
            stats.cdn_bytes_by_file.get(&id),
            Some(&(32 * 1024)),
            "file {id} downloaded more than once"
        );
    }
    let q = queue(&world).await;
    let mut claims = Vec::new();
    for job in q.list(None, None).await.unwrap() {
        let events = q.events(job.file_id).await.unwrap();
        claims.extend(
            events
                .into_iter()
                .filter(|e| e.kind == "claimed")
                .filter_map(|e| e.message),
        );
    }
    let owners: HashMap<String, usize> = claims.into_iter().fold(HashMap::new(), |mut m, msg| {
        // "claimed by host:ns:pid:tag-N": one process per host:ns:pid:tag.
        let process = msg
            .rsplit_once('-')
            .map_or(msg.clone(), |(p, _)| p.to_string());
        *m.entry(process).or_default() += 1;
        m
    });
    assert_eq!(
        owners.values().sum::<usize>(),
        120,
        "exactly one claim per job"
    );
    assert_eq!(owners.len(), 2, "both daemons worked: {owners:?}");
    assert_eq!(world.status().await["done"], 120);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_checkpoints_releases_and_exits_zero() {
    let size = 8 * 1024 * 1024;
    let sim = support::throttled_sim(size, 2 * 1024 * 1024).await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "1", "2"]).await);
    let child = spawn(&world, &["run", "--concurrency", "2"]);
    let q = queue(&world).await;
    wait_for(
        Duration::from_secs(20),
        "both downloads to be under way",
        || async {
            let a = q.get(1).await.unwrap()?;
            let b = q.get(2).await.unwrap()?;
            (a.bytes_done > 0 && b.bytes_done > 0).then_some(())
        },
    )
    .await;
    let asked = Instant::now();
    signal(child.id().unwrap(), "-TERM");
    let out = finish(child, Duration::from_secs(30)).await;
    let took = asked.elapsed();
    eprintln!("SIGTERM to exit: {took:?}");
    assert_exit(&out, 0);
    for id in [1i64, 2] {
        let job = q.get(id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Queued, "{job:?}");
        assert_eq!(job.lease_owner, None);
        assert_eq!(job.attempts, 0, "a shutdown is not a failed attempt");
        let partial = world.out.join(format!(".minimax-dl-partial/{id}.part"));
        let on_disk = std::fs::metadata(&partial).unwrap().len();
        assert!(
            job.bytes_done > 0 && job.bytes_done == on_disk,
            "{} recorded, {on_disk} on disk",
            job.bytes_done
        );
    }
    // And the checkpoint is good: the rest comes by Range.
    sim.set_faults(Faults::default());
    let before = sim.stats().cdn_bytes_sent;
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    let resent = sim.stats().cdn_bytes_sent - before;
    assert!(resent < 2 * size, "resumed, not restarted: {resent}");
    for job in world.jobs().await {
        assert_verified(&world, &sim, &job);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_running_download_within_seconds() {
    let sim = support::sim(SimConfig {
        default_file_size: 64 * 1024 * 1024,
        faults: Faults {
            bandwidth_bytes_per_sec: Some(1024 * 1024),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "77"]).await);
    let child = spawn(&world, &["run"]);
    let q = queue(&world).await;
    wait_for(Duration::from_secs(20), "the download to start", || async {
        q.get(77)
            .await
            .unwrap()
            .filter(|j| j.state == JobState::Running && j.bytes_done > 0)
            .map(|_| ())
    })
    .await;
    let asked = Instant::now();
    let out = world.run(&["cancel", "77"]).await;
    assert_success(&out);
    eprintln!("cancel confirmed after {:?}", asked.elapsed());
    assert!(
        support::stdout(&out).contains("77: cancelled"),
        "{}",
        support::stdout(&out)
    );
    assert_eq!(q.get(77).await.unwrap().unwrap().state, JobState::Cancelled);
    let sent = sim.stats().cdn_bytes_sent;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sim.stats().cdn_bytes_sent,
        sent,
        "no bytes flow after the cancel"
    );
    signal(child.id().unwrap(), "-TERM");
    assert_success(&finish(child, Duration::from_secs(30)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_enqueued_while_the_daemon_idles_is_picked_up() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    let child = spawn(&world, &["run"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let enqueued = Instant::now();
    assert_success(&world.run(&["enqueue", "31"]).await);
    let q = queue(&world).await;
    wait_for(
        Duration::from_secs(10),
        "the new job to be done",
        || async {
            q.get(31)
                .await
                .unwrap()
                .filter(|j| j.state == JobState::Done)
                .map(|_| ())
        },
    )
    .await;
    eprintln!("enqueue to done: {:?}", enqueued.elapsed());
    let first_call = sim.stats().api_request_times[0];
    let lag = first_call
        .duration_since(std::time::SystemTime::now() - enqueued.elapsed())
        .unwrap_or_default();
    eprintln!("enqueue to first API call: {lag:?}");
    // An idle pool on SQLite waits at most its idle poll (1 s; see daemon.rs's
    // wake-up test for the bound measured from the verb's start).
    assert!(
        lag < Duration::from_secs(5),
        "the idle daemon made its first API call {lag:?} after the enqueue"
    );
    signal(child.id().unwrap(), "-TERM");
    assert_success(&finish(child, Duration::from_secs(30)).await);
    assert_verified(&world, &sim, &world.job(31).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_retry_time_survives_a_restart() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "8"]).await);
    let q = queue(&world).await;
    let due = minimax_dl::queue::now_millis() + 3000;
    let failed_twice = JobPatch {
        attempts: Some(2),
        next_attempt_at: Some(due),
        last_error: Some("earlier failure".into()),
        ..JobPatch::default()
    };
    assert!(testing::patch_job(&q, 8, &failed_twice).await.unwrap());
    let started = Instant::now();
    let out = world.run(&["run", "--exit-when-idle"]).await;
    assert_success(&out);
    let times = sim.stats().api_request_times;
    assert_eq!(times.len(), 1);
    let first = times[0]
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        first >= due,
        "retried {} ms before its stored time",
        due - first
    );
    assert!(started.elapsed() >= Duration::from_millis(2500));
    let job = world.job(8).await;
    assert_verified(&world, &sim, &job);
    assert_eq!(job["attempts"], 2, "success does not add an attempt");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_minute_cap_counts_calls_made_before_a_restart() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new()
        .with_sim(&sim)
        .env("MINIMAX_DL_REQUESTS_PER_MINUTE", "60");
    // Calls spaced evenly (no burst), as the last assertion expects.
    std::fs::write(&world.config, "burst = 1\n").unwrap();
    assert_success(&world.run(&["enqueue", "1", "2", "3"]).await);
    let q = queue(&world).await;
    // A previous run made 59 calls 56 seconds ago: one more is allowed now,
    // the next only when those leave the window.
    let earlier = minimax_dl::queue::now_millis() - 56_000;
    testing::record_api_calls(&q, earlier, 59).await.unwrap();
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    let times: Vec<i64> = sim
        .stats()
        .api_request_times
        .iter()
        .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64)
        .collect();
    assert_eq!(times.len(), 3);
    let window = 60_000;
    assert!(
        times[1] > earlier + window,
        "second call {} ms too early",
        earlier + window - times[1]
    );
    // Spacing: 60 per minute is one a second.
    assert!(times[2] - times[1] >= 900, "{:?}", times);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_answer_cools_down_the_whole_pool() {
    let sim = support::sim(SimConfig {
        faults: Faults {
            api: vec![
                ApiFaultRule::new(ApiFault::Code(1002, "rate limit exceeded(RPM)".into())).limit(1),
            ],
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    let ids: Vec<String> = (1..=8).map(|i| i.to_string()).collect();
    let mut args = vec!["enqueue"];
    args.extend(ids.iter().map(String::as_str));
    assert_success(&world.run(&args).await);
    assert_success(
        &world
            .run(&["run", "--exit-when-idle", "--concurrency", "4"])
            .await,
    );
    let times = sim.stats().api_request_times;
    let limited_at = times[0];
    let hammering: Vec<Duration> = times
        .iter()
        .filter_map(|t| t.duration_since(limited_at).ok())
        .filter(|d| *d > Duration::from_millis(300) && *d < Duration::from_millis(4500))
        .collect();
    assert!(
        hammering.is_empty(),
        "calls during the cooldown: {hammering:?}"
    );
    for job in world.jobs().await {
        assert_verified(&world, &sim, &job);
        assert_eq!(job["attempts"], 0, "a rate limit is not a failed attempt");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_error_pauses_the_pool_until_the_key_works() {
    let sim = support::sim(support::small_files()).await;
    sim.set_api_key(Some("the-real-key".into()));
    let world = World::new().with_sim(&sim);
    std::fs::write(&world.config, "probe_interval_secs = 1\n").unwrap();
    assert_success(&world.run(&["enqueue", "1", "2", "3"]).await);
    let child = spawn(&world, &["run", "--concurrency", "2"]);
    let q = queue(&world).await;
    wait_for(
        Duration::from_secs(10),
        "the 1004 to be recorded",
        || async {
            q.get(1)
                .await
                .unwrap()
                .filter(|j| j.last_error.as_deref().is_some_and(|e| e.contains("1004")))
                .map(|_| ())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let calls_while_paused = sim.stats().api_requests;
    assert!(
        calls_while_paused <= 6,
        "paused pool keeps probing gently: {calls_while_paused} calls"
    );
    for job in q.list(None, None).await.unwrap() {
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.attempts, 0, "account errors do not burn attempts");
    }
    // The operator fixes the key on the API side (a top-up works the same way).
    sim.set_api_key(Some(support::TEST_KEY.into()));
    wait_for(Duration::from_secs(10), "work to resume", || async {
        let counts = q.status().await.unwrap();
        (counts.done == 3).then_some(())
    })
    .await;
    signal(child.id().unwrap(), "-TERM");
    assert_success(&finish(child, Duration::from_secs(30)).await);
    for job in world.jobs().await {
        assert_verified(&world, &sim, &job);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_fixed_key_and_resumes_at_once() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    let key_file = world.path("api_key");
    std::fs::write(&key_file, "wrong-key\n").unwrap();
    std::fs::write(
        &world.config,
        format!(
            "api_key_file = {:?}\nprobe_interval_secs = 3600\n",
            key_file
        ),
    )
    .unwrap();
    assert_success(&world.run(&["enqueue", "4"]).await);
    let mut cmd = world.command();
    cmd.env_remove("MINIMAX_API_KEY").args(["run"]);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let q = queue(&world).await;
    wait_for(Duration::from_secs(10), "the pause", || async {
        q.get(4)
            .await
            .unwrap()
            .filter(|j| j.last_error.is_some())
            .map(|_| ())
    })
    .await;
    std::fs::write(&key_file, format!("{}\n", support::TEST_KEY)).unwrap();
    signal(child.id().unwrap(), "-HUP");
    wait_for(
        Duration::from_secs(10),
        "work to resume after SIGHUP",
        || async {
            q.get(4)
                .await
                .unwrap()
                .filter(|j| j.state == JobState::Done)
                .map(|_| ())
        },
    )
    .await;
    signal(child.id().unwrap(), "-TERM");
    assert_success(&finish(child, Duration::from_secs(30)).await);
}
