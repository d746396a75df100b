//! The queue and the CLI contract, driven through the real binary: enqueue
//! and its id rules, status/list/show shapes, retry and cancel rules, the
//! database's safety, configuration layers, exit codes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use minimax_dl::partial::SizeSource;
use minimax_dl::queue::testing::{self, JobPatch};
use minimax_dl::queue::{DbLocation, JobState, Queue};
use serde_json::Value;
use tokio::process::Command;

use crate::support::{self, World, assert_exit, assert_success, stderr, stdout};

/// Every form of a bad id the issue names, and a few more.
const BAD_IDS: &[&str] = &[
    "abc",
    "-1",
    "-42",
    "0",
    "-0",
    "9223372036854775808",
    "99999999999999999999",
    "1.5",
    "0x10",
    "1e3",
    "12a",
];

const LIST_KEYS: &[&str] = &[
    "file_id",
    "state",
    "attempts",
    "bytes_expected",
    "bytes_done",
    "path",
    "sha256",
    "last_error",
    "filename",
    "created_at",
    "updated_at",
];

/// A staged state: the columns to overwrite for one job.
type Stage = fn(i64) -> JobPatch;

const STAGE_FAILED: Stage = |_| JobPatch {
    state: Some(JobState::Failed),
    attempts: Some(3),
    last_error: Some("x".into()),
    ..JobPatch::default()
};
const STAGE_DONE: Stage = |id| JobPatch {
    state: Some(JobState::Done),
    attempts: Some(1),
    expected: Some((100, SizeSource::Api)),
    bytes_done: Some(100),
    filename: Some("clip.mp4".into()),
    placed: Some((format!("/archive/{id}-clip.mp4"), "a".repeat(64))),
    ..JobPatch::default()
};
const STAGE_CANCELLED: Stage = |_| JobPatch {
    state: Some(JobState::Cancelled),
    ..JobPatch::default()
};
/// Running, held by a worker whose lease is live for centuries.
const STAGE_RUNNING_LIVE: Stage = |_| JobPatch {
    state: Some(JobState::Running),
    lease_owner: Some("worker-test".into()),
    lease_expires_at: Some(32503680000000),
    bytes_done: Some(7),
    ..JobPatch::default()
};
/// Running, but its worker died long ago (the lease expired).
const STAGE_RUNNING_DEAD: Stage = |_| JobPatch {
    state: Some(JobState::Running),
    lease_owner: Some("worker-dead".into()),
    lease_expires_at: Some(1),
    ..JobPatch::default()
};

/// Stages each id in the state `stage` describes.
async fn stage(world: &World, stage: Stage, ids: &[i64]) {
    let queue = Queue::open(&DbLocation(world.db.to_string_lossy().into_owned()))
        .await
        .expect("open the queue to stage jobs");
    for &id in ids {
        let found = testing::patch_job(&queue, id, &stage(id))
            .await
            .expect("stage a job");
        assert!(found, "staging {id}: no such job");
    }
    queue.close().await;
}

async fn enqueue(world: &World, ids: &[i64]) {
    let args: Vec<String> = std::iter::once("enqueue".to_string())
        .chain(ids.iter().map(i64::to_string))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = world.run(&args).await;
    assert_success(&out);
}

fn ids_of(jobs: &[Value]) -> Vec<i64> {
    jobs.iter()
        .map(|j| j["file_id"].as_i64().expect("file_id is an integer"))
        .collect()
}

async fn list_ids(world: &World, args: &[&str]) -> Vec<i64> {
    let mut all = vec!["list", "--json"];
    all.extend_from_slice(args);
    let out = world.run(&all).await;
    assert_success(&out);
    stdout(&out)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON line");
            v["file_id"].as_i64().expect("file_id")
        })
        .collect()
}

async fn state_of(world: &World, id: i64) -> String {
    world.job(id).await["state"]
        .as_str()
        .expect("state is a string")
        .to_string()
}

#[track_caller]
fn assert_no_jobs(status: &Value) {
    for state in ["queued", "running", "done", "failed", "cancelled"] {
        assert_eq!(status[state], 0, "{state} in {status}");
    }
}

/// Nothing was enqueued: no queue was made, or the one there holds no job.
async fn assert_nothing_enqueued(world: &World) {
    if world.db.exists() {
        assert_no_jobs(&world.status().await);
    }
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect()
}

