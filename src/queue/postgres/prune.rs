//! `prune` on PostgreSQL: old done jobs and their history deleted a batch
//! at a time, in one statement per batch.

use super::PgStore;
use crate::queue::{Millis, PruneBatch, QueueError, now_millis};

impl PgStore {
    /// `done_before` is this host's time: it becomes an age, compared on
    /// the database's clock (which wrote `updated_at`), so the boundary
    /// moves later by the statement's time in flight: milliseconds, nothing
    /// beside an age of days. The candidates are
    /// the next `limit` ids after `after`, in key order; the delete takes
    /// those still done and old enough (a job requeued meanwhile stays), and
    /// their history goes with them (`ON DELETE CASCADE`).
    pub(crate) async fn prune_done(
        &self,
        done_before: Millis,
        after: Option<i64>,
        limit: u32,
    ) -> Result<PruneBatch, QueueError> {
        let age_ms = now_millis().saturating_sub(done_before);
        let row: (Option<i64>, i64) = sqlx::query_as(
            "WITH picked AS ( \
               SELECT file_id FROM jobs \
               WHERE state = 'done' AND updated_at < mdl_now_ms() - $1::bigint \
                 AND file_id > $2::bigint \
               ORDER BY file_id LIMIT $3::bigint \
               FOR UPDATE), \
             gone AS ( \
               DELETE FROM jobs WHERE file_id IN (SELECT file_id FROM picked) \
               RETURNING file_id) \
             SELECT (SELECT max(file_id) FROM picked), (SELECT count(*) FROM gone)",
        )
        .bind(age_ms)
        .bind(after.unwrap_or(i64::MIN))
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await?;
        let (last, removed) = row;
        Ok(PruneBatch {
            removed: removed.max(0) as u64,
            last,
        })
    }
}
