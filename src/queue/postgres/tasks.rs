//! Generation tasks on PostgreSQL: the statements of the tasks' writes
//! (the order and the decisions are `orchestrate/tasks.rs`'s), times on the
//! database clock, a task read for a write under a row lock; due tasks
//! taken with `FOR UPDATE SKIP LOCKED` (hosts polling at once take disjoint
//! tasks without waiting on each other); the reads.

use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::PgRow;

use super::{PgStore, PgTx, after_wait, millis};
use crate::queue::orchestrate::TaskStatements;
use crate::queue::rows::{TASK_COLUMNS, bind_task};
use crate::queue::task::{NewTask, Task, TaskCounts, TaskState};
use crate::queue::{Millis, QueueError};

fn tasks_from_rows(rows: &[PgRow]) -> Result<Vec<Task>, QueueError> {
    Ok(rows
        .iter()
        .map(crate::queue::rows::task_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// One task by id, locked for the caller's transaction when `lock`.
async fn fetch_task<'e, E>(
    executor: E,
    task_id: i64,
    lock: bool,
) -> Result<Option<Task>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = $1::bigint{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(task_id)
        .fetch_optional(executor)
        .await?;
    row.as_ref()
        .map(crate::queue::rows::task_from_row)
        .transpose()
}

impl PgStore {
    pub(crate) async fn take_due_tasks(
        &self,
        limit: usize,
        slot: Duration,
    ) -> Result<Vec<Task>, QueueError> {
        let sql = format!(
            "UPDATE tasks SET next_poll_at = mdl_now_ms() + $1::bigint WHERE task_id IN ( \
               SELECT task_id FROM tasks WHERE state = 'generating' AND next_poll_at <= mdl_now_ms() \
               ORDER BY next_poll_at LIMIT $2::bigint FOR UPDATE SKIP LOCKED) \
             RETURNING {TASK_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(millis(slot))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        let mut tasks = tasks_from_rows(&rows)?;
        tasks.sort_by_key(|t| t.task_id);
        Ok(tasks)
    }

    pub(crate) async fn poll_task_now(&self, task_id: i64) -> Result<bool, QueueError> {
        let updated = sqlx::query(
            "UPDATE tasks SET next_poll_at = mdl_now_ms() \
             WHERE task_id = $1::bigint AND state = 'generating' AND next_poll_at > mdl_now_ms()",
        )
        .bind(task_id)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    pub(crate) async fn get_task(&self, task_id: i64) -> Result<Option<Task>, QueueError> {
        Ok(fetch_task(&self.pool, task_id, false).await?)
    }

    /// Up to `page` tasks after `after`, in task id order.
    pub(crate) async fn list_tasks_page(
        &self,
        state: Option<TaskState>,
        after: Option<i64>,
        page: u64,
    ) -> Result<Vec<Task>, QueueError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE ($1::text IS NULL OR state = $1::text) \
             AND task_id > $2::bigint ORDER BY task_id LIMIT $3::bigint"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state.map(TaskState::as_str))
            .bind(after.unwrap_or(i64::MIN))
            .bind(page.min(i64::MAX as u64) as i64)
            .fetch_all(&self.pool)
            .await?;
        tasks_from_rows(&rows)
    }

    pub(crate) async fn task_counts(&self) -> Result<TaskCounts, QueueError> {
        let rows = sqlx::query(
            "SELECT state, count(*) AS n, COALESCE(sum(polls), 0)::bigint AS polls FROM tasks GROUP BY state",
        )
            .fetch_all(&self.pool)
            .await?;
        Ok(crate::queue::rows::task_counts_from_rows(&rows)?)
    }

    pub(crate) async fn next_task_poll(&self) -> Result<Option<Millis>, QueueError> {
        // A wait on the database clock, turned into a time on this host's.
        let wait: Option<i64> = sqlx::query_scalar(
            "SELECT min(next_poll_at) - mdl_now_ms() FROM tasks WHERE state = 'generating'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(after_wait(wait))
    }
}

impl TaskStatements for PgStore {
    async fn insert_task(
        tx: &mut PgTx,
        task: &NewTask,
        deadline: Duration,
    ) -> Result<bool, sqlx::Error> {
        let added = sqlx::query(
            "INSERT INTO tasks (task_id, api, state, next_poll_at, deadline_at) \
             VALUES ($1::bigint, $2::text, 'generating', mdl_now_ms(), mdl_now_ms() + $3::bigint) \
             ON CONFLICT (task_id) DO NOTHING",
        )
        .bind(task.task_id)
        .bind(task.api.as_str())
        .bind(millis(deadline))
        .execute(&mut **tx)
        .await?;
        Ok(added.rows_affected() == 1)
    }

    async fn insert_copied_task(tx: &mut PgTx, task: &Task) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "INSERT INTO tasks ({TASK_COLUMNS}) \
             VALUES ($1::bigint, $2::text, $3::text, $4::bigint, $5::bigint, $6::bigint, \
               $7::text, $8::bigint, $9::text, $10::bigint, $11::bigint) \
             ON CONFLICT (task_id) DO NOTHING"
        );
        let query = bind_task(sqlx::query(sqlx::AssertSqlSafe(sql)), task);
        Ok(query.execute(&mut **tx).await?.rows_affected() == 1)
    }

    async fn task_for_update(tx: &mut PgTx, task_id: i64) -> Result<Option<Task>, sqlx::Error> {
        fetch_task(&mut **tx, task_id, true).await
    }

    async fn record_pending(
        tx: &mut PgTx,
        task_id: i64,
        minimax_status: Option<&str>,
        error: Option<&str>,
        next_in: Duration,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE tasks SET polls = polls + 1, next_poll_at = mdl_now_ms() + $1::bigint, \
             minimax_status = coalesce($2::text, minimax_status), last_error = $3::text, \
             updated_at = mdl_now_ms() WHERE task_id = $4::bigint AND state = 'generating'",
        )
        .bind(millis(next_in))
        .bind(minimax_status)
        .bind(error)
        .bind(task_id)
        .execute(&mut **tx)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn put_back(tx: &mut PgTx, task_id: i64, next_in: Duration) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE tasks SET next_poll_at = mdl_now_ms() + $1::bigint \
             WHERE task_id = $2::bigint AND state = 'generating'",
        )
        .bind(millis(next_in))
        .bind(task_id)
        .execute(&mut **tx)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn count_poll(tx: &mut PgTx, task_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE tasks SET polls = polls + 1 WHERE task_id = $1::bigint AND state = 'generating'",
        )
        .bind(task_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn fail_task(tx: &mut PgTx, task_id: i64, reason: &str) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE tasks SET state = 'failed', polls = polls + 1, last_error = $1::text, \
             updated_at = mdl_now_ms() WHERE task_id = $2::bigint AND state = 'generating'",
        )
        .bind(reason)
        .bind(task_id)
        .execute(&mut **tx)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// One statement: the insert and its history line (the jobs insert
    /// trigger counts the job and wakes the fleet).
    async fn insert_task_job(
        tx: &mut PgTx,
        job_id: i64,
        task: &Task,
        message: &str,
    ) -> Result<bool, sqlx::Error> {
        let added = sqlx::query(
            "WITH i AS ( \
               INSERT INTO jobs (file_id, state, next_attempt_at, created_at, updated_at, task_id, task_api) \
               VALUES ($1::bigint, 'queued', mdl_now_ms(), mdl_now_ms(), mdl_now_ms(), $2::bigint, $3::text) \
               ON CONFLICT (file_id) DO NOTHING RETURNING file_id, created_at) \
             INSERT INTO job_events (file_id, at, kind, attempt, message) \
             SELECT file_id, created_at, 'from_task', NULL, $4::text FROM i",
        )
        .bind(job_id)
        .bind(task.task_id)
        .bind(task.api.as_str())
        .bind(message)
        .execute(&mut **tx)
        .await?;
        Ok(added.rows_affected() == 1)
    }

    async fn job_task(tx: &mut PgTx, job_id: i64) -> Result<Option<Option<i64>>, sqlx::Error> {
        sqlx::query_scalar("SELECT task_id FROM jobs WHERE file_id = $1::bigint")
            .bind(job_id)
            .fetch_optional(&mut **tx)
            .await
    }

    async fn link_job(tx: &mut PgTx, job_id: i64, task_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE jobs SET task_id = $1::bigint, task_api = 'v1' \
             WHERE file_id = $2::bigint AND task_id IS NULL",
        )
        .bind(task_id)
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn finish_task(
        tx: &mut PgTx,
        task_id: i64,
        job_id: i64,
        note: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE tasks SET state = 'done', file_id = $1::bigint, last_error = $2::text, \
             updated_at = mdl_now_ms() WHERE task_id = $3::bigint",
        )
        .bind(job_id)
        .bind(note)
        .bind(task_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn cancel_task(tx: &mut PgTx, task_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE tasks SET state = 'cancelled', last_error = 'cancelled by the user', \
             updated_at = mdl_now_ms() WHERE task_id = $1::bigint AND state = 'generating'",
        )
        .bind(task_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn regenerate_task(
        tx: &mut PgTx,
        task_id: i64,
        deadline: Duration,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE tasks SET state = 'generating', next_poll_at = mdl_now_ms(), \
             deadline_at = mdl_now_ms() + $2::bigint, last_error = NULL, updated_at = mdl_now_ms() \
             WHERE task_id = $1::bigint AND state IN ('failed', 'cancelled')",
        )
        .bind(task_id)
        .bind(millis(deadline))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