/// Deterministic bytes that are not a SQLite database.
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------- enqueue

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_is_idempotent_and_reports_counts() {
    let world = World::new();
    let out = world.run(&["enqueue", "1", "2", "3"]).await;
    assert_success(&out);
    assert!(
        stdout(&out).contains("enqueued 3 new, skipped 0"),
        "{}",
        stdout(&out)
    );

    // Existing ids (and a duplicate within the call) are skipped, not errors.
    let out = world.run(&["enqueue", "2", "3", "4", "4"]).await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("enqueued 1 new, skipped 3"),
        "{}",
        stdout(&out)
    );

    let out = world.run(&["enqueue", "1", "2", "3", "4"]).await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("enqueued 0 new, skipped 4"),
        "{}",
        stdout(&out)
    );

    let jobs = world.jobs().await;
    assert_eq!(ids_of(&jobs), vec![1, 2, 3, 4], "no duplicates in list");
    for job in &jobs {
        assert_eq!(job["state"], "queued", "{job}");
        assert_eq!(job["attempts"], 0, "{job}");
    }
    assert_eq!(world.status().await["queued"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_accepts_the_whole_int64_range() {
    let world = World::new();
    let max = i64::MAX.to_string();
    let out = world
        .run(&["enqueue", "1", &max, "+7", "305123456789012"])
        .await;
    assert_success(&out);
    assert_eq!(
        list_ids(&world, &[]).await,
        vec![1, 7, 305_123_456_789_012, i64::MAX]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_bad_id_alone_is_refused_naming_the_value() {
    let world = World::new();
    let mut cases: Vec<&str> = BAD_IDS.to_vec();
    cases.push("");
    for bad in cases {
        let out = world.run(&["enqueue", bad]).await;
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{bad:?}")),
            "message for {bad:?} does not name the value: {err}"
        );
    }
    // The reason is specific where it can be.
    let w = &world;
    let reason = |bad: &'static str| async move { stderr(&w.run(&["enqueue", bad]).await) };
    assert!(reason("-5").await.contains("negative"));
    assert!(reason("0").await.contains("zero"));
    assert!(reason("9223372036854775808").await.contains("too large"));
    assert!(reason("abc").await.contains("not a decimal integer"));

    assert_nothing_enqueued(&world).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_id_among_good_ones_enqueues_nothing() {
    let world = World::new();
    enqueue(&world, &[10]).await;
    for bad in BAD_IDS {
        let out = world.run(&["enqueue", "11", bad, "12"]).await;
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains(&format!("{bad:?}")),
            "{}",
            stderr(&out)
        );
        // Bad id first and last, too.
        assert_exit(&world.run(&["enqueue", bad, "13"]).await, 2);
        assert_exit(&world.run(&["enqueue", "14", bad]).await, 2);
    }
    assert_eq!(list_ids(&world, &[]).await, vec![10]);
    let status = world.status().await;
    assert_eq!(status["queued"], 1, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_ids_in_a_from_file_name_the_line_and_value() {
    let world = World::new();
    let file = world.path("ids.txt");
    for bad in BAD_IDS {
        std::fs::write(&file, format!("# batch\n1\n\n2 # second\n{bad}\n3\n")).unwrap();
        let out = world
            .run(&["enqueue", "--from", file.to_str().unwrap()])
            .await;
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(&format!("{bad:?}")), "value of {bad:?}: {err}");
        assert!(err.contains("line 5"), "line of {bad:?}: {err}");
        assert!(
            err.contains(file.to_str().unwrap()),
            "file of {bad:?}: {err}"
        );

        // With a trailing comment the value is still named, without it.
        std::fs::write(&file, format!("{bad}   # oops\n")).unwrap();
        let out = world
            .run(&["enqueue", "--from", file.to_str().unwrap()])
            .await;
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains(&format!("{bad:?} on line 1")),
            "{}",
            stderr(&out)
        );
    }
    assert_nothing_enqueued(&world).await;

    // Good arguments with a bad file, and a good file with a bad argument:
    // nothing from either call.
    std::fs::write(&file, "5\nnope\n").unwrap();
    let out = world
        .run(&["enqueue", "--from", file.to_str().unwrap(), "7"])
        .await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    std::fs::write(&file, "5\n6\n").unwrap();
    let out = world
        .run(&["enqueue", "--from", file.to_str().unwrap(), "-7"])
        .await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("\"-7\""), "{}", stderr(&out));
    assert_nothing_enqueued(&world).await;

    // Both good: both enqueued.
    let out = world
        .run(&["enqueue", "--from", file.to_str().unwrap(), "7"])
        .await;
    assert_success(&out);
    assert_eq!(list_ids(&world, &[]).await, vec![5, 6, 7]);
}

/// Flags written after the ids must still be flags (`enqueue 7 --from FILE`),
/// while `-7` still reaches our own "negative" message.
#[tokio::test(flavor = "multi_thread")]
async fn flags_after_the_ids_are_still_flags() {
    let world = World::new();
    let file = world.path("ids.txt");
    std::fs::write(&file, "5\n6\n").unwrap();
    let out = world
        .run(&["enqueue", "7", "--from", file.to_str().unwrap()])
        .await;
    assert_success(&out);
    assert_eq!(list_ids(&world, &[]).await, vec![5, 6, 7]);

    // A negative id before a flag is still named as the bad value.
    let out = world
        .run(&["enqueue", "-8", "--from", file.to_str().unwrap()])
        .await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("\"-8\""), "{}", stderr(&out));

    // Global flags after the ids.
    let out = world.run(&["cancel", "7", "-v"]).await;
    assert_success(&out);
    let out = world
        .run(&["retry", "7", "--db", world.db.to_str().unwrap()])
        .await;
    assert_success(&out);
    assert_eq!(state_of(&world, 7).await, "queued");
}

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_from_stdin_skips_comments_and_blank_lines() {
    let world = World::new();
    let input = b"# batch of 2024-05-01\n\n101\n  102  # retried\n\t\n#103\n104\r\n105";
    let out = world
        .run_with_stdin(&["enqueue", "--from", "-"], input)
        .await;
    assert_success(&out);
    assert!(
        stdout(&out).contains("enqueued 4 new, skipped 0"),
        "{}",
        stdout(&out)
    );
    assert_eq!(list_ids(&world, &[]).await, vec![101, 102, 104, 105]);

    // A bad line on stdin: named, and nothing from the call enqueued.
    let out = world
        .run_with_stdin(&["enqueue", "--from", "-"], b"106\n# c\nx7\n107\n")
        .await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("\"x7\"") && err.contains("line 3"), "{err}");
    assert_eq!(list_ids(&world, &[]).await, vec![101, 102, 104, 105]);
}

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_from_a_file_of_100k_ids() {
    let world = World::new();
    let file = world.path("many.txt");
    let mut text = String::from("# a large batch\n");
    for id in 1..=50_000i64 {
        text.push_str(&format!("{id}\n"));
    }
    text.push('\n');
    for id in (i64::MAX - 49_999)..=i64::MAX {
        text.push_str(&format!("{id}\n"));
    }
    std::fs::write(&file, text).unwrap();

    let started = Instant::now();
    let out = world
        .run(&["enqueue", "--from", file.to_str().unwrap()])
        .await;
    let elapsed = started.elapsed();
    eprintln!("enqueue --from with 100,000 ids took {elapsed:?}");
    assert_success(&out);
    // BENCHMARKS.md has the figure (well under a second); this bound only
    // catches a per-id round trip, and holds on a loaded 2-core machine.
    assert!(
        elapsed < Duration::from_secs(60),
        "enqueue --from with 100,000 ids took {elapsed:?}"
    );
    assert!(
        stdout(&out).contains("enqueued 100000 new, skipped 0"),
        "{}",
        stdout(&out)
    );

    let status = world.status().await;
    assert_eq!(status["queued"], 100_000, "{status}");

    let queue = Queue::open(&DbLocation(world.db.to_string_lossy().into_owned()))
        .await
        .unwrap();
    let fresh: Vec<i64> = queue
        .list(Some(JobState::Queued), None)
        .await
        .unwrap()
        .into_iter()
        .filter(|job| job.attempts == 0)
        .map(|job| job.file_id)
        .collect();
    let distinct = fresh.iter().collect::<BTreeSet<_>>().len() as i64;
    let (count, low, high) = (
        fresh.len() as i64,
        fresh.iter().copied().min().unwrap_or(0),
        fresh.iter().copied().max().unwrap_or(0),
    );
    assert_eq!(
        (count, distinct, low, high),
        (100_000, 100_000, 1, i64::MAX)
    );
    let first_half = queue
        .list(None, None)
        .await
        .unwrap()
        .iter()
        .filter(|job| job.file_id <= 50000)
        .count() as i64;
    assert_eq!(first_half, 50_000);
    queue.close().await;

    let started = Instant::now();
    let out = world
        .run(&["enqueue", "--from", file.to_str().unwrap()])
        .await;
    eprintln!(
        "re-enqueueing the same 100,000 ids took {:?}",
        started.elapsed()
    );
    assert_success(&out);
    assert!(
        stdout(&out).contains("enqueued 0 new, skipped 100000"),
        "{}",
        stdout(&out)
    );
    assert_eq!(world.status().await["queued"], 100_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_without_ids_is_a_usage_error() {
    let world = World::new();
    let out = world.run(&["enqueue"]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("no file ids"), "{}", stderr(&out));

    let file = world.path("only-comments.txt");
    std::fs::write(&file, "# nothing yet\n\n   \n").unwrap();
    let out = world
        .run(&["enqueue", "--from", file.to_str().unwrap()])
        .await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("no file ids"), "{}", stderr(&out));

    let out = world.run_with_stdin(&["enqueue", "--from", "-"], b"").await;
    assert_exit(&out, 2);

    let missing = world.path("no-such-list.txt");
    let out = world
        .run(&["enqueue", "--from", missing.to_str().unwrap()])
        .await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(missing.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    // Nothing went wrong in a way that created a queue.
    assert!(!world.db.exists(), "a usage error created the database");
}

// ------------------------------------------------------- status, list, show

#[tokio::test(flavor = "multi_thread")]
async fn status_counts_every_state_and_the_bytes() {
    let world = World::new();
    // A new queue, with nothing in it yet.
    support::queue(&world).await.close().await;
    let empty = world.status().await;
    let expected_keys: BTreeSet<String> = [
        "queued",
        "running",
        "done",
        "failed",
        "cancelled",
        "bytes_done",
        "oldest_due_waiting_s",
        "api_calls_last_window",
        "window_s",
        "requests_per_minute",
        "rate",
        "cooldown_s",
        "pause",
        "api_unreachable",
        "archive_stopped",
        "tasks",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(keys(&empty), expected_keys, "{empty}");
    assert_eq!(
        (
            &empty["oldest_due_waiting_s"],
            &empty["api_calls_last_window"],
            &empty["pause"]
        ),
        (
            &serde_json::Value::Null,
            &serde_json::json!(0),
            &serde_json::Value::Null
        )
    );
    assert_no_jobs(&empty);
    assert_eq!(empty["bytes_done"], 0);

    enqueue(&world, &[1, 2, 3, 4, 5, 6]).await;
    stage(&world, STAGE_DONE, &[2]).await;
    stage(&world, STAGE_FAILED, &[3]).await;
    stage(&world, STAGE_CANCELLED, &[4]).await;
    stage(&world, STAGE_RUNNING_LIVE, &[5]).await;

    let status = world.status().await;
    let counts: serde_json::Map<_, _> = status
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| {
            [
                "queued",
                "running",
                "done",
                "failed",
                "cancelled",
                "bytes_done",
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        serde_json::Value::Object(counts),
        serde_json::json!({"queued": 2, "running": 1, "done": 1, "failed": 1, "cancelled": 1, "bytes_done": 107})
    );
    assert!(
        status["oldest_due_waiting_s"].as_f64().is_some(),
        "two queued jobs are due: {status}"
    );

    let out = world.run(&["status"]).await;
    assert_success(&out);
    let text: BTreeMap<String, String> = stdout(&out)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect();
    for (state, n) in [
        ("queued", "2"),
        ("running", "1"),
        ("done", "1"),
        ("failed", "1"),
        ("cancelled", "1"),
        ("bytes", "107"),
    ] {
        assert_eq!(text.get(state).map(String::as_str), Some(n), "{text:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn list_json_lines_have_the_documented_keys() {
    let world = World::new();
    enqueue(&world, &[3, 1, 2]).await;
    stage(&world, STAGE_DONE, &[2]).await;
    stage(&world, STAGE_FAILED, &[3]).await;

    let jobs = world.jobs().await;
    assert_eq!(ids_of(&jobs), vec![1, 2, 3], "ordered by file id");
    let expected: BTreeSet<String> = LIST_KEYS.iter().map(|s| s.to_string()).collect();
    for job in &jobs {
        assert_eq!(keys(job), expected, "{job}");
        for stamp in ["created_at", "updated_at"] {
            let t = job[stamp].as_str().expect("timestamp is a string");
            assert!(
                humantime::parse_rfc3339(t).is_ok(),
                "{stamp} {t:?} is not RFC 3339"
            );
        }
    }

    let queued = &jobs[0];
    assert_eq!(queued["state"], "queued");
    assert_eq!(queued["attempts"], 0);
    assert_eq!(queued["bytes_done"], 0);
    for none in ["bytes_expected", "path", "sha256", "last_error", "filename"] {
        assert!(queued[none].is_null(), "{none} of a fresh job: {queued}");
    }

    let done = &jobs[1];
    assert_eq!(done["state"], "done");
    assert_eq!(done["path"], "/archive/2-clip.mp4");
    assert_eq!(done["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(done["filename"], "clip.mp4");
    assert_eq!(
        (done["bytes_done"].as_u64(), done["bytes_expected"].as_u64()),
        (Some(100), Some(100))
    );

    let failed = &jobs[2];
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["attempts"], 3);
    assert_eq!(failed["last_error"], "x");

    // The table: a header, one row per job, the path of done jobs and the
    // error of failed ones.
    let out = world.run(&["list"]).await;
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].contains("FILE_ID") && lines[0].contains("STATE"),
        "{text}"
    );
    let row = |id: &str| {
        lines[1..]
            .iter()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}: {text}"))
            .to_string()
    };
    assert!(row("1").contains("queued"), "{text}");
    assert!(
        row("2").contains("done") && row("2").contains("/archive/2-clip.mp4"),
        "{text}"
    );
    assert!(
        row("3").contains("failed") && row("3").split_whitespace().last() == Some("x"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_by_state_and_limits() {
    let world = World::new();
    enqueue(&world, &(1..=10).collect::<Vec<_>>()).await;
    assert_success(&world.run(&["cancel", "2", "4", "6"]).await);
    stage(&world, STAGE_FAILED, &[9]).await;

    assert_eq!(
        list_ids(&world, &["--state", "cancelled"]).await,
        vec![2, 4, 6]
    );
    assert_eq!(list_ids(&world, &["--state", "failed"]).await, vec![9]);
    assert_eq!(
        list_ids(&world, &["--state", "done"]).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        list_ids(&world, &["--state", "queued"]).await,
        vec![1, 3, 5, 7, 8, 10]
    );
    assert_eq!(
        list_ids(&world, &["--state", "queued", "--limit", "3"]).await,
        vec![1, 3, 5]
    );
    assert_eq!(list_ids(&world, &["--limit", "4"]).await, vec![1, 2, 3, 4]);
    assert_eq!(list_ids(&world, &["--limit", "0"]).await, Vec::<i64>::new());
    assert_eq!(list_ids(&world, &["--limit", "1000"]).await.len(), 10);

    let out = world.run(&["list", "--limit", "2"]).await;
    assert_success(&out);
    assert_eq!(stdout(&out).lines().count(), 3, "header and two rows");

    let out = world.run(&["list", "--state", "finished"]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("finished"), "{}", stderr(&out));
    let out = world.run(&["list", "--limit", "-1"]).await;
    assert_exit(&out, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn show_gives_the_job_and_its_history() {
    let world = World::new();
    enqueue(&world, &[42]).await;
    assert_success(&world.run(&["cancel", "42"]).await);
    assert_success(&world.run(&["retry", "42"]).await);

    let job = world.job(42).await;
    let all = keys(&job);
    for key in LIST_KEYS.iter().chain(&["events"]) {
        assert!(all.contains(*key), "show --json lacks {key}: {job}");
    }
    assert_eq!(job["file_id"], 42);
    assert_eq!(job["state"], "queued");
    let events = job["events"].as_array().expect("events is an array");
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["cancelled", "retried"], "{job}");
    for event in events {
        let k = keys(event);
        for key in ["at", "kind", "attempt", "message"] {
            assert!(k.contains(key), "event lacks {key}: {event}");
        }
        assert!(humantime::parse_rfc3339(event["at"].as_str().unwrap()).is_ok());
    }

    let out = world.run(&["show", "42"]).await;
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.lines().next().unwrap().contains("42"), "{text}");
    assert!(text.contains("state          queued"), "{text}");
    assert!(text.contains("history:"), "{text}");
    let history = text.split("history:").nth(1).unwrap();
    let enqueued = history.find("enqueued").expect("enqueued in history");
    let cancelled = history.find("cancelled").expect("cancelled in history");
    let retried = history.find("retried").expect("retried in history");
    assert!(enqueued < cancelled && cancelled < retried, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn show_of_an_unknown_or_bad_id_fails() {
    let world = World::new();
    enqueue(&world, &[1]).await;
    let out = world.run(&["show", "999"]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("999") && err.contains("not in the queue"),
        "{err}"
    );

    let out = world.run(&["show", "999", "--json"]).await;
    assert_exit(&out, 2);
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    for bad in ["abc", "0", "-3"] {
        let out = world.run(&["show", bad]).await;
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains(&format!("{bad:?}")),
            "{}",
            stderr(&out)
        );
    }
}

// ---------------------------------------------------------- retry, cancel

#[tokio::test(flavor = "multi_thread")]
async fn retry_requeues_failed_and_cancelled_jobs_only() {
    let world = World::new();
    enqueue(&world, &[1, 2, 3, 4, 5]).await;
    stage(&world, STAGE_FAILED, &[1]).await;
    stage(&world, STAGE_CANCELLED, &[2]).await;
    stage(&world, STAGE_DONE, &[4]).await;
    stage(&world, STAGE_RUNNING_LIVE, &[5]).await;

    let out = world.run(&["retry", "1", "2"]).await;
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("1: requeued"), "{}", stdout(&out));
    assert!(stdout(&out).contains("2: requeued"), "{}", stdout(&out));
    for id in [1, 2] {
        let job = world.job(id).await;
        assert_eq!(job["state"], "queued", "{job}");
        assert_eq!(job["attempts"], 0, "{job}");
        assert!(job["last_error"].is_null(), "{job}");
        let kinds = support::event_kinds(&job);
        assert_eq!(kinds.last().map(String::as_str), Some("retried"), "{job}");
    }

    for (id, why) in [(3, "already queued"), (4, "already done"), (5, "running")] {
        let before = world.job(id).await;
        let out = world.run(&["retry", &id.to_string()]).await;
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(&id.to_string()) && err.contains(why), "{err}");
        let after = world.job(id).await;
        assert_eq!(before["state"], after["state"], "retry changed {id}");
        assert_eq!(before["events"], after["events"], "retry changed {id}");
    }

    let out = world.run(&["retry", "999"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("999: not in the queue"),
        "{}",
        stderr(&out)
    );

    let out = world.run(&["retry"]).await;
    assert_exit(&out, 2);
    let out = world.run(&["retry", "abc"]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("\"abc\""), "{}", stderr(&out));

    // A bad id form changes nothing, even beside a retryable job.
    stage(&world, STAGE_FAILED, &[1]).await;
    let out = world.run(&["retry", "1", "zero"]).await;
    assert_exit(&out, 2);
    assert_eq!(state_of(&world, 1).await, "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_all_failed_requeues_every_failed_job_and_nothing_else() {
    let world = World::new();
    enqueue(&world, &[1, 2, 3, 4, 5, 6]).await;
    stage(&world, STAGE_FAILED, &[1, 2, 3]).await;
    stage(&world, STAGE_DONE, &[4]).await;
    stage(&world, STAGE_CANCELLED, &[5]).await;

    let out = world.run(&["retry", "--all-failed"]).await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("requeued 3 failed jobs"),
        "{}",
        stdout(&out)
    );
    for id in [1, 2, 3] {
        let job = world.job(id).await;
        assert_eq!(
            (&job["state"], &job["attempts"]),
            (&Value::from("queued"), &Value::from(0)),
            "{job}"
        );
        assert!(job["last_error"].is_null(), "{job}");
        assert!(
            job["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "retried"),
            "{job}"
        );
    }
    assert_eq!(state_of(&world, 4).await, "done");
    assert_eq!(state_of(&world, 5).await, "cancelled");
    assert_eq!(state_of(&world, 6).await, "queued");
    let status = world.status().await;
    assert_eq!(
        (status["queued"].as_u64(), status["failed"].as_u64()),
        (Some(4), Some(0))
    );

    let out = world.run(&["retry", "--all-failed"]).await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("requeued 0 failed jobs"),
        "{}",
        stdout(&out)
    );

    let out = world.run(&["retry", "--all-failed", "1"]).await;
    assert_exit(&out, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_rules() {
    let world = World::new();
    enqueue(&world, &[1, 2, 3, 4, 5, 10]).await;
    stage(&world, STAGE_DONE, &[2]).await;
    stage(&world, STAGE_FAILED, &[3]).await;
    stage(&world, STAGE_RUNNING_DEAD, &[4]).await;

    // A queued job is cancelled at once.
    let out = world.run(&["cancel", "1"]).await;
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("1: cancelled"), "{}", stdout(&out));
    let job = world.job(1).await;
    assert_eq!(job["state"], "cancelled");
    assert_eq!(job["events"][0]["kind"], "cancelled", "{job}");

    // Cancelling it again makes no sense.
    let out = world.run(&["cancel", "1"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("already cancelled"),
        "{}",
        stderr(&out)
    );

    for (id, why) in [(2, "already done"), (3, "already failed")] {
        let out = world.run(&["cancel", &id.to_string()]).await;
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains(&format!("{id}: not cancelled: {why}")),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(state_of(&world, 2).await, "done");
    assert_eq!(state_of(&world, 3).await, "failed");

    // Running, but nobody holds a live lease: cancelled at once.
    let out = world.run(&["cancel", "4"]).await;
    assert_exit(&out, 0);
    assert_eq!(state_of(&world, 4).await, "cancelled");
    assert!(world.job(4).await["lease_owner"].is_null());

    let out = world.run(&["cancel", "999"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("999: not in the queue"),
        "{}",
        stderr(&out)
    );

    // Per id: the queued one is cancelled, the unknown one reported.
    let out = world.run(&["cancel", "5", "998"]).await;
    assert_exit(&out, 2);
    assert!(stdout(&out).contains("5: cancelled"), "{}", stdout(&out));
    assert!(stderr(&out).contains("998"), "{}", stderr(&out));
    assert_eq!(state_of(&world, 5).await, "cancelled");

    assert_exit(&world.run(&["cancel"]).await, 2);
    let out = world.run(&["cancel", "10", "-10"]).await;
    assert_exit(&out, 2);
    assert_eq!(
        state_of(&world, 10).await,
        "queued",
        "bad id form changed nothing"
    );

    // Cancelled jobs can be retried.
    assert_success(&world.run(&["retry", "1"]).await);
    assert_eq!(state_of(&world, 1).await, "queued");
}

// ------------------------------------------------------------- database

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_database_is_refused_and_left_unchanged() {
    let mut header_then_garbage = b"SQLite format 3\0".to_vec();
    header_then_garbage.extend(garbage(4096 - 16));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("4 KiB of garbage", garbage(4096)),
        (
            "a text file",
            b"file_id\n1\n2\nthis is my shopping list, not a database\n".to_vec(),
        ),
        ("a SQLite header over garbage", header_then_garbage),
    ];
    let commands: &[&[&str]] = &[
        &["status"],
        &["enqueue", "1"],
        &["list"],
        &["show", "1"],
        &["retry", "--all-failed"],
        &["cancel", "1"],
    ];
    for (what, bytes) in cases {
        let world = World::new();
        std::fs::write(&world.db, &bytes).unwrap();
        for args in commands {
            let out = world.run(args).await;
            assert_exit(&out, 2);
            let err = stderr(&out);
            assert!(
                err.contains(world.db.to_str().unwrap()),
                "{what}, {args:?}: message does not name the path: {err}"
            );
            assert!(!err.contains("panicked"), "{what}, {args:?}: {err}");
            assert!(
                err.matches("(code: ").count() <= 1,
                "{what}, {args:?}: the cause is repeated: {err}"
            );
            assert_eq!(
                std::fs::read(&world.db).unwrap(),
                bytes,
                "{what}, {args:?}: the file changed"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_path_that_is_a_directory_is_refused() {
    let world = World::new();
    std::fs::create_dir(&world.db).unwrap();
    let out = world.run(&["status"]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(world.db.to_str().unwrap()), "{err}");
    assert!(
        err.matches("(code: ").count() <= 1,
        "the cause is repeated: {err}"
    );

    // A parent that cannot be created: a regular file stands in its way.
    let mut world = World::new();
    std::fs::write(world.path("blocker"), "not a directory").unwrap();
    world.db = world.path("blocker/sub/queue.db");
    let out = world.run(&["enqueue", "1"]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(world.path("blocker/sub").to_str().unwrap()),
        "{err}"
    );
    assert!(
        err.matches("os error").count() <= 1,
        "the cause is repeated: {err}"
    );
    assert_eq!(
        std::fs::read(world.path("blocker")).unwrap(),
        b"not a directory"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_in_a_missing_nested_directory_is_created() {
    let mut world = World::new();
    world.db = world.path("a/b/c/queue.db");
    enqueue(&world, &[1, 2]).await;
    assert!(world.db.is_file());
    assert_eq!(world.status().await["queued"], 2);

    // The same through a sqlite:// URL.
    let mut world = World::new();
    let path = world.path("x/y/queue.db");
    world.db = PathBuf::from(format!("sqlite://{}", path.display()));
    enqueue(&world, &[3]).await;
    assert!(path.is_file(), "{path:?}");
    assert_eq!(world.status().await["queued"], 1);
}

// -------------------------------------------------------------- config

/// The binary with nothing but HOME and PATH: the test decides every layer.
fn bare(home: &Path) -> Command {
    let mut cmd = Command::new(support::BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .kill_on_drop(true);
    cmd
}

async fn run_bare(cmd: &mut Command, args: &[&str]) -> Output {
    support::run_bounded(cmd.args(args), Duration::from_secs(60)).await
}

/// The database files a world may end up with, by name.
const CANDIDATES: &[&str] = &[
    "a.db",
    "b.db",
    "c.db",
    "a2.db",
    "a3.db",
    "xdg-data/minimax-dl/queue.db",
    ".local/share/minimax-dl/queue.db",
];

/// Runs `enqueue 1` and says which candidate databases exist afterwards.
async fn created(world: &World, cmd: &mut Command) -> Vec<&'static str> {
    let out = run_bare(cmd, &["enqueue", "1"]).await;
    assert_success(&out);
    CANDIDATES
        .iter()
        .copied()
        .filter(|name| world.path(name).exists())
        .collect()
}

fn write_config(world: &World, relative: &str, database: &str) -> PathBuf {
    let path = world.path(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        format!("database = {:?}\n", world.path(database).to_str().unwrap()),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_beat_environment_beats_config_file_beats_defaults() {
    // File only.
    let world = World::new();
    let cfg = write_config(&world, "layered.toml", "a.db");
    let mut cmd = bare(world.dir.path());
    cmd.arg("--config").arg(&cfg);
    assert_eq!(created(&world, &mut cmd).await, vec!["a.db"]);

    // Environment over file.
    let world = World::new();
    let cfg = write_config(&world, "layered.toml", "a.db");
    let mut cmd = bare(world.dir.path());
    cmd.env("MINIMAX_DL_DATABASE", world.path("b.db"))
        .arg("--config")
        .arg(&cfg);
    assert_eq!(created(&world, &mut cmd).await, vec!["b.db"]);

    // Flag over environment over file.
    let world = World::new();
    let cfg = write_config(&world, "layered.toml", "a.db");
    let mut cmd = bare(world.dir.path());
    cmd.env("MINIMAX_DL_DATABASE", world.path("b.db"))
        .arg("--config")
        .arg(&cfg)
        .arg("--db")
        .arg(world.path("c.db"));
    assert_eq!(created(&world, &mut cmd).await, vec!["c.db"]);

    // An empty environment variable says nothing: the file decides.
    let world = World::new();
    let cfg = write_config(&world, "layered.toml", "a.db");
    let mut cmd = bare(world.dir.path());
    cmd.env("MINIMAX_DL_DATABASE", "").arg("--config").arg(&cfg);
    assert_eq!(created(&world, &mut cmd).await, vec!["a.db"]);

    // Defaults: $XDG_DATA_HOME, else ~/.local/share.
    let world = World::new();
    let mut cmd = bare(world.dir.path());
    cmd.env("XDG_DATA_HOME", world.path("xdg-data"));
    assert_eq!(
        created(&world, &mut cmd).await,
        vec!["xdg-data/minimax-dl/queue.db"]
    );
    let world = World::new();
    let mut cmd = bare(world.dir.path());
    assert_eq!(
        created(&world, &mut cmd).await,
        vec![".local/share/minimax-dl/queue.db"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_config_file_is_found_in_the_documented_order() {
    // $MINIMAX_DL_CONFIG.
    let world = World::new();
    let cfg = write_config(&world, "env.toml", "a.db");
    let mut cmd = bare(world.dir.path());
    cmd.env("MINIMAX_DL_CONFIG", &cfg);
    assert_eq!(created(&world, &mut cmd).await, vec!["a.db"]);

    // --config beats $MINIMAX_DL_CONFIG.
    let world = World::new();
    let env_cfg = write_config(&world, "env.toml", "a.db");
    let flag_cfg = write_config(&world, "flag.toml", "a2.db");
    let mut cmd = bare(world.dir.path());
    cmd.env("MINIMAX_DL_CONFIG", &env_cfg)
        .arg("--config")
        .arg(&flag_cfg);
    assert_eq!(created(&world, &mut cmd).await, vec!["a2.db"]);

    // $XDG_CONFIG_HOME/minimax-dl/config.toml.
    let world = World::new();
    write_config(&world, "xdg/minimax-dl/config.toml", "a3.db");
    let mut cmd = bare(world.dir.path());
    cmd.env("XDG_CONFIG_HOME", world.path("xdg"));
    assert_eq!(created(&world, &mut cmd).await, vec!["a3.db"]);

    // $MINIMAX_DL_CONFIG beats $XDG_CONFIG_HOME.
    let world = World::new();
    write_config(&world, "xdg/minimax-dl/config.toml", "a3.db");
    let cfg = write_config(&world, "env.toml", "a.db");
    let mut cmd = bare(world.dir.path());
    cmd.env("XDG_CONFIG_HOME", world.path("xdg"))
        .env("MINIMAX_DL_CONFIG", &cfg);
    assert_eq!(created(&world, &mut cmd).await, vec!["a.db"]);

    // Without $XDG_CONFIG_HOME: ~/.config/minimax-dl/config.toml.
    let world = World::new();
    write_config(&world, ".config/minimax-dl/config.toml", "a3.db");
    let mut cmd = bare(world.dir.path());
    assert_eq!(created(&world, &mut cmd).await, vec!["a3.db"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_config_file_that_is_missing_is_an_error() {
    let world = World::new();
    let missing = world.path("nowhere/config.toml");
    let out = world
        .run(&["--config", missing.to_str().unwrap(), "status"])
        .await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(missing.to_str().unwrap()),
        "{}",
        stderr(&out)
    );

    let world = World::new().env("MINIMAX_DL_CONFIG", missing.to_str().unwrap());
    let out = world.run(&["status"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(missing.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    assert!(!world.db.exists(), "a config error created the database");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_file_errors_name_the_key_and_the_file() {
    let cases = [
        ("concurency = 3\n", "concurency"),
        ("concurrency = \"many\"\n", "concurrency"),
        ("database = 5\n", "database"),
        ("requests_per_minute = -1\n", "requests_per_minute"),
        ("log_format = \"xml\"\n", "log_format"),
        ("concurrency = 0\n", "concurrency"),
        ("max_attempts = 5000\n", "max_attempts"),
        ("read_timeout_secs = 0\n", "read_timeout_secs"),
        ("api_base = \"http://api.minimax.io\"\n", "api_base"),
        ("[api]\nkey = \"x\"\n", "api"),
    ];
    for (text, key) in cases {
        let world = World::new();
        std::fs::write(&world.config, text).unwrap();
        let out = world.run(&["enqueue", "1"]).await;
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(key),
            "{text:?}: message does not name {key}: {err}"
        );
        assert!(
            err.contains(world.config.to_str().unwrap()),
            "{text:?}: message does not name the file: {err}"
        );
        assert!(
            !world.db.exists(),
            "{text:?}: a config error created the database"
        );
    }

    // Not TOML at all.
    let world = World::new();
    std::fs::write(&world.config, "this is = = not toml\n").unwrap();
    let out = world.run(&["status"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(world.config.to_str().unwrap()),
        "{}",
        stderr(&out)
    );

    // The example config is valid as shipped.
    let world = World::new();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"),
        &world.config,
    )
    .unwrap();
    assert_success(&world.run(&["enqueue", "1"]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_errors_name_the_variable() {
    let cases = [
        ("MINIMAX_DL_CONCURRENCY", "abc"),
        ("MINIMAX_DL_CONCURRENCY", "0"),
        ("MINIMAX_DL_REQUESTS_PER_MINUTE", "lots"),
        ("MINIMAX_API_BASE", "http://api.minimax.io"),
        ("MINIMAX_API_BASE", "ftp://api.minimax.io"),
        ("MINIMAX_API_BASE", "not a url"),
    ];
    for (name, value) in cases {
        let world = World::new().env(name, value);
        let out = world.run(&["enqueue", "1"]).await;
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(name), "{name}={value}: {err}");
        assert!(
            !world.db.exists(),
            "{name}={value}: the database was created"
        );
    }
    let world = World::new().env("MINIMAX_API_BASE", "http://api.minimax.io");
    let err = stderr(&world.run(&["status"]).await);
    assert!(err.contains("https"), "{err}");

    // Plain http is fine on loopback (the simulator), and good values pass.
    for (name, value) in [
        ("MINIMAX_API_BASE", "http://127.0.0.1:9"),
        ("MINIMAX_API_BASE", "http://localhost:9"),
        ("MINIMAX_API_BASE", "https://api.minimax.io"),
        ("MINIMAX_DL_CONCURRENCY", "8"),
        ("MINIMAX_DL_OUTPUT_DIR", "/tmp/somewhere"),
    ] {
        let world = World::new().env(name, value);
        let out = world.run(&["enqueue", "1"]).await;
        assert_success(&out);
    }

    // The environment beats the file for numbers too: a bad file value that
    // the environment overrides is never read.
    let world = World::new().env("MINIMAX_DL_CONCURRENCY", "abc");
    std::fs::write(&world.config, "concurrency = 3\n").unwrap();
    assert_exit(&world.run(&["status"]).await, 2);
    let world = World::new().env("MINIMAX_DL_CONCURRENCY", "5");
    std::fs::write(&world.config, "concurrency = 0\n").unwrap();
    assert_success(&world.run(&["enqueue", "1"]).await);
}

// ------------------------------------------------------- usage and output

#[tokio::test(flavor = "multi_thread")]
async fn help_lists_the_exit_codes() {
    let out = run_bare(&mut bare(Path::new("/nonexistent")), &["--help"]).await;
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("Exit codes:"), "{text}");
    for (code, words) in [
        ("0", "success"),
        ("1", "failed"),
        ("2", "usage"),
        ("3", "account"),
        ("4", "disk"),
    ] {
        assert!(
            text.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with(&format!("{code} ")) && l.contains(words)
            }),
            "exit code {code} ({words}) missing: {text}"
        );
    }
    for verb in [
        "enqueue", "run", "status", "list", "show", "retry", "cancel",
    ] {
        assert!(text.contains(verb), "{verb} missing from --help: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2() {
    let world = World::new();
    for args in [
        &["frobnicate"][..],
        &[][..],
        &["status", "--bogus"][..],
        &["show"][..],
        &["list", "--limit", "many"][..],
    ] {
        let out = world.run(args).await;
        assert_exit(&out, 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_into_a_closed_pipe_does_not_panic() {
    let world = World::new();
    let file = world.path("ids.txt");
    let text: String = (1..=20_000).map(|id| format!("{id}\n")).collect();
    std::fs::write(&file, text).unwrap();
    assert_success(
        &world
            .run(&["enqueue", "--from", file.to_str().unwrap()])
            .await,
    );

    for args in [&["list"][..], &["list", "--json"][..]] {
        // Far more than a pipe holds: the writer must meet the closed end.
        let out = closing_stdout_after_a_read(&world, args, Duration::from_secs(60)).await;
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_into_a_closed_pipe_does_not_panic_and_keeps_its_exit_code() {
    // `minimax-dl demo --files 4 | head -1`: the demo goes on printing after
    // its reader has gone.
    let world = World::new();
    let args = ["demo", "--files", "4"];
    let out = closing_stdout_after_a_read(&world, &args, Duration::from_secs(120)).await;
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "the demo's own code: {err}");
}

/// Runs the binary with `args` like `| head -c 64`: reads its first output,
/// closes stdout, and waits (up to `limit`) for it to end.
async fn closing_stdout_after_a_read(world: &World, args: &[&str], limit: Duration) -> Output {
    use tokio::io::AsyncReadExt;
    let mut child = world
        .command()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut reader = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    let n = reader.read(&mut first).await.unwrap();
    assert!(n > 0);
    drop(reader);
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not end after its reader went away"))
        .unwrap()
}

// ------------------------------------------------- odd inputs (issue 9, §4-5)

/// The world's binary and its queue, as another user sees them: readable
/// (its owner opened it up: a queue is created 0600), not writable. As
/// root, who may write any file whatever its mode, the binary runs as
/// `nobody`; otherwise the file and its directory lose their write bits
/// (put back by [`writable_again`]).
fn as_another_users_queue(world: &World) -> Command {
    use std::os::unix::fs::PermissionsExt;
    let mut cmd = world.command();
    if unsafe { libc::geteuid() } == 0 {
        std::fs::set_permissions(world.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", world.db.display());
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
        }
        cmd.uid(65534).gid(65534);
    } else {
        std::fs::set_permissions(&world.db, std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::set_permissions(world.dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    cmd
}

fn writable_again(world: &World) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(world.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&world.db, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Every file in the world's directory with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_on_a_read_only_queue_exits_2_at_once() {
    let world = World::new().env("MINIMAX_API_KEY", "k");
    enqueue(&world, &[1, 2]).await;
    let mut cmd = as_another_users_queue(&world);
    let out = support::run_bounded(
        cmd.args(["run", "--exit-when-idle"]),
        Duration::from_secs(30),
    )
    .await;
    writable_again(&world);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("queue {} is read-only", world.db.display())),
        "{err}"
    );
    assert!(!err.contains("retrying"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_list_and_show_work_on_a_read_only_queue() {
    let world = World::new();
    enqueue(&world, &[5, 6]).await;
    stage(&world, STAGE_FAILED, &[6]).await;
    let before = snapshot(world.dir.path());
    let mut outputs = Vec::new();
    for args in [
        &["status", "--json"][..],
        &["list", "--json"],
        &["show", "6", "--json"],
    ] {
        let mut cmd = as_another_users_queue(&world);
        outputs.push(support::run_bounded(cmd.args(args), Duration::from_secs(60)).await);
    }
    writable_again(&world);
    for out in &outputs {
        assert_success(out);
    }
    let status: Value = serde_json::from_slice(&outputs[0].stdout).unwrap();
    assert_eq!(
        (&status["queued"], &status["failed"]),
        (&1.into(), &1.into())
    );
    let listed: Vec<i64> = stdout(&outputs[1])
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["file_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(listed, vec![5, 6]);
    let job: Value = serde_json::from_slice(&outputs[2].stdout).unwrap();
    assert_eq!(job["state"], "failed");
    assert_eq!(
        snapshot(world.dir.path()).get("queue.db"),
        before.get("queue.db")
    );
}

/// Another application's database: a table of its own, some rows, the
/// default rollback journal.
async fn foreign_database(path: &Path) {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO notes (text) VALUES ('buy milk'), ('call mum')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn another_applications_sqlite_file_is_refused_and_left_unchanged() {
    let world = World::new();
    foreign_database(&world.db).await;
    let before = snapshot(world.dir.path());
    for args in [
        &["status"][..],
        &["list"],
        &["show", "1"],
        &["enqueue", "1"],
        &["retry", "--all-failed"],
        &["cancel", "1"],
    ] {
        let out = world.run(args).await;
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{} is not a minimax-dl queue", world.db.display())),
            "{args:?}: {err}"
        );
        assert_eq!(
            snapshot(world.dir.path()),
            before,
            "{args:?} changed a file"
        );
    }
}

async fn application_id(path: &Path) -> i64 {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let id: i64 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_made_before_the_mark_opens_and_is_marked_on_the_next_write() {
    let world = World::new();
    enqueue(&world, &[1]).await;
    // As every queue made before the mark was: application_id 0.
    let queue = support::queue(&world).await;
    testing::remove_sqlite_mark(&queue).await.unwrap();
    queue.close().await;
    assert_eq!(application_id(&world.db).await, 0);

    assert_eq!(world.status().await["queued"], 1);
    assert_eq!(list_ids(&world, &[]).await, vec![1]);
    assert_eq!(application_id(&world.db).await, 0, "a read marked the file");

    enqueue(&world, &[2]).await;
    assert_eq!(application_id(&world.db).await, 0x4d4d_444c);
    assert_eq!(list_ids(&world, &[]).await, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_is_not_a_file_is_a_usage_error() {
    for db in ["", "sqlite::memory:", ":memory:", "sqlite:q.db?mode=memory"] {
        let mut world = World::new();
        world.db = PathBuf::from(db);
        for args in [&["status"][..], &["enqueue", "1"]] {
            let out = world.run(args).await;
            assert_exit(&out, 2);
            let err = stderr(&out);
            assert!(err.contains("--db"), "{db:?} {args:?}: {err}");
            assert!(err.contains("SQLite file"), "{db:?} {args:?}: {err}");
            assert!(!err.contains("no such table"), "{db:?} {args:?}: {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_in_the_api_base_are_refused_without_showing_them() {
    for base in [
        "http://user:hunter2@127.0.0.1:9",
        "https://user:hunter2@api.minimax.io",
    ] {
        let world = World::new().env("MINIMAX_API_BASE", base);
        for args in [&["run", "--exit-when-idle"][..], &["fetch", "1"]] {
            let out = world.run(args).await;
            assert_exit(&out, 2);
            let err = stderr(&out);
            assert!(err.contains("MINIMAX_API_BASE"), "{base} {args:?}: {err}");
            assert!(err.contains("password"), "{base} {args:?}: {err}");
            assert!(!err.contains("hunter2"), "{base} {args:?}: {err}");
        }
        assert!(!world.db.exists(), "{base}: the call went on to the queue");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_key_with_a_control_character_is_a_config_error_naming_its_origin() {
    let world = World::new();
    let key_file = world.path("api_key");
    std::fs::write(&key_file, "sk-first\nsk-second\n").unwrap();
    std::fs::write(&world.config, format!("api_key_file = {key_file:?}\n")).unwrap();
    for args in [&["run", "--exit-when-idle"][..], &["fetch", "1"]] {
        let out = world.run(args).await;
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(key_file.to_str().unwrap()), "{args:?}: {err}");
        assert!(!err.contains("sk-"), "{args:?}: the key leaked: {err}");
    }

    for key in ["sk-ab\u{1}cd", "sk-ab\tcd", "sk-ab\ncd"] {
        let world = World::new().env("MINIMAX_API_KEY", key);
        let out = world.run(&["run", "--exit-when-idle"]).await;
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains("MINIMAX_API_KEY"), "{key:?}: {err}");
        assert!(!err.contains("sk-"), "{key:?}: the key leaked: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_byte_order_mark_is_ignored_in_an_ids_file_and_a_key_file() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().env("MINIMAX_API_BASE", &sim.api_base());
    let ids = world.path("ids.txt");
    std::fs::write(&ids, "\u{feff}3001\n3002\n").unwrap();
    assert_success(
        &world
            .run(&["enqueue", "--from", ids.to_str().unwrap()])
            .await,
    );
    assert_eq!(list_ids(&world, &[]).await, vec![3001, 3002]);

    let key_file = world.path("api_key");
    std::fs::write(&key_file, format!("\u{feff}{}\n", support::TEST_KEY)).unwrap();
    std::fs::write(&world.config, format!("api_key_file = {key_file:?}\n")).unwrap();
    let out = world.run(&["fetch", "3001"]).await;
    assert_success(&out);
    support::assert_verified(&world, &sim, &world.job(3001).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_single_line_is_shortened_in_the_message() {
    let world = World::new();
    let file = world.path("one-line.txt");
    std::fs::write(&file, "7".repeat(14_000_000)).unwrap();
    let out = world
        .run(&["enqueue", "--from", file.to_str().unwrap()])
        .await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.len() < 1000, "{} bytes of message", err.len());
    assert!(err.contains(&"7".repeat(64)), "{err}");
    assert!(err.contains("longer than 4096 bytes"), "{err}");
    assert!(err.contains("line 1"), "{err}");
    assert!(!world.db.exists(), "a refused list created the queue");
}

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_from_an_empty_list_names_the_list() {
    let world = World::new();
    let file = world.path("empty.txt");
    std::fs::write(&file, "").unwrap();
    let out = world
        .run(&["enqueue", "--from", file.to_str().unwrap()])
        .await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(&format!("{} holds no file ids", file.display())),
        "{}",
        stderr(&out)
    );
    let out = world.run_with_stdin(&["enqueue", "--from", "-"], b"").await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("stdin holds no file ids"),
        "{}",
        stderr(&out)
    );
    assert!(!world.db.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_that_fails_before_any_work_enqueues_nothing() {
    let mut world = World::new().env("MINIMAX_API_KEY", "k");
    world.out = world.path("not-a-directory");
    std::fs::write(&world.out, "a file").unwrap();
    let out = world.run(&["fetch", "7"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(world.out.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    // Refused before the queue is opened: not even an empty one is created.
    assert!(!world.db.exists(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn show_of_a_succeeded_job_has_one_meaning_of_attempts() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["fetch", "11"]).await);
    let out = world.run(&["show", "11"]).await;
    assert_success(&out);
    let text = stdout(&out);
    let attempts = text
        .lines()
        .find(|l| l.starts_with("attempts"))
        .expect("an attempts line");
    assert!(attempts.starts_with("attempts       0 failed"), "{text}");
    assert!(text.contains("claimed"), "{text}");
    assert!(!text.contains("attempt 1"), "{text}");
    let job = world.job(11).await;
    assert_eq!(job["attempts"], 0);
    // Which host's disk holds the file.
    let host = job["file_host"].as_str().expect("file_host");
    let path = job["path"].as_str().expect("path");
    assert!(
        text.contains(&format!("held by host {host} at {path}")),
        "{text}"
    );
    for event in job["events"].as_array().unwrap() {
        assert!(event["attempt"].is_null(), "{event}");
    }
}

/// Entries of the "Arguments:" and "Options:" sections of a help text that
/// have no description.
fn undescribed(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut bare = Vec::new();
    let mut in_section = false;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') {
            in_section = matches!(line.trim_end(), "Arguments:" | "Options:");
            continue;
        }
        let entry = line.trim_start();
        if !in_section || !(entry.starts_with('-') || entry.starts_with('<')) {
            continue;
        }
        let described_here = entry
            .split_once("  ")
            .is_some_and(|(_, d)| !d.trim().is_empty());
        let indent = line.len() - entry.len();
        let described_below = lines.get(i + 1).is_some_and(|next| {
            let text = next.trim_start();
            next.len() - text.len() > indent && !text.is_empty()
        });
        if !described_here && !described_below {
            bare.push(entry.to_string());
        }
    }
    bare
}

#[tokio::test(flavor = "multi_thread")]
async fn every_flag_and_argument_of_every_verb_is_explained() {
    let world = World::new();
    for verb in [
        "enqueue", "run", "status", "list", "show", "retry", "cancel", "fetch", "sync",
    ] {
        let out = world.run(&[verb, "--help"]).await;
        assert_success(&out);
        let help = stdout(&out);
        assert_eq!(undescribed(&help), Vec::<String>::new(), "{verb}:\n{help}");
    }
    let out = world.run(&["retry"]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--all-failed"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_out_of_range_have_one_wording() {
    let world = World::new();
    for args in [
        &["run", "--concurrency", "-1"][..],
        &["run", "--concurrency", "0"],
        &["run", "--concurrency", "257"],
    ] {
        let out = world.run(args).await;
        assert_exit(&out, 2);
        let value = args[2];
        assert!(
            stderr(&out).contains(&format!("{value} is not in 1..=256")),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = world.run(&["run", "--segments", "0"]).await;
    assert!(
        stderr(&out).contains("0 is not in 1..=16"),
        "{}",
        stderr(&out)
    );
    let env = World::new().env("MINIMAX_DL_CONCURRENCY", "0");
    let out = env.run(&["run", "--exit-when-idle"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("0 is not in 1..=256"),
        "{}",
        stderr(&out)
    );
    let file = World::new();
    std::fs::write(&file.config, "concurrency = 300\n").unwrap();
    let out = file.run(&["status"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("300 is not in 1..=256"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_verbs_on_a_missing_queue_create_nothing() {
    let mut world = World::new();
    world.db = world.path("typo/nested/queue.db");
    for args in [&["status"][..], &["list"], &["show", "1"]] {
        let out = world.run(args).await;
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "no queue at {} (run `minimax-dl enqueue` to create one)",
                world.db.display()
            )),
            "{args:?}: {err}"
        );
        assert!(!world.path("typo").exists(), "{args:?} created a directory");
    }
    enqueue(&world, &[1]).await;
    assert_eq!(world.status().await["queued"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_key_file_fails_only_the_verbs_that_need_the_key() {
    let world = World::new();
    let key_file = world.path("missing-key");
    std::fs::write(&world.config, format!("api_key_file = {key_file:?}\n")).unwrap();
    for args in [
        &["enqueue", "1", "2"][..],
        &["status"],
        &["list"],
        &["show", "1"],
        &["cancel", "2"],
        &["retry", "2"],
    ] {
        assert_success(&world.run(args).await);
    }
    for args in [&["run", "--exit-when-idle"][..], &["fetch", "1"]] {
        let out = world.run(args).await;
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains(key_file.to_str().unwrap()),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(state_of(&world, 1).await, "queued");
}

/// Several processes started together on a path with no queue yet (an
/// `enqueue` and a `run` from one script, units at boot) all get the queue:
/// one creates and migrates it, the others wait for it and never see a
/// half-made file as another application's database.
#[tokio::test(flavor = "multi_thread")]
async fn processes_opening_a_new_queue_at_once_all_succeed() {
    for round in 0..5 {
        let mut world = World::new();
        world.db = world.path(&format!("fresh-{round}/queue.db"));
        let writers: Vec<_> = (1..=6)
            .map(|id| {
                let id = id.to_string();
                let world = &world;
                async move { world.run(&["enqueue", &id]).await }
            })
            .collect();
        for out in futures_util::future::join_all(writers).await {
            assert_success(&out);
        }
        assert_eq!(world.status().await["queued"], 6, "round {round}");
    }
}
