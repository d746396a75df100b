//! The promises README.md and ARCHITECTURE.md make for the bad moment,
//! each through the binary (or its listener), each able to fail: a stalled
//! heartbeat, a file `verify` cannot read, a panic while polling a task,
//! the listener's deadlines, callbacks late and out of order, a dead
//! host's jobs under the default lease, wake-ups, the database lost
//! mid-run, and the fleet's rate window.

use std::time::{Duration, Instant, SystemTime};

use minimax_sim::SimApi;
use minimax_sim::{Faults, SimConfig, SimTask, TaskEnd};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    self, Listening, World, assert_exit, assert_success, enqueue, http, ids, run_bounded, stderr,
    stdout, wait_for,
};

// ---------------------------------------------------------------------------
// /healthz when the heartbeat stalls (README "Monitoring")
// ---------------------------------------------------------------------------

/// `/healthz` is 200 only while the heartbeat turns: a pool whose heartbeat
/// stopped (the test hook) is reported 503 once 10 s have passed, with
/// the heartbeat's age.
#[tokio::test]
async fn healthz_answers_503_when_the_heartbeat_stalls() {
    let world = World::new().env("MINIMAX_DL_CRASH_AT", "stall:heartbeat");
    let daemon = support::run_listening(&world, &[]).await;
    let url = daemon.url("/healthz");
    let stalled = wait_for(Duration::from_secs(60), "/healthz to say 503", || async {
        let response = http().get(&url).send().await.ok()?;
        let code = response.status().as_u16();
        let body: Value = response.json().await.ok()?;
        (code == 503).then_some(body)
    })
    .await;
    let age = stalled["heartbeat_age_secs"].as_f64().unwrap_or_default();
    assert!(age >= 10.0, "503 only past 10 s without a turn: {stalled}");
    assert!(daemon.stop().await.success());
}

// ---------------------------------------------------------------------------
// verify: a file it cannot read (README "Exit codes")
// ---------------------------------------------------------------------------

fn verify_lines(out: &std::process::Output) -> Vec<(String, i64)> {
    stdout(out)
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let label = words.next().unwrap().to_string();
            (label, words.next().unwrap().parse().unwrap())
        })
        .collect()
}

/// Root reads through any mode bits, so the file is made unreadable the
/// way root cannot get past: a symbolic link to itself (open fails with
/// ELOOP). A FIFO in a file's place must not hang `verify` either.
#[tokio::test]
async fn verify_reports_a_file_it_cannot_read_as_unreadable_and_exits_1() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=3)).await;
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    let path = |id: i64| world.out.join(format!("{id}-output_aigc.mp4"));
    std::fs::remove_file(path(2)).unwrap();
    std::os::unix::fs::symlink(path(2).file_name().unwrap(), path(2)).unwrap();
    std::fs::remove_file(path(3)).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(path(3))
        .status()
        .unwrap();
    assert!(fifo.success());

    let out = run_bounded(
        world.command().args(["verify", "--all"]),
        Duration::from_secs(60),
    )
    .await;
    assert_exit(&out, 1);
    let mut found = verify_lines(&out);
    found.sort_by_key(|(_, id)| *id);
    let labels: Vec<&str> = found.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["ok", "unreadable", "changed"], "{}", stdout(&out));
    assert!(
        stderr(&out).contains("3 files: 1 ok, 0 missing, 1 changed, 1 unreadable"),
        "{}",
        stderr(&out)
    );
    assert_eq!(world.status().await["done"], 3, "looking changed nothing");
}

// ---------------------------------------------------------------------------
// A panic while polling a task (loose end: the poller's panic guard)
// ---------------------------------------------------------------------------

/// Every poll panics (the test hook): each panic is caught, the task is
/// polled again (the poller lives on), and after three it fails with the
/// panic's message; a batch then exits 1 instead of waiting for ever.
#[tokio::test]
async fn a_panic_while_polling_retries_the_task_then_fails_it_with_the_message() {
    let sim = support::sim(support::small_files()).await;
    sim.add_task(7001, SimTask::new(SimApi::V1, 7_100));
    let world = World::new()
        .with_sim(&sim)
        .env("MINIMAX_DL_TEST_TASK_POLL_MS", "100");
    assert_success(&world.run(&["enqueue", "--task", "7001"]).await);
    let mut buggy = world.command();
    buggy
        .env("MINIMAX_DL_CRASH_AT", "panic:poll-task")
        .args(["run", "--exit-when-idle"]);
    let out = run_bounded(&mut buggy, Duration::from_secs(120)).await;
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("a test panic at poll-task"));
    let task = &world.run(&["list", "--tasks", "--json"]).await;
    let task: Value = serde_json::from_str(stdout(task).trim()).expect("one task");
    assert_eq!(task["state"], "failed", "{task}");
    assert_eq!(task["polls"], 3, "failed at its third panic: {task}");
    let error = task["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("internal error") && error.contains("a test panic at poll-task"),
        "{task}"
    );
    assert_eq!(sim.stats().task_requests, 0, "every poll panicked first");
}

