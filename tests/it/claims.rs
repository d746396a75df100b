//! Promises the README makes that no other test held: each test here drives
//! the real binary to the point where the promise could break.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use minimax_dl::queue::{JobState, now_millis};
use minimax_sim::{ApiFault, ApiFaultRule, CdnFault, CdnFaultRule, Faults, SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    self, World, assert_exit, assert_success, finish, queue, signal, spawn, stderr, stdout,
    wait_for,
};

// ---------------------------------------------------------------------------
// The key goes to the API host only, even when it redirects
// ---------------------------------------------------------------------------

/// A server on 127.0.0.1 that records every request head it receives and
/// answers each with a perfect retrieve success (a fresh URL on `sim`'s
/// CDN): a client that followed a redirect to it would send it the key and
/// then download happily.
struct Trap {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Trap {
    async fn start(sim: &Simulator, ids: &[i64]) -> Trap {
        let urls: HashMap<i64, String> = ids.iter().map(|&id| (id, sim.download_url(id))).collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let head = read_head(&mut conn).await;
                let answer = success(&head, &urls);
                seen.lock().unwrap().push(head);
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        Trap { addr, heads }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A retrieve success for the `file_id` the request asks for.
fn success(head: &str, urls: &HashMap<i64, String>) -> String {
    let id = head
        .split_once("file_id=")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|id| id.parse::<i64>().ok())
        .unwrap_or(0);
    let url = urls.get(&id).cloned().unwrap_or_default();
    let body = format!(
        r#"{{"file":{{"file_id":{id},"bytes":0,"created_at":1700469398,"filename":"output_aigc.mp4","purpose":"video_generation","download_url":"{url}"}},"base_resp":{{"status_code":0,"status_msg":"success"}}}}"#
    );
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The request line and headers (whatever arrived within a second).
async fn read_head(conn: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_redirect_is_not_followed_and_stops_the_batch_as_account_level() {
    for status in [301, 302, 307, 308] {
        let sim = support::sim(support::small_files()).await;
        let trap = Trap::start(&sim, &[1, 2]).await;
        sim.set_faults(Faults {
            api: vec![ApiFaultRule::new(ApiFault::Redirect(status, trap.base()))],
            ..Faults::default()
        });
        let world = World::new().with_sim(&sim);
        assert_success(&world.run(&["enqueue", "1", "2"]).await);

        let out = world.run(&["run", "--exit-when-idle"]).await;

        assert_exit(&out, 3);
        assert!(
            stderr(&out).contains(&status.to_string()) && stderr(&out).contains("api_base"),
            "{status}: {}",
            stderr(&out)
        );
        assert!(
            sim.fault_counts().api[0] >= 1,
            "{status}: the API host redirected"
        );
        assert_eq!(
            trap.heads(),
            Vec::<String>::new(),
            "{status}: the other host got a request"
        );
        assert_eq!(sim.stats().cdn_requests, 0, "{status}: nothing downloaded");
        for id in [1, 2] {
            let job = world.job(id).await;
            assert_eq!(job["state"], "queued", "{status}: {job}");
            assert_eq!(job["attempts"], 0, "{status}: {job}");
        }
    }
}

// ---------------------------------------------------------------------------
// A lease held by another host is respected until it runs out
// ---------------------------------------------------------------------------

/// An owner name of a worker on another machine: `owner_is_dead` can only
/// judge owners on this host, so nothing but the lease's expiry frees it.
const OTHER_HOST: &str = "otherhost.invalid:4026531836:4242:0000abcd";

#[tokio::test(flavor = "multi_thread")]
async fn a_job_leased_by_another_host_is_taken_only_once_its_lease_runs_out() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "7"]).await);
    // The other host claims the job as its pool does, with a short lease
    // so that the test waits seconds, not the pool's 30.
    let q = queue(&world).await;
    let held = q
        .claim(OTHER_HOST, Duration::from_secs(4))
        .await
        .unwrap()
        .expect("the other host claims job 7");
    let expires = held.lease_expires_at.expect("a claimed job has a lease");

    let child = spawn(&world, &["run"]);
    let job = wait_for(Duration::from_secs(30), "the job to be done", || async {
        q.get(7)
            .await
            .unwrap()
            .filter(|j| j.state == JobState::Done)
    })
    .await;
    signal(child.id().unwrap(), "-TERM");
    assert_success(&finish(child, Duration::from_secs(30)).await);

