//! The durable job queue. Every state change is one short transaction; the
//! rules deciding which change is allowed live in [`state`], the SQL here only
//! applies them with compare-and-set updates so two processes never race.
//!
//! The queue never touches the network or the archive: it stores facts the
//! worker reports.

pub mod open;
pub mod state;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::oneshot;

pub use state::{CancelVerdict, JobState, RetryPolicy, RetryVerdict};

use crate::partial::{ExpectedSize, Resume, SizeSource};

/// Unix time in milliseconds, the unit of every timestamp in the database.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn millis_after(from: Millis, delay: Duration) -> Millis {
    from.saturating_add(delay.as_millis().min(i64::MAX as u128) as i64)
}

/// Each message already says what went wrong underneath, so the underlying
/// error is kept as a plain field (`cause`), not as the error's `source()`:
/// `{:#}` would otherwise print it two or three times over.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot create the directory {path} for the queue database: {cause}")]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "cannot open the queue database {location}: {cause}. Check that the path is right, readable and writable, and is a minimax-dl SQLite database"
    )]
    Open {
        location: String,
        cause: sqlx::Error,
    },
    #[error(
        "the queue database {location} could not be migrated: {cause}. Is it a minimax-dl database written by a newer version?"
    )]
    Migrate {
        location: String,
        cause: sqlx::migrate::MigrateError,
    },
    #[error("no queue at {location} (run `minimax-dl enqueue` to create one)")]
    Missing { location: String },
    #[error(
        "{location} is not a minimax-dl queue: it is another application's SQLite database, left unchanged. Check --db, MINIMAX_DL_DATABASE or `database` in the config file"
    )]
    NotAQueue { location: String },
    #[error(
        "queue {location} is read-only: enqueue, run, fetch, retry and cancel need to write it. Check its permissions and owner (status, list and show work on a read-only queue)"
    )]
    ReadOnly { location: String },
    #[error(
        "queue {location} was written by an older minimax-dl and needs upgrading, but is read-only here: run `minimax-dl status` once as a user who may write it"
    )]
    Outdated { location: String },
    #[error("queue database error: {0}")]
    Sql(sqlx::Error),
    #[error("job {0} is no longer leased by this worker (it was reclaimed or cancelled)")]
    LeaseLost(i64),
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> QueueError {
        QueueError::Sql(e)
    }
}

/// When a commit reaches the disk. Both keep the database consistent
/// through a crash or power loss; they differ in what a power loss may undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitSync {
    /// Every commit is fsynced before it returns: for user verbs (`enqueue`,
    /// `retry`, `cancel`), whose success the user is told about.
    Full,
    /// Commits are fsynced at the next WAL checkpoint: for worker state
    /// changes, every one of which is safe to lose on power loss (a claim
    /// reverts to queued, a checkpoint to an earlier length that was itself
    /// fsynced, a completion to a recorded digest that is re-verified).
    Normal,
}

/// Which database holds the queue: a SQLite file path or `sqlite:` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbLocation(pub String);

impl DbLocation {
    fn sqlite_path(&self) -> PathBuf {
        let raw = self.0.as_str();
        let stripped = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
            .unwrap_or(raw);
        let stripped = stripped.split('?').next().unwrap_or(stripped);
        PathBuf::from(stripped)
    }
}

