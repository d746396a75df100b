//! Case 4 of the benchmark: the SQLite queue alone, in process, through the
//! library API (no network, no files). Run it with
//!
//! ```sh
//! cargo bench --bench queue                  # full sizes (1,000,000 ids)
//! cargo bench --bench queue -- --smoke       # tiny sizes, for CI
//! cargo bench --bench queue -- --csv out.csv # also append the results to a CSV
//! ```
//!
//! `benches/run.sh` runs it and appends to its `results.csv`. Databases are
//! created under `$TMPDIR` (the same disk as the downloads in `run.sh`), with
//! the queue's real settings: WAL; `synchronous=NORMAL` for the worker pool's
//! writes (`Queue::open_for_workers`, as `run` opens it), `FULL` for user
//! verbs (`Queue::open`, as `enqueue` and `status` open it).
//!
//! Measured:
//! - claim→complete cycles per second, 16 tokio tasks claiming like the pool
//!   at concurrency 16, downloads being no-ops; again with the other writes a
//!   real download makes (the API-call window, the verified digest); again
//!   with every commit fsynced (`synchronous=FULL`); and with one task alone
//!   (no contention for the write lock);
//! - the pool's shape: one claim loop handing jobs to 16 tasks that make the
//!   worker's writes (the ceiling the queue puts on a batch of small files);
//! - enqueue of 1,000,000 ids in one call (target < 10 s);
//! - `status` on the 1,000,000-job database (target < 100 ms; a miss makes
//!   the benchmark exit 1, in smoke mode too);
//! - claim→complete and a lone claim on that database (the claim query's
//!   cost grows with the queue).
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs the smoke
//! sizes, so the benchmark is compiled and exercised with the tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use minimax_dl::daemon::{CLAIM_LINGER, gather_permits};
use minimax_dl::partial::SizeSource;
use minimax_dl::queue::{DbLocation, Queue, VerifiedFile};

const LEASE: Duration = Duration::from_secs(30);
const TASKS: usize = 16;

struct Sizes {
    cycle_jobs: usize,
    big_queue: usize,
    big_cycles: usize,
    status_calls: usize,
}

struct Report {
    csv: Option<PathBuf>,
    mode: &'static str,
}

impl Report {
    /// One result: a line on stdout, a row in the CSV.
    fn line(&self, metric: &str, value: f64, unit: &str, target: &str, verdict: &str) {
        println!(
            "queue {metric:<34} {value:>14.3} {unit:<10} target {target:<10} {verdict}",
            target = if target.is_empty() { "-" } else { target },
            verdict = if verdict.is_empty() { "" } else { verdict },
        );
        if let Some(path) = &self.csv {
            let new = !path.exists()
                || std::fs::metadata(path)
                    .map(|m| m.len() == 0)
                    .unwrap_or(true);
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
            if new {
                writeln!(file, "{}", CSV_HEADER).unwrap();
            }
            writeln!(
                file,
                "4-queue,minimax-dl,{},{metric},,,{value:.3},{unit},{target},{verdict}",
                self.mode
            )
            .unwrap();
        }
    }
}

/// The same columns as `benches/run.sh` writes to `results.csv`.
const CSV_HEADER: &str = "case,tool,mode,metric,files,file_bytes,value,unit,target,verdict";

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// `workers`: the commit durability of the pool (`run`), else that of
/// user verbs (`enqueue`, `status`): `Queue::open`.
async fn open(dir: &Path, name: &str, workers: bool) -> Queue {
    let location = DbLocation(dir.join(name).to_string_lossy().into_owned());
    if workers {
        Queue::open_for_workers(&location).await
    } else {
        Queue::open(&location).await
    }
    .expect("open the queue")
}

/// `tasks` tasks claim and complete until the queue is empty or `limit`
/// cycles were started; `full` adds the other writes a real download makes.
/// Returns the jobs done, the time, and the queue errors met (each retried;
/// "database is locked" means a writer waited out the 30 s busy timeout).
async fn cycles(queue: &Queue, tasks: usize, limit: usize, full: bool) -> (usize, Duration, usize) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let started = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (queue, started, errors) = (queue.clone(), started.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            let owner = format!("bench:0:{}:{t:08x}", std::process::id());
            // Retries a queue write until it succeeds, counting failures.
            macro_rules! retry {
                ($what:expr) => {
                    loop {
                        match $what.await {
                            Ok(v) => break v,
                            Err(e) => {
                                if errors.fetch_add(1, Ordering::SeqCst) == 0 {
                                    eprintln!("queue error (retried): {e}");
                                }
                                assert!(
                                    errors.load(Ordering::SeqCst) < 1000,
                                    "too many queue errors"
                                );
                            }
                        }
                    }
                };
            }
            loop {
                if started.fetch_add(1, Ordering::SeqCst) >= limit {
                    return;
                }
                let Some(job) = retry!(queue.claim(&owner, LEASE)) else {
                    return;
                };
                let id = job.file_id;
                let path = PathBuf::from(format!("/nonexistent/{id}-output_aigc.mp4"));
                if full {
                    worker_writes(&queue, id, &owner, &path).await;
                }
                retry!(queue.complete(id, &owner, &path));
            }
        }));
    }
    for handle in handles {
        handle.await.expect("task");
    }
    let elapsed = start.elapsed();
    let status = queue.status().await.expect("status");
    (
        status.done as usize,
        elapsed,
        errors.load(std::sync::atomic::Ordering::SeqCst),
    )
}

