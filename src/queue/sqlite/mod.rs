//! The SQLite store: one file, WAL, a pool for reads and one connection for
//! every write of this process. The decisions of most writes are
//! `orchestrate/`'s, written once for both stores; this store supplies its
//! transaction (`SqliteTx`: under the write lock, with this host's time
//! taken once) and the statements.

mod api_calls;
mod copy;
mod fleet;
mod lease;
pub mod open;
mod prune;
mod reads;
mod tasks;
#[cfg(feature = "test-hooks")]
mod testing;
mod uploads;
mod verbs;

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};

use crate::queue::orchestrate::Dialect;
use crate::queue::{Job, JobEvent, Millis, now_millis};

const JOB_COLUMNS: &str = "file_id, state, attempts, next_attempt_at, lease_owner, lease_expires_at, \
     cancel_requested, bytes_expected, size_source, bytes_done, validator, pieces, boot_id, filename, final_path, \
     sha256, last_error, created_at, updated_at, file_host, task_id, task_api";

/// The queue in one SQLite file. Cheap to clone (connection pools inside).
#[derive(Clone, Debug)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
    /// One connection for every write of this process: writers queue here,
    /// in order, instead of colliding on SQLite's lock and sleeping in its
    /// busy handler. Other processes still meet at the lock.
    writer: SqlitePool,
    location: String,
}

impl SqliteStore {
    fn from_pools(pool: SqlitePool, writer: SqlitePool, location: String) -> SqliteStore {
        SqliteStore {
            pool,
            writer,
            location,
        }
    }

    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    pub(crate) async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// A write transaction that takes SQLite's write lock up front, so a
    /// read-then-write never fails on a stale snapshot.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }
}

/// A write transaction and the time it began: the time every statement in
/// it writes (this host's clock; SQLite has none of its own).
pub(crate) struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    now: Millis,
}

impl Dialect for SqliteStore {
    type Tx = SqliteTx;

    async fn begin(&self) -> Result<SqliteTx, sqlx::Error> {
        let tx = self.write_tx().await?;
        Ok(SqliteTx {
            tx,
            now: now_millis(),
        })
    }

    async fn commit(tx: SqliteTx) -> Result<(), sqlx::Error> {
        tx.tx.commit().await
    }

    async fn insert_event(
        tx: &mut SqliteTx,
        file_id: i64,
        kind: &str,
        message: &str,
    ) -> Result<(), sqlx::Error> {
        insert_event(&mut tx.tx, file_id, tx.now, kind, None, Some(message)).await
    }
}

fn job_from_row(row: &SqliteRow) -> Result<Job, sqlx::Error> {
    let attempts = row.try_get::<i64, _>("attempts")?.max(0) as u32;
    let cancel_requested = row.try_get::<i64, _>("cancel_requested")? != 0;
    crate::queue::rows::job_from_row(row, attempts, cancel_requested)
}

/// One history line.
fn event_from_row(row: &SqliteRow) -> Result<JobEvent, sqlx::Error> {
    let attempt = row.try_get::<Option<i64>, _>("attempt")?;
    crate::queue::rows::event_from_row(row, attempt.map(|a| a.max(0) as u32))
}

/// One job by id, in a transaction or straight from the pool.
async fn fetch_job<'e, E>(executor: E, file_id: i64) -> Result<Option<Job>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE file_id = ?1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(file_id)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(job_from_row).transpose()
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
