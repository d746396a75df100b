//! Generation tasks on PostgreSQL, as `sqlite/tasks.rs`: times on the
//! database clock, due tasks taken with `FOR UPDATE SKIP LOCKED` (hosts
//! polling at once take disjoint tasks without waiting on each other), and
//! a finished task handed over as its job in the transaction that marks it
//! done (the jobs insert trigger counts the job and wakes the fleet).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::PgStore;
use crate::queue::rows::TASK_COLUMNS;
use crate::queue::task::{
    NewTask, PollRecord, Task, TaskCounts, TaskEnqueueReport, TaskResult, TaskState,
    cancel_task_verdict, existing_job, from_task_message, retry_task_verdict,
};
use crate::queue::{Millis, QueueError, VerbOutcome, now_millis};

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

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
    pub(crate) async fn enqueue_tasks(
        &self,
        tasks: &[NewTask],
        deadline: Duration,
    ) -> Result<TaskEnqueueReport, QueueError> {
        let mut report = TaskEnqueueReport::default();
        let mut tx = self.pool.begin().await?;
        for task in tasks {
            let added = sqlx::query(
                "INSERT INTO tasks (task_id, api, state, next_poll_at, deadline_at) \
                 VALUES ($1::bigint, $2::text, 'generating', mdl_now_ms(), mdl_now_ms() + $3::bigint) \
                 ON CONFLICT (task_id) DO NOTHING",
            )
            .bind(task.task_id)
            .bind(task.api.as_str())
            .bind(millis(deadline))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if added == 1 {
                report.added += 1;
            } else {
                report.known += 1;
            }
            if let Some(result) = task.result
                && hand_over(&mut tx, task.task_id, result).await?
            {
                report.handed_over += 1;
            }
        }
        tx.commit().await?;
        Ok(report)
    }

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

    pub(crate) async fn record_poll(
        &self,
        task_id: i64,
        record: &PollRecord<'_>,
    ) -> Result<bool, QueueError> {
        let mut tx = self.pool.begin().await?;
        let applied = match *record {
            PollRecord::Pending {
                minimax_status,
                error,
                next_in,
            } => {
                sqlx::query(
                    "UPDATE tasks SET polls = polls + 1, next_poll_at = mdl_now_ms() + $1::bigint, \
                 minimax_status = coalesce($2::text, minimax_status), last_error = $3::text, \
                 updated_at = mdl_now_ms() WHERE task_id = $4::bigint AND state = 'generating'",
                )
                .bind(millis(next_in))
                .bind(minimax_status)
                .bind(error)
                .bind(task_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            }
            PollRecord::Released { next_in } => {
                sqlx::query(
                    "UPDATE tasks SET next_poll_at = mdl_now_ms() + $1::bigint \
                 WHERE task_id = $2::bigint AND state = 'generating'",
                )
                .bind(millis(next_in))
                .bind(task_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            }
            PollRecord::Finished(result) => {
                sqlx::query(
                    "UPDATE tasks SET polls = polls + 1 WHERE task_id = $1::bigint AND state = 'generating'",
                )
                .bind(task_id)
                .execute(&mut *tx)
                .await?;
                hand_over(&mut tx, task_id, result).await?
            }
            PollRecord::Failed { reason } => {
                sqlx::query(
                    "UPDATE tasks SET state = 'failed', polls = polls + 1, last_error = $1::text, \
                 updated_at = mdl_now_ms() WHERE task_id = $2::bigint AND state = 'generating'",
                )
                .bind(reason)
                .bind(task_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            }
        };
        tx.commit().await?;
        Ok(applied)
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

    pub(crate) async fn cancel_tasks(
        &self,
        ids: &[i64],
    ) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
        self.task_verb(
            ids,
            cancel_task_verdict,
            "UPDATE tasks SET state = 'cancelled', last_error = 'cancelled by the user', \
             updated_at = mdl_now_ms() WHERE task_id = $1::bigint AND state = 'generating' \
             AND $2::bigint IS NOT NULL",
            0,
        )
        .await
    }

    pub(crate) async fn retry_tasks(
        &self,
        ids: &[i64],
        deadline: Duration,
    ) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
        self.task_verb(
            ids,
            retry_task_verdict,
            "UPDATE tasks SET state = 'generating', next_poll_at = mdl_now_ms(), \
             deadline_at = mdl_now_ms() + $2::bigint, last_error = NULL, updated_at = mdl_now_ms() \
             WHERE task_id = $1::bigint AND state IN ('failed', 'cancelled')",
            millis(deadline),
        )
        .await
    }

    /// A user verb on tasks, one transaction per id under a row lock:
    /// `verdict` says whether it applies, `update` (`$1` the id, `$2`
    /// `arg`) changes the row.
    async fn task_verb(
        &self,
        ids: &[i64],
        verdict: fn(TaskState) -> Result<(), &'static str>,
        update: &'static str,
        arg: i64,
    ) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
        let mut outcomes = Vec::with_capacity(ids.len());
        for &id in ids {
            let mut tx = self.pool.begin().await?;
            let outcome = match fetch_task(&mut *tx, id, true).await? {
                None => VerbOutcome::Unknown,
                Some(task) => match verdict(task.state) {
                    Err(why) => VerbOutcome::Refused(why.to_string()),
                    Ok(()) => {
                        sqlx::query(update)
                            .bind(id)
                            .bind(arg)
                            .execute(&mut *tx)
                            .await?;
                        VerbOutcome::Applied
                    }
                },
            };
            tx.commit().await?;
            outcomes.push((id, outcome));
        }
        Ok(outcomes)
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
        let mut counts = TaskCounts::default();
        for row in rows {
            let state: String = row.try_get("state")?;
            if let Ok(state) = TaskState::from_str(&state) {
                counts.set(state, row.try_get::<i64, _>("n")?.max(0) as u64);
            }
            counts.polls += row.try_get::<i64, _>("polls")?.max(0) as u64;
        }
        Ok(counts)
    }

    pub(crate) async fn next_task_poll(&self) -> Result<Option<Millis>, QueueError> {
        // A wait on the database clock, turned into a time on this host's.
        let wait: Option<i64> = sqlx::query_scalar(
            "SELECT min(next_poll_at) - mdl_now_ms() FROM tasks WHERE state = 'generating'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(wait.map(|ms| now_millis().saturating_add(ms)))
    }

    pub(crate) async fn import_tasks(&self, tasks: &[Task]) -> Result<u64, QueueError> {
        let mut tx = self.pool.begin().await?;
        let mut added = 0;
        for task in tasks {
            added += sqlx::query(
                "INSERT INTO tasks (task_id, api, state, polls, next_poll_at, deadline_at, \
                   minimax_status, file_id, last_error, created_at, updated_at) \
                 VALUES ($1::bigint, $2::text, $3::text, $4::bigint, $5::bigint, $6::bigint, \
                   $7::text, $8::bigint, $9::text, $10::bigint, $11::bigint) \
                 ON CONFLICT (task_id) DO NOTHING",
            )
            .bind(task.task_id)
            .bind(task.api.as_str())
            .bind(task.state.as_str())
            .bind(i64::from(task.polls))
            .bind(task.next_poll_at)
            .bind(task.deadline_at)
            .bind(&task.minimax_status)
            .bind(task.file_id)
            .bind(&task.last_error)
            .bind(task.created_at)
            .bind(task.updated_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(added)
    }
}

/// A generating task finished with `result`: it becomes the job its
/// result names, in the caller's transaction (see `sqlite/tasks.rs`).
/// Returns whether the task was handed over.
async fn hand_over(
    tx: &mut Transaction<'static, Postgres>,
    task_id: i64,
    result: TaskResult,
) -> Result<bool, sqlx::Error> {
    let Some(task) = fetch_task(&mut **tx, task_id, true).await? else {
        return Ok(false);
    };
    if task.state != TaskState::Generating {
        return Ok(false);
    }
    let job_id = result.job_id(task_id);
    let message = from_task_message(&task);
    let added = sqlx::query(
        "WITH i AS ( \
           INSERT INTO jobs (file_id, state, next_attempt_at, created_at, updated_at, task_id, task_api) \
           VALUES ($1::bigint, 'queued', mdl_now_ms(), mdl_now_ms(), mdl_now_ms(), $2::bigint, $3::text) \
           ON CONFLICT (file_id) DO NOTHING RETURNING file_id, created_at) \
         INSERT INTO job_events (file_id, at, kind, attempt, message) \
         SELECT file_id, created_at, 'from_task', NULL, $4::text FROM i",
    )
    .bind(job_id)
    .bind(task_id)
    .bind(task.api.as_str())
    .bind(&message)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let note = if added == 1 {
        None
    } else {
        link_existing(tx, job_id, task_id, result).await?
    };
    sqlx::query(
        "UPDATE tasks SET state = 'done', file_id = $1::bigint, last_error = $2::text, \
         updated_at = mdl_now_ms() WHERE task_id = $3::bigint",
    )
    .bind(job_id)
    .bind(note)
    .bind(task_id)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// The result's job was in the queue already (see `sqlite/tasks.rs`).
async fn link_existing(
    tx: &mut Transaction<'static, Postgres>,
    job_id: i64,
    task_id: i64,
    result: TaskResult,
) -> Result<Option<String>, sqlx::Error> {
    let linked: Option<Option<i64>> =
        sqlx::query_scalar("SELECT task_id FROM jobs WHERE file_id = $1::bigint")
            .bind(job_id)
            .fetch_optional(&mut **tx)
            .await?;
    let (link, note) = existing_job(job_id, task_id, result, linked.flatten());
    if link {
        sqlx::query(
            "UPDATE jobs SET task_id = $1::bigint, task_api = 'v1' \
             WHERE file_id = $2::bigint AND task_id IS NULL",
        )
        .bind(task_id)
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(note)
}
