//! The user verbs on SQLite: enqueue, refetch, notes, and the statements
//! of retry and cancel (whose verdicts `orchestrate/verbs.rs` applies).

use super::{SqliteStore, SqliteTx, fetch_job, insert_event};
use crate::queue::orchestrate::{Dialect, VerbStatements};
use crate::queue::state::JobState;
use crate::queue::{EnqueueReport, QueueError, RecordedPath, now_millis};

/// Rows per INSERT when enqueueing: SQLite allows 32766 bound variables.
const ENQUEUE_CHUNK: usize = 4000;

impl SqliteStore {
    pub(crate) async fn enqueue(&self, ids: &[i64]) -> Result<EnqueueReport, QueueError> {
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

    pub(crate) async fn retry_all_failed(&self) -> Result<u64, QueueError> {
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

    pub(crate) async fn refetch(
        &self,
        file_id: i64,
        recorded_sha256: &str,
        path: RecordedPath,
        reason: &str,
    ) -> Result<bool, QueueError> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_at = ?1, last_error = ?2, \
             cancel_requested = 0, sha256 = NULL, bytes_done = 0, bytes_expected = NULL, \
             size_source = NULL, validator = NULL, pieces = NULL, boot_id = NULL, \
             final_path = CASE WHEN ?3 THEN NULL ELSE final_path END, updated_at = ?1 \
             WHERE file_id = ?4 AND state = 'done' AND sha256 = ?5",
        )
        .bind(now)
        .bind(reason)
        .bind(path.forgotten())
        .bind(file_id)
        .bind(recorded_sha256)
        .execute(&mut *tx)
        .await?;
        let applied = done.rows_affected() == 1;
        if applied {
            insert_event(&mut tx, file_id, now, "refetch", None, Some(reason)).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }

    pub(crate) async fn note(
        &self,
        file_id: i64,
        kind: &str,
        message: &str,
    ) -> Result<(), QueueError> {
        let mut tx = self.write_tx().await?;
        insert_event(&mut tx, file_id, now_millis(), kind, None, Some(message)).await?;
        tx.commit().await?;
        Ok(())
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

impl VerbStatements for SqliteStore {
    async fn job_for_verb(
        tx: &mut SqliteTx,
        file_id: i64,
    ) -> Result<Option<(JobState, bool)>, sqlx::Error> {
        let job = fetch_job(&mut *tx.tx, file_id).await?;
        Ok(job.map(|job| (job.state, job.lease_live(tx.now))))
    }

    async fn requeue(tx: &mut SqliteTx, file_id: i64, from: JobState) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_at = ?1, last_error = NULL, \
             cancel_requested = 0, updated_at = ?1 WHERE file_id = ?2 AND state = ?3",
        )
        .bind(tx.now)
        .bind(file_id)
        .bind(from.as_str())
        .execute(&mut *tx.tx)
        .await?;
        SqliteStore::insert_event(
            tx,
            file_id,
            "retried",
            "retry requested by the user: attempts reset",
        )
        .await
    }

    async fn cancel_now(
        tx: &mut SqliteTx,
        file_id: i64,
        from: JobState,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', cancel_requested = 0, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = ?1 WHERE file_id = ?2 AND state = ?3",
        )
        .bind(tx.now)
        .bind(file_id)
        .bind(from.as_str())
        .execute(&mut *tx.tx)
        .await?;
        SqliteStore::insert_event(tx, file_id, "cancelled", "cancelled by the user").await
    }

    async fn ask_worker(tx: &mut SqliteTx, file_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE jobs SET cancel_requested = 1, updated_at = ?1 WHERE file_id = ?2 AND state = 'running'",
        )
        .bind(tx.now)
        .bind(file_id)
        .execute(&mut *tx.tx)
        .await?;
        SqliteStore::insert_event(tx, file_id, "cancel_requested", "asked its worker to stop").await
    }
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
}
