//! The storage contract: the queue's behaviour through [`Queue`] alone,
//! whatever store holds the jobs. Each case is an `async fn(Queue)` on a
//! fresh, empty queue; [`contract!`] instantiates every case for each
//! backend: SQLite on a temporary file, and PostgreSQL on a database of its
//! own (on the server `MINIMAX_DL_TEST_PG_URL` names; without it the
//! PostgreSQL cases say "skipped" and pass, except under CI, where they
//! fail). A new backend adds one line at the bottom and must pass the same
//! cases. `postgres_fleet` holds what only a shared database can show.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use minimax_dl::ids::TaskApi;
use minimax_dl::partial::{Resume, SizeSource};
use minimax_dl::queue::{
    DbLocation, JobState, NewTask, PollRecord, ProbeWhen, Queue, QueueError, RecordedPath,
    ReleaseReason, TaskResult, TaskState, VerbOutcome, VerifiedFile, now_millis,
};

use crate::support::PgTestDb;

/// A fresh SQLite queue on a temporary file (the directory lives as long
/// as the returned guard).
async fn sqlite() -> Option<(tempfile::TempDir, Queue)> {
    let dir = tempfile::tempdir().unwrap();
    let location = DbLocation(dir.path().join("q.db").to_string_lossy().into_owned());
    let queue = Queue::open_for_workers(&location).await.unwrap();
    Some((dir, queue))
}

/// A fresh PostgreSQL queue in a database of its own (dropped with the
/// guard); `None` when no server was given.
async fn postgres() -> Option<(PgTestDb, Queue)> {
    let db = PgTestDb::create().await?;
    let queue = Queue::open_for_workers(&db.location()).await.unwrap();
    Some((db, queue))
}

/// `contract!(backend = opener; case, case, ...)`: a module named after the
/// backend with one test per case, each on a queue from `opener`.
macro_rules! contract {
    ($backend:ident = $open:path; $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some((_keep, queue)) = $open().await else {
                        return;
                    };
                    super::$case(queue.clone()).await;
                    queue.close().await;
                }
            )*
        }
    };
}

macro_rules! every_backend {
    ($($backend:ident = $open:path),* $(,)?) => {
        $(
            contract!($backend = $open;
                enqueue_is_idempotent,
                enqueue_is_all_or_nothing,
                concurrent_claimers_never_share_a_job,
                a_batch_claim_takes_abandoned_leases_first_then_the_earliest_due,
                an_expired_lease_is_reclaimed_and_its_old_holder_refused,
                a_heartbeat_renews_held_leases_and_reports_lost_and_cancelled_ones,
                concurrent_completions_commit_together_and_each_learns_its_own_fate,
                a_stale_completion_in_the_same_batch_is_refused_not_told_of_the_other,
                kept_counts_match_a_scan_through_every_transition,
                the_api_call_window_caps_calls_and_says_when_the_next_may_go,
                retry_applies_to_failed_and_cancelled_jobs_only,
                cancel_acts_by_state_and_lease,
                a_claim_by_another_host_starts_from_its_own_partial_file,
                a_paused_queue_claims_nothing_until_a_probe_of_that_pause_lifts_it,
                one_process_at_a_time_takes_the_probe,
                a_shared_cooldown_turns_every_reservation_back_until_it_ends,
                a_host_pause_is_shown_while_refreshed_and_kept_from_its_start,
                the_adaptive_rate_is_stored_and_moved_one_event_at_a_time,
                claimable_counts_queued_and_abandoned_jobs_not_live_leases,
                refetch_requeues_a_done_job_with_that_digest_only,
                prune_deletes_old_done_jobs_and_their_history_in_batches,
                tasks_enqueue_idempotently_and_finished_ones_become_jobs,
                a_due_task_is_taken_by_one_poller_until_its_slot_passes,
                a_poll_records_what_it_found,
                task_verbs_apply_by_state,
                a_v2_task_never_takes_over_a_file_job_of_its_id,
                imported_tasks_keep_their_state_and_are_not_doubled,
            );
        )*
    };
}

every_backend!(sqlite = super::sqlite, postgres = super::postgres);

async fn event_lines(queue: &Queue, file_id: i64) -> Vec<(String, Option<u32>, String)> {
    queue
        .events(file_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.attempt, e.message.unwrap_or_default()))
        .collect()
}

const LEASE: Duration = Duration::from_secs(30);

async fn enqueue_is_idempotent(queue: Queue) {
    let first = queue.enqueue(&[1, 2, 3]).await.unwrap();
    assert_eq!((first.added, first.skipped), (3, 0));
    let again = queue.enqueue(&[2, 3, 4, 4]).await.unwrap();
    assert_eq!((again.added, again.skipped), (1, 3));
    let ids: Vec<i64> = queue
        .list(None, None)
        .await
        .unwrap()
        .iter()
        .map(|j| j.file_id)
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    // A job already claimed is left as it is by a second enqueue.
    let claimed = queue.claim_id(2, "w", LEASE).await.unwrap().unwrap();
    assert_eq!(queue.enqueue(&[2]).await.unwrap().skipped, 1);
    let job = queue.get(2).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.lease_owner),
        (JobState::Running, claimed.job.lease_owner)
    );
    let counts = queue.status().await.unwrap();
    assert_eq!((counts.queued, counts.running), (3, 1));
    assert_eq!(counts, queue.status_by_scan().await.unwrap());
}

async fn enqueue_is_all_or_nothing(queue: Queue) {
    // An enqueue stopped part-way (its caller gave up) leaves all of its
    // ids or none: never the first chunks without the rest.
    let ids: Vec<i64> = (1..=200_000).collect();
    let stopped = tokio::time::timeout(Duration::from_millis(5), queue.enqueue(&ids)).await;
    let counts = queue.status().await.unwrap();
    assert_eq!(counts, queue.status_by_scan().await.unwrap());
    match stopped {
        Ok(report) => assert_eq!(report.unwrap().added, 200_000),
        Err(_) => assert!(
            counts.queued == 0 || counts.queued == 200_000,
            "{} of 200000 ids stayed",
            counts.queued
        ),
    }
    let rest = queue.enqueue(&ids).await.unwrap();
    assert_eq!(rest.added + counts.queued, 200_000);
    assert_eq!(queue.status().await.unwrap().queued, 200_000);
}

async fn concurrent_claimers_never_share_a_job(queue: Queue) {
    let ids: Vec<i64> = (1..=300).collect();
    queue.enqueue(&ids).await.unwrap();
    let mut claimers = Vec::new();
    for worker in 0..8 {
        let queue = queue.clone();
        claimers.push(tokio::spawn(async move {
            let owner = format!("host:0:{worker}:w");
            let mut mine = Vec::new();
            loop {
                let jobs = queue.claim_batch(&owner, LEASE, 7).await.unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                for job in jobs {
                    assert_eq!(job.lease_owner.as_deref(), Some(owner.as_str()));
                    mine.push(job.file_id);
                }
            }
        }));
    }
    let mut seen = HashSet::new();
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            assert!(seen.insert(id), "job {id} claimed twice");
        }
    }
    assert_eq!(seen.len(), 300);
    assert!(queue.claim("late", LEASE).await.unwrap().is_none());
    let counts = queue.status().await.unwrap();
    assert_eq!((counts.running, counts.queued), (300, 0));
}

