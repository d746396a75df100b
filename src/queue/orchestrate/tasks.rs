//! Generation tasks: adding them (and taking in copied ones), recording a poll, handing a finished task
//! over as its job (in the transaction that marks it done), the user verbs.

use std::future::Future;
use std::time::Duration;

use super::Dialect;
use crate::queue::task::{
    NewTask, PollRecord, Task, TaskEnqueueReport, TaskResult, TaskState, cancel_task_verdict,
    existing_job, from_task_message, retry_task_verdict,
};
use crate::queue::{QueueError, VerbOutcome};

/// The statements of the tasks' writes. Each `bool` is "a row matched".
pub(crate) trait TaskStatements: Dialect {
    /// Inserts a generating task due now, unless its id is known.
    fn insert_task(
        tx: &mut Self::Tx,
        task: &NewTask,
        deadline: Duration,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;

    /// Inserts a task copied from another queue as it is (`db copy`),
    /// unless its id is known.
    fn insert_copied_task(
        tx: &mut Self::Tx,
        task: &Task,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;

    /// The task, locked for the transaction where the backend locks rows.
    fn task_for_update(
        tx: &mut Self::Tx,
        task_id: i64,
    ) -> impl Future<Output = Result<Option<Task>, sqlx::Error>> + Send;

    /// A poll counted while generating, with what it found; next after `next_in`.
    fn record_pending(
        tx: &mut Self::Tx,
        task_id: i64,
        minimax_status: Option<&str>,
        error: Option<&str>,
        next_in: Duration,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;

    /// Due again after `next_in`, the poll uncounted.
    fn put_back(
        tx: &mut Self::Tx,
        task_id: i64,
        next_in: Duration,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;

    /// A poll counted while generating, nothing else.
    fn count_poll(
        tx: &mut Self::Tx,
        task_id: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// `failed` with `reason`, the poll counted.
    fn fail_task(
        tx: &mut Self::Tx,
        task_id: i64,
        reason: &str,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;

    /// Job `job_id` queued now, linked to `task`, with its `from_task`
    /// history line and counted; false when the id was there already.
    fn insert_task_job(
        tx: &mut Self::Tx,
        job_id: i64,
        task: &Task,
        message: &str,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;

    /// The task an existing job is linked to: `None`, no such job.
    fn job_task(
        tx: &mut Self::Tx,
        job_id: i64,
    ) -> impl Future<Output = Result<Option<Option<i64>>, sqlx::Error>> + Send;

    /// Links a job not linked yet to `task_id` (a v1 file job).
    fn link_job(
        tx: &mut Self::Tx,
        job_id: i64,
        task_id: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// `done`, its job `job_id`, `note` as its last error.
    fn finish_task(
        tx: &mut Self::Tx,
        task_id: i64,
        job_id: i64,
        note: Option<&str>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// `cancelled` by the user, if generating.
    fn cancel_task(
        tx: &mut Self::Tx,
        task_id: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Generating again, due now, a new deadline `deadline` from now, if
    /// failed or cancelled.
    fn regenerate_task(
        tx: &mut Self::Tx,
        task_id: i64,
        deadline: Duration,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

pub(in crate::queue) async fn enqueue_tasks<S: TaskStatements>(
    store: &S,
    tasks: &[NewTask],
    deadline: Duration,
) -> Result<TaskEnqueueReport, QueueError> {
    let mut report = TaskEnqueueReport::default();
    let mut tx = store.begin().await?;
    for task in tasks {
        if S::insert_task(&mut tx, task, deadline).await? {
            report.added += 1;
        } else {
            report.known += 1;
        }
        if let Some(result) = task.result
            && hand_over::<S>(&mut tx, task.task_id, result).await?
        {
            report.handed_over += 1;
        }
    }
    S::commit(tx).await?;
    Ok(report)
}

pub(in crate::queue) async fn import_tasks<S: TaskStatements>(
    store: &S,
    tasks: &[Task],
) -> Result<u64, QueueError> {
    let mut added = 0;
    let mut tx = store.begin().await?;
    for task in tasks {
        added += u64::from(S::insert_copied_task(&mut tx, task).await?);
    }
    S::commit(tx).await?;
    Ok(added)
}

pub(in crate::queue) async fn record_poll<S: TaskStatements>(
    store: &S,
    task_id: i64,
    record: &PollRecord<'_>,
) -> Result<bool, QueueError> {
    let mut tx = store.begin().await?;
    let applied = match *record {
        PollRecord::Pending {
            minimax_status,
            error,
            next_in,
        } => S::record_pending(&mut tx, task_id, minimax_status, error, next_in).await?,
        PollRecord::Released { next_in } => S::put_back(&mut tx, task_id, next_in).await?,
        PollRecord::Finished(result) => {
            S::count_poll(&mut tx, task_id).await?;
            hand_over::<S>(&mut tx, task_id, result).await?
        }
        PollRecord::Failed { reason } => S::fail_task(&mut tx, task_id, reason).await?,
    };
    S::commit(tx).await?;
    Ok(applied)
}

/// A generating task finished with `result`: it becomes the job its
/// result names (queued now, linked to the task), in the caller's
/// transaction. A job already there keeps its state; a v1 file job not yet
/// linked is linked. Returns whether the task was handed over (false: it
/// was not generating any more).
async fn hand_over<S: TaskStatements>(
    tx: &mut S::Tx,
    task_id: i64,
    result: TaskResult,
) -> Result<bool, sqlx::Error> {
    let Some(task) = S::task_for_update(tx, task_id).await? else {
        return Ok(false);
    };
    if task.state != TaskState::Generating {
        return Ok(false);
    }
    let job_id = result.job_id(task_id);
    let message = from_task_message(&task);
    let note = if S::insert_task_job(tx, job_id, &task, &message).await? {
        None
    } else {
        link_existing::<S>(tx, job_id, task_id, result).await?
    };
    S::finish_task(tx, task_id, job_id, note.as_deref()).await?;
    Ok(true)
}

/// The result's job was in the queue already: linked to the task when
/// [`existing_job`] says so; returns the task's note.
async fn link_existing<S: TaskStatements>(
    tx: &mut S::Tx,
    job_id: i64,
    task_id: i64,
    result: TaskResult,
) -> Result<Option<String>, sqlx::Error> {
    let linked = S::job_task(tx, job_id).await?;
    let (link, note) = existing_job(job_id, task_id, result, linked.flatten());
    if link {
        S::link_job(tx, job_id, task_id).await?;
    }
    Ok(note)
}

pub(in crate::queue) async fn cancel_tasks<S: TaskStatements>(
    store: &S,
    ids: &[i64],
) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
    task_verb(store, ids, TaskVerb::Cancel).await
}

pub(in crate::queue) async fn retry_tasks<S: TaskStatements>(
    store: &S,
    ids: &[i64],
    deadline: Duration,
) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
    task_verb(store, ids, TaskVerb::Retry { deadline }).await
}

/// A user verb on tasks.
#[derive(Clone, Copy, Debug)]
enum TaskVerb {
    Cancel,
    /// Generating again with a new `deadline` from now.
    Retry {
        deadline: Duration,
    },
}

/// A user verb on tasks, one transaction per id (the task read under a row
/// lock where the backend locks rows): `task.rs`'s verdict says whether it
/// applies to the task's state.
async fn task_verb<S: TaskStatements>(
    store: &S,
    ids: &[i64],
    verb: TaskVerb,
) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
    let verdict = match verb {
        TaskVerb::Cancel => cancel_task_verdict,
        TaskVerb::Retry { .. } => retry_task_verdict,
    };
    let mut outcomes = Vec::with_capacity(ids.len());
    for &id in ids {
        let mut tx = store.begin().await?;
        let outcome = match S::task_for_update(&mut tx, id).await? {
            None => VerbOutcome::Unknown,
            Some(task) => match verdict(task.state) {
                Err(why) => VerbOutcome::Refused(why.to_string()),
                Ok(()) => {
                    match verb {
                        TaskVerb::Retry { deadline } => {
                            S::regenerate_task(&mut tx, id, deadline).await?
                        }
                        TaskVerb::Cancel => S::cancel_task(&mut tx, id).await?,
                    }
                    VerbOutcome::Applied
                }
            },
        };
        S::commit(tx).await?;
        outcomes.push((id, outcome));
    }
    Ok(outcomes)
}
