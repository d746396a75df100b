//! The SQLite store: one file, WAL, a pool for reads and one connection for
//! every write of this process.

mod api_calls;
mod lease;
pub mod open;
mod reads;
mod testing;
mod verbs;

use std::str::FromStr;

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};

use crate::partial::SizeSource;
use crate::queue::{Job, JobState, Millis};

const JOB_COLUMNS: &str = "file_id, state, attempts, next_attempt_at, lease_owner, lease_expires_at, \
     cancel_requested, bytes_expected, size_source, bytes_done, validator, pieces, boot_id, filename, final_path, \
     sha256, last_error, created_at, updated_at, file_host";

/// The queue in one SQLite file. Cheap to clone (connection pools inside).
#[derive(Clone, Debug)]
pub struct SqliteStore {
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
}

fn job_from_row(row: &SqliteRow) -> Result<Job, sqlx::Error> {
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
        file_host: row.try_get("file_host")?,
    })
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
