//! Generation tasks on SQLite: adding them, taking due polls, recording
//! what a poll found (a finished task becomes its job in the same
//! transaction), the user verbs and the reads.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::{SqliteStore, insert_event};
use crate::queue::rows::TASK_COLUMNS;
use crate::queue::task::{
    NewTask, PollRecord, Task, TaskCounts, TaskEnqueueReport, TaskResult, TaskState,
    cancel_task_verdict, existing_job, from_task_message, retry_task_verdict,
};
use crate::queue::{Millis, QueueError, VerbOutcome, millis_after, now_millis};

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
    pub(crate) async fn enqueue_tasks(
        &self,
        tasks: &[NewTask],
        deadline: Duration,
    ) -> Result<TaskEnqueueReport, QueueError> {
        let now = now_millis();
        let mut report = TaskEnqueueReport::default();
        let mut tx = self.write_tx().await?;
        for task in tasks {
            let added = sqlx::query(
                "INSERT INTO tasks (task_id, api, state, next_poll_at, deadline_at, created_at, updated_at) \
                 VALUES (?1, ?2, 'generating', ?3, ?4, ?3, ?3) ON CONFLICT (task_id) DO NOTHING",
            )
            .bind(task.task_id)
            .bind(task.api.as_str())
            .bind(now)
            .bind(millis_after(now, deadline))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if added == 1 {
                report.added += 1;
            } else {
                report.known += 1;
            }
            if let Some(result) = task.result
                && hand_over(&mut tx, task.task_id, result, now).await?
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

    pub(crate) async fn record_poll(
        &self,
        task_id: i64,
        record: &PollRecord<'_>,
    ) -> Result<bool, QueueError> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        let applied = match *record {
            PollRecord::Pending {
                minimax_status,
                error,
                next_in,
            } => sqlx::query(
                "UPDATE tasks SET polls = polls + 1, next_poll_at = ?1, \
                 minimax_status = coalesce(?2, minimax_status), last_error = ?3, updated_at = ?4 \
                 WHERE task_id = ?5 AND state = 'generating'",
            )
            .bind(millis_after(now, next_in))
            .bind(minimax_status)
            .bind(error)
            .bind(now)
            .bind(task_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1,
            PollRecord::Released { next_in } => sqlx::query(
                "UPDATE tasks SET next_poll_at = ?1 WHERE task_id = ?2 AND state = 'generating'",
            )
            .bind(millis_after(now, next_in))
            .bind(task_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1,
            PollRecord::Finished(result) => {
                sqlx::query("UPDATE tasks SET polls = polls + 1 WHERE task_id = ?1 AND state = 'generating'")
                    .bind(task_id)
                    .execute(&mut *tx)
                    .await?;
                hand_over(&mut tx, task_id, result, now).await?
            }
            PollRecord::Failed { reason } => sqlx::query(
                "UPDATE tasks SET state = 'failed', polls = polls + 1, last_error = ?1, updated_at = ?2 \
                 WHERE task_id = ?3 AND state = 'generating'",
            )
            .bind(reason)
            .bind(now)
            .bind(task_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1,
        };
        tx.commit().await?;
        Ok(applied)
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

    pub(crate) async fn cancel_tasks(
        &self,
        ids: &[i64],
    ) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
        self.task_verb(ids, cancel_task_verdict, |tx, id, now| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE tasks SET state = 'cancelled', last_error = 'cancelled by the user', \
                     updated_at = ?1 WHERE task_id = ?2 AND state = 'generating'",
                )
                .bind(now)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map(|_| ())
            })
        })
        .await
    }

    pub(crate) async fn retry_tasks(
        &self,
        ids: &[i64],
        deadline: Duration,
    ) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
        self.task_verb(ids, retry_task_verdict, move |tx, id, now| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE tasks SET state = 'generating', next_poll_at = ?1, deadline_at = ?2, \
                     last_error = NULL, updated_at = ?1 WHERE task_id = ?3 AND state IN ('failed', 'cancelled')",
                )
                .bind(now)
                .bind(millis_after(now, deadline))
                .bind(id)
                .execute(&mut **tx)
                .await
                .map(|_| ())
            })
        })
        .await
    }

    /// A user verb on tasks, one transaction per id: `verdict` says
    /// whether it applies to the task's state, `apply` changes the row.
    async fn task_verb<F>(
        &self,
        ids: &[i64],
        verdict: fn(TaskState) -> Result<(), &'static str>,
        apply: F,
    ) -> Result<Vec<(i64, VerbOutcome)>, QueueError>
    where
        F: for<'t> Fn(
            &'t mut Transaction<'static, Sqlite>,
            i64,
            Millis,
        ) -> futures_util::future::BoxFuture<'t, Result<(), sqlx::Error>>,
    {
        let mut outcomes = Vec::with_capacity(ids.len());
        for &id in ids {
            let mut tx = self.write_tx().await?;
            let outcome = match fetch_task(&mut *tx, id).await? {
                None => VerbOutcome::Unknown,
                Some(task) => match verdict(task.state) {
                    Err(why) => VerbOutcome::Refused(why.to_string()),
                    Ok(()) => {
                        apply(&mut tx, id, now_millis()).await?;
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

    pub(crate) async fn import_tasks(&self, tasks: &[Task]) -> Result<u64, QueueError> {
        let mut tx = self.write_tx().await?;
        let mut added = 0;
        for task in tasks {
            added += sqlx::query(
                "INSERT INTO tasks (task_id, api, state, polls, next_poll_at, deadline_at, \
                   minimax_status, file_id, last_error, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (task_id) DO NOTHING",
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

    pub(crate) async fn next_task_poll(&self) -> Result<Option<Millis>, QueueError> {
        let row =
            sqlx::query("SELECT min(next_poll_at) AS t FROM tasks WHERE state = 'generating'")
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get("t")?)
    }
}

/// A generating task finished with `result`: it becomes the job its
/// result names (queued now, linked to the task), in the caller's
/// transaction. A job already there keeps its state; a v1 file job not yet
/// linked is linked. Returns whether the task was handed over (false: it
/// was not generating any more).
async fn hand_over(
    tx: &mut Transaction<'static, Sqlite>,
    task_id: i64,
    result: TaskResult,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let Some(task) = fetch_task(&mut **tx, task_id).await? else {
        return Ok(false);
    };
    if task.state != TaskState::Generating {
        return Ok(false);
    }
    let job_id = result.job_id(task_id);
    let added = sqlx::query(
        "INSERT INTO jobs (file_id, state, next_attempt_at, created_at, updated_at, task_id, task_api) \
         VALUES (?1, 'queued', ?2, ?2, ?2, ?3, ?4) ON CONFLICT (file_id) DO NOTHING",
    )
    .bind(job_id)
    .bind(now)
    .bind(task_id)
    .bind(task.api.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let note = if added == 1 {
        sqlx::query("UPDATE job_counts SET jobs = jobs + 1 WHERE state = 'queued'")
            .execute(&mut **tx)
            .await?;
        None
    } else {
        link_existing(tx, job_id, task_id, result).await?
    };
    let message = from_task_message(&task);
    if added == 1 {
        insert_event(tx, job_id, now, "from_task", None, Some(&message)).await?;
    }
    sqlx::query(
        "UPDATE tasks SET state = 'done', file_id = ?1, last_error = ?2, updated_at = ?3 WHERE task_id = ?4",
    )
    .bind(job_id)
    .bind(note)
    .bind(now)
    .bind(task_id)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// The result's job was in the queue already: linked to the task when
/// [`existing_job`] says so; returns the task's note.
async fn link_existing(
    tx: &mut Transaction<'static, Sqlite>,
    job_id: i64,
    task_id: i64,
    result: TaskResult,
) -> Result<Option<String>, sqlx::Error> {
    let linked: Option<Option<i64>> =
        sqlx::query_scalar("SELECT task_id FROM jobs WHERE file_id = ?1")
            .bind(job_id)
            .fetch_optional(&mut **tx)
            .await?;
    let (link, note) = existing_job(job_id, task_id, result, linked.flatten());
    if link {
        sqlx::query(
            "UPDATE jobs SET task_id = ?1, task_api = 'v1' WHERE file_id = ?2 AND task_id IS NULL",
        )
        .bind(task_id)
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(note)
}