/// The shape of `run --concurrency 16` without the network: one claim loop
/// that claims, in one transaction, a job for every free worker (as the
/// daemon does), handing each to a task that completes it, at most `TASKS`
/// at once; `full` adds the other writes a real download makes. Returns the
/// jobs done and the time.
async fn pool_shaped(queue: &Queue, workers: usize, full: bool) -> (usize, Duration, usize) {
    use std::sync::Arc;
    let permits = Arc::new(tokio::sync::Semaphore::new(workers));
    let owner = format!("bench:0:{}:pool", std::process::id());
    let start = Instant::now();
    let (mut n, mut claims) = (0usize, 0usize);
    loop {
        let first = permits.clone().acquire_owned().await.expect("permit");
        let batch = gather_permits(&permits, first, workers, CLAIM_LINGER).await;
        let jobs = queue
            .claim_batch(&owner, LEASE, batch.len())
            .await
            .expect("claim");
        claims += 1;
        if jobs.is_empty() {
            break;
        }
        n += jobs.len();
        for (job, permit) in jobs.into_iter().zip(batch) {
            let (queue, owner) = (queue.clone(), owner.clone());
            tokio::spawn(async move {
                let id = job.file_id;
                let path = PathBuf::from(format!("/nonexistent/{id}-output_aigc.mp4"));
                if full {
                    worker_writes(&queue, id, &owner, &path).await;
                }
                queue.complete(id, &owner, &path).await.expect("complete");
                drop(permit);
            });
        }
    }
    let _all = permits.acquire_many(workers as u32).await.expect("permits");
    (n, start.elapsed(), claims)
}

/// What the worker writes besides claim and complete: the API-call window
/// (rate gate) and the verified digest before the rename.
async fn worker_writes(queue: &Queue, id: i64, owner: &str, path: &Path) {
    queue
        .reserve_api_call(u32::MAX, Duration::from_secs(61))
        .await
        .expect("api window");
    let digest = "0".repeat(64);
    let verified = VerifiedFile {
        size: 1 << 20,
        size_source: SizeSource::Cdn,
        sha256: &digest,
        filename: Some("output_aigc.mp4"),
        final_path: path,
    };
    queue
        .record_verified(id, owner, &verified)
        .await
        .expect("verified");
}