// ---------------------------------------------------------------------------
// The listener's deadlines (README "Monitoring") and refused bodies
// ---------------------------------------------------------------------------

const CALLBACK_TOKEN: &str = "cb-token-0123456789abcdef";

fn callback_world(world: World) -> World {
    std::fs::write(
        &world.config,
        format!("callback_token = \"{CALLBACK_TOKEN}\"\n"),
    )
    .unwrap();
    world
}

fn authority(daemon: &Listening) -> String {
    daemon.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or `limit`), returning
/// what it sent and how long that took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

/// A client that sends its headers a line a second is cut off once 5 s
/// have passed (the promise), not whenever: 12 s is the margin for a
/// loaded machine.
#[tokio::test]
async fn request_headers_get_five_seconds() {
    let world = World::new();
    let daemon = support::run_listening(&world, &[]).await;
    let mut stream = TcpStream::connect(authority(&daemon)).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let closed = loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break started.elapsed(),
                Ok(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    break started.elapsed();
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never cut off");
    };
    assert!(
        closed >= Duration::from_secs(4) && closed <= Duration::from_secs(12),
        "headers cut off after {closed:?}, promised 5 s"
    );
    assert!(daemon.stop().await.success());
}

/// A request whose body comes a byte a second is answered 408 once 30 s
/// have passed (the answer cap), not when the body is complete (64 s).
#[tokio::test]
async fn every_request_is_answered_within_thirty_seconds() {
    let world = callback_world(World::new());
    let daemon = support::run_listening(&world, &[]).await;
    let mut stream = TcpStream::connect(authority(&daemon)).await.unwrap();
    let head = format!(
        "POST /callback/{CALLBACK_TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: 64\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..64 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(90), reader.read_to_end(&mut answer)).await;
    let took = started.elapsed();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        took >= Duration::from_secs(29) && took <= Duration::from_secs(40),
        "answered after {took:?}, promised 30 s"
    );
    assert!(daemon.stop().await.success());
}

/// Many bodies refused in a row (each connection closed with most of its
/// body unread) leave the daemon serving. The old test lost its daemon
/// this way once: its `World` was a temporary, so the daemon's directory
/// (its queue) was deleted while it started, and a queue error at the
/// pool's start ended it.
#[tokio::test]
async fn many_refused_bodies_in_a_row_leave_the_daemon_serving() {
    let world = World::new();
    let mut daemon = support::run_listening(&world, &[]).await;
    let head = "POST /api/jobs/1/retry HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Length: 104857600\r\n\r\n";
    for i in 0..40 {
        let mut stream = TcpStream::connect(authority(&daemon)).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let _ = stream.write_all(&vec![0u8; 256 * 1024]).await;
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(30)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "body {i}: {answer}");
    }
    let status = http().get(daemon.url("/healthz")).send().await;
    let status = status.map(|r| r.status().as_u16());
    assert!(
        matches!(status, Ok(200)),
        "{status:?}; daemon exit: {:?}\n{}",
        daemon.child.try_wait(),
        daemon.log.lock().unwrap()
    );
    assert!(daemon.stop().await.success());
}

