//! Reads on PostgreSQL: counts, lists, one job, its history, the next due time.

use super::{JOB_COLUMNS, PgStore, after_wait, fetch_job, jobs_from_rows};
use crate::queue::{Job, JobEvent, JobState, Millis, QueueError, StatusCounts};

impl PgStore {
    /// Up to `page` jobs after `after`, in `file_id` order. Two texts rather
    /// than one with `($1 IS NULL OR state = $1)`: a prepared statement is
    /// given a generic plan after five runs, and the OR form plans badly.
    pub(crate) async fn list_page(
        &self,
        state: Option<JobState>,
        after: Option<i64>,
        page: u64,
    ) -> Result<Vec<Job>, QueueError> {
        let after = after.unwrap_or(i64::MIN);
        let page = page.min(i64::MAX as u64) as i64;
        let rows = match state {
            None => {
                let sql = format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE file_id > $1::bigint \
                     ORDER BY file_id LIMIT $2::bigint"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(after)
                    .bind(page)
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(state) => {
                let sql = format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE state = $1::text AND file_id > $2::bigint \
                     ORDER BY file_id LIMIT $3::bigint"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(state.as_str())
                    .bind(after)
                    .bind(page)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        jobs_from_rows(&rows)
    }

    /// The shards summed: 80 rows, exact, one snapshot.
    pub(crate) async fn status(&self) -> Result<StatusCounts, QueueError> {
        let rows = sqlx::query(
            "SELECT state, sum(jobs)::bigint AS jobs, sum(bytes)::bigint AS bytes \
             FROM job_counts GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(crate::queue::rows::counts_from_rows(&rows)?)
    }

    pub(crate) async fn status_by_scan(&self) -> Result<StatusCounts, QueueError> {
        let rows = sqlx::query(
            "SELECT state, count(*) AS jobs, coalesce(sum(bytes_done), 0)::bigint AS bytes \
             FROM jobs GROUP BY state",
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
            "SELECT at, kind, attempt, message FROM job_events WHERE file_id = $1::bigint ORDER BY id",
        )
        .bind(file_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(super::event_from_row(row)?))
            .collect()
    }

    /// On this host's clock: how long the database says it is until the
    /// earliest queued job is due, added to this host's now.
    pub(crate) async fn next_due(&self) -> Result<Option<Millis>, QueueError> {
        let wait: Option<i64> = sqlx::query_scalar(
            "SELECT min(next_attempt_at) - mdl_now_ms() FROM jobs WHERE state = 'queued'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(after_wait(wait))
    }
}
