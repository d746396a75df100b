//! Generation tasks on SQLite: the statements of the tasks' writes (the
//! order and the decisions are `orchestrate/tasks.rs`'s), taking due
//! polls, the reads.

use std::time::Duration;

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite};

use super::{SqliteStore, SqliteTx, insert_event};
use crate::queue::orchestrate::TaskStatements;
use crate::queue::rows::{TASK_COLUMNS, bind_task};
use crate::queue::task::{NewTask, Task, TaskCounts, TaskState};
use crate::queue::{Millis, QueueError, millis_after, now_millis};

fn task_from_row(row: &SqliteRow) -> Result<Task, sqlx::Error> {
    crate::queue::rows::task_from_row(row)
}

async fn fetch_task<'e, E>(executor: E, task_id: i64) -> Result<Option<Task>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(task_id)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(task_from_row).transpose()
}

impl SqliteStore {
    pub(crate) async fn take_due_tasks(
        &self,
        limit: usize,
        slot: Duration,
    ) -> Result<Vec<Task>, QueueError> {
        let now = now_millis();
        let sql = format!(
            "UPDATE tasks SET next_poll_at = ?1 WHERE task_id IN (\
               SELECT task_id FROM tasks WHERE state = 'generating' AND next_poll_at <= ?2 \
               ORDER BY next_poll_at LIMIT ?3) \
             RETURNING {TASK_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(millis_after(now, slot))
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&self.writer)
            .await?;
        let mut tasks = rows
            .iter()
            .map(task_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        tasks.sort_by_key(|t| t.task_id);
        Ok(tasks)
    }

    pub(crate) async fn poll_task_now(&self, task_id: i64) -> Result<bool, QueueError> {
        let updated = sqlx::query(
            "UPDATE tasks SET next_poll_at = ?1 WHERE task_id = ?2 AND state = 'generating' AND next_poll_at > ?1",
        )
        .bind(now_millis())
        .bind(task_id)
        .execute(&self.writer)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    pub(crate) async fn get_task(&self, task_id: i64) -> Result<Option<Task>, QueueError> {
        Ok(fetch_task(&self.pool, task_id).await?)
    }

    /// Up to `page` tasks after `after`, in task id order.
    pub(crate) async fn list_tasks_page(
        &self,
        state: Option<TaskState>,
        after: Option<i64>,
        page: u64,
    ) -> Result<Vec<Task>, QueueError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE (?1 IS NULL OR state = ?1) \
             AND (?2 IS NULL OR task_id > ?2) ORDER BY task_id LIMIT ?3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state.map(TaskState::as_str))
            .bind(after)
            .bind(page as i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(task_from_row)
            .collect::<Result<Vec<_>, _>>()?)
    }

    pub(crate) async fn task_counts(&self) -> Result<TaskCounts, QueueError> {
        let rows = sqlx::query(
            "SELECT state, count(*) AS n, COALESCE(sum(polls), 0) AS polls FROM tasks GROUP BY state",
        )
            .fetch_all(&self.pool)
            .await?;
        Ok(crate::queue::rows::task_counts_from_rows(&rows)?)
    }

    pub(crate) async fn next_task_poll(&self) -> Result<Option<Millis>, QueueError> {
        let row =
            sqlx::query("SELECT min(next_poll_at) AS t FROM tasks WHERE state = 'generating'")
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get("t")?)
    }
}

impl TaskStatements for SqliteStore {
    async fn insert_task(
        tx: &mut SqliteTx,
        task: &NewTask,
        deadline: Duration,
    ) -> Result<bool, sqlx::Error> {
        let added = sqlx::query(
            "INSERT INTO tasks (task_id, api, state, next_poll_at, deadline_at, created_at, updated_at) \
             VALUES (?1, ?2, 'generating', ?3, ?4, ?3, ?3) ON CONFLICT (task_id) DO NOTHING",
        )
        .bind(task.task_id)
        .bind(task.api.as_str())
        .bind(tx.now)
        .bind(millis_after(tx.now, deadline))
        .execute(&mut *tx.tx)
        .await?;
        Ok(added.rows_affected() == 1)
    }