async fn an_expired_lease_is_reclaimed_and_its_old_holder_refused(queue: Queue) {
    queue.enqueue(&[1]).await.unwrap();
    let first = queue.claim("old", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(first.attempts, 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let job = queue.claim("new", LEASE).await.unwrap().unwrap();
    assert_eq!((job.file_id, job.lease_owner.as_deref()), (1, Some("new")));
    assert!(job.lease_live(now_millis()));
    // Every write of the old holder is refused; the new one's are taken.
    let resume = job.resume();
    assert!(matches!(
        queue.lease_of(1, "old").checkpoint(&resume, None).await,
        Err(QueueError::LeaseLost(1))
    ));
    assert!(matches!(
        queue
            .lease_of(1, "old")
            .release("stop", now_millis(), ReleaseReason::HistoryOnly)
            .await,
        Err(QueueError::LeaseLost(1))
    ));
    assert!(matches!(
        queue.lease_of(1, "old").record_failure("boom", None).await,
        Err(QueueError::LeaseLost(1))
    ));
    queue
        .lease_of(1, "new")
        .checkpoint(&resume, None)
        .await
        .unwrap();
    // A live lease is not taken.
    assert!(queue.claim("third", LEASE).await.unwrap().is_none());
    assert!(queue.claim_id(1, "third", LEASE).await.unwrap().is_none());
    // Owners found dead have their leases expired at once.
    assert_eq!(
        queue
            .expire_leases_of_dead_owners(|o| o == "new")
            .await
            .unwrap(),
        1
    );
    let job = queue.claim("third", LEASE).await.unwrap().unwrap();
    assert_eq!(job.lease_owner.as_deref(), Some("third"));
    let kinds: Vec<String> = event_lines(&queue, 1)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(kinds, ["claimed", "reclaimed", "reclaimed"]);
}

async fn a_heartbeat_renews_held_leases_and_reports_lost_and_cancelled_ones(queue: Queue) {
    queue.enqueue(&[1, 2, 3]).await.unwrap();
    // Long enough that the claims and the heartbeat fit in it on a loaded
    // machine; the sleep below then outlasts it.
    let short = Duration::from_secs(2);
    let claimed = std::time::Instant::now();
    for id in [1, 2, 3] {
        queue.claim_id(id, "pool", short).await.unwrap().unwrap();
    }
    let held: Vec<(i64, String)> = [1, 2, 3]
        .iter()
        .map(|&id| (id, "pool".to_string()))
        .collect();
    let beat = queue.heartbeat(&held, LEASE).await.unwrap();
    assert_eq!(beat, Default::default());
    tokio::time::sleep_until((claimed + short + Duration::from_millis(200)).into()).await;
    // Renewed: nobody may take them although the first lease ran out.
    assert!(queue.claim("thief", LEASE).await.unwrap().is_none());

    // Job 2's lease is lost (expired and reclaimed); job 3's cancellation
    // is asked for.
    queue
        .expire_leases_of_dead_owners(|o| o == "pool")
        .await
        .unwrap();
    assert_eq!(
        queue.heartbeat(&held[..1], LEASE).await.unwrap(),
        Default::default()
    );
    assert_eq!(
        queue
            .claim_id(2, "thief", LEASE)
            .await
            .unwrap()
            .unwrap()
            .file_id,
        2
    );
    assert_eq!(
        queue.heartbeat(&held[2..], LEASE).await.unwrap(),
        Default::default()
    );
    let asked = queue.cancel(&[3]).await.unwrap();
    assert_eq!(asked, [(3, VerbOutcome::Requested)]);
    let beat = queue.heartbeat(&held, LEASE).await.unwrap();
    assert_eq!((beat.lost, beat.cancel), (vec![2], vec![3]));
    queue.lease_of(3, "pool").confirm_cancelled().await.unwrap();
    assert_eq!(
        queue.get(3).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(queue.heartbeat(&held[2..], LEASE).await.unwrap().lost, [3]);
}

async fn a_batch_claim_takes_abandoned_leases_first_then_the_earliest_due(queue: Queue) {
    queue.enqueue(&[5, 1, 4, 2, 3]).await.unwrap();
    // Job 1's first worker holds a lease that has already run out.
    let abandoned = queue
        .claim_id(1, "a:0:1:dead", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(abandoned.map(|j| j.file_id), Some(1));
    tokio::time::sleep(Duration::from_millis(5)).await;

    let jobs = queue
        .claim_batch("b:0:2:live", Duration::from_secs(30), 3)
        .await
        .unwrap();
    let mut ids: Vec<i64> = jobs.iter().map(|j| j.file_id).collect();
    ids.sort();
    assert_eq!(
        ids,
        [1, 2, 3],
        "the abandoned job, then the two earliest due"
    );
    assert!(jobs.iter().all(
        |j| j.state == JobState::Running && j.lease_owner.as_deref() == Some("b:0:2:live")
    ));
    let counts = queue.status().await.unwrap();
    assert_eq!((counts.running, counts.queued), (3, 2));

    // The history comes from the trigger, with the texts the code wrote.
    assert_eq!(
        event_lines(&queue, 1).await,
        [
            ("claimed".into(), Some(1), "claimed by a:0:1:dead".into()),
            (
                "reclaimed".into(),
                Some(1),
                "lease of a:0:1:dead expired; claimed by b:0:2:live".into()
            ),
        ]
    );
    assert_eq!(
        event_lines(&queue, 2).await,
        [("claimed".into(), Some(1), "claimed by b:0:2:live".into())]
    );
    // Nothing else is due beyond what is left.
    assert_eq!(
        queue
            .claim_batch("c", Duration::from_secs(30), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        queue
            .claim_batch("c", Duration::from_secs(30), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_completions_commit_together_and_each_learns_its_own_fate(queue: Queue) {
    let ids: Vec<i64> = (1..=40).collect();
    queue.enqueue(&ids).await.unwrap();
    let jobs = queue
        .claim_batch("w:0:1:1", Duration::from_secs(30), 40)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 40);
    let mut tasks = Vec::new();
    for job in jobs {
        let queue = queue.clone();
        // Job 7 is completed by a worker that does not hold its lease.
        let owner = if job.file_id == 7 {
            "someone-else"
        } else {
            "w:0:1:1"
        };
        tasks.push(tokio::spawn(async move {
            let path = PathBuf::from(format!("/archive/{}.mp4", job.file_id));
            (
                job.file_id,
                queue.lease_of(job.file_id, owner).complete(&path).await,
            )
        }));
    }
    for task in tasks {
        let (file_id, result) = task.await.unwrap();
        match result {
            Err(QueueError::LeaseLost(id)) => assert_eq!((file_id, id), (7, 7)),
            other => {
                assert_ne!(file_id, 7);
                other.unwrap();
            }
        }
    }
    let counts = queue.status().await.unwrap();
    assert_eq!((counts.done, counts.running), (39, 1));
    assert_eq!(counts, queue.status_by_scan().await.unwrap());
    let done = queue.get(3).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Done);
    assert_eq!(done.final_path.as_deref(), Some("/archive/3.mp4"));
    assert_eq!(done.lease_owner, None);
    let lines = event_lines(&queue, 3).await;
    assert_eq!(
        lines.last().unwrap(),
        &("done".into(), None, "/archive/3.mp4".into())
    );
    assert_eq!(lines.iter().filter(|l| l.0 == "done").count(), 1);
    assert!(event_lines(&queue, 7).await.iter().all(|l| l.0 != "done"));
    // Completing again is refused: the lease is gone with the job done.
    assert!(matches!(
        queue
            .lease_of(3, "w:0:1:1")
            .complete(Path::new("/archive/3.mp4"))
            .await,
        Err(QueueError::LeaseLost(3))
    ));
}

async fn a_stale_completion_in_the_same_batch_is_refused_not_told_of_the_other(queue: Queue) {
    queue.enqueue(&[1, 2]).await.unwrap();
    let jobs = queue
        .claim_batch("new", Duration::from_secs(30), 2)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
    // Polled together, the two land in one batch: the first takes the
    // committer and yields, the second joins the waiting list.
    let path = Path::new("/archive/1.mp4");
    let (new, old) = (queue.lease_of(1, "new"), queue.lease_of(1, "stale"));
    let (current, stale) = tokio::join!(new.complete(path), old.complete(path));
    current.unwrap();
    assert!(matches!(stale, Err(QueueError::LeaseLost(1))), "{stale:?}");
    let lines = event_lines(&queue, 1).await;
    assert_eq!(lines.iter().filter(|l| l.0 == "done").count(), 1);
}

async fn kept_counts_match_a_scan_through_every_transition(queue: Queue) {
    let check = async |queue: &Queue| {
        let kept = queue.status().await.unwrap();
        assert_eq!(kept, queue.status_by_scan().await.unwrap());
        kept
    };
    queue.enqueue(&(1..=8).collect::<Vec<_>>()).await.unwrap();
    check(&queue).await;
    for id in 1..=6 {
        queue.claim_id(id, "w", LEASE).await.unwrap().unwrap();
    }
    check(&queue).await;
    let mut resume = queue.get(1).await.unwrap().unwrap().resume();
    resume.bytes_done = 100;
    queue
        .lease_of(1, "w")
        .checkpoint(&resume, None)
        .await
        .unwrap();
    queue
        .lease_of(2, "w")
        .complete(Path::new("/archive/2"))
        .await
        .unwrap();
    queue
        .lease_of(3, "w")
        .record_failure("gone", None)
        .await
        .unwrap();
    queue
        .lease_of(4, "w")
        .record_failure("later", Some(now_millis() + 60_000))
        .await
        .unwrap();
    queue
        .lease_of(5, "w")
        .release("shutdown", now_millis(), ReleaseReason::HistoryOnly)
        .await
        .unwrap();
    queue.cancel(&[6, 7]).await.unwrap();
    queue.lease_of(6, "w").confirm_cancelled().await.unwrap();
    let counts = check(&queue).await;
    assert_eq!(
        (
            counts.queued,
            counts.running,
            counts.done,
            counts.failed,
            counts.cancelled
        ),
        (3, 1, 1, 1, 2)
    );
    assert_eq!(counts.bytes_done, 100);
    queue.retry_all_failed().await.unwrap();
    queue.retry(&[7]).await.unwrap();
    let counts = check(&queue).await;
    assert_eq!((counts.queued, counts.failed, counts.cancelled), (5, 0, 1));
}

async fn the_api_call_window_caps_calls_and_says_when_the_next_may_go(queue: Queue) {
    // Long enough that four reservations fit in it on a loaded machine.
    const WINDOW_MS: i64 = 3000;
    let window = Duration::from_millis(WINDOW_MS as u64);
    let before = now_millis();
    for _ in 0..3 {
        assert_eq!(queue.reserve_api_call(3, window).await.unwrap(), None);
    }
    let next = queue
        .reserve_api_call(3, window)
        .await
        .unwrap()
        .expect("capped");
    // The wait is the oldest call's leaving the window; PostgreSQL gives it
    // as a wait on its clock, which the store adds to this host's clock when
    // the answer arrives: so the bound is the moment the answer was in hand.
    let answered = now_millis();
    assert!(
        next > before + WINDOW_MS && next <= answered + WINDOW_MS + 1,
        "{next} vs {before}..{answered}"
    );
    // A refused call is not counted: once the first calls leave the window
    // there is room again.
    tokio::time::sleep(Duration::from_millis(
        (next - now_millis()).max(0) as u64 + 5,
    ))
    .await;
    assert_eq!(queue.reserve_api_call(3, window).await.unwrap(), None);
}

async fn retry_applies_to_failed_and_cancelled_jobs_only(queue: Queue) {
    queue.enqueue(&[1, 2, 3, 4]).await.unwrap();
    queue.claim_id(1, "w", LEASE).await.unwrap().unwrap();
    queue
        .lease_of(1, "w")
        .record_failure("boom", None)
        .await
        .unwrap();
    queue.cancel(&[2]).await.unwrap();
    queue.claim_id(3, "w", LEASE).await.unwrap().unwrap();
    let outcomes = queue.retry(&[1, 2, 3, 4, 99]).await.unwrap();
    assert_eq!(outcomes[0], (1, VerbOutcome::Applied));
    assert_eq!(outcomes[1], (2, VerbOutcome::Applied));
    assert!(
        matches!(outcomes[2], (3, VerbOutcome::Refused(_))),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[3], (4, VerbOutcome::Refused(_))),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[4], (99, VerbOutcome::Unknown));
    let job = queue.get(1).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempts, job.last_error),
        (JobState::Queued, 0, None)
    );
    assert_eq!(event_lines(&queue, 1).await.last().unwrap().0, "retried");
    queue.claim_id(4, "w", LEASE).await.unwrap().unwrap();
    queue
        .lease_of(4, "w")
        .record_failure("boom", None)
        .await
        .unwrap();
    assert_eq!(queue.retry_all_failed().await.unwrap(), 1);
    assert_eq!(queue.get(4).await.unwrap().unwrap().state, JobState::Queued);
}

async fn cancel_acts_by_state_and_lease(queue: Queue) {
    queue.enqueue(&[1, 2, 3, 4]).await.unwrap();
    queue.claim_id(2, "live", LEASE).await.unwrap().unwrap();
    queue
        .claim_id(3, "dead", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    queue.claim_id(4, "w", LEASE).await.unwrap().unwrap();
    queue
        .lease_of(4, "w")
        .complete(Path::new("/archive/4"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let outcomes = queue.cancel(&[1, 2, 3, 4, 99]).await.unwrap();
    assert_eq!(outcomes[0], (1, VerbOutcome::Applied), "queued: at once");
    assert_eq!(
        outcomes[1],
        (2, VerbOutcome::Requested),
        "live lease: asked"
    );
    assert_eq!(
        outcomes[2],
        (3, VerbOutcome::Applied),
        "expired lease: at once"
    );
    assert!(
        matches!(outcomes[3], (4, VerbOutcome::Refused(_))),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[4], (99, VerbOutcome::Unknown));
    let state = async |id| queue.get(id).await.unwrap().unwrap();
    assert_eq!(state(1).await.state, JobState::Cancelled);
    let asked = state(2).await;
    assert_eq!(
        (asked.state, asked.cancel_requested),
        (JobState::Running, true)
    );
    assert_eq!(state(3).await.state, JobState::Cancelled);
    assert_eq!(state(4).await.state, JobState::Done);
    // Cancelling again is refused, and a cancelled job is not claimed.
    assert!(matches!(
        queue.cancel(&[1]).await.unwrap()[0],
        (1, VerbOutcome::Refused(_))
    ));
    assert!(queue.claim("w", LEASE).await.unwrap().is_none());
}

async fn a_claim_by_another_host_starts_from_its_own_partial_file(queue: Queue) {
    queue.enqueue(&[1, 2]).await.unwrap();
    let progress = Resume {
        bytes_done: 100,
        validator: Some("\"etag\"".into()),
        total: None,
        pieces: Some("64/1000/0-1".into()),
        boot_id: Some("boot-a".into()),
    };
    let job = queue.claim_id(1, "a:0:1:t1", LEASE).await.unwrap().unwrap();
    assert_eq!(job.file_host.as_deref(), Some("a"));
    queue
        .lease_of(1, "a:0:1:t1")
        .checkpoint(&progress, None)
        .await
        .unwrap();
    let drop_lease = async |owner: &'static str| {
        let freed = queue
            .expire_leases_of_dead_owners(|o| o == owner)
            .await
            .unwrap();
        assert_eq!(freed, 1);
    };

    // The same host, another process: its partial file is on this disk.
    drop_lease("a:0:1:t1").await;
    let same = queue.claim("a:0:2:t2", LEASE).await.unwrap().unwrap();
    assert_eq!(same.file_id, 1);
    assert_eq!(same.resume(), progress);
    assert_eq!(same.file_host.as_deref(), Some("a"));

    // Another host: nothing of host a's partial file is trusted.
    drop_lease("a:0:2:t2").await;
    let other = queue.claim("b:0:1:t1", LEASE).await.unwrap().unwrap();
    assert_eq!(other.file_id, 1);
    assert_eq!(
        (
            other.bytes_done,
            other.job.validator,
            other.job.pieces,
            other.job.boot_id,
            other.job.sha256
        ),
        (0, None, None, None, None)
    );
    assert_eq!(other.job.file_host.as_deref(), Some("b"));
    assert_eq!(queue.get(1).await.unwrap().unwrap().bytes_done, 0);
    assert_eq!(
        queue.status().await.unwrap(),
        queue.status_by_scan().await.unwrap()
    );

    // A claim by id resets in the same way; the done job names its host.
    queue.claim_id(2, "a:0:1:t1", LEASE).await.unwrap().unwrap();
    queue
        .lease_of(2, "a:0:1:t1")
        .checkpoint(&progress, None)
        .await
        .unwrap();
    drop_lease("a:0:1:t1").await;
    let by_id = queue.claim_id(2, "b:0:1:t1", LEASE).await.unwrap().unwrap();
    assert_eq!((by_id.bytes_done, by_id.job.validator), (0, None));
    queue
        .lease_of(2, "b:0:1:t1")
        .complete(Path::new("/archive/2.mp4"))
        .await
        .unwrap();
    let done = queue.get(2).await.unwrap().unwrap();
    assert_eq!(
        (
            done.state,
            done.file_host.as_deref(),
            done.final_path.as_deref()
        ),
        (JobState::Done, Some("b"), Some("/archive/2.mp4"))
    );
}

async fn a_paused_queue_claims_nothing_until_a_probe_of_that_pause_lifts_it(queue: Queue) {
    queue.enqueue(&[1, 2, 3]).await.unwrap();
    let epoch = queue
        .pause_fleet("1008 insufficient balance", "host-a:1:2:x", Duration::ZERO)
        .await
        .unwrap();
    assert!(queue.claim_batch("w", LEASE, 3).await.unwrap().is_empty());
    // A second report keeps the first cause, its epoch and its probe time.
    let again = queue
        .pause_fleet("1004 auth", "host-b:1:2:y", Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(again, epoch);
    let pause = queue.fleet_state().await.unwrap().pause.expect("paused");
    assert_eq!(
        (
            pause.message.as_str(),
            pause.paused_by.as_str(),
            pause.epoch
        ),
        ("1008 insufficient balance", "host-a:1:2:x", epoch)
    );
    assert_eq!(pause.probe_in, Duration::ZERO, "its probe is due");
    // `fetch ID` is a user's explicit request: not held back.
    assert!(queue.claim_id(3, "f", LEASE).await.unwrap().is_some());

    assert!(
        !queue.lift_pause(epoch + 1).await.unwrap(),
        "another pause's probe"
    );
    assert!(queue.lift_pause(epoch).await.unwrap());
    assert_eq!(queue.fleet_state().await.unwrap().pause, None);
    assert!(!queue.lift_pause(epoch).await.unwrap(), "lifted once");
    assert_eq!(queue.claim_batch("w", LEASE, 3).await.unwrap().len(), 2);

    let next = queue
        .pause_fleet("1004 auth", "host-b:1:2:y", Duration::from_secs(600))
        .await
        .unwrap();
    assert!(next > epoch, "a new pause, a new epoch");
}

async fn one_process_at_a_time_takes_the_probe(queue: Queue) {
    assert_eq!(
        queue
            .take_probe_slot(LEASE, ProbeWhen::IfDue)
            .await
            .unwrap(),
        None,
        "no pause, nothing to probe"
    );
    // Long enough that the next two calls come before it ends on a loaded
    // machine; the sleep below then outlasts it.
    let pause = Duration::from_secs(2);
    let paused = std::time::Instant::now();
    let epoch = queue.pause_fleet("1008", "a", pause).await.unwrap();
    assert_eq!(
        queue
            .take_probe_slot(LEASE, ProbeWhen::IfDue)
            .await
            .unwrap(),
        None,
        "not yet due"
    );
    let probe_in = queue.fleet_state().await.unwrap().pause.unwrap().probe_in;
    assert!(probe_in > Duration::ZERO && probe_in <= pause);
    tokio::time::sleep_until((paused + pause + Duration::from_millis(200)).into()).await;
    let next = Duration::from_secs(60);
    assert_eq!(
        queue.take_probe_slot(next, ProbeWhen::IfDue).await.unwrap(),
        Some(epoch)
    );
    assert_eq!(
        queue.take_probe_slot(next, ProbeWhen::IfDue).await.unwrap(),
        None,
        "the slot moved a minute on: the next process waits"
    );
    let probe_in = queue.fleet_state().await.unwrap().pause.unwrap().probe_in;
    assert!(probe_in > Duration::from_secs(50), "{probe_in:?}");
    // A process that starts while paused probes at once.
    assert_eq!(
        queue.take_probe_slot(next, ProbeWhen::Now).await.unwrap(),
        Some(epoch)
    );
}

async fn a_shared_cooldown_turns_every_reservation_back_until_it_ends(queue: Queue) {
    let window = Duration::from_secs(61);
    assert_eq!(queue.fleet_state().await.unwrap().cooldown, None);
    // Long enough that the reservation below comes before it ends on a
    // loaded machine; the sleep below then outlasts it.
    let cooldown = Duration::from_secs(2);
    let before = now_millis();
    queue.cool_fleet(cooldown).await.unwrap();
    // A shorter cooldown reported meanwhile does not cut it short.
    queue.cool_fleet(Duration::from_millis(10)).await.unwrap();
    let until = queue
        .reserve_api_call(100, window)
        .await
        .unwrap()
        .expect("cooling: the call must wait");
    assert!(
        until >= before + 2000 && until <= now_millis() + 2000,
        "{until} vs {before}"
    );
    let left = queue
        .fleet_state()
        .await
        .unwrap()
        .cooldown
        .expect("cooling");
    assert!(left <= cooldown);
    tokio::time::sleep_until(
        (std::time::Instant::now() + left + Duration::from_millis(200)).into(),
    )
    .await;
    assert_eq!(queue.reserve_api_call(100, window).await.unwrap(), None);
    assert_eq!(queue.fleet_state().await.unwrap().cooldown, None);
}

/// A host's own pause (an API it cannot connect to) is shown by host while
/// its daemon refreshes it, keeps the time it began, is removed only by
/// the daemon that recorded it, and means nothing once it expired (a
/// daemon that died paused). It never pauses claims.
async fn a_host_pause_is_shown_while_refreshed_and_kept_from_its_start(queue: Queue) {
    let minute = Duration::from_secs(60);
    assert_eq!(queue.host_pauses().await.unwrap(), vec![]);
    queue
        .record_host_pause("h1", "cannot connect", "h1:1:2:a", minute)
        .await
        .unwrap();
    queue
        .record_host_pause("h0", "gone", "h0:1:2:b", Duration::ZERO)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    queue
        .record_host_pause("h1", "cannot connect again", "h1:1:2:a", minute)
        .await
        .unwrap();
    let shown = queue.host_pauses().await.unwrap();
    assert_eq!(shown.len(), 1, "an expired pause is not shown: {shown:?}");
    assert_eq!(
        (shown[0].host.as_str(), shown[0].message.as_str()),
        ("h1", "cannot connect again")
    );
    assert!(
        shown[0].lasted >= Duration::from_millis(250),
        "a refresh keeps its start: {shown:?}"
    );
    queue.enqueue(&[1]).await.unwrap();
    let claimed = queue.claim_batch("h1:1:2:a-0", minute, 1).await.unwrap();
    assert_eq!(claimed.len(), 1, "a host pause never stops claims");
    queue.lift_host_pause("h1", "h1:1:2:other").await.unwrap();
    assert_eq!(queue.host_pauses().await.unwrap().len(), 1);
    queue.lift_host_pause("h1", "h1:1:2:a").await.unwrap();
    assert_eq!(queue.host_pauses().await.unwrap(), vec![]);
}

/// The fleet's adaptive rate (issue #24) is one stored row: an event reads
/// it with the calls in the window and the store's clock, and writes what
/// `rate` says; events from many callers at once are applied one at a time
/// (eight rate-limit answers at once lower it once, not eight times).
async fn the_adaptive_rate_is_stored_and_moved_one_event_at_a_time(queue: Queue) {
    use minimax_dl::rate::{Change, DECREASE, RateEvent, RateLimits, RateState};
    let window = Duration::from_secs(61);
    let limits = RateLimits::new(600, 60_000);
    assert_eq!(queue.rate_state().await.unwrap(), RateState::default());
    let before = now_millis();
    let (started, change) = queue
        .move_rate(window, None, RateEvent::Tick(limits))
        .await
        .unwrap();
    assert_eq!((started.cap(&limits), change), (60, Change::None));
    assert!(
        started.window_start >= before - 1_000,
        "{started:?} on the store's clock"
    );
    assert_eq!(queue.rate_state().await.unwrap(), started, "stored");

    for _ in 0..40 {
        assert_eq!(queue.reserve_api_call(100, window).await.unwrap(), None);
    }
    let events = (0..8).map(|_| {
        queue.move_rate(
            window,
            Some(Duration::from_millis(400)),
            RateEvent::Limited(limits),
        )
    });
    let changes: Vec<Change> = futures_util::future::join_all(events)
        .await
        .into_iter()
        .map(|r| r.unwrap().1)
        .collect();
    let lowered = changes.iter().filter(|c| **c == Change::Decreased).count();
    assert_eq!(lowered, 1, "one decrease for answers at once: {changes:?}");
    let stored = queue.rate_state().await.unwrap();
    assert_eq!(stored.decreases, 1);
    assert!(!stored.probing);
    // 40 calls went out of a rate of 60: the rate drops to 85% of them.
    assert!(
        (stored.per_minute - 40.0 * DECREASE).abs() < 1e-9,
        "{stored:?}"
    );
    assert!(
        queue.fleet_state().await.unwrap().cooldown.is_some(),
        "the same transaction cooled the fleet"
    );
    assert!(
        queue.reserve_api_call(100, window).await.unwrap().is_some(),
        "cooling: no call goes"
    );
}

async fn claimable_counts_queued_and_abandoned_jobs_not_live_leases(queue: Queue) {
    assert!(queue.claimable().await.unwrap().is_empty());
    queue.enqueue(&[1, 2, 3]).await.unwrap();
    let left = queue.claimable().await.unwrap();
    assert_eq!((left.queued, left.abandoned), (3, 0));
    // One job under a live lease (another host's: its own), one whose
    // lease ran out (its worker is gone: anyone may take it).
    queue.claim_id(1, "live", LEASE).await.unwrap().unwrap();
    queue
        .claim_id(2, "gone", Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let left = queue.claimable().await.unwrap();
    assert_eq!((left.queued, left.abandoned), (1, 1));
    queue.claim_batch("w", LEASE, 5).await.unwrap();
    assert!(
        queue.claimable().await.unwrap().is_empty(),
        "only live leases left"
    );
}

/// Claims, verifies and completes `id` as a worker would: a done job with
/// a recorded size, digest and path.
async fn finish_job(queue: &Queue, id: i64, sha256: &str) {
    queue.claim_id(id, "w", LEASE).await.unwrap().unwrap();
    let path = PathBuf::from(format!("/archive/{id}.mp4"));
    let verified = VerifiedFile {
        size: 10,
        size_source: SizeSource::Cdn,
        sha256,
        filename: Some("a.mp4"),
        final_path: &path,
    };
    queue
        .lease_of(id, "w")
        .record_verified(&verified)
        .await
        .unwrap();
    queue.lease_of(id, "w").complete(&path).await.unwrap();
}

async fn refetch_requeues_a_done_job_with_that_digest_only(queue: Queue) {
    queue.enqueue(&[1, 2, 3]).await.unwrap();
    finish_job(&queue, 1, "aa").await;
    finish_job(&queue, 2, "bb").await;
    // Another digest (the job was downloaded again meanwhile), another
    // state, an unknown id: nothing changes.
    assert!(
        !queue
            .refetch(1, "zz", RecordedPath::Keep, "why")
            .await
            .unwrap()
    );
    assert!(
        !queue
            .refetch(3, "aa", RecordedPath::Keep, "why")
            .await
            .unwrap()
    );
    assert!(
        !queue
            .refetch(99, "aa", RecordedPath::Keep, "why")
            .await
            .unwrap()
    );
    assert_eq!(queue.get(1).await.unwrap().unwrap().state, JobState::Done);

    assert!(
        queue
            .refetch(1, "aa", RecordedPath::Keep, "verify: changed")
            .await
            .unwrap()
    );
    let job = queue.get(1).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!((job.attempts, job.bytes_done), (0, 0));
    assert_eq!((job.sha256, job.bytes_expected), (None, None));
    assert_eq!(job.final_path.as_deref(), Some("/archive/1.mp4"), "kept");
    assert_eq!(job.last_error.as_deref(), Some("verify: changed"));
    assert_eq!(
        event_lines(&queue, 1).await.last().unwrap(),
        &("refetch".to_string(), None, "verify: changed".to_string())
    );
    // Applied once: the job is no longer done.
    assert!(
        !queue
            .refetch(1, "aa", RecordedPath::Keep, "again")
            .await
            .unwrap()
    );

    assert!(
        queue
            .refetch(2, "bb", RecordedPath::Forget, "verify: missing")
            .await
            .unwrap()
    );
    assert_eq!(
        queue.get(2).await.unwrap().unwrap().final_path,
        None,
        "forgotten"
    );
    let counts = queue.status().await.unwrap();
    assert_eq!((counts.queued, counts.done), (3, 0));
    assert_eq!(counts, queue.status_by_scan().await.unwrap());
    // A requeued job is claimed like any other.
    let claimed = queue.claim_batch("w2", LEASE, 3).await.unwrap();
    assert_eq!(claimed.len(), 3);
}

async fn prune_deletes_old_done_jobs_and_their_history_in_batches(queue: Queue) {
    queue.enqueue(&(1..=9).collect::<Vec<_>>()).await.unwrap();
    for id in [1, 2, 4, 5, 7] {
        finish_job(&queue, id, "aa").await;
    }
    queue.claim_id(3, "w", LEASE).await.unwrap().unwrap();
    queue
        .lease_of(3, "w")
        .record_failure("gone", None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cutoff = now_millis();
    // PostgreSQL turns the cutoff into an age on its own clock, so the
    // boundary moves later by the statement's time in flight (a loaded CI
    // machine has seen more than 5 ms): leave a margin far beyond that.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Done after the cutoff: kept.
    finish_job(&queue, 8, "aa").await;

    let mut removed = 0;
    let mut after = None;
    let mut batches = 0;
    loop {
        let batch = queue.prune_done(cutoff, after, 2).await.unwrap();
        assert!(batch.removed <= 2);
        removed += batch.removed;
        batches += 1;
        let Some(last) = batch.last else { break };
        assert!(after.is_none_or(|a| last > a), "batches move on");
        after = Some(last);
    }
    assert_eq!(removed, 5);
    assert_eq!(batches, 4, "3 batches of up to 2, then an empty one");
    let left: Vec<i64> = queue
        .list(None, None)
        .await
        .unwrap()
        .iter()
        .map(|j| j.file_id)
        .collect();
    assert_eq!(left, [3, 6, 8, 9]);
    for id in [1, 2, 4, 5, 7] {
        assert!(
            queue.events(id).await.unwrap().is_empty(),
            "history of {id}"
        );
    }
    assert!(!queue.events(8).await.unwrap().is_empty());
    let counts = queue.status().await.unwrap();
    assert_eq!(counts, queue.status_by_scan().await.unwrap());
    assert_eq!((counts.done, counts.queued, counts.failed), (1, 2, 1));
    // Nothing left to prune: one empty batch.
    let again = queue.prune_done(cutoff, None, 2).await.unwrap();
    assert_eq!((again.removed, again.last), (0, None));
}

const DAY: Duration = Duration::from_secs(86_400);

fn task(task_id: i64, api: TaskApi, result: Option<TaskResult>) -> NewTask {
    NewTask {
        task_id,
        api,
        result,
    }
}

async fn tasks_enqueue_idempotently_and_finished_ones_become_jobs(queue: Queue) {
    let batch = [
        task(1, TaskApi::V1, None),
        task(2, TaskApi::V2, None),
        task(3, TaskApi::V1, Some(TaskResult::File(30))),
        task(4, TaskApi::V2, Some(TaskResult::Video)),
    ];
    let first = queue.enqueue_tasks(&batch, DAY).await.unwrap();
    assert_eq!((first.added, first.known, first.handed_over), (4, 0, 2));
    let again = queue.enqueue_tasks(&batch, DAY).await.unwrap();
    assert_eq!((again.added, again.known, again.handed_over), (0, 4, 0));
    let counts = queue.task_counts().await.unwrap();
    assert_eq!((counts.generating, counts.done), (2, 2));
    let three = queue.get_task(3).await.unwrap().unwrap();
    assert_eq!((three.state, three.file_id), (TaskState::Done, Some(30)));
    let four = queue.get_task(4).await.unwrap().unwrap();
    assert_eq!(
        (four.api, four.file_id),
        (TaskApi::V2, Some(4)),
        "a v2 job is keyed by its task"
    );
    let jobs: Vec<i64> = queue
        .list(None, None)
        .await
        .unwrap()
        .iter()
        .map(|j| j.file_id)
        .collect();
    assert_eq!(jobs, [4, 30]);
    assert_eq!(
        queue.status().await.unwrap(),
        queue.status_by_scan().await.unwrap()
    );
    assert_eq!(queue.status().await.unwrap().queued, 2);
    let lines = event_lines(&queue, 30).await;
    assert!(
        lines[0].0 == "from_task" && lines[0].2.contains("task 3 (v1)"),
        "{lines:?}"
    );
    let one = queue.get_task(1).await.unwrap().unwrap();
    assert_eq!(one.deadline_at - one.created_at, DAY.as_millis() as i64);
    let left = queue.claimable().await.unwrap();
    assert_eq!((left.queued, left.generating), (2, 2));
}

async fn a_due_task_is_taken_by_one_poller_until_its_slot_passes(queue: Queue) {
    let batch: Vec<NewTask> = (1..=40).map(|id| task(id, TaskApi::V1, None)).collect();
    queue.enqueue_tasks(&batch, DAY).await.unwrap();
    let takers: Vec<_> = (0..4)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move {
                queue
                    .take_due_tasks(15, Duration::from_secs(60))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut taken = Vec::new();
    for taker in takers {
        taken.extend(taker.await.unwrap().into_iter().map(|t| t.task_id));
    }
    taken.sort_unstable();
    assert_eq!(
        taken,
        (1..=40).collect::<Vec<_>>(),
        "each task taken exactly once"
    );
    assert!(
        queue
            .take_due_tasks(10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    let due = queue.next_task_poll().await.unwrap().unwrap();
    assert!(due > now_millis() + 50_000, "held for the slot");
    let released = PollRecord::Released {
        next_in: Duration::ZERO,
    };
    assert!(queue.record_poll(7, &released).await.unwrap());
    let again = queue
        .take_due_tasks(10, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(again.iter().map(|t| t.task_id).collect::<Vec<_>>(), [7]);
    assert_eq!(again[0].polls, 0, "a released slot is not a poll");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let after_slot = queue
        .take_due_tasks(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        after_slot.len(),
        1,
        "a slot not recorded in time passes to the next poller"
    );
}

async fn a_poll_records_what_it_found(queue: Queue) {
    let batch: Vec<NewTask> = (1..=3).map(|id| task(id, TaskApi::V1, None)).collect();
    queue.enqueue_tasks(&batch, DAY).await.unwrap();
    let pending = PollRecord::Pending {
        minimax_status: Some("Processing"),
        error: None,
        next_in: Duration::from_secs(10),
    };
    assert!(queue.record_poll(1, &pending).await.unwrap());
    let one = queue.get_task(1).await.unwrap().unwrap();
    assert_eq!(
        (one.polls, one.minimax_status.as_deref()),
        (1, Some("Processing"))
    );
    assert!(one.next_poll_at >= now_millis() + 9_000);
    let flaky = PollRecord::Pending {
        minimax_status: None,
        error: Some("HTTP 502"),
        next_in: Duration::from_secs(10),
    };
    queue.record_poll(1, &flaky).await.unwrap();
    let one = queue.get_task(1).await.unwrap().unwrap();
    assert_eq!(
        (
            one.polls,
            one.minimax_status.as_deref(),
            one.last_error.as_deref()
        ),
        (2, Some("Processing"), Some("HTTP 502")),
        "a failed poll keeps MiniMax's last word"
    );
    let failed = PollRecord::Failed {
        reason: "MiniMax reported the task as Fail",
    };
    assert!(queue.record_poll(2, &failed).await.unwrap());
    let two = queue.get_task(2).await.unwrap().unwrap();
    assert_eq!(two.state, TaskState::Failed);
    assert_eq!(
        two.last_error.as_deref(),
        Some("MiniMax reported the task as Fail")
    );
    assert!(
        queue
            .record_poll(3, &PollRecord::Finished(TaskResult::File(33)))
            .await
            .unwrap()
    );
    let three = queue.get_task(3).await.unwrap().unwrap();
    assert_eq!(
        (three.state, three.file_id, three.polls),
        (TaskState::Done, Some(33), 1)
    );
    assert_eq!(
        queue.get(33).await.unwrap().unwrap().state,
        JobState::Queued
    );
    // A task no longer generating takes no more records.
    assert!(!queue.record_poll(2, &pending).await.unwrap());
    assert!(
        !queue
            .record_poll(3, &PollRecord::Finished(TaskResult::File(34)))
            .await
            .unwrap()
    );
    assert!(queue.get(34).await.unwrap().is_none());
    assert_eq!(queue.task_counts().await.unwrap().generating, 1);
}

async fn task_verbs_apply_by_state(queue: Queue) {
    let batch = [
        task(1, TaskApi::V1, None),
        task(2, TaskApi::V2, None),
        task(3, TaskApi::V1, Some(TaskResult::File(30))),
    ];
    queue.enqueue_tasks(&batch, DAY).await.unwrap();
    let cancelled = queue.cancel_tasks(&[1, 3, 9]).await.unwrap();
    assert_eq!(cancelled[0], (1, VerbOutcome::Applied));
    assert!(matches!(cancelled[1], (3, VerbOutcome::Refused(_))));
    assert_eq!(cancelled[2], (9, VerbOutcome::Unknown));
    assert!(
        queue
            .take_due_tasks(10, Duration::from_secs(60))
            .await
            .unwrap()
            .iter()
            .all(|t| t.task_id == 2)
    );
    assert!(
        !queue.poll_task_now(1).await.unwrap(),
        "a cancelled task is not polled"
    );
    let retried = queue.retry_tasks(&[1, 2], DAY).await.unwrap();
    assert_eq!(retried[0], (1, VerbOutcome::Applied));
    assert!(matches!(retried[1], (2, VerbOutcome::Refused(_))));
    assert_eq!(
        queue.get_task(1).await.unwrap().unwrap().state,
        TaskState::Generating
    );
    assert!(
        queue.poll_task_now(2).await.unwrap(),
        "task 2 waited out its slot"
    );
    let due: Vec<i64> = queue
        .take_due_tasks(10, Duration::from_secs(60))
        .await
        .unwrap()
        .iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(due, [1, 2]);
    let listed: Vec<i64> = {
        use futures_util::TryStreamExt;
        queue
            .list_tasks_stream(Some(TaskState::Generating), None)
            .map_ok(|t| t.task_id)
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(listed, [1, 2]);
}

async fn a_v2_task_never_takes_over_a_file_job_of_its_id(queue: Queue) {
    queue.enqueue(&[5]).await.unwrap();
    let report = queue
        .enqueue_tasks(&[task(5, TaskApi::V2, Some(TaskResult::Video))], DAY)
        .await
        .unwrap();
    assert_eq!(report.handed_over, 1);
    let five = queue.get_task(5).await.unwrap().unwrap();
    assert_eq!(five.state, TaskState::Done);
    assert!(five.last_error.unwrap().contains("already a job"));
    assert!(
        event_lines(&queue, 5).await.is_empty(),
        "the file job is untouched"
    );
    assert_eq!(queue.status().await.unwrap().queued, 1);
}

async fn imported_tasks_keep_their_state_and_are_not_doubled(queue: Queue) {
    let (_dir, other) = sqlite().await.unwrap();
    let batch = [
        task(1, TaskApi::V1, None),
        task(2, TaskApi::V2, Some(TaskResult::Video)),
    ];
    other.enqueue_tasks(&batch, DAY).await.unwrap();
    let pending = PollRecord::Pending {
        minimax_status: Some("Queueing"),
        error: None,
        next_in: Duration::from_secs(30),
    };
    other.record_poll(1, &pending).await.unwrap();
    let tasks: Vec<_> = {
        use futures_util::TryStreamExt;
        other
            .list_tasks_stream(None, None)
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(queue.import_tasks(&tasks).await.unwrap(), 2);
    assert_eq!(
        queue.import_tasks(&tasks).await.unwrap(),
        0,
        "ids already here are left alone"
    );
    for original in &tasks {
        assert_eq!(
            &queue.get_task(original.task_id).await.unwrap().unwrap(),
            original
        );
    }
}

/// What only a database shared by several processes (and hosts) can show.
mod postgres_fleet {
    use std::collections::HashSet;
    use std::time::Duration;

    use minimax_dl::queue::testing;
    use minimax_dl::queue::{Queue, ReleaseReason, VerbOutcome, now_millis};

    use crate::support::PgTestDb;

    use super::LEASE;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_opens_of_an_empty_database_all_succeed() {
        let Some(db) = PgTestDb::create().await else {
            return;
        };
        let location = db.location();
        // Four opens at once, each with its own connections (the open
        // future is not `Send`: sqlx's migrator future is not, for every
        // lifetime; joined in one task they still race at the server).
        let opens = (0..4).map(|_| Queue::open(&location));
        let mut queues = Vec::new();
        for opened in futures_util::future::join_all(opens).await {
            queues.push(opened.expect("every open succeeds"));
        }
        // One schema, usable by all of them.
        assert_eq!(queues[0].enqueue(&[1, 2, 3]).await.unwrap().added, 3);
        for queue in &queues {
            assert_eq!(queue.status().await.unwrap().queued, 3);
            queue.close().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn claims_from_eight_processes_never_share_a_job() {
        let Some(db) = PgTestDb::create().await else {
            return;
        };
        let first = Queue::open(&db.location()).await.unwrap();
        let ids: Vec<i64> = (1..=2000).collect();
        first.enqueue(&ids).await.unwrap();
        // Eight queues: eight pools, as eight daemons would have.
        let mut claimers = Vec::new();
        for worker in 0..8 {
            let queue = Queue::open_for_workers(&db.location()).await.unwrap();
            claimers.push(tokio::spawn(async move {
                let owner = format!("host{worker}:0:1:w");
                let mut mine = Vec::new();
                loop {
                    let jobs = queue.claim_batch(&owner, LEASE, 16).await.unwrap();
                    if jobs.is_empty() {
                        queue.close().await;
                        return mine;
                    }
                    mine.extend(jobs.iter().map(|j| j.file_id));
                }
            }));
        }
        let mut seen = HashSet::new();
        for claimer in claimers {
            for id in claimer.await.unwrap() {
                assert!(seen.insert(id), "job {id} claimed twice");
            }
        }
        assert_eq!(seen.len(), 2000);
        let counts = first.status().await.unwrap();
        assert_eq!((counts.running, counts.queued), (2000, 0));
        assert_eq!(counts, first.status_by_scan().await.unwrap());
        first.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn leases_and_due_times_are_judged_on_the_database_clock() {
        let Some(db) = PgTestDb::create().await else {
            return;
        };
        let queue = Queue::open_for_workers(&db.location()).await.unwrap();
        queue.enqueue(&[1, 2]).await.unwrap();
        // The database's clock is an hour behind this host's.
        let hour: i64 = 3_600_000;
        testing::offset_database_clock(&queue, -hour).await.unwrap();
        let job = queue.claim_id(1, "a:0:1:t", LEASE).await.unwrap().unwrap();
        let lease_end = job.lease_expires_at.unwrap();
        assert!(lease_end < now_millis() - hour + 60_000, "{lease_end}");
        // By this host's clock that lease ended long ago; by the database's
        // it is live: nobody takes it, and cancel asks its worker.
        assert!(queue.claim("b:0:1:t", LEASE).await.unwrap().is_none());
        assert_eq!(
            queue.cancel(&[1]).await.unwrap(),
            [(1, VerbOutcome::Requested)]
        );
        // A job released "now" is due now on the database's clock (written
        // as this host's time, it would wait an hour).
        queue.claim_id(2, "a:0:1:t", LEASE).await.unwrap().unwrap();
        queue
            .lease_of(2, "a:0:1:t")
            .release("shutdown", now_millis(), ReleaseReason::HistoryOnly)
            .await
            .unwrap();
        let again = queue.claim("b:0:1:t", LEASE).await.unwrap().unwrap();
        assert_eq!(again.file_id, 2);
        // Two hours later on the database's clock, both leases have run out.
        testing::offset_database_clock(&queue, hour).await.unwrap();
        let reclaimed = queue.claim_batch("c:0:1:t", LEASE, 5).await.unwrap();
        let mut ids: Vec<i64> = reclaimed.iter().map(|j| j.file_id).collect();
        ids.sort();
        assert_eq!(ids, [1, 2]);
        queue.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_waiting_pool_wakes_on_work_from_another_process() {
        let Some(db) = PgTestDb::create().await else {
            return;
        };
        let pool = Queue::open_for_workers(&db.location()).await.unwrap();
        let user = Queue::open(&db.location()).await.unwrap();
        let never = Duration::from_secs(3600);
        let bounded = async |what: &str, wait| {
            tokio::time::timeout(Duration::from_secs(60), wait)
                .await
                .unwrap_or_else(|_| panic!("still waiting after {what}"))
        };
        // The first wait subscribes and returns: the pool looks again.
        bounded("subscribing", pool.wait_for_work(never)).await;
        // An enqueue elsewhere ends a wait of an hour.
        let (_, added) = tokio::join!(bounded("an enqueue", pool.wait_for_work(never)), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            user.enqueue(&[1]).await.unwrap()
        });
        assert_eq!(added.added, 1);
        // So does a job given back, and a pause lifted.
        pool.claim_id(1, "a:0:1:t", LEASE).await.unwrap().unwrap();
        let epoch = user.pause_fleet("1008", "b:0:1:t", LEASE).await.unwrap();
        tokio::join!(bounded("a release", pool.wait_for_work(never)), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            pool.lease_of(1, "a:0:1:t")
                .release("shutdown", now_millis(), ReleaseReason::HistoryOnly)
                .await
                .unwrap()
        });
        tokio::join!(
            bounded("a lifted pause", pool.wait_for_work(never)),
            async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                assert!(user.lift_pause(epoch).await.unwrap());
            }
        );
        pool.close().await;
        user.close().await;
    }
}
