//! `prune` on SQLite: old done jobs and their history deleted a batch at a
//! time.

use sqlx::Row;

use super::SqliteStore;
use crate::queue::{Millis, PruneBatch, QueueError};

impl SqliteStore {
    /// The candidates are read outside the write lock, in `file_id` order
    /// from `after` (so a whole prune reads the table once); the delete
    /// checks them again, so a job requeued in between stays.
    pub(crate) async fn prune_done(
        &self,
        done_before: Millis,
        after: Option<i64>,
        limit: u32,
    ) -> Result<PruneBatch, QueueError> {
        // `+state`: walk the primary key in order, not the state index
        // (which would sort every done job for each batch).
        let ids: Vec<i64> = sqlx::query(
            "SELECT file_id FROM jobs WHERE +state = 'done' AND updated_at < ?1 \
             AND file_id > coalesce(?2, -9223372036854775808) ORDER BY file_id LIMIT ?3",
        )
        .bind(done_before)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| row.try_get("file_id"))
        .collect::<Result<_, _>>()?;
        let Some(&last) = ids.last() else {
            return Ok(PruneBatch::default());
        };
        let list = serde_json::to_string(&ids).unwrap_or_default();
        let mut tx = self.write_tx().await?;
        let chosen = "SELECT file_id FROM jobs WHERE file_id IN (SELECT value FROM json_each(?1)) \
                      AND +state = 'done' AND updated_at < ?2";
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM job_events WHERE file_id IN ({chosen})"
        )))
        .bind(&list)
        .bind(done_before)
        .execute(&mut *tx)
        .await?;
        let removed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM jobs WHERE file_id IN ({chosen})"
        )))
        .bind(&list)
        .bind(done_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(PruneBatch {
            removed,
            last: Some(last),
        })
    }
}
