//! Case 4 of the benchmark: the queue alone, in process, through the
//! library API (no network, no files), on SQLite or on PostgreSQL. Run it with
//!
//! ```sh
//! cargo bench --bench queue                  # full sizes (1,000,000 ids), SQLite
//! cargo bench --bench queue -- --smoke       # tiny sizes, for CI
//! cargo bench --bench queue -- --csv out.csv # also append the results to a CSV
//! cargo bench --bench queue -- --pg URL      # the same cases on PostgreSQL
//! ```
//!
//! `benches/run.sh` runs it and appends to its `results.csv`. SQLite
//! databases are created under `$TMPDIR` (the same disk as the downloads in
//! `run.sh`), with the queue's real settings: WAL; `synchronous=NORMAL` for
//! the worker pool's writes (`Queue::open_for_workers`, as `run` opens it),
//! `FULL` for user verbs (`Queue::open`, as `enqueue` and `status` open it).
//!
//! With `--pg URL` (or `MINIMAX_DL_BENCH_PG_URL`) every case runs on a
//! database of its own, made with `CREATE DATABASE` through the URL (its role
//! needs `CREATEDB`) and dropped after; the pool's writes commit with
//! `synchronous_commit=off`, the user verbs' with `on`, as the queue opens
//! them. Its rows are case `4-queue-pg`, and one case is PostgreSQL's alone:
//! three processes (this binary again, in a hidden `--child` mode) sharing
//! one queue, 16 workers each.
//!
//! Measured:
//! - claim→complete cycles per second, 16 tokio tasks claiming like the pool
//!   at concurrency 16, downloads being no-ops; again with the other writes a
//!   real download makes (the API-call window, the verified digest); again
//!   with every commit durable (`synchronous=FULL`, `synchronous_commit=on`);
//!   and with one task alone (no contention for the write lock);
//! - the pool's shape: one claim loop handing jobs to 16 tasks that make the
//!   worker's writes (the ceiling the queue puts on a batch of small files);
//! - enqueue of 1,000,000 ids in one call (target < 10 s on SQLite, < 20 s on
//!   PostgreSQL);
//! - `status` on the 1,000,000-job database (target < 100 ms; a miss makes
//!   the benchmark exit 1, in smoke mode too);
//! - claim→complete and a lone claim on that database (the claim query's
//!   cost grows with the queue).
//!
//! Under `cargo test --all-targets` or `cargo nextest run --all-targets`
//! (no `--bench` argument; nextest lists it as the one test `smoke`) it runs
//! the smoke sizes, so the benchmark is compiled and exercised with the tests: on
//! SQLite, then on PostgreSQL too when `MINIMAX_DL_TEST_PG_URL` is set (as
//! `.ci/run` sets it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use minimax_dl::partial::SizeSource;
use minimax_dl::parts::{CLAIM_LINGER, gather_permits};
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
    /// `4-queue` (SQLite) or `4-queue-pg`.
    case: &'static str,
}