/// A daemon whose queue gives an error as its pool starts (here: the
/// queue's directory is gone, as when the test's temporary `World` was
/// dropped) keeps serving and retrying, instead of exiting.
#[tokio::test]
async fn a_queue_error_as_the_pool_starts_does_not_end_the_daemon() {
    let world = World::new();
    let mut daemon = support::run_listening(&world, &[]).await;
    // The daemon may write a file into the directory while it is removed
    // ("directory not empty"): remove again until it is gone.
    let removing = std::time::Instant::now();
    while let Err(e) = std::fs::remove_dir_all(world.dir.path()) {
        assert!(
            removing.elapsed() < Duration::from_secs(10),
            "could not remove the queue's directory: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon exited:\n{}",
        daemon.log.lock().unwrap()
    );
    let status = http().get(daemon.url("/healthz")).send().await;
    assert_eq!(status.map(|r| r.status().as_u16()).ok(), Some(200));
    assert!(daemon.stop().await.code().is_some());
}

// ---------------------------------------------------------------------------
// Callbacks late and out of order (README "Callbacks")
// ---------------------------------------------------------------------------

async fn post(url: &str, body: &str) -> u16 {
    let response = http()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    response.status().as_u16()
}

fn v1_update(task_id: i64, status: &str, file_id: Option<i64>) -> String {
    let file = file_id.map_or(String::new(), |f| format!(r#","file_id":"{f}""#));
    format!(
        r#"{{"task_id":"{task_id}","status":"{status}"{file},"base_resp":{{"status_code":0,"status_msg":"success"}}}}"#
    )
}

async fn task_of(world: &World, id: i64) -> Value {
    let out = world.run(&["list", "--tasks", "--json"]).await;
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|t| t["task_id"] == id)
        .unwrap_or(Value::Null)
}

/// A `Processing` after the `Success`, a `Fail` for a task that then
/// succeeds, and a `Success` for a task its query already failed: each is
/// answered 200 and changes nothing the queue already knows; repeated,
/// each still changes nothing.
#[tokio::test]
async fn late_and_out_of_order_callbacks_change_nothing_already_known() {
    let sim = support::sim(support::small_files()).await;
    sim.add_task(8001, SimTask::new(SimApi::V1, 8_100));
    sim.add_task(
        8002,
        SimTask::new(SimApi::V1, 8_200).generating(Duration::from_secs(2)),
    );
    sim.add_task(
        8003,
        SimTask::new(SimApi::V1, 8_300).ending(TaskEnd::Fail(1026, "sensitive".into())),
    );
    let world = callback_world(
        World::new()
            .with_sim(&sim)
            .env("MINIMAX_DL_TEST_TASK_POLL_MS", "200"),
    );
    let daemon = support::run_listening(&world, &[]).await;
    let url = daemon.url(&format!("/callback/{CALLBACK_TOKEN}"));

    // 8001: the success, then a late processing, each twice.
    for body in [
        v1_update(8001, "Success", Some(8_100)),
        v1_update(8001, "Success", Some(8_100)),
        v1_update(8001, "Processing", None),
        v1_update(8001, "Processing", None),
    ] {
        assert_eq!(post(&url, &body).await, 200, "{body}");
    }
    // 8002: a (forged or early) failure: the query decides, and succeeds.
    for _ in 0..2 {
        assert_eq!(post(&url, &v1_update(8002, "Fail", None)).await, 200);
    }
    // 8003: failed by its query first ...
    assert_success(&world.run(&["enqueue", "--task", "8003"]).await);
    wait_for(Duration::from_secs(60), "8003 to fail", || async {
        (task_of(&world, 8003).await["state"] == "failed").then_some(())
    })
    .await;
    // ... then a success arrives for it.
    for _ in 0..2 {
        let body = v1_update(8003, "Success", Some(8_300));
        assert_eq!(post(&url, &body).await, 200);
    }
    wait_for(Duration::from_secs(60), "both files done", || async {
        let status = world.status().await;
        (status["done"] == 2).then_some(())
    })
    .await;
    assert!(daemon.stop().await.success());

    let t1 = task_of(&world, 8001).await;
    assert_eq!(
        (t1["state"].as_str(), t1["file_id"].as_i64()),
        (Some("done"), Some(8_100)),
        "{t1}"
    );
    let t2 = task_of(&world, 8002).await;
    assert_eq!(
        (t2["state"].as_str(), t2["file_id"].as_i64()),
        (Some("done"), Some(8_200)),
        "{t2}"
    );
    let t3 = task_of(&world, 8003).await;
    assert_eq!(t3["state"], "failed", "{t3}");
    let jobs: Vec<i64> = world
        .jobs()
        .await
        .iter()
        .map(|j| j["file_id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        jobs.len(),
        2,
        "one job a success, none for the failed task: {jobs:?}"
    );
    assert!(!jobs.contains(&8_300), "{jobs:?}");
}

// ---------------------------------------------------------------------------
// A dead host's jobs, with the default lease (README "Many hosts")
// ---------------------------------------------------------------------------

/// A daemon on "another host" (its own UTS namespace, so another host
/// name in its lease) is SIGKILLed mid-download; a daemon here cannot see
/// whether that process lives, so it takes the job only when the default
/// 30 s lease has run out, plus one idle poll. The bounds hold on a
/// loaded machine, and fail for a lease of a few seconds or of minutes.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_hosts_job_is_claimed_within_the_default_lease_and_one_poll() {
    if !support::can_unshare_uts() {
        support::skip_or_fail(
            "a UTS namespace (unshare --uts) for a second host name",
            "run the tests as root with util-linux installed",
        );
        return;
    }
    let sim = support::throttled_sim(20 << 20, 200 << 10).await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=1)).await;
    // The other host: the same command, in a UTS namespace of its own
    // with another host name.
    let here = world.command();
    let here = here.as_std();
    let mut elsewhere = tokio::process::Command::new("unshare");
    elsewhere
        .env_clear()
        .envs(here.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .args([
            "--uts",
            "sh",
            "-c",
            "hostname other-host && exec \"$0\" \"$@\"",
        ])
        .arg(here.get_program())
        .args(here.get_args())
        .args(["run", "--concurrency", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut dead = elsewhere.spawn().expect("spawn the other host's daemon");
    let q = support::queue(&world).await;
    let owner = wait_for(
        Duration::from_secs(60),
        "the other host's claim",
        || async {
            let job = q.get(1).await.ok()??;
            (job.bytes_done > 0).then_some(job.lease_owner?)
        },
    )
    .await;
    assert!(owner.starts_with("other-host."), "{owner}");
    support::signal(dead.id().unwrap(), "-KILL");
    let killed = Instant::now();
    let _ = dead.wait().await;
    let survivor = support::spawn(&world, &["run", "--concurrency", "1"]);
    let taken = wait_for(Duration::from_secs(120), "the job taken over", || async {
        let job = q.get(1).await.ok()??;
        let new_owner = job.lease_owner?;
        (new_owner != owner).then(|| killed.elapsed())
    })
    .await;
    drop(survivor);
    assert!(
        taken >= Duration::from_secs(25) && taken <= Duration::from_secs(50),
        "taken over {taken:?} after the kill; promised: the 30 s lease plus one idle poll"
    );
}

// ---------------------------------------------------------------------------
// PostgreSQL: wake-ups, the database lost mid-run, the fleet's rate window
// ---------------------------------------------------------------------------

/// A TCP proxy in front of the test's PostgreSQL server that the test can
/// cut (every connection closed, new ones refused) and restore on the
/// same port: the database lost and found again, for one daemon only.
struct Proxy {
    addr: std::net::SocketAddr,
    target: std::net::SocketAddr,
    serving: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy {
            addr,
            target,
            serving: std::sync::Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let target = self.target;
        let task = tokio::spawn(async move {
            // Dropped with this task: every connection ends with it.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        *self.serving.lock().unwrap() = Some(task);
    }

    /// The database is gone: connections closed, new ones refused.
    async fn cut(&self) {
        let task = self.serving.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// The database is back, on the same address.
    async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// `url` (the test database's) through this proxy.
    fn url(&self, url: &str) -> String {
        let mut url = reqwest::Url::parse(url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.addr.port())).unwrap();
        url.to_string()
    }
}

/// The test database and a proxy in front of it.
async fn proxied_pg() -> Option<(support::PgTestDb, Proxy)> {
    let db = support::PgTestDb::create().await?;
    let url = reqwest::Url::parse(&db.url).unwrap();
    let host = url.host_str().unwrap().to_string();
    let port = url.port().unwrap_or(5432);
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(target).await;
    Some((db, proxy))
}

/// Lines of `log` containing `needle`.
fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// The length of job `id`'s partial file in `world`'s archive (0 if none).
fn partial_len(world: &World, id: i64) -> u64 {
    let path = world
        .out
        .join(".minimax-dl-partial")
        .join(format!("{id}.part"));
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The database lost for 10 s in the middle of a download (README "Many
/// hosts"): the download goes on (its lease outlives the outage), which
/// the partial file on disk shows by growing for seconds while no
/// checkpoint is recorded (well past anything the sockets' buffers could
/// have taken in while the worker stood still); the heartbeat's failures
/// are logged once, not once a try; `/healthz` stays 200; and once the
/// database is back the same claim and the same transfer finish the file:
/// one claim in the job's history and no reclaim, one CDN request, no
/// byte fetched twice, and the file verifies.
///
/// Without the 25 s of unanswered checkpoints the first checkpoint of the
/// outage ends the transfer: the partial file stops growing, and the job
/// comes back only as a reclaim once its lease runs out.
#[tokio::test(flavor = "multi_thread")]
async fn losing_the_database_mid_run_lets_downloads_go_on_and_logs_once() {
    let Some((db, proxy)) = proxied_pg().await else {
        return;
    };
    const SIZE: u64 = 10 << 20;
    let sim = support::throttled_sim(SIZE, 400 << 10).await;
    let world = World::new().with_sim(&sim).on_database(&proxy.url(&db.url));
    enqueue(&world, &ids(1..=1)).await;
    let q = minimax_dl::queue::Queue::open(&db.location())
        .await
        .unwrap();
    let daemon = support::run_listening(&world, &["--concurrency", "1"]).await;
    support::wait_for_checkpoint(&q, 1, Duration::from_secs(60)).await;

    proxy.cut().await;
    let cut = Instant::now();
    // Whatever was in flight at the cut has reached the disk by then.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let early = partial_len(&world, 1);
    let recorded_early = q.get(1).await.ok().flatten().map(|j| j.bytes_done);
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(cut.elapsed())).await;
    let late = partial_len(&world, 1);
    let health = http().get(daemon.url("/healthz")).send().await;
    let log = daemon.log.lock().unwrap().clone();
    proxy.restore().await;

    // 8 s at 400 KiB/s is 3.2 MiB; a worker that stopped at the first
    // unanswered checkpoint writes nothing more.
    let grew = late.saturating_sub(early);
    assert!(
        grew >= 3 << 19,
        "the download went on without its database: the partial file grew \
         {grew} bytes ({early} to {late}) in the last 8 s of a 10 s outage \
         (bytes recorded: {recorded_early:?})\n{log}"
    );
    assert!(
        late < SIZE,
        "the outage ended before the file: {late} of {SIZE}"
    );
    assert_eq!(health.map(|r| r.status().as_u16()).ok(), Some(200), "{log}");
    let heartbeat = count_lines(&log, "lease heartbeat failed");
    assert_eq!(heartbeat, 1, "one line, not one a try (10 tries):\n{log}");
    assert!(log.contains("logged once a minute while it lasts"), "{log}");

    wait_for(Duration::from_secs(90), "the job done", || async {
        let job = q.get(1).await.ok()??;
        (job.state == minimax_dl::queue::JobState::Done).then_some(())
    })
    .await;
    let log = daemon.log.lock().unwrap().clone();
    assert!(daemon.stop().await.success());
    let job = world.job(1).await;
    let kinds: Vec<&str> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "claimed").count(),
        1,
        "the claim of the outage finished the job: {kinds:?}\n{log}"
    );
    assert!(
        !kinds.contains(&"reclaimed") && !kinds.contains(&"released"),
        "the job continued, it was not given back or reclaimed: {kinds:?}\n{log}"
    );
    let stats = sim.stats();
    assert_eq!(
        (stats.cdn_requests, stats.cdn_bytes_sent),
        (1, SIZE),
        "one transfer carried the whole file through the outage\n{log}"
    );
    support::assert_verified(&world, &sim, &job);
}

/// A batch whose database goes away mid-run gives up with exit code 5
/// 15 s after the first claim the database did not answer (its idle pool
/// claims within 5 s of the cut), then stops its download (whose last
/// writes wait up to the pool's 10 s acquire timeout each); its job is
/// neither lost nor failed: the next run finishes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_that_loses_its_database_exits_5_after_15_s() {
    let Some((db, proxy)) = proxied_pg().await else {
        return;
    };
    let sim = support::throttled_sim(2 << 20, 400 << 10).await;
    let world = World::new().with_sim(&sim).on_database(&proxy.url(&db.url));
    enqueue(&world, &ids(1..=1)).await;
    let batch = support::spawn(&world, &["run", "--exit-when-idle", "--concurrency", "2"]);
    wait_for(
        Duration::from_secs(60),
        "the first download to start",
        || async { (sim.stats().cdn_bytes_sent > 0).then_some(()) },
    )
    .await;
    proxy.cut().await;
    let cut = Instant::now();
    let out = support::finish(batch, Duration::from_secs(120)).await;
    let took = cut.elapsed();
    proxy.restore().await;
    assert_exit(&out, 5);
    assert!(stderr(&out).contains("does not answer"), "{}", stderr(&out));
    assert!(
        took >= Duration::from_secs(15) && took <= Duration::from_secs(50),
        "gave up {took:?} after the database went away, promised 15 s after a claim failed"
    );
    let direct = world.on_database(&db.url);
    for job in direct.jobs().await {
        assert_ne!(job["state"], "failed", "{job}");
    }
    let out = direct.run(&["run", "--exit-when-idle"]).await;
    assert_success(&out);
    assert_eq!(direct.status().await["done"], 1);
}

/// Idle daemons hear `enqueue` and `retry` (LISTEN/NOTIFY): the first API
/// call for the new work comes within 3 s of the verb's start (the promise
/// is a second; the rest is margin for a loaded machine), while the daemon's own look at
/// the queue is a minute away (the test hook), so only the wake-up can
/// explain it.
#[tokio::test(flavor = "multi_thread")]
async fn enqueue_and_retry_wake_an_idle_daemon_at_once() {
    let Some(db) = support::PgTestDb::create().await else {
        return;
    };
    const MISSING: i64 = 77;
    let sim = support::sim(SimConfig {
        faults: Faults {
            missing: [MISSING].into_iter().collect(),
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new()
        .with_sim(&sim)
        .on_database(&db.url)
        .env("MINIMAX_DL_TEST_IDLE_POLL_MS", "60000");
    let daemon = support::run_listening(&world, &[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let first_call_after = |from: SystemTime| {
        let sim = &sim;
        let daemon = &daemon;
        async move {
            let first = tokio::time::timeout(Duration::from_secs(90), async {
                loop {
                    let times = sim.stats().api_request_times;
                    if let Some(t) = times.into_iter().find(|t| *t >= from) {
                        return t;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .unwrap_or_else(|_| {
                let said = daemon.log.lock().unwrap().clone();
                panic!("no API call within 90 s; the daemon said:\n{said}")
            });
            first.duration_since(from).unwrap_or_default()
        }
    };
    // Timed from the verb's start: the daemon may be woken, and call the
    // API, before the verb's own process has exited.
    let enqueued = SystemTime::now();
    assert_success(&world.run(&["enqueue", &MISSING.to_string()]).await);
    let woke = first_call_after(enqueued).await;
    wait_for(
        Duration::from_secs(60),
        "the missing file to fail",
        || async { (world.job(MISSING).await["state"] == "failed").then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let retried = SystemTime::now();
    assert_success(&world.run(&["retry", &MISSING.to_string()]).await);
    let woke_again = first_call_after(retried).await;
    assert!(daemon.stop().await.success());
    for (verb, took) in [("enqueue", woke), ("retry", woke_again)] {
        assert!(
            took <= Duration::from_secs(3),
            "work started {took:?} after {verb}; promised within a second"
        );
    }
}

/// The fleet's rate window is counted on the database clock: another
/// host's calls fill the window (recorded 55 s ago on the database's
/// clock), and a daemon whose own clock is 90 s ahead (the test hook)
/// still waits for them to leave the window (about 5 s) before its first
/// call; on its own clock it would have called at once.
#[tokio::test(flavor = "multi_thread")]
async fn the_rate_window_is_counted_on_the_database_clock_across_hosts() {
    let Some(db) = support::PgTestDb::create().await else {
        return;
    };
    const PER_MINUTE: u32 = 5;
    let sim = support::sim(support::small_files()).await;
    let world = World::new()
        .with_sim(&sim)
        .on_database(&db.url)
        .env("MINIMAX_DL_REQUESTS_PER_MINUTE", &PER_MINUTE.to_string())
        .env("MINIMAX_DL_TEST_CLOCK_SKEW_MS", "90000");
    enqueue(&world, &ids(1..=1)).await;
    let q = minimax_dl::queue::Queue::open(&db.location())
        .await
        .unwrap();
    let now = minimax_dl::queue::now_millis();
    let filled = SystemTime::now();
    minimax_dl::queue::testing::record_api_calls(&q, now - 55_000, PER_MINUTE)
        .await
        .unwrap();
    let out = run_bounded(
        world.command().args(["run", "--exit-when-idle"]),
        Duration::from_secs(120),
    )
    .await;
    assert_success(&out);
    let first = sim
        .stats()
        .api_request_times
        .into_iter()
        .min()
        .expect("a call");
    let waited = first.duration_since(filled).unwrap_or_default();
    assert!(
        waited >= Duration::from_secs(4) && waited <= Duration::from_secs(30),
        "first call {waited:?} after another host filled the window that frees in 5 s"
    );
}
