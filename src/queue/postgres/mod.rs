//! The PostgreSQL store: one database shared by every host of a fleet.
//! Same contract as `sqlite/`, method for method; what differs is where
//! time comes from and how writers meet.
//!
//! - **The database clock.** Every time written or compared in SQL is
//!   `mdl_now_ms()` (Unix ms of the transaction's `now()`), never a host's
//!   clock: leases, retry times and the API-call window mean the same on
//!   every host. The host passes durations (a lease, a retry delay); where
//!   the interface speaks in absolute [`Millis`] (`retry_at`, `not_before`,
//!   the API window's answer) this store converts against its own clock.
//! - **Claims** are one statement: `FOR UPDATE SKIP LOCKED` picks the rows,
//!   so concurrent claimers on any host take disjoint jobs without waiting
//!   on each other.
//! - **Counts** are sharded by connection (`job_counts (state, shard)`) and
//!   kept by statement-level triggers, so no completion waits on a single
//!   counter row; `status` sums 80 rows and is exact.
//!
//! The decisions of most writes are `orchestrate/`'s, written once for
//! both stores; this store supplies its transaction (`PgTx`, whose clock is
//! `mdl_now_ms()`) and the statements, and keeps its single-statement CTEs
//! where one round trip matters (claims, completions, a lease holder's
//! write with its history line).
//!
//! `open.rs` (URLs, redaction, what a database may be opened as, the pool),
//! `lease.rs` (claims, heartbeats, every write by a lease holder),
//! `verbs.rs` (enqueue, retry, cancel, refetch), `reads.rs`, `api_calls.rs`,
//! `fleet.rs` (the fleet row, waiting for work on LISTEN), `copy.rs` (`db
//! copy`), `prune.rs`, `tasks.rs` (generation tasks), `testing.rs`. The schema is `migrations/postgres/`.

mod api_calls;
mod copy;
mod fleet;
mod lease;
pub(crate) mod open;
mod prune;
mod reads;
mod tasks;
#[cfg(feature = "test-hooks")]
mod testing;
mod uploads;
mod verbs;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgRow};
use sqlx::{Postgres, Row, Transaction};

use crate::queue::orchestrate::Dialect;
use crate::queue::{Job, JobEvent, Millis, QueueError, now_millis};

const JOB_COLUMNS: &str = "file_id, state, attempts, next_attempt_at, lease_owner, lease_expires_at, \
     cancel_requested, bytes_expected, size_source, bytes_done, validator, pieces, boot_id, filename, final_path, \
     sha256, last_error, created_at, updated_at, file_host, task_id, task_api";

/// The longest a connect or a call to the database may take
/// (`db_timeout_secs`, 10 s unless set). Process-wide, like the
/// configuration it comes from: set once by the command edge before the
/// queue is opened ([`set_deadline`]).
static DEADLINE_MS: AtomicU64 = AtomicU64::new(10_000);

/// Sets the deadline of every later connect and call (see [`DEADLINE_MS`]).
pub(crate) fn set_deadline(deadline: Duration) {
    let ms = deadline.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
    DEADLINE_MS.store(ms, Ordering::Relaxed);
}

pub(crate) fn deadline() -> Duration {
    Duration::from_millis(DEADLINE_MS.load(Ordering::Relaxed))
}

/// The error of a database that did not answer in time: an I/O timeout,
/// so that it counts as unreachable (`QueueError::is_unreachable`).
pub(crate) fn no_answer() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "no answer within {} (db_timeout_secs)",
            humantime::format_duration(deadline())
        ),
    ))
}

/// Runs one call under the deadline. A server that accepts connections
/// and never answers (a hung host, a half-open connection that TCP has not
/// noticed) otherwise holds the call for ever: neither sqlx nor the socket
/// bounds a wait for an answer.
pub(crate) async fn within<T>(
    call: impl std::future::Future<Output = Result<T, QueueError>>,
) -> Result<T, QueueError> {
    tokio::time::timeout(deadline(), call)
        .await
        .unwrap_or_else(|_| Err(QueueError::Sql(no_answer())))
}

/// The queue in a PostgreSQL database. Cheap to clone (a pool inside).
#[derive(Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
    /// The URL without its password: all that is ever shown.
    location: String,
    /// How to connect (for the listener's own connection). Holds the
    /// password: never printed. Boxed: it is ten times the rest.
    options: Arc<PgConnectOptions>,
    /// Subscribed to new work by the first [`PgStore::wait_for_work`].
    listener: Arc<tokio::sync::Mutex<Option<PgListener>>>,
}

