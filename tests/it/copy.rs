//! `db copy`: a queue moved into another database with every job's state,
//! attempts, schedule, digest and history; the source only read; a
//! non-empty target refused unless `--merge`.

use std::collections::HashSet;

use minimax_dl::queue::{DbLocation, Queue};
use minimax_sim::{Faults, SimConfig};

use crate::support::{self, World, assert_exit, assert_success, stderr, stdout};

/// A queue with jobs in every end state and some history: 1-6 done, 7-8
/// failed (the API does not know them), 9 cancelled, 10-12 queued.
async fn a_worked_queue() -> (World, minimax_sim::Simulator) {
    let sim = support::sim(SimConfig {
        faults: Faults {
            missing: HashSet::from([7, 8]),
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    let ids: Vec<String> = (1..=9).map(|i| i.to_string()).collect();
    let mut enqueue = vec!["enqueue"];
    enqueue.extend(ids.iter().map(String::as_str));
    assert_success(&world.run(&enqueue).await);
    assert_success(&world.run(&["cancel", "9"]).await);
    assert_exit(&world.run(&["run", "--exit-when-idle"]).await, 1);
    assert_success(&world.run(&["enqueue", "10", "11", "12"]).await);
    assert_success(&world.run(&["enqueue", "--task", "900", "v2:901"]).await);
    (world, sim)
}

/// Each job of the queue at `location` with its history, as text.
async fn every_job(location: &str) -> Vec<String> {
    let queue = Queue::open_read_only(&DbLocation(location.to_string()))
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for id in 1..=12 {
        let job = queue.get(id).await.unwrap().expect("every job is there");
        let events = queue.events(id).await.unwrap();
        jobs.push(format!("{job:?} {events:?}"));
    }
    for id in [900, 901] {
        let task = queue
            .get_task(id)
            .await
            .unwrap()
            .expect("every task is there");
        jobs.push(format!("{task:?}"));
    }
    queue.close().await;
    jobs
}

pub async fn a_queue_is_copied_whole_and_its_source_left_untouched(target: String) {
    let (world, _sim) = a_worked_queue().await;
    let source = world.location();
    let before = std::fs::read(&world.db).unwrap();
    let out = world
        .run(&["db", "copy", "--from", &source, "--to", &target])
        .await;
    assert_success(&out);
    assert!(stdout(&out).contains("copied 12 jobs"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("2 generation tasks"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read(&world.db).unwrap(),
        before,
        "the source is only read"
    );

    let copied = every_job(&target).await;
    assert_eq!(
        copied,
        every_job(&source).await,
        "jobs and their history, field for field"
    );
    let counts = |location: String| async move {
        let queue = Queue::open_read_only(&DbLocation(location)).await.unwrap();
        queue.status().await.unwrap()
    };
    let copied_counts = counts(target.clone()).await;
    assert_eq!(copied_counts, counts(source.clone()).await);
    assert_eq!(
        (
            copied_counts.done,
            copied_counts.failed,
            copied_counts.cancelled,
            copied_counts.queued
        ),
        (6, 2, 1, 3)
    );

    // Again into the same target: refused, nothing changed.
    let again = world
        .run(&["db", "copy", "--from", &source, "--to", &target])
        .await;
    assert_exit(&again, 2);
    assert!(
        stderr(&again).contains("already holds 12 jobs"),
        "{}",
        stderr(&again)
    );
    assert!(stderr(&again).contains("--merge"), "{}", stderr(&again));
    // --merge adds only what the target lacks.
    assert_success(&world.run(&["enqueue", "13"]).await);
    let merged = world
        .run(&["db", "copy", "--from", &source, "--to", &target, "--merge"])
        .await;
    assert_success(&merged);
    assert!(
        stdout(&merged).contains("copied 1 jobs (12 already there"),
        "{}",
        stdout(&merged)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_queue_is_copied_whole_and_its_source_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("copy.db").to_string_lossy().into_owned();
    a_queue_is_copied_whole_and_its_source_left_untouched(target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_a_daemon_is_working_is_not_copied() {
    let world = World::new();
    assert_success(&world.run(&["enqueue", "1", "2"]).await);
    let q = support::queue(&world).await;
    q.claim_id(1, "host:1:2:live", std::time::Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    let target = world.path("copy.db");
    let out = world
        .run(&[
            "db",
            "copy",
            "--from",
            &world.location(),
            "--to",
            target.to_str().unwrap(),
        ])
        .await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("live leases"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stop the daemons"),
        "{}",
        stderr(&out)
    );
}