/// One file to download, as the queue knows it.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub file_id: i64,
    pub state: JobState,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Millis>,
    pub cancel_requested: bool,
    pub bytes_expected: Option<u64>,
    pub size_source: Option<SizeSource>,
    pub bytes_done: u64,
    pub validator: Option<String>,
    /// Segmented downloads: complete pieces (see `fetch::pieces`).
    pub pieces: Option<String>,
    /// The boot in which the partial bytes were written (see `fetch::resume`).
    #[serde(skip)]
    pub boot_id: Option<String>,
    pub filename: Option<String>,
    pub final_path: Option<String>,
    pub sha256: Option<String>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Job {
    pub fn lease_live(&self, now: Millis) -> bool {
        self.lease_expires_at.is_some_and(|t| t > now)
    }

    /// What the last attempt proved of the partial file.
    pub fn resume(&self) -> Resume {
        Resume {
            bytes_done: self.bytes_done,
            validator: self.validator.clone(),
            total: self.bytes_expected,
            pieces: self.pieces.clone(),
            boot_id: self.boot_id.clone(),
        }
    }

    fn from_row(row: &SqliteRow) -> Result<Job, sqlx::Error> {
        let state: String = row.try_get("state")?;
        let state = JobState::from_str(&state).map_err(|e| sqlx::Error::Decode(e.into()))?;
        let size_source = row
            .try_get::<Option<String>, _>("size_source")?
            .map(|s| SizeSource::from_str(&s))
            .transpose()
            .map_err(|e| sqlx::Error::Decode(e.into()))?;
        let opt_u64 = |name: &str| -> Result<Option<u64>, sqlx::Error> {
            Ok(row
                .try_get::<Option<i64>, _>(name)?
                .map(|v| v.max(0) as u64))
        };
        Ok(Job {
            file_id: row.try_get("file_id")?,
            state,
            attempts: row.try_get::<i64, _>("attempts")?.max(0) as u32,
            next_attempt_at: row.try_get("next_attempt_at")?,
            lease_owner: row.try_get("lease_owner")?,
            lease_expires_at: row.try_get("lease_expires_at")?,
            cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
            bytes_expected: opt_u64("bytes_expected")?,
            size_source,
            bytes_done: row.try_get::<i64, _>("bytes_done")?.max(0) as u64,
            validator: row.try_get("validator")?,
            pieces: row.try_get("pieces")?,
            boot_id: row.try_get("boot_id")?,
            filename: row.try_get("filename")?,
            final_path: row.try_get("final_path")?,
            sha256: row.try_get("sha256")?,
            last_error: row.try_get("last_error")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// One line of a job's history.
#[derive(Clone, Debug, Serialize)]
pub struct JobEvent {
    pub at: Millis,
    pub kind: String,
    pub attempt: Option<u32>,
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EnqueueReport {
    pub added: u64,
    pub skipped: u64,
}

/// Job counts per state, plus the bytes downloaded so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub bytes_done: u64,
}

impl StatusCounts {
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Queued => self.queued,
            JobState::Running => self.running,
            JobState::Done => self.done,
            JobState::Failed => self.failed,
            JobState::Cancelled => self.cancelled,
        }
    }
}

/// What a heartbeat found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// Leases no longer held: the job was reclaimed or cancelled outright.
    pub lost: Vec<i64>,
    /// Jobs whose cancellation a user asked for.
    pub cancel: Vec<i64>,
}

/// What a user verb (retry, cancel) did to one id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerbOutcome {
    Applied,
    /// cancel on a running job: its worker was asked to stop.
    Requested,
    Refused(String),
    Unknown,
}

/// A complete file about to be placed: what `record_verified` stores.
#[derive(Clone, Copy, Debug)]
pub struct VerifiedFile<'a> {
    pub size: u64,
    pub size_source: SizeSource,
    pub sha256: &'a str,
    /// The name the API gave (before sanitising).
    pub filename: Option<&'a str>,
    pub final_path: &'a Path,
}

/// Which jobs a claim may take.
#[derive(Clone, Copy, Debug)]
enum Pick {
    /// Up to this many due jobs.
    Due(usize),
    /// This job, due or not (`fetch ID`).
    One(i64),
}

/// Rows per INSERT when enqueueing: SQLite allows 32766 bound variables.
const ENQUEUE_CHUNK: usize = 4000;

const JOB_COLUMNS: &str = "file_id, state, attempts, next_attempt_at, lease_owner, lease_expires_at, \
     cancel_requested, bytes_expected, size_source, bytes_done, validator, pieces, boot_id, filename, final_path, \
     sha256, last_error, created_at, updated_at";

/// The queue store. Cheap to clone (connection pools inside).
#[derive(Clone, Debug)]
pub struct Queue {
    pool: SqlitePool,
    /// One connection for every write of this process: writers queue here,
    /// in order, instead of colliding on SQLite's lock and sleeping in its
    /// busy handler. Other processes still meet at the lock.
    writer: SqlitePool,
    completions: Arc<CompletionBatch>,
    location: String,
}

/// Completions waiting for the next group commit (see [`Queue::complete`]).
#[derive(Debug, Default)]
struct CompletionBatch {
    waiting: std::sync::Mutex<Vec<PendingCompletion>>,
    /// Held by the caller committing a batch.
    committer: tokio::sync::Mutex<()>,
}

#[derive(Clone, Debug)]
struct Completion {
    file_id: i64,
    owner: String,
    path: String,
}