    let first_call = sim.stats().api_request_times[0];
    let first_call = first_call.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(
        first_call >= expires,
        "the daemon worked job 7 {} ms before the other host's lease ran out",
        expires - first_call
    );
    let events = q.events(7).await.unwrap();
    let reclaim = events
        .iter()
        .find(|e| e.kind == "reclaimed")
        .unwrap_or_else(|| panic!("no reclaim in {events:?}"));
    assert!(
        reclaim
            .message
            .as_deref()
            .unwrap_or("")
            .contains(OTHER_HOST),
        "{reclaim:?}"
    );
    assert!(reclaim.at >= expires, "{reclaim:?} before {expires}");
    assert!(
        reclaim.at - expires < 10_000,
        "taken {} ms after the lease ran out",
        reclaim.at - expires
    );
    assert_eq!(job.attempts, 0, "{job:?}");
    assert_eq!(sim.stats().api_requests, 1);
    assert!(now_millis() > expires);
}

// ---------------------------------------------------------------------------
// status reads kept counts, whatever the queue's size
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn status_reads_kept_counts_on_a_large_queue_without_scanning_it() {
    const JOBS: u64 = 200_000;
    let world = World::new();
    let ids: String = (1..=JOBS).map(|id| format!("{id}\n")).collect();
    let file = world.path("ids.txt");
    std::fs::write(&file, ids).unwrap();
    assert_success(
        &world
            .run(&["enqueue", "--from", file.to_str().unwrap()])
            .await,
    );

    let status = world.status().await;
    assert_eq!(status["queued"], JOBS, "{status}");
    let q = queue(&world).await;
    assert_eq!(q.status().await.unwrap(), q.status_by_scan().await.unwrap());

    // Counts that only `job_counts` holds: a status that scanned the jobs
    // (O(jobs)) would report 0 cancelled; one reading the kept counts
    // (O(1)) reports them.
    minimax_dl::queue::testing::inflate_count(&q, JobState::Cancelled, 1_000_000)
        .await
        .unwrap();
    let status = world.status().await;
    assert_eq!(status["cancelled"], 1_000_000, "{status}");
    assert_eq!(status["queued"], JOBS, "{status}");
}

// ---------------------------------------------------------------------------
// cancel of a running job waits for its worker, and says when it did not
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn cancel_exits_1_while_the_worker_has_not_confirmed_and_the_job_ends_cancelled() {
    const STALL_AT: u64 = 256 * 1024;
    let sim = support::sim(SimConfig {
        default_file_size: 4 * 1024 * 1024,
        faults: Faults {
            cdn: vec![CdnFaultRule::new(CdnFault::StallAfter(STALL_AT))],
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "5"]).await);
    let child = spawn(&world, &["run"]);
    let pid = child.id().unwrap();
    wait_for(Duration::from_secs(20), "the transfer to stall", || async {
        let sent = sim.stats().cdn_bytes_by_file.get(&5).copied();
        sent.filter(|&n| n >= STALL_AT).map(|_| ())
    })
    .await;

    // A worker that cannot answer (its process stopped) holds a live lease.
    signal(pid, "-STOP");
    let out = world.run(&["cancel", "5"]).await;
    signal(pid, "-CONT");

    assert_exit(&out, 1);
    assert!(stdout(&out).contains("5: running"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("5: its worker has not confirmed"),
        "{}",
        stderr(&out)
    );
    let q = queue(&world).await;
    wait_for(
        Duration::from_secs(20),
        "the job to end cancelled",
        || async {
            q.get(5)
                .await
                .unwrap()
                .filter(|j| j.state == JobState::Cancelled)
                .map(|_| ())
        },
    )
    .await;
    signal(pid, "-TERM");
    assert_success(&finish(child, Duration::from_secs(30)).await);
    assert_eq!(world.job(5).await["state"], "cancelled");
}

// ---------------------------------------------------------------------------
// The demo shows what it says it shows
// ---------------------------------------------------------------------------

/// The file id a demo note names after `prefix`.
fn noted_id(out: &str, prefix: &str) -> i64 {
    let line = out
        .lines()
        .find(|l| l.contains(prefix))
        .unwrap_or_else(|| panic!("no note {prefix:?} in:\n{out}"));
    let rest = &line[line.find(prefix).unwrap() + prefix.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_with_8_files_sees_every_announced_fault_and_every_digest() {
    let world = World::new();
    let out = world.run(&["demo", "--files", "8"]).await;
    assert_success(&out);
    let text = stdout(&out);
    let truncated = noted_id(&text, "a silently truncated body for file ");
    let missing = noted_id(&text, "- file ");
    assert_ne!(
        truncated, missing,
        "the truncation must land on a real file"
    );
    let announced = text.lines().filter(|l| l.starts_with("    - ")).count();
    assert_eq!(announced, 8, "{text}");
    assert!(
        text.contains("verified   9 of 9 files")
            && text.contains("every sha256 matching the simulator's"),
        "{text}"
    );
    assert!(
        text.contains("faults     8 of 8 announced faults seen happening"),
        "{text}"
    );
    assert!(text.contains("demo OK"), "{text}");
}