/// `n` distinct file ids of the same magnitude as real ones.
fn bench_ids(n: usize) -> Vec<i64> {
    (1..=n as i64).map(|i| 300_000_000_000_000 + i).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut smoke = false;
    let mut under_cargo_bench = false;
    let mut csv = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => smoke = true,
            "--csv" => csv = args.next().map(PathBuf::from),
            // `cargo bench` passes --bench; `cargo test --all-targets` does not,
            // and gets the smoke sizes (a few seconds) so the bench cannot rot.
            "--bench" => under_cargo_bench = true,
            _ => {} // filters are not supported
        }
    }
    smoke |= !under_cargo_bench;
    let sizes = if smoke {
        Sizes {
            cycle_jobs: 400,
            big_queue: 20_000,
            big_cycles: 50,
            status_calls: 5,
        }
    } else {
        Sizes {
            cycle_jobs: 8_000,
            big_queue: 1_000_000,
            big_cycles: 160,
            status_calls: 20,
        }
    };
    let report = Report {
        csv,
        mode: if smoke { "smoke" } else { "full" },
    };
    let dir = tempfile::Builder::new()
        .prefix("minimax-dl-queue-bench")
        .tempdir()
        .expect("temporary directory");
    println!(
        "queue benchmark ({}): databases in {}, {TASKS} tasks, {} worker threads",
        report.mode,
        dir.path().display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // claim -> complete, no-op downloads, in the daemon's shape: one claim
    // loop claiming for every free worker, 16 workers completing (their
    // completions group-committed).
    for (workers, full, metric, pool_sync_normal) in [
        (TASKS, false, "claim_complete_per_s", true),
        (64, false, "claim_complete_64_workers_per_s", true),
        (TASKS, true, "claim_complete_with_worker_writes_per_s", true),
        (TASKS, false, "claim_complete_synchronous_full_per_s", false),
    ] {
        let queue = open(dir.path(), &format!("{metric}.db"), pool_sync_normal).await;
        queue
            .enqueue(&bench_ids(sizes.cycle_jobs))
            .await
            .expect("enqueue");
        let (n, elapsed, claims) = pool_shaped(&queue, workers, full).await;
        assert_eq!(
            queue.status().await.expect("status").done as usize,
            sizes.cycle_jobs,
            "every job done exactly once"
        );
        assert_eq!(n, sizes.cycle_jobs);
        let rate = n as f64 / elapsed.as_secs_f64();
        let (target, ok) = if metric == "claim_complete_per_s" {
            (">=10000", rate >= 10_000.0)
        } else {
            ("", true)
        };
        report.line(
            metric,
            rate,
            "jobs/s",
            target,
            if target.is_empty() { "" } else { verdict(ok) },
        );
        report.line(
            &format!("{metric}_jobs_per_claim"),
            n as f64 / claims as f64,
            "jobs",
            "",
            "",
        );
        queue.close().await;
    }

    // For comparison: 16 tasks each claiming one job at a time (no batched
    // claims), and one task alone (nothing to batch at all).
    for (tasks, metric) in [
        (TASKS, "claim_one_at_a_time_16_tasks_per_s"),
        (1, "claim_complete_one_task_per_s"),
    ] {
        let queue = open(dir.path(), &format!("{metric}.db"), true).await;
        queue
            .enqueue(&bench_ids(sizes.cycle_jobs))
            .await
            .expect("enqueue");
        let (n, elapsed, errors) = cycles(&queue, tasks, usize::MAX, false).await;
        assert_eq!(n, sizes.cycle_jobs, "every job done exactly once");
        report.line(metric, n as f64 / elapsed.as_secs_f64(), "jobs/s", "", "");
        if errors > 0 {
            report.line(
                &format!("{metric}_queue_errors"),
                errors as f64,
                "errors",
                "",
                "",
            );
        }
        queue.close().await;
    }

    // enqueue of the big queue in one call.
    let queue = open(dir.path(), "big.db", false).await;
    let ids = bench_ids(sizes.big_queue);
    let start = Instant::now();
    let added = queue.enqueue(&ids).await.expect("enqueue").added;
    let enqueue = start.elapsed();
    assert_eq!(added as usize, sizes.big_queue);
    let enqueue_target = 10.0 * sizes.big_queue as f64 / 1_000_000.0;
    report.line(
        &format!("enqueue_{}_ids_s", sizes.big_queue),
        enqueue.as_secs_f64(),
        "s",
        &format!("<{enqueue_target}"),
        verdict(enqueue.as_secs_f64() < enqueue_target),
    );
    report.line(
        "enqueue_ids_per_s",
        sizes.big_queue as f64 / enqueue.as_secs_f64(),
        "ids/s",
        "",
        "",
    );

    // status on it: the first call of a freshly opened pool, then the median.
    queue.close().await;
    let queue = open(dir.path(), "big.db", false).await;
    let mut times = Vec::new();
    for _ in 0..sizes.status_calls {
        let start = Instant::now();
        let counts = queue.status().await.expect("status");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(counts.queued as usize, sizes.big_queue);
    }
    let first = times[0];
    let med = median(times);
    let status_ok = med < 100.0;
    report.line(
        &format!("status_{}_jobs_ms", sizes.big_queue),
        med,
        "ms",
        "<100",
        verdict(status_ok),
    );
    report.line(
        &format!("status_{}_jobs_first_ms", sizes.big_queue),
        first,
        "ms",
        "",
        "",
    );

    // claim -> complete when the queue is big.
    let (n, elapsed, errors) = cycles(&queue, TASKS, sizes.big_cycles, false).await;
    report.line(
        &format!("claim_complete_{}_jobs_per_s", sizes.big_queue),
        n as f64 / elapsed.as_secs_f64(),
        "jobs/s",
        "",
        "",
    );
    report.line(
        &format!("claim_complete_{}_jobs_queue_errors", sizes.big_queue),
        errors as f64,
        "errors",
        "",
        "",
    );
    // One claim alone on the big queue (no contention).
    let mut times = Vec::new();
    for _ in 0..sizes.status_calls {
        let start = Instant::now();
        let job = queue
            .claim("bench:0:1:00000000", LEASE)
            .await
            .expect("claim")
            .expect("a job");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        queue
            .complete(job.file_id, "bench:0:1:00000000", Path::new("/nonexistent"))
            .await
            .expect("complete");
    }
    report.line(
        &format!("claim_{}_jobs_ms", sizes.big_queue),
        median(times),
        "ms",
        "",
        "",
    );
    queue.close().await;
    if !status_ok {
        // `status` must stay constant-time (README): a miss is a failure,
        // under `cargo test --all-targets` as under `cargo bench`.
        eprintln!(
            "queue benchmark: status on {} jobs took {med:.1} ms (target < 100 ms): \
             it must read the kept counts (job_counts), not scan the jobs",
            sizes.big_queue
        );
        std::process::exit(1);
    }
}