type PendingCompletion = (Completion, oneshot::Sender<Result<(), QueueError>>);

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Queue {
    /// Opens (creating if missing) the queue database and applies pending
    /// migrations (see [`Queue::open_with`]). A file that exists but is not
    /// a readable SQLite database, or is another application's, is an error,
    /// never silently replaced by or turned into a queue.
    pub async fn open(location: &DbLocation) -> Result<Queue, QueueError> {
        Queue::open_with(location, CommitSync::Full).await
    }

    /// Opens the queue for a worker pool, whose commits need not each wait
    /// for the disk (see [`CommitSync::Normal`]).
    pub async fn open_for_workers(location: &DbLocation) -> Result<Queue, QueueError> {
        Queue::open_with(location, CommitSync::Normal).await
    }

    fn from_pools(pool: SqlitePool, writer: SqlitePool, location: String) -> Queue {
        Queue {
            pool,
            writer,
            completions: Arc::default(),
            location,
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// A write transaction that takes SQLite's write lock up front, so a
    /// read-then-write never fails on a stale snapshot.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    /// Adds ids not yet in the queue; ids already present are counted as
    /// skipped. All or nothing: one transaction for the whole call.
    pub async fn enqueue(&self, ids: &[i64]) -> Result<EnqueueReport, QueueError> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        let mut added = 0u64;
        for chunk in ids.chunks(ENQUEUE_CHUNK) {
            let mut sql = String::from(
                "INSERT INTO jobs (file_id, state, next_attempt_at, created_at, updated_at) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str("(?, 'queued', ?1, ?1, ?1)");
            }
            // Numbered and anonymous parameters do not mix well; number them all.
            let mut sql = number_placeholders(&sql, chunk.len());
            sql.push_str(" ON CONFLICT (file_id) DO NOTHING");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
            for id in chunk {
                query = query.bind(*id);
            }
            added += query.execute(&mut *tx).await?.rows_affected();
        }
        sqlx::query("UPDATE job_counts SET jobs = jobs + ?1 WHERE state = 'queued'")
            .bind(added as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(EnqueueReport {
            added,
            skipped: ids.len() as u64 - added,
        })
    }

    /// Leases the next due job to `owner`: a queued job whose time has come,
    /// or a running job whose worker stopped renewing its lease. Atomic
    /// across processes: the write lock is held from the choice to the update.
    pub async fn claim(&self, owner: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        Ok(self.claim_batch(owner, lease, 1).await?.pop())
    }

    /// Leases up to `limit` due jobs to `owner` in one transaction,
    /// abandoned leases first (the oldest work), then the earliest due queued
    /// jobs. A pool with several free workers claims for all of them at once:
    /// one transaction instead of one per job is most of what lets the queue
    /// hand out thousands of jobs a second.
    pub async fn claim_batch(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Job>, QueueError> {
        self.claim_where(owner, lease, Pick::Due(limit.max(1)))
            .await
    }

    /// Claims one particular job now (`fetch ID`), even if its retry time
    /// has not come: a user asked for it.
    pub async fn claim_id(
        &self,
        file_id: i64,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Job>, QueueError> {
        Ok(self
            .claim_where(owner, lease, Pick::One(file_id))
            .await?
            .pop())
    }

    /// One UPDATE, atomic on its own: SQLite takes the write lock before the
    /// statement reads, so the choice and the lease cannot race another
    /// process. The history line comes from a trigger (migration 0005).
    async fn claim_where(
        &self,
        owner: &str,
        lease: Duration,
        pick: Pick,
    ) -> Result<Vec<Job>, QueueError> {
        let now = now_millis();
        let (chosen, parameter) = match pick {
            // Abandoned leases first (few, and the oldest work), then the
            // earliest due queued jobs: two indexed look-ups, not one OR.
            Pick::Due(limit) => (
                "file_id IN ( \
                   SELECT file_id FROM (SELECT file_id FROM jobs \
                     WHERE state = 'running' AND lease_expires_at < ?3 \
                     ORDER BY next_attempt_at, file_id LIMIT ?4) \
                   UNION ALL \
                   SELECT file_id FROM (SELECT file_id FROM jobs \
                     WHERE state = 'queued' AND next_attempt_at <= ?3 \
                     ORDER BY next_attempt_at, file_id LIMIT ?4) \
                   LIMIT ?4)",
                limit as i64,
            ),
            Pick::One(id) => (
                "file_id = ?4 AND (state = 'queued' OR (state = 'running' AND lease_expires_at < ?3))",
                id,
            ),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'running', lease_owner = ?1, lease_expires_at = ?2, updated_at = ?3 \
             WHERE {chosen} RETURNING {JOB_COLUMNS}"
        )))
        .bind(owner)
        .bind(millis_after(now, lease))
        .bind(now)
        .bind(parameter)
        .fetch_all(&self.writer)
        .await?;
        let mut jobs = rows
            .iter()
            .map(Job::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|job| (job.next_attempt_at, job.file_id));
        Ok(jobs)
    }

    /// Expires at once the leases of owners `is_dead` says are gone (a
    /// daemon killed on this host), so its jobs resume without waiting out
    /// the lease. Returns how many jobs were freed.
    pub async fn expire_leases_of_dead_owners(
        &self,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<u64, QueueError> {
        let owners: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT lease_owner FROM jobs WHERE state = 'running' AND lease_owner IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        let mut freed = 0;
        for owner in owners.iter().filter(|o| is_dead(o)) {
            freed += sqlx::query(
                "UPDATE jobs SET lease_expires_at = 0 WHERE state = 'running' AND lease_owner = ?1",
            )
            .bind(owner)
            .execute(&self.writer)
            .await?
            .rows_affected();
        }
        Ok(freed)
    }

    /// Extends the leases this worker pool holds, one `(file_id, owner)` per
    /// running job. Reports the jobs whose lease is gone (another worker
    /// took them: their task must stop) and those a user asked to cancel.
    pub async fn heartbeat(
        &self,
        leases: &[(i64, String)],
        lease: Duration,
    ) -> Result<Heartbeat, QueueError> {
        let until = millis_after(now_millis(), lease);
        let mut report = Heartbeat::default();
        let mut tx = self.write_tx().await?;
        for (file_id, owner) in leases {
            let row = sqlx::query(
                "UPDATE jobs SET lease_expires_at = ?1 WHERE file_id = ?2 AND state = 'running' AND lease_owner = ?3 \
                 RETURNING cancel_requested",
            )
            .bind(until)
            .bind(file_id)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => report.lost.push(*file_id),
                Some(row) if row.try_get::<i64, _>("cancel_requested")? != 0 => {
                    report.cancel.push(*file_id)
                }
                Some(_) => {}
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Records durable progress of the partial file, and the size it will
    /// be checked against when one is known.
    pub async fn checkpoint(
        &self,
        file_id: i64,
        owner: &str,
        progress: &Resume,
        expected: Option<ExpectedSize>,
    ) -> Result<(), QueueError> {
        let result = sqlx::query(
            "UPDATE jobs SET bytes_done = ?1, bytes_expected = ?2, size_source = ?3, validator = ?4, \
             pieces = ?8, boot_id = ?9, updated_at = ?5 \
             WHERE file_id = ?6 AND state = 'running' AND lease_owner = ?7",
        )
        .bind(progress.bytes_done as i64)
        .bind(expected.map(|e| e.bytes as i64))
        .bind(expected.map(|e| e.source.as_str()))
        .bind(progress.validator.as_deref())
        .bind(now_millis())
        .bind(file_id)
        .bind(owner)
        .bind(progress.pieces.as_deref())
        .bind(progress.boot_id.as_deref())
        .execute(&self.writer)
        .await?;
        lease_held(result.rows_affected(), file_id)
    }

    /// Records the verified size and digest of the complete partial file,
    /// and where it goes. Written before the rename, so a crash after it can
    /// finish the job by re-hashing instead of re-downloading, and never
    /// accepts other bytes.
    pub async fn record_verified(
        &self,
        file_id: i64,
        owner: &str,
        verified: &VerifiedFile<'_>,
    ) -> Result<(), QueueError> {
        let now = now_millis();
        let VerifiedFile {
            size,
            size_source,
            sha256,
            filename,
            final_path,
        } = *verified;
        let update = sqlx::query(
            "UPDATE jobs SET bytes_done = ?1, bytes_expected = ?1, size_source = ?2, sha256 = ?3, pieces = NULL, \
             filename = ?7, final_path = ?8, updated_at = ?4 \
             WHERE file_id = ?5 AND state = 'running' AND lease_owner = ?6",
        )
        .bind(size as i64)
        .bind(size_source.as_str())
        .bind(sha256)
        .bind(now)
        .bind(file_id)
        .bind(owner)
        .bind(filename)
        .bind(final_path.to_string_lossy().into_owned());
        let message = format!(
            "{size} bytes verified against the {} size; sha256 {sha256}",
            size_source.as_str()
        );
        self.leased_transition(file_id, now, update, "verified", &message)
            .await
    }

    /// Forgets a recorded digest whose file is gone or no longer matches.
    pub async fn clear_verified(
        &self,
        file_id: i64,
        owner: &str,
        why: &str,
    ) -> Result<(), QueueError> {
        let now = now_millis();
        let update = sqlx::query(
            "UPDATE jobs SET sha256 = NULL, bytes_done = 0, validator = NULL, pieces = NULL, updated_at = ?1 \
             WHERE file_id = ?2 AND state = 'running' AND lease_owner = ?3",
        )
        .bind(now)
        .bind(file_id)
        .bind(owner);
        self.leased_transition(file_id, now, update, "restarted", why)
            .await
    }

    /// The file is verified and in place: the job is done.
    ///
    /// Concurrent calls share one statement (group commit, the way LevelDB
    /// batches concurrent writers): the caller that finds the committer free
    /// commits every completion waiting, and the others find theirs already
    /// done. Each still returns only once its own completion is committed.
    pub async fn complete(
        &self,
        file_id: i64,
        owner: &str,
        final_path: &Path,
    ) -> Result<(), QueueError> {
        let completion = Completion {
            file_id,
            owner: owner.to_string(),
            path: final_path.to_string_lossy().into_owned(),
        };
        let (reply, mut outcome) = oneshot::channel();
        lock(&self.completions.waiting).push((completion.clone(), reply));
        let turn = self.completions.committer.lock().await;
        match outcome.try_recv() {
            Ok(result) => return result,
            // Still waiting, so ours is in the batch this caller takes.
            Err(oneshot::error::TryRecvError::Empty) => {}
            // Taken by a committer that was dropped mid-way: do it alone.
            Err(oneshot::error::TryRecvError::Closed) => {
                drop(turn);
                return self.complete_after_lost_reply(&completion).await;
            }
        }
        // Completions that are ready to be made (workers finishing at the
        // same moment) join this batch: yield while the batch still grows.
        // This waits only for runnable tasks, never for a timer.
        let mut waiting = lock(&self.completions.waiting).len();
        loop {
            tokio::task::yield_now().await;
            let now_waiting = lock(&self.completions.waiting).len();
            if now_waiting == waiting {
                break;
            }
            waiting = now_waiting;
        }
        let batch = std::mem::take(&mut *lock(&self.completions.waiting));
        // One completion per job in the statement: a second one for the same
        // job (a stale worker's, say) is answered on its own afterwards, so
        // it cannot be told of the other's success.
        let mut seen = HashSet::new();
        let (firsts, repeats): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|(c, _)| seen.insert(c.file_id));
        let (completions, replies): (Vec<Completion>, Vec<_>) = firsts.into_iter().unzip();
        match self.complete_many(&completions).await {
            Ok(done) => {
                for (completion, reply) in completions.iter().zip(replies) {
                    let held = u64::from(done.contains(&completion.file_id));
                    let _ = reply.send(lease_held(held, completion.file_id));
                }
            }
            // Each alone, so every caller gets the error of its own.
            Err(_) => {
                for (completion, reply) in completions.iter().zip(replies) {
                    let _ = reply.send(self.complete_alone(completion).await);
                }
            }
        }
        for (completion, reply) in repeats {
            let _ = reply.send(self.complete_alone(&completion).await);
        }
        drop(turn);
        match outcome.await {
            Ok(result) => result,
            Err(_) => self.complete_after_lost_reply(&completion).await,
        }
    }

    async fn complete_alone(&self, completion: &Completion) -> Result<(), QueueError> {
        let done = self.complete_many(std::slice::from_ref(completion)).await?;
        lease_held(
            u64::from(done.contains(&completion.file_id)),
            completion.file_id,
        )
    }

    /// A committer took this completion and was dropped before answering:
    /// its statement may or may not have committed. Done at this path means
    /// it did.
    async fn complete_after_lost_reply(&self, completion: &Completion) -> Result<(), QueueError> {
        match self.complete_alone(completion).await {
            Err(QueueError::LeaseLost(id)) => match self.get(id).await? {
                Some(job)
                    if job.state == JobState::Done
                        && job.final_path.as_deref() == Some(completion.path.as_str()) =>
                {
                    Ok(())
                }
                _ => Err(QueueError::LeaseLost(id)),
            },
            other => other,
        }
    }

    /// Many completions in one UPDATE (atomic on its own; the history lines
    /// come from a trigger, migration 0005). Returns the jobs whose lease was
    /// still held: the others were reclaimed or cancelled meanwhile.
    async fn complete_many(&self, completions: &[Completion]) -> Result<HashSet<i64>, sqlx::Error> {
        let rows: Vec<(i64, &str, &str)> = completions
            .iter()
            .map(|c| (c.file_id, c.owner.as_str(), c.path.as_str()))
            .collect();
        let rows = serde_json::to_string(&rows).expect("completions serialise");
        let done: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'done', final_path = c.path, lease_owner = NULL, \
             lease_expires_at = NULL, last_error = NULL, cancel_requested = 0, updated_at = ?1 \
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS owner, value ->> 2 AS path \
                   FROM json_each(?2)) AS c \
             WHERE jobs.file_id = c.id AND jobs.state = 'running' AND jobs.lease_owner = c.owner \
             RETURNING file_id",
        )
        .bind(now_millis())
        .bind(rows)
        .fetch_all(&self.writer)
        .await?;
        Ok(done.into_iter().collect())
    }

    /// A failure that counts against the job's attempts. With `retry_at` the
    /// job waits in `queued` until then; without, it ends `failed`.
    pub async fn record_failure(
        &self,
        file_id: i64,
        owner: &str,
        error: &str,
        retry_at: Option<Millis>,
    ) -> Result<(), QueueError> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        let (state, next, kind) = match retry_at {
            Some(at) => ("queued", at, "retry_scheduled"),
            None => ("failed", now, "failed"),
        };
        let row = sqlx::query(
            "UPDATE jobs SET state = ?1, attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = ?4 \
             WHERE file_id = ?5 AND state = 'running' AND lease_owner = ?6 RETURNING attempts",
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(now)
        .bind(file_id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(QueueError::LeaseLost(file_id));
        };
        let attempt = row.try_get::<i64, _>("attempts")? as u32;
        let message = match retry_at {
            Some(at) => format!("{error}; next attempt in {}", describe_delay(at - now)),
            None => error.to_string(),
        };
        insert_event(&mut tx, file_id, now, kind, Some(attempt), Some(&message)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives a job back to the queue without counting an attempt: shutdown,
    /// rate limits, account-level pauses, a full disk, or a transfer that made
    /// progress before failing. Partial bytes stay.
    pub async fn release(
        &self,
        file_id: i64,
        owner: &str,
        reason: &str,
        not_before: Millis,
        set_last_error: bool,
    ) -> Result<(), QueueError> {
        let now = now_millis();
        let update = sqlx::query(
            "UPDATE jobs SET state = 'queued', next_attempt_at = ?1, \
             last_error = CASE WHEN ?2 THEN ?3 ELSE last_error END, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = ?4 \
             WHERE file_id = ?5 AND state = 'running' AND lease_owner = ?6",
        )
        .bind(not_before)
        .bind(set_last_error)
        .bind(reason)
        .bind(now)
        .bind(file_id)
        .bind(owner);
        self.leased_transition(file_id, now, update, "released", reason)
            .await
    }

    /// The worker stopped a job whose cancellation was requested.
    pub async fn confirm_cancelled(&self, file_id: i64, owner: &str) -> Result<(), QueueError> {
        let now = now_millis();
        let update = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', cancel_requested = 0, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = ?1 \
             WHERE file_id = ?2 AND state = 'running' AND lease_owner = ?3",
        )
        .bind(now)
        .bind(file_id)
        .bind(owner);
        self.leased_transition(file_id, now, update, "cancelled", "stopped by its worker")
            .await
    }

    /// Runs a worker's update (which must match only while `owner` holds the
    /// lease) and appends its history line, in one transaction.
    async fn leased_transition(
        &self,
        file_id: i64,
        now: Millis,
        update: sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments>,
        kind: &str,
        message: &str,
    ) -> Result<(), QueueError> {
        let mut tx = self.write_tx().await?;
        let result = update.execute(&mut *tx).await?;
        lease_held(result.rows_affected(), file_id)?;
        insert_event(&mut tx, file_id, now, kind, None, Some(message)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `retry`: failed or cancelled jobs back to `queued`, attempts reset.
    pub async fn retry(&self, ids: &[i64]) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
        let mut outcomes = Vec::with_capacity(ids.len());
        for &id in ids {
            let mut tx = self.write_tx().await?;
            let Some(job) = fetch_job(&mut tx, id).await? else {
                outcomes.push((id, VerbOutcome::Unknown));
                continue;
            };
            let outcome = match state::retry_verdict(job.state) {
                RetryVerdict::Refuse(why) => VerbOutcome::Refused(why.to_string()),
                RetryVerdict::Requeue => {
                    requeue_for_retry(&mut tx, id, job.state).await?;
                    VerbOutcome::Applied
                }
            };
            tx.commit().await?;
            outcomes.push((id, outcome));
        }
        Ok(outcomes)
    }

    /// `retry --all-failed`: returns how many jobs went back to the queue.
    pub async fn retry_all_failed(&self) -> Result<u64, QueueError> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO job_events (file_id, at, kind, message) \
             SELECT file_id, ?1, 'retried', 'retry --all-failed: attempts reset' FROM jobs WHERE state = 'failed'",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let result = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_at = ?1, last_error = NULL, \
             cancel_requested = 0, updated_at = ?1 WHERE state = 'failed'",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(result.rows_affected())
    }

    /// `cancel`: queued jobs (and running ones whose worker died) are
    /// cancelled at once; a live worker is asked to stop.
    pub async fn cancel(&self, ids: &[i64]) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
        let mut outcomes = Vec::with_capacity(ids.len());
        for &id in ids {
            let now = now_millis();
            let mut tx = self.write_tx().await?;
            let Some(job) = fetch_job(&mut tx, id).await? else {
                outcomes.push((id, VerbOutcome::Unknown));
                continue;
            };
            let outcome = match state::cancel_verdict(job.state, job.lease_live(now)) {
                CancelVerdict::Refuse(why) => VerbOutcome::Refused(why.to_string()),
                CancelVerdict::CancelNow => {
                    sqlx::query(
                        "UPDATE jobs SET state = 'cancelled', cancel_requested = 0, lease_owner = NULL, \
                         lease_expires_at = NULL, updated_at = ?1 WHERE file_id = ?2 AND state = ?3",
                    )
                    .bind(now)
                    .bind(id)
                    .bind(job.state.as_str())
                    .execute(&mut *tx)
                    .await?;
                    insert_event(
                        &mut tx,
                        id,
                        now,
                        "cancelled",
                        None,
                        Some("cancelled by the user"),
                    )
                    .await?;
                    VerbOutcome::Applied
                }
                CancelVerdict::AskWorker => {
                    sqlx::query(
                        "UPDATE jobs SET cancel_requested = 1, updated_at = ?1 WHERE file_id = ?2 AND state = 'running'",
                    )
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    insert_event(
                        &mut tx,
                        id,
                        now,
                        "cancel_requested",
                        None,
                        Some("asked its worker to stop"),
                    )
                    .await?;
                    VerbOutcome::Requested
                }
            };
            tx.commit().await?;
            outcomes.push((id, outcome));
        }
        Ok(outcomes)
    }

    /// Counts per state from `job_counts` (kept by triggers): constant time
    /// however long the queue.
    pub async fn status(&self) -> Result<StatusCounts, QueueError> {
        let rows = sqlx::query("SELECT state, jobs, bytes FROM job_counts")
            .fetch_all(&self.pool)
            .await?;
        fold_counts(&rows)
    }

    /// The same counts computed from the jobs themselves (a full scan), to
    /// check `status` against.
    pub async fn status_by_scan(&self) -> Result<StatusCounts, QueueError> {
        let rows = sqlx::query(
            "SELECT state, count(*) AS jobs, coalesce(sum(bytes_done), 0) AS bytes FROM jobs GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        fold_counts(&rows)
    }

    /// Jobs in `file_id` order, read a page at a time: `list` on a queue of
    /// millions prints its first line at once, holds one page in memory, and
    /// never keeps a read open while its output is being consumed (an open
    /// read would stop the daemon's WAL from being checkpointed).
    pub fn list_stream(
        &self,
        state: Option<JobState>,
        limit: Option<u64>,
    ) -> futures_util::stream::BoxStream<'_, Result<Job, QueueError>> {
        use futures_util::{StreamExt, TryStreamExt, stream};
        const PAGE: u64 = 1000;
        let pages = stream::try_unfold((None, limit), move |(after, left)| async move {
            if left == Some(0) {
                return Ok(None);
            }
            let page = left.map_or(PAGE, |l| l.min(PAGE));
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) \
                 AND (?2 IS NULL OR file_id > ?2) ORDER BY file_id LIMIT ?3"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(state.map(JobState::as_str))
                .bind(after)
                .bind(page as i64)
                .fetch_all(&self.pool)
                .await?;
            let jobs = rows
                .iter()
                .map(Job::from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let Some(last) = jobs.last().map(|job| job.file_id) else {
                return Ok(None);
            };
            // A short page was the last one.
            let state = if jobs.len() as u64 == page {
                (Some(last), left.map(|l| l - page))
            } else {
                (None, Some(0))
            };
            Ok::<_, QueueError>(Some((stream::iter(jobs.into_iter().map(Ok)), state)))
        });
        pages.try_flatten().boxed()
    }

    /// [`Queue::list_stream`], collected.
    pub async fn list(
        &self,
        state: Option<JobState>,
        limit: Option<u64>,
    ) -> Result<Vec<Job>, QueueError> {
        use futures_util::TryStreamExt;
        self.list_stream(state, limit).try_collect().await
    }

    pub async fn get(&self, file_id: i64) -> Result<Option<Job>, QueueError> {
        let mut conn = self.pool.acquire().await?;
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE file_id = ?1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(file_id)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(row.as_ref().map(Job::from_row).transpose()?)
    }

    pub async fn events(&self, file_id: i64) -> Result<Vec<JobEvent>, QueueError> {
        let rows = sqlx::query(
            "SELECT at, kind, attempt, message FROM job_events WHERE file_id = ?1 ORDER BY id",
        )
        .bind(file_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(JobEvent {
                    at: row.try_get("at")?,
                    kind: row.try_get("kind")?,
                    attempt: row.try_get::<Option<i64>, _>("attempt")?.map(|a| a as u32),
                    message: row.try_get("message")?,
                })
            })
            .collect()
    }

    /// When the earliest queued job becomes due (None when nothing is
    /// queued), so an idle worker can sleep until then.
    pub async fn next_due(&self) -> Result<Option<Millis>, QueueError> {
        let row = sqlx::query("SELECT min(next_attempt_at) AS t FROM jobs WHERE state = 'queued'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("t")?)
    }

    /// Counts one API call against the cap of `per_minute` calls in any
    /// `window`, if the cap allows it now. Returns `None` when the call may
    /// go, or when the oldest call in the window leaves it.
    pub async fn reserve_api_call(
        &self,
        per_minute: u32,
        window: Duration,
    ) -> Result<Option<Millis>, QueueError> {
        let now = now_millis();
        let window_ms = window.as_millis() as i64;
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM api_calls WHERE at <= ?1")
            .bind(now - window_ms)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT count(*) AS n, min(at) AS oldest FROM api_calls")
            .fetch_one(&mut *tx)
            .await?;
        let count: i64 = row.try_get("n")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        let verdict = if count < i64::from(per_minute) {
            sqlx::query("INSERT INTO api_calls (at) VALUES (?1)")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            None
        } else {
            Some(oldest.unwrap_or(now) + window_ms + 1)
        };
        tx.commit().await?;
        Ok(verdict)
    }

    /// Appends a note to a job's history without changing its state.
    pub async fn note(&self, file_id: i64, kind: &str, message: &str) -> Result<(), QueueError> {
        let mut tx = self.write_tx().await?;
        insert_event(&mut tx, file_id, now_millis(), kind, None, Some(message)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Raw access for tests and benchmarks that need to stage unusual states.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Rows of `(state, jobs, bytes)` into counts.
fn fold_counts(rows: &[SqliteRow]) -> Result<StatusCounts, QueueError> {
    let mut counts = StatusCounts::default();
    for row in rows {
        let state: String = row.try_get("state")?;
        let n = row.try_get::<i64, _>("jobs")?.max(0) as u64;
        counts.bytes_done += row.try_get::<i64, _>("bytes")?.max(0) as u64;
        match JobState::from_str(&state) {
            Ok(JobState::Queued) => counts.queued = n,
            Ok(JobState::Running) => counts.running = n,
            Ok(JobState::Done) => counts.done = n,
            Ok(JobState::Failed) => counts.failed = n,
            Ok(JobState::Cancelled) => counts.cancelled = n,
            Err(_) => {}
        }
    }
    Ok(counts)
}

fn lease_held(rows_affected: u64, file_id: i64) -> Result<(), QueueError> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(QueueError::LeaseLost(file_id))
    }
}

/// `(?, 'queued', ?1, ...)` repeated: turn each bare `?` into `?2`, `?3`, ...
/// so it can sit beside the shared `?1` timestamp.
fn number_placeholders(sql: &str, rows: usize) -> String {
    let mut out = String::with_capacity(sql.len() + rows * 6);
    let mut next = 2;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '?' && !chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push_str(&next.to_string());
            next += 1;
        }
    }
    out
}

async fn fetch_job(
    tx: &mut Transaction<'static, Sqlite>,
    file_id: i64,
) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE file_id = ?1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(file_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(Job::from_row).transpose()
}

async fn requeue_for_retry(
    tx: &mut Transaction<'static, Sqlite>,
    file_id: i64,
    from: JobState,
) -> Result<(), sqlx::Error> {
    let now = now_millis();
    sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_at = ?1, last_error = NULL, \
         cancel_requested = 0, updated_at = ?1 WHERE file_id = ?2 AND state = ?3",
    )
    .bind(now)
    .bind(file_id)
    .bind(from.as_str())
    .execute(&mut **tx)
    .await?;
    insert_event(
        tx,
        file_id,
        now,
        "retried",
        None,
        Some("retry requested by the user: attempts reset"),
    )
    .await
}

