//! The user verbs on PostgreSQL: enqueue, refetch, notes, and the
//! statements of retry and cancel (whose verdicts `orchestrate/verbs.rs`
//! applies): each row read under a row lock, a lease judged on the
//! database clock, each write one statement with its history line.

use std::str::FromStr;

use sqlx::Row;

use super::{PgStore, PgTx};
use crate::queue::orchestrate::VerbStatements;
use crate::queue::state::JobState;
use crate::queue::{EnqueueReport, QueueError, RecordedPath};

/// Ids per INSERT when enqueueing. An array is one parameter whatever its
/// length: the chunk only bounds one message (400 KB).
const ENQUEUE_CHUNK: usize = 50_000;

/// Moves a job back to the queue (`$1`) from the state the verb read (`$2`).
const REQUEUE: &str = "WITH u AS ( \
       UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_at = mdl_now_ms(), \
         last_error = NULL, cancel_requested = false, updated_at = mdl_now_ms() \
       WHERE file_id = $1::bigint AND state = $2::text \
       RETURNING file_id, updated_at) \
     INSERT INTO job_events (file_id, at, kind, attempt, message) \
     SELECT file_id, updated_at, 'retried', NULL, 'retry requested by the user: attempts reset' FROM u";

const CANCEL_NOW: &str = "WITH u AS ( \
       UPDATE jobs SET state = 'cancelled', cancel_requested = false, lease_owner = NULL, \
         lease_expires_at = NULL, updated_at = mdl_now_ms() \
       WHERE file_id = $1::bigint AND state = $2::text \
       RETURNING file_id, updated_at) \
     INSERT INTO job_events (file_id, at, kind, attempt, message) \
     SELECT file_id, updated_at, 'cancelled', NULL, 'cancelled by the user' FROM u";

const ASK_WORKER: &str = "WITH u AS ( \
       UPDATE jobs SET cancel_requested = true, updated_at = mdl_now_ms() \
       WHERE file_id = $1::bigint AND state = 'running' AND $2::text = 'running' \
       RETURNING file_id, updated_at) \
     INSERT INTO job_events (file_id, at, kind, attempt, message) \
     SELECT file_id, updated_at, 'cancel_requested', NULL, 'asked its worker to stop' FROM u";

impl PgStore {
    /// One transaction; ids in key order (index pages filled in turn, not
    /// at random: twice as fast at a million). The statement trigger counts
    /// the new rows and wakes the fleet at commit.
    pub(crate) async fn enqueue(&self, ids: &[i64]) -> Result<EnqueueReport, QueueError> {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut tx = self.pool.begin().await?;
        let mut added = 0u64;
        for chunk in sorted.chunks(ENQUEUE_CHUNK) {
            added += sqlx::query(
                "INSERT INTO jobs (file_id, state, next_attempt_at, created_at, updated_at) \
                 SELECT id, 'queued', mdl_now_ms(), mdl_now_ms(), mdl_now_ms() \
                 FROM unnest($1::bigint[]) AS id ORDER BY id \
                 ON CONFLICT (file_id) DO NOTHING",
            )
            .bind(chunk)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(EnqueueReport {
            added,
            skipped: ids.len() as u64 - added,
        })
    }

    pub(crate) async fn retry_all_failed(&self) -> Result<u64, QueueError> {
        let result = sqlx::query(
            "WITH u AS ( \
               UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_at = mdl_now_ms(), \
                 last_error = NULL, cancel_requested = false, updated_at = mdl_now_ms() \
               WHERE state = 'failed' \
               RETURNING file_id, updated_at) \
             INSERT INTO job_events (file_id, at, kind, attempt, message) \
             SELECT file_id, updated_at, 'retried', NULL, 'retry --all-failed: attempts reset' FROM u",
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// One statement: the update (only while done with this digest) and
    /// its history line.
    pub(crate) async fn refetch(
        &self,
        file_id: i64,
        recorded_sha256: &str,
        path: RecordedPath,
        reason: &str,
    ) -> Result<bool, QueueError> {
        let result = sqlx::query(
            "WITH u AS ( \
               UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_at = mdl_now_ms(), \
                 last_error = $4::text, cancel_requested = false, sha256 = NULL, bytes_done = 0, \
                 bytes_expected = NULL, size_source = NULL, validator = NULL, pieces = NULL, \
                 boot_id = NULL, final_path = CASE WHEN $3::boolean THEN NULL ELSE final_path END, \
                 updated_at = mdl_now_ms() \
               WHERE file_id = $1::bigint AND state = 'done' AND sha256 = $2::text \
               RETURNING file_id, updated_at) \
             INSERT INTO job_events (file_id, at, kind, attempt, message) \
             SELECT file_id, updated_at, 'refetch', NULL, $4::text FROM u",
        )
        .bind(file_id)
        .bind(recorded_sha256)
        .bind(path.forgotten())
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub(crate) async fn note(
        &self,
        file_id: i64,
        kind: &str,
        message: &str,
    ) -> Result<(), QueueError> {
        Ok(super::insert_event(&self.pool, file_id, kind, message).await?)
    }
}

impl VerbStatements for PgStore {
    /// Under a row lock held until the verb's transaction ends; the lease
    /// judged on the database clock.
    async fn job_for_verb(
        tx: &mut PgTx,
        file_id: i64,
    ) -> Result<Option<(JobState, bool)>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT state, coalesce(lease_expires_at > mdl_now_ms(), false) AS lease_live \
             FROM jobs WHERE file_id = $1::bigint FOR UPDATE",
        )
        .bind(file_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let state: String = row.try_get("state")?;
        let state = JobState::from_str(&state).map_err(|e| sqlx::Error::Decode(e.into()))?;
        Ok(Some((state, row.try_get("lease_live")?)))
    }

    async fn requeue(tx: &mut PgTx, file_id: i64, from: JobState) -> Result<(), sqlx::Error> {
        apply(tx, REQUEUE, file_id, from).await
    }

    async fn cancel_now(tx: &mut PgTx, file_id: i64, from: JobState) -> Result<(), sqlx::Error> {
        apply(tx, CANCEL_NOW, file_id, from).await
    }

    async fn ask_worker(tx: &mut PgTx, file_id: i64) -> Result<(), sqlx::Error> {
        apply(tx, ASK_WORKER, file_id, JobState::Running).await
    }
}

/// Runs one of the verbs' update-and-history statements (`$1` the job,
/// `$2` the state the verb read).
async fn apply(
    tx: &mut PgTx,
    statement: &'static str,
    file_id: i64,
    from: JobState,
) -> Result<(), sqlx::Error> {
    sqlx::query(statement)
        .bind(file_id)
        .bind(from.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
