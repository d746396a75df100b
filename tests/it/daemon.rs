//! The daemon as systemd sees it: the notify protocol, signals, log format,
//! and what it costs while idle.

use std::time::{Duration, Instant};

use minimax_dl::queue::JobState;
use minimax_sim::{ApiFault, ApiFaultRule, Faults, SimConfig};
use tokio::net::UnixDatagram;

use crate::support::{
    self, World, assert_exit, assert_success, assert_verified, finish, queue, signal, spawn,
    wait_for,
};

fn spawn_with_env(world: &World, args: &[&str], envs: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = world.command();
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn minimax-dl")
}

async fn next_message(socket: &UnixDatagram, limit: Duration) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(limit, socket.recv(&mut buf))
        .await
        .expect("no notify message in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn it_speaks_the_systemd_notify_protocol() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    let socket_path = world.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let child = spawn_with_env(
        &world,
        &["run"],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let ready = next_message(&socket, Duration::from_secs(10)).await;
    assert!(ready.contains("READY=1"), "{ready:?}");
    assert_success(&world.run(&["enqueue", "1", "2"]).await);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(seen.iter().any(|m: &String| m.contains("WATCHDOG=1"))
        && seen
            .iter()
            .any(|m| m.contains("STATUS=") && m.contains("2 done")))
    {
        assert!(Instant::now() < deadline, "messages so far: {seen:?}");
        seen.push(next_message(&socket, Duration::from_secs(10)).await);
    }
    signal(child.id().unwrap(), "-TERM");
    // STATUS and WATCHDOG ticks may come first: read on until STOPPING.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = next_message(&socket, left).await;
        if message.contains("STOPPING=1") {
            break;
        }
        seen.push(message);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_success(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once_and_still_loses_nothing() {
    let sim = support::throttled_sim(32 * 1024 * 1024, 2 * 1024 * 1024).await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "1"]).await);
    let child = spawn_with_env(&world, &["run"], &[]);
    let q = minimax_dl::queue::Queue::open(&minimax_dl::queue::DbLocation(
        world.db.to_string_lossy().into_owned(),
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while q.get(1).await.unwrap().unwrap().bytes_done == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Hold the queue's write lock: the first signal's graceful path (a
    // checkpoint and a release, each a write) now waits for the lock, up to
    // the 30 s busy timeout, so only the second signal can end it soon.
    let lock = minimax_dl::queue::testing::hold_write_lock(&q)
        .await
        .unwrap();
    let mut child = child;
    let pid = child.id().unwrap();
    signal(pid, "-TERM");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal's graceful stop is still waiting for the queue"
    );
    let second = Instant::now();
    signal(pid, "-TERM");
    let out = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output())
        .await
        .expect("the second signal exits at once")
        .unwrap();
    eprintln!("exit {:?} after the second signal", second.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert!(
        support::stderr(&out).contains("second signal, exiting now"),
        "{}",
        support::stderr(&out)
    );
    lock.release().await.unwrap();
    sim.set_faults(Faults::default());
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    assert_verified(&world, &sim, &world.job(1).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_file_id_of_each_job() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "21"]).await);
    let out = world
        .run(&["--log-format", "json", "run", "--exit-when-idle"])
        .await;
    assert_success(&out);
    let lines: Vec<serde_json::Value> = support::stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let done = lines
        .iter()
        .find(|l| l["fields"]["message"] == "done")
        .expect("a 'done' line");
    assert_eq!(done["span"]["file_id"], 21, "{done}");
    assert!(
        !support::stderr(&out).contains(support::TEST_KEY),
        "the key is never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_daemon_costs_almost_nothing() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    let child = spawn_with_env(&world, &["run"], &[]);
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = ticks(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = ticks(pid) - before;
    eprintln!("idle daemon: {used} clock ticks of CPU in 5 s");
    // 100 ticks a second: 25 ticks in 5 s would be 5% of a core.
    assert!(used < 25, "idle CPU {used} ticks in 5 s");
    signal(pid, "-TERM");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_success(&out);
}

/// Issue #9 §2. The rate gate spaces the four workers' first calls 250 ms
/// apart (as the default 60 a minute spaces them a second apart), so when
/// the balance runs out the other three are waiting at the gate: they must
/// not call, and their reports must not push the first probe back.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_pause_probes_one_interval_after_the_first_error() {
    const INTERVAL: Duration = Duration::from_secs(4);
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
        .env("MINIMAX_DL_REQUESTS_PER_MINUTE", "240");
    std::fs::write(
        &world.config,
        // Spaced calls, no burst: the test is about workers waiting at the gate.
        format!("probe_interval_secs = {}\nburst = 1\n", INTERVAL.as_secs()),
    )
    .unwrap();
    assert_success(&world.run(&["enqueue", "1", "2", "3", "4"]).await);
    let child = spawn(&world, &["run", "--concurrency", "4"]);
    let first_error = wait_for(Duration::from_secs(20), "the first 1008", || async {
        sim.stats().api_request_times.first().copied()
    })
    .await;
    // Long enough for every spaced worker to have called, well before the probe.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sim.set_faults(Faults::default());
    let topped_up = Instant::now();
    let q = queue(&world).await;
    wait_for(INTERVAL * 4, "every job done", || async {
        (q.status().await.unwrap().done == 4).then_some(())
    })
    .await;
    let took = topped_up.elapsed();

    let times = sim.stats().api_request_times;
    let since_error = |t: &std::time::SystemTime| t.duration_since(first_error).unwrap_or_default();
    let probe = times
        .iter()
        .find(|t| since_error(t) >= INTERVAL / 2)
        .expect("a probe");
    let calls_before_probe = times.iter().filter(|t| *t < probe).count();
    assert!(
        calls_before_probe <= 4,
        "at most one call per worker before the probe: {calls_before_probe}"
    );
    let probe_after = since_error(probe);
    eprintln!(
        "{calls_before_probe} calls before the probe, probe {probe_after:?} after the first 1008, done {took:?} after the top-up"
    );
    assert!(
        probe_after >= INTERVAL - Duration::from_millis(100),
        "probed early: {probe_after:?}"
    );
    assert!(
        probe_after < INTERVAL + Duration::from_secs(2),
        "the first probe comes one interval ({INTERVAL:?}) after the first 1008, not {probe_after:?}"
    );
    assert!(
        took < INTERVAL + Duration::from_secs(2),
        "jobs done {took:?} after the top-up (interval {INTERVAL:?})"
    );
    signal(child.id().unwrap(), "-TERM");
    assert_success(&finish(child, Duration::from_secs(30)).await);
    for job in world.jobs().await {
        assert_verified(&world, &sim, &job);
        assert_eq!(job["attempts"], 0, "a pause burns no attempt: {job}");
    }
}