async fn insert_event(
    tx: &mut Transaction<'static, Sqlite>,
    file_id: i64,
    at: Millis,
    kind: &str,
    attempt: Option<u32>,
    message: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO job_events (file_id, at, kind, attempt, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(file_id)
    .bind(at)
    .bind(kind)
    .bind(attempt.map(i64::from))
    .bind(message)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// "in 2m 30s" style text for event messages.
pub fn describe_delay(millis: i64) -> String {
    let secs = (millis.max(0) as u64).div_ceil(1000);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_after_the_shared_first() {
        assert_eq!(
            number_placeholders("(?, 'queued', ?1),(?, 'queued', ?1)", 2),
            "(?2, 'queued', ?1),(?3, 'queued', ?1)"
        );
    }

    #[test]
    fn sqlite_locations_accept_paths_and_urls() {
        assert_eq!(
            DbLocation("/tmp/q.db".into()).sqlite_path(),
            PathBuf::from("/tmp/q.db")
        );
        assert_eq!(
            DbLocation("sqlite:///tmp/q.db".into()).sqlite_path(),
            PathBuf::from("/tmp/q.db")
        );
        assert_eq!(
            DbLocation("sqlite:q.db?mode=rwc".into()).sqlite_path(),
            PathBuf::from("q.db")
        );
    }

    async fn fresh_queue(dir: &tempfile::TempDir) -> Queue {
        let location = DbLocation(dir.path().join("q.db").to_string_lossy().into_owned());
        Queue::open_for_workers(&location).await.unwrap()
    }

    async fn event_lines(queue: &Queue, file_id: i64) -> Vec<(String, Option<u32>, String)> {
        queue
            .events(file_id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.attempt, e.message.unwrap_or_default()))
            .collect()
    }

    #[tokio::test]
    async fn a_batch_claim_takes_abandoned_leases_first_then_the_earliest_due() {
        let dir = tempfile::tempdir().unwrap();
        let queue = fresh_queue(&dir).await;
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

    #[tokio::test]
    async fn concurrent_completions_commit_together_and_each_learns_its_own_fate() {
        let dir = tempfile::tempdir().unwrap();
        let queue = fresh_queue(&dir).await;
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
                (job.file_id, queue.complete(job.file_id, owner, &path).await)
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
                .complete(3, "w:0:1:1", Path::new("/archive/3.mp4"))
                .await,
            Err(QueueError::LeaseLost(3))
        ));
    }

    #[tokio::test]
    async fn a_stale_completion_in_the_same_batch_is_refused_not_told_of_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let queue = fresh_queue(&dir).await;
        queue.enqueue(&[1, 2]).await.unwrap();
        let jobs = queue
            .claim_batch("new", Duration::from_secs(30), 2)
            .await
            .unwrap();
        assert_eq!(jobs.len(), 2);
        // Polled together, the two land in one batch: the first takes the
        // committer and yields, the second joins the waiting list.
        let path = Path::new("/archive/1.mp4");
        let (current, stale) = tokio::join!(
            queue.complete(1, "new", path),
            queue.complete(1, "stale", path),
        );
        current.unwrap();
        assert!(matches!(stale, Err(QueueError::LeaseLost(1))), "{stale:?}");
        let lines = event_lines(&queue, 1).await;
        assert_eq!(lines.iter().filter(|l| l.0 == "done").count(), 1);
    }
}