    async fn insert_copied_task(tx: &mut SqliteTx, task: &Task) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "INSERT INTO tasks ({TASK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (task_id) DO NOTHING"
        );
        let query = bind_task(sqlx::query(sqlx::AssertSqlSafe(sql)), task);
        Ok(query.execute(&mut *tx.tx).await?.rows_affected() == 1)
    }

    /// SQLite's write lock, taken when the transaction began, is the lock.
    async fn task_for_update(tx: &mut SqliteTx, task_id: i64) -> Result<Option<Task>, sqlx::Error> {
        fetch_task(&mut *tx.tx, task_id).await
    }

    async fn record_pending(
        tx: &mut SqliteTx,
        task_id: i64,
        minimax_status: Option<&str>,
        error: Option<&str>,
        next_in: Duration,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE tasks SET polls = polls + 1, next_poll_at = ?1, \
             minimax_status = coalesce(?2, minimax_status), last_error = ?3, updated_at = ?4 \
             WHERE task_id = ?5 AND state = 'generating'",
        )
        .bind(millis_after(tx.now, next_in))
        .bind(minimax_status)
        .bind(error)
        .bind(tx.now)
        .bind(task_id)
        .execute(&mut *tx.tx)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn put_back(
        tx: &mut SqliteTx,
        task_id: i64,
        next_in: Duration,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE tasks SET next_poll_at = ?1 WHERE task_id = ?2 AND state = 'generating'",
        )
        .bind(millis_after(tx.now, next_in))
        .bind(task_id)
        .execute(&mut *tx.tx)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn count_poll(tx: &mut SqliteTx, task_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE tasks SET polls = polls + 1 WHERE task_id = ?1 AND state = 'generating'",
        )
        .bind(task_id)
        .execute(&mut *tx.tx)
        .await?;
        Ok(())
    }

    async fn fail_task(tx: &mut SqliteTx, task_id: i64, reason: &str) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE tasks SET state = 'failed', polls = polls + 1, last_error = ?1, updated_at = ?2 \
             WHERE task_id = ?3 AND state = 'generating'",
        )
        .bind(reason)
        .bind(tx.now)
        .bind(task_id)
        .execute(&mut *tx.tx)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// The insert, the counter row and the history line: three statements
    /// (no triggers count jobs on SQLite).
    async fn insert_task_job(
        tx: &mut SqliteTx,
        job_id: i64,
        task: &Task,
        message: &str,
    ) -> Result<bool, sqlx::Error> {
        let added = sqlx::query(
            "INSERT INTO jobs (file_id, state, next_attempt_at, created_at, updated_at, task_id, task_api) \
             VALUES (?1, 'queued', ?2, ?2, ?2, ?3, ?4) ON CONFLICT (file_id) DO NOTHING",
        )
        .bind(job_id)
        .bind(tx.now)
        .bind(task.task_id)
        .bind(task.api.as_str())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected()
            == 1;
        if added {
            sqlx::query("UPDATE job_counts SET jobs = jobs + 1 WHERE state = 'queued'")
                .execute(&mut *tx.tx)
                .await?;
            insert_event(&mut tx.tx, job_id, tx.now, "from_task", None, Some(message)).await?;
        }
        Ok(added)
    }

    async fn job_task(tx: &mut SqliteTx, job_id: i64) -> Result<Option<Option<i64>>, sqlx::Error> {
        sqlx::query_scalar("SELECT task_id FROM jobs WHERE file_id = ?1")
            .bind(job_id)
            .fetch_optional(&mut *tx.tx)
            .await
    }

    async fn link_job(tx: &mut SqliteTx, job_id: i64, task_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE jobs SET task_id = ?1, task_api = 'v1' WHERE file_id = ?2 AND task_id IS NULL",
        )
        .bind(task_id)
        .bind(job_id)
        .execute(&mut *tx.tx)
        .await?;
        Ok(())
    }

    async fn finish_task(
        tx: &mut SqliteTx,
        task_id: i64,
        job_id: i64,
        note: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE tasks SET state = 'done', file_id = ?1, last_error = ?2, updated_at = ?3 WHERE task_id = ?4",
        )
        .bind(job_id)
        .bind(note)
        .bind(tx.now)
        .bind(task_id)
        .execute(&mut *tx.tx)
        .await?;
        Ok(())
    }

    async fn cancel_task(tx: &mut SqliteTx, task_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE tasks SET state = 'cancelled', last_error = 'cancelled by the user', \
             updated_at = ?1 WHERE task_id = ?2 AND state = 'generating'",
        )
        .bind(tx.now)
        .bind(task_id)
        .execute(&mut *tx.tx)
        .await?;
        Ok(())
    }

    async fn regenerate_task(
        tx: &mut SqliteTx,
        task_id: i64,
        deadline: Duration,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE tasks SET state = 'generating', next_poll_at = ?1, deadline_at = ?2, \
             last_error = NULL, updated_at = ?1 WHERE task_id = ?3 AND state IN ('failed', 'cancelled')",
        )
        .bind(tx.now)
        .bind(millis_after(tx.now, deadline))
        .bind(task_id)
        .execute(&mut *tx.tx)
        .await?;
        Ok(())
    }
}
