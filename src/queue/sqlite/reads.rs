//! Reads on SQLite: counts, lists, one job, its history, the next due time.

use sqlx::Row;

use super::{JOB_COLUMNS, SqliteStore, fetch_job, job_from_row};
use crate::queue::{Job, JobEvent, JobState, Millis, QueueError, StatusCounts};

impl SqliteStore {
    /// Up to `page` jobs after `after`, in `file_id` order.
    pub(crate) async fn list_page(
        &self,
        state: Option<JobState>,
        after: Option<i64>,
        page: u64,
    ) -> Result<Vec<Job>, QueueError> {
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
        Ok(rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?)
    }

    pub(crate) async fn status(&self) -> Result<StatusCounts, QueueError> {
        let rows = sqlx::query("SELECT state, jobs, bytes FROM job_counts")
            .fetch_all(&self.pool)
            .await?;
        Ok(crate::queue::rows::counts_from_rows(&rows)?)
    }

    pub(crate) async fn status_by_scan(&self) -> Result<StatusCounts, QueueError> {
        let rows = sqlx::query(
            "SELECT state, count(*) AS jobs, coalesce(sum(bytes_done), 0) AS bytes FROM jobs GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(crate::queue::rows::counts_from_rows(&rows)?)
    }

    pub(crate) async fn get(&self, file_id: i64) -> Result<Option<Job>, QueueError> {
        Ok(fetch_job(&self.pool, file_id).await?)
    }

    pub(crate) async fn events(&self, file_id: i64) -> Result<Vec<JobEvent>, QueueError> {
        let rows = sqlx::query(
            "SELECT at, kind, attempt, message FROM job_events WHERE file_id = ?1 ORDER BY id",
        )
        .bind(file_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(super::event_from_row(row)?))
            .collect()
    }

    pub(crate) async fn next_due(&self) -> Result<Option<Millis>, QueueError> {
        let row = sqlx::query("SELECT min(next_attempt_at) AS t FROM jobs WHERE state = 'queued'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("t")?)
    }
}