/// The daemon looks at the queue at least once a second while idle. The
/// bound here is generous for a loaded CI machine; `benches/` measures
/// the real figure.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_daemon_starts_a_new_job_soon_after_enqueue() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    let child = spawn(&world, &["run"]);
    // Idle long enough for its polling to have backed off all the way.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_success(&world.run(&["enqueue", "7"]).await);
    let enqueued = Instant::now();
    wait_for(Duration::from_secs(30), "the job to start", || async {
        (sim.stats().api_requests > 0).then_some(())
    })
    .await;
    let took = enqueued.elapsed();
    eprintln!("job started {took:?} after enqueue");
    assert!(
        took < Duration::from_secs(5),
        "started {took:?} after enqueue"
    );
    signal(child.id().unwrap(), "-TERM");
    assert_success(&finish(child, Duration::from_secs(30)).await);
}

/// A sim whose one file takes ~16 s: a signal always lands mid-transfer.
async fn slow_sim() -> minimax_sim::Simulator {
    support::throttled_sim(32 * 1024 * 1024, 2 * 1024 * 1024).await
}

/// Starts `args`, waits until this process has checkpointed new bytes of
/// job 1, sends `sig`, and returns the output.
async fn interrupt_mid_transfer(world: &World, args: &[&str], sig: &str) -> std::process::Output {
    let q = queue(world).await;
    let before = q.get(1).await.unwrap().map_or(0, |j| j.bytes_done);
    let child = spawn(world, args);
    let worker = format!(":{}:", child.id().unwrap());
    wait_for(Duration::from_secs(30), "a new checkpoint", || async {
        q.get(1)
            .await
            .unwrap()
            .filter(|j| j.bytes_done > before)
            .filter(|j| {
                j.lease_owner
                    .as_deref()
                    .is_some_and(|o| o.contains(&worker))
            })
            .map(|_| ())
    })
    .await;
    signal(child.id().unwrap(), sig);
    finish(child, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_to_fetch_exits_130_saying_interrupted_and_the_job_resumes() {
    let sim = slow_sim().await;
    let world = World::new().with_sim(&sim);
    let out = interrupt_mid_transfer(&world, &["fetch", "1"], "-INT").await;
    assert_exit(&out, 130);
    assert!(
        support::stderr(&out).contains("interrupted"),
        "{}",
        support::stderr(&out)
    );
    let job = queue(&world).await.get(1).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued, "{job:?}");
    assert!(job.bytes_done > 0, "progress kept: {job:?}");
    sim.set_faults(Faults::default());
    assert_success(&world.run(&["fetch", "1"]).await);
    assert_verified(&world, &sim, &world.job(1).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_cut_short_by_a_signal_exits_130_or_143_and_a_daemon_stop_exits_0() {
    let sim = slow_sim().await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "1"]).await);
    for (sig, code) in [("-INT", 130), ("-TERM", 143)] {
        let out = interrupt_mid_transfer(&world, &["run", "--exit-when-idle"], sig).await;
        assert_exit(&out, code);
        assert!(
            support::stderr(&out).contains("interrupted"),
            "{}",
            support::stderr(&out)
        );
    }
    // `run` without --exit-when-idle is a daemon: a stop is its normal end.
    for sig in ["-INT", "-TERM"] {
        let out = interrupt_mid_transfer(&world, &["run"], sig).await;
        assert_exit(&out, 0);
    }
    let job = queue(&world).await.get(1).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued, "{job:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn help_documents_the_interrupted_exit_codes() {
    let out = World::new().run(&["--help"]).await;
    assert_success(&out);
    let text = support::stdout(&out);
    for code in ["130", "143"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))
                    && l.contains("interrupted")),
            "exit code {code} missing: {text}"
        );
    }
}
