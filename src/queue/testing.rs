//! Test support: staging states that the interface cannot reach in a test's
//! time (a job failed three times, a lease held by another host, calls made
//! by an earlier run). Typed, so tests need not know the schema; every
//! store implements them. Nothing here runs outside tests and benchmarks.

use super::store::Backend;
use super::{JobState, Millis, Queue, QueueError};
use crate::partial::SizeSource;

/// Columns of one job to overwrite as they are; `None` leaves one alone.
/// Written in one statement, so the store's own bookkeeping (counts,
/// history triggers) sees it like any other update.
#[derive(Clone, Debug, Default)]
pub struct JobPatch {
    /// `bytes_expected` and `size_source`.
    pub expected: Option<(u64, SizeSource)>,
    pub state: Option<JobState>,
    pub attempts: Option<u32>,
    pub next_attempt_at: Option<Millis>,
    pub last_error: Option<String>,
    /// Each lease column alone: writing `lease_owner`, even unchanged, is
    /// what records a claim.
    pub lease_owner: Option<String>,
    /// A done job's `final_path` and `sha256`.
    pub placed: Option<(String, String)>,
    pub lease_expires_at: Option<Millis>,
    pub bytes_done: Option<u64>,
    pub filename: Option<String>,
    /// The host holding the job's partial (or final) file.
    pub file_host: Option<String>,
}

/// Overwrites columns of one job. Returns whether the job exists.
pub async fn patch_job(queue: &Queue, file_id: i64, patch: &JobPatch) -> Result<bool, QueueError> {
    on_store!(queue, s => s.patch_job(file_id, patch).await)
}

/// Adds `n` to the kept count of `state` alone, as if jobs existed that
/// the jobs themselves do not show: tells a kept count from a scan.
pub async fn inflate_count(queue: &Queue, state: JobState, n: i64) -> Result<(), QueueError> {
    on_store!(queue, s => s.inflate_count(state, n).await)
}

/// Records `n` API calls made at `at`, as an earlier run would have.
pub async fn record_api_calls(queue: &Queue, at: Millis, n: u32) -> Result<(), QueueError> {
    on_store!(queue, s => s.record_api_calls(at, n).await)
}

/// Holds the store's write lock until the guard is dropped: every writer,
/// in this process or another, waits meanwhile.
pub async fn hold_write_lock(queue: &Queue) -> Result<WriteLock, QueueError> {
    on_store!(queue, s => s.hold_write_lock().await)
}

/// See [`hold_write_lock`]. Dropping it lets go too, a moment later.
pub struct WriteLock {
    held: Held,
}

/// The transaction holding the lock, whichever store it is in.
enum Held {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl WriteLock {
    pub(super) fn sqlite(held: sqlx::Transaction<'static, sqlx::Sqlite>) -> WriteLock {
        WriteLock {
            held: Held::Sqlite(held),
        }
    }

    pub(super) fn postgres(held: sqlx::Transaction<'static, sqlx::Postgres>) -> WriteLock {
        WriteLock {
            held: Held::Postgres(held),
        }
    }

    /// Lets go of the lock now.
    pub async fn release(self) -> Result<(), QueueError> {
        match self.held {
            Held::Sqlite(tx) => tx.rollback().await?,
            Held::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

/// SQLite: takes the queue's mark (`PRAGMA application_id`) off the file,
/// as every queue made before the mark was. A PostgreSQL queue has no mark:
/// an error says so.
pub async fn remove_sqlite_mark(queue: &Queue) -> Result<(), QueueError> {
    match &queue.store {
        Backend::Sqlite(s) => s.remove_mark().await,
        Backend::Postgres(_) => Err(QueueError::Unsupported {
            what: "removing the SQLite mark",
        }),
    }
}

/// PostgreSQL: runs the database's clock (`mdl_now_ms`, `mdl_clock_ms`)
/// `offset_ms` away from the server's real one, as if the database server's
/// clock and the hosts' disagreed; 0 puts it back. For the whole database,
/// every connection. SQLite has no clock of its own: an error says so.
pub async fn offset_database_clock(queue: &Queue, offset_ms: i64) -> Result<(), QueueError> {
    match &queue.store {
        Backend::Postgres(s) => s.offset_clock(offset_ms).await,
        Backend::Sqlite(_) => Err(QueueError::Unsupported {
            what: "moving the database clock",
        }),
    }
}