impl Report {
    /// One result: a line on stdout, a row in the CSV.
    fn line(&self, metric: &str, value: f64, unit: &str, target: &str, verdict: &str) {
        println!(
            "{label} {metric:<34} {value:>14.3} {unit:<10} target {target:<10} {verdict}",
            label = if self.case == "4-queue" {
                "queue"
            } else {
                "queue-pg"
            },
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
                "{},minimax-dl,{},{metric},,,{value:.3},{unit},{target},{verdict}",
                self.case, self.mode
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

/// Where the cases' databases are made: files in a temporary directory, or
/// databases on a PostgreSQL server.
enum Backend {
    Sqlite(tempfile::TempDir),
    /// The URL given: its database is where `CREATE DATABASE` is sent.
    Postgres(String),
}

/// One case's database; [`Db::remove`] drops a PostgreSQL one (a SQLite
/// file goes with the temporary directory).
struct Db {
    location: DbLocation,
    pg_drop: Option<(String, String)>,
}

impl Backend {
    /// A fresh, empty database for the case `name`.
    async fn fresh(&self, name: &str) -> Db {
        match self {
            Backend::Sqlite(dir) => Db {
                location: DbLocation(dir.path().join(format!("{name}.db")).display().to_string()),
                pg_drop: None,
            },
            Backend::Postgres(admin) => {
                let db = format!("mdl_bench_{}_{name}", std::process::id());
                pg_admin(admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
                pg_admin(admin, &format!("CREATE DATABASE {db}")).await;
                let mut url = reqwest::Url::parse(admin).expect("the PostgreSQL URL parses");
                url.set_path(&format!("/{db}"));
                Db {
                    location: DbLocation(url.to_string()),
                    pg_drop: Some((admin.clone(), db)),
                }
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Backend::Sqlite(dir) => format!("SQLite databases in {}", dir.path().display()),
            Backend::Postgres(admin) => format!(
                "PostgreSQL databases made through {}",
                DbLocation(admin.clone()).redacted()
            ),
        }
    }
}

/// Runs one statement on the server `admin` names, on a connection of its own.
async fn pg_admin(admin: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the benchmark's PostgreSQL server: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

impl Db {
    /// `workers`: the commit durability of the pool (`run`), else that of
    /// user verbs (`enqueue`, `status`): `Queue::open`.
    async fn open(&self, workers: bool) -> Queue {
        if workers {
            Queue::open_for_workers(&self.location).await
        } else {
            Queue::open(&self.location).await
        }
        .expect("open the queue")
    }

    async fn remove(self) {
        if let Some((admin, db)) = self.pg_drop {
            pg_admin(
                &admin,
                &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            )
            .await;
        }
    }
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
                retry!(queue.lease_of(id, &owner).complete(&path));
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
                queue
                    .lease_of(id, &owner)
                    .complete(&path)
                    .await
                    .expect("complete");
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
        .lease_of(id, owner)
        .record_verified(&verified)
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

/// How many processes share the queue in the fleet case (PostgreSQL only).
const PROCESSES: usize = 3;

/// The variable a `--child` reads its database URL from (not an argument:
/// the command line of a process is visible to every user).
const CHILD_URL_VAR: &str = "MINIMAX_DL_BENCH_CHILD_URL";

/// The variable naming the PostgreSQL server for a benchmark run.
const PG_URL_VAR: &str = "MINIMAX_DL_BENCH_PG_URL";

/// The variable `.ci/run` sets for the test suites: under `cargo test` the
/// smoke sizes run on it too.
const TEST_PG_URL_VAR: &str = "MINIMAX_DL_TEST_PG_URL";

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut smoke = false;
    let mut under_cargo_bench = false;
    let mut csv = None;
    let mut pg = non_empty_var(PG_URL_VAR);
    if let Some(listing) = test_listing() {
        print!("{listing}");
        return;
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => smoke = true,
            "--csv" => csv = args.next().map(PathBuf::from),
            "--pg" => pg = args.next(),
            // Hidden: one of the fleet case's processes (see `processes`).
            "--child" => {
                let workers = args.next().and_then(|w| w.parse().ok()).unwrap_or(TASKS);
                return child(workers).await;
            }
            // `cargo bench` passes --bench; `cargo test --all-targets` does not,
            // and gets the smoke sizes (a few seconds) so the bench cannot rot.
            "--bench" => under_cargo_bench = true,
            _ => {} // filters are not supported
        }
    }
    smoke |= !under_cargo_bench;
    let mode = if smoke { "smoke" } else { "full" };
    let mut ok = true;
    match pg {
        Some(url) => ok &= run_all(Backend::Postgres(url), mode, csv).await,
        None => {
            let dir = tempfile::Builder::new()
                .prefix("minimax-dl-queue-bench")
                .tempdir()
                .expect("temporary directory");
            ok &= run_all(Backend::Sqlite(dir), mode, csv.clone()).await;
            if let Some(url) = non_empty_var(TEST_PG_URL_VAR).filter(|_| !under_cargo_bench) {
                ok &= run_all(Backend::Postgres(url), mode, csv).await;
            }
        }
    }
    if !ok {
        std::process::exit(1);
    }
}

/// What a test runner that lists before it runs (`cargo nextest`: `--list
/// --format terse`, then the binary again with the name) is told: the smoke
/// run is one test, and none is ignored. `None` when not asked to list.
fn test_listing() -> Option<&'static str> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--list") {
        return None;
    }
    Some(if args.iter().any(|a| a == "--ignored") {
        ""
    } else {
        "smoke: test\n"
    })
}

/// Every case on one backend. Returns whether `status` met its target (a
/// miss fails the benchmark: `status` must read kept counts).
async fn run_all(backend: Backend, mode: &'static str, csv: Option<PathBuf>) -> bool {
    let sizes = if mode == "smoke" {
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
    let postgres = matches!(backend, Backend::Postgres(_));
    let report = Report {
        csv,
        mode,
        case: if postgres { "4-queue-pg" } else { "4-queue" },
    };
    println!(
        "queue benchmark ({mode}): {}, {TASKS} tasks, {} worker threads",
        backend.describe(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    pool_cases(&backend, &report, &sizes).await;
    if postgres {
        processes_case(&backend, &report, &sizes).await;
    }
    single_claim_cases(&backend, &report, &sizes).await;
    big_queue_cases(&backend, &report, &sizes).await
}

/// claim -> complete, no-op downloads, in the daemon's shape: one claim
/// loop claiming for every free worker, 16 workers completing (their
/// completions group-committed).
async fn pool_cases(backend: &Backend, report: &Report, sizes: &Sizes) {
    let postgres = matches!(backend, Backend::Postgres(_));
    let (target, floor) = if postgres {
        (">=5000", 5_000.0)
    } else {
        (">=10000", 10_000.0)
    };
    for (workers, full, metric, pool_sync_normal) in [
        (TASKS, false, "claim_complete_per_s", true),
        (64, false, "claim_complete_64_workers_per_s", true),
        (TASKS, true, "claim_complete_with_worker_writes_per_s", true),
        (TASKS, false, "claim_complete_synchronous_full_per_s", false),
    ] {
        let db = backend.fresh(metric).await;
        let queue = db.open(pool_sync_normal).await;
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
        let judged = metric == "claim_complete_per_s";
        report.line(
            metric,
            rate,
            "jobs/s",
            if judged { target } else { "" },
            if judged { verdict(rate >= floor) } else { "" },
        );
        report.line(
            &format!("{metric}_jobs_per_claim"),
            n as f64 / claims as f64,
            "jobs",
            "",
            "",
        );
        queue.close().await;
        db.remove().await;
    }
}

/// The fleet's shape: `PROCESSES` processes (this binary in `--child`
/// mode), each a claim loop with 16 workers as in [`pool_shaped`], on one
/// queue. Timed from the moment all are connected and told to start to the
/// last one's report; every job must be done exactly once.
async fn processes_case(backend: &Backend, report: &Report, sizes: &Sizes) {
    let metric = format!("claim_complete_{PROCESSES}_processes_per_s");
    let db = backend.fresh("processes").await;
    let jobs = sizes.cycle_jobs * PROCESSES;
    let queue = db.open(false).await;
    queue.enqueue(&bench_ids(jobs)).await.expect("enqueue");
    let (n, elapsed, claims) = spawn_children(&db.location, TASKS).await;
    let status = queue.status().await.expect("status");
    assert_eq!(status.done as usize, jobs, "every job done exactly once");
    assert_eq!(n, jobs, "the children's jobs add up to the queue");
    report.line(&metric, n as f64 / elapsed.as_secs_f64(), "jobs/s", "", "");
    report.line(
        &format!("{metric}_jobs_per_claim"),
        n as f64 / claims as f64,
        "jobs",
        "",
        "",
    );
    queue.close().await;
    db.remove().await;
}

/// Starts the children, waits until each has opened the queue, starts them
/// all at once; returns the jobs and claims they report and the time.
async fn spawn_children(location: &DbLocation, workers: usize) -> (usize, Duration, usize) {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let mut children = Vec::new();
    for _ in 0..PROCESSES {
        let mut child = tokio::process::Command::new(&exe)
            .args(["--child", &workers.to_string()])
            .env(CHILD_URL_VAR, &location.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start a child process of the benchmark");
        let stdin = child.stdin.take().expect("the child's stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("the child's stdout")).lines();
        let ready = lines.next_line().await.expect("read from a child");
        assert_eq!(ready.as_deref(), Some("ready"), "a child did not start");
        children.push((child, stdin, lines));
    }
    let start = Instant::now();
    for (_, stdin, _) in &mut children {
        stdin.write_all(b"go\n").await.expect("start a child");
        stdin.flush().await.expect("start a child");
    }
    let (mut n, mut claims) = (0, 0);
    for (_, _, lines) in &mut children {
        let line = lines.next_line().await.expect("read from a child");
        let line = line.expect("a child ended without its result");
        let mut words = line
            .split(' ')
            .skip(1)
            .map(|w| w.parse::<usize>().expect("a count"));
        n += words.next().expect("jobs");
        claims += words.next().expect("claims");
    }
    let elapsed = start.elapsed();
    for (mut child, _, _) in children {
        assert!(
            child.wait().await.expect("a child").success(),
            "a child failed"
        );
    }
    (n, elapsed, claims)
}

/// `--child WORKERS`: opens the queue `CHILD_URL_VAR` names as `run` does,
/// says `ready`, waits for a line on stdin, claims and completes until
/// nothing is left, and says `done JOBS CLAIMS`.
async fn child(workers: usize) {
    let url = std::env::var(CHILD_URL_VAR).expect("a child needs its database URL");
    let queue = Queue::open_for_workers(&DbLocation(url))
        .await
        .expect("open the queue");
    println!("ready");
    // tokio's stdin is a feature the crate does not take: a blocking read
    // on a thread of its own.
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new()))
        .await
        .expect("wait for the start")
        .expect("wait for the start");
    let (n, _, claims) = pool_shaped(&queue, workers, false).await;
    println!("done {n} {claims}");
    queue.close().await;
}

/// For comparison: 16 tasks each claiming one job at a time (no batched
/// claims), and one task alone (nothing to batch at all).
async fn single_claim_cases(backend: &Backend, report: &Report, sizes: &Sizes) {
    for (tasks, metric) in [
        (TASKS, "claim_one_at_a_time_16_tasks_per_s"),
        (1, "claim_complete_one_task_per_s"),
    ] {
        let db = backend.fresh(metric).await;
        let queue = db.open(true).await;
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
        db.remove().await;
    }
}

/// Enqueue of the big queue in one call, `status` on it, claims on it.
/// Returns whether `status` met its target.
async fn big_queue_cases(backend: &Backend, report: &Report, sizes: &Sizes) -> bool {
    let db = backend.fresh("big").await;
    let queue = db.open(false).await;
    let ids = bench_ids(sizes.big_queue);
    let start = Instant::now();
    let added = queue.enqueue(&ids).await.expect("enqueue").added;
    let enqueue = start.elapsed();
    assert_eq!(added as usize, sizes.big_queue);
    let per_million = if matches!(backend, Backend::Postgres(_)) {
        20.0
    } else {
        10.0
    };
    let enqueue_target = per_million * sizes.big_queue as f64 / 1_000_000.0;
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
    let queue = db.open(false).await;
    let status_ok = status_case(&queue, report, sizes).await;
    claims_on_big_queue(&queue, report, sizes).await;
    queue.close().await;
    db.remove().await;
    status_ok
}

async fn status_case(queue: &Queue, report: &Report, sizes: &Sizes) -> bool {
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
    if !status_ok {
        // `status` must stay constant-time (README): a miss is a failure,
        // under `cargo test --all-targets` as under `cargo bench`.
        eprintln!(
            "queue benchmark: status on {} jobs took {med:.1} ms (target < 100 ms): \
             it must read the kept counts (job_counts), not scan the jobs",
            sizes.big_queue
        );
    }
    status_ok
}

/// claim -> complete when the queue is big, then one claim alone (no
/// contention).
async fn claims_on_big_queue(queue: &Queue, report: &Report, sizes: &Sizes) {
    let (n, elapsed, errors) = cycles(queue, TASKS, sizes.big_cycles, false).await;
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
            .lease_of(job.file_id, "bench:0:1:00000000")
            .complete(Path::new("/nonexistent"))
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
}