/// By hand: the pool's options hold the password, and their `Debug` prints it.
impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    fn new(pool: PgPool, location: String, options: PgConnectOptions) -> PgStore {
        PgStore {
            pool,
            location,
            options: Arc::new(options),
            listener: Arc::default(),
        }
    }

    pub(crate) async fn close(&self) {
        // A wait in progress keeps its listener until it returns.
        if let Ok(mut listener) = self.listener.try_lock() {
            listener.take();
        }
        self.pool.close().await;
    }
}

/// A transaction of the pool; its statements' clock is `mdl_now_ms()`.
pub(crate) type PgTx = Transaction<'static, Postgres>;

impl Dialect for PgStore {
    type Tx = PgTx;

    async fn begin(&self) -> Result<PgTx, sqlx::Error> {
        self.pool.begin().await
    }

    async fn commit(tx: PgTx) -> Result<(), sqlx::Error> {
        tx.commit().await
    }

    async fn insert_event(
        tx: &mut PgTx,
        file_id: i64,
        kind: &str,
        message: &str,
    ) -> Result<(), sqlx::Error> {
        insert_event(&mut **tx, file_id, kind, message).await
    }
}

/// A delay from now on the host's clock until `at`, never negative: what
/// this store sends instead of an absolute time, which the database adds to
/// its own clock.
fn delay_until(at: Millis) -> i64 {
    at.saturating_sub(now_millis()).max(0)
}

/// A duration as the milliseconds the database adds to its clock (a
/// `bigint`; one too long for it is the longest it holds).
fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// A wait the database computed on its clock, as a time on this host's:
/// now plus the wait.
fn after_wait(wait: Option<i64>) -> Option<Millis> {
    wait.map(|ms| now_millis().saturating_add(ms))
}

/// Decoding is strict on PostgreSQL: `attempts` is `integer` (i32) and
/// `cancel_requested` is `boolean`.
fn job_from_row(row: &PgRow) -> Result<Job, sqlx::Error> {
    let attempts = row.try_get::<i32, _>("attempts")?.max(0) as u32;
    let cancel_requested = row.try_get("cancel_requested")?;
    crate::queue::rows::job_from_row(row, attempts, cancel_requested)
}

/// One history line; `attempt` is `integer` (i32).
fn event_from_row(row: &PgRow) -> Result<JobEvent, sqlx::Error> {
    let attempt = row.try_get::<Option<i32>, _>("attempt")?;
    crate::queue::rows::event_from_row(row, attempt.map(|a| a.max(0) as u32))
}

fn jobs_from_rows(rows: &[PgRow]) -> Result<Vec<Job>, QueueError> {
    Ok(rows
        .iter()
        .map(job_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// One job by id, in a transaction or straight from the pool.
async fn fetch_job<'e, E>(executor: E, file_id: i64) -> Result<Option<Job>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE file_id = $1::bigint");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(file_id)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(job_from_row).transpose()
}

/// Appends a line to a job's history, on the database clock.
async fn insert_event<'e, E>(
    executor: E,
    file_id: i64,
    kind: &str,
    message: &str,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    sqlx::query(
        "INSERT INTO job_events (file_id, at, kind, attempt, message) \
         VALUES ($1::bigint, mdl_now_ms(), $2::text, NULL, $3::text)",
    )
    .bind(file_id)
    .bind(kind)
    .bind(message)
    .execute(executor)
    .await?;
    Ok(())
}

/// Deadlocks and serialisation failures: the statement was rolled back and
/// may simply run again. Two statements of one process that lock several
/// jobs (a heartbeat and a group commit) can lock them in different orders,
/// each following its own plan; PostgreSQL breaks the cycle by failing one.
fn is_retryable(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|d| d.code());
    matches!(code.as_deref(), Some("40P01" | "40001"))
}

/// Runs `attempt` again (up to three times in all) when it failed with a
/// deadlock or serialisation failure. Only for statements that are
/// compare-and-set on their own, so running one twice is running it once.
async fn retry_conflicts<T, F, Fut>(mut attempt: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(e) if tries < 3 && is_retryable(&e) => continue,
            other => return other,
        }
    }
}
