//! One poll of one generation task: the rate gate, the query of its API,
//! and the record of what it found (a finished task becomes its job in the
//! same transaction).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::policy::{PollAnswer, PollStep, PollTime, after_poll};
use crate::api::{ErrorClass, TaskStatus};
use crate::config::TaskSettings;
use crate::gate::{GateError, Hold};
use crate::ids::TaskApi;
use crate::queue::{PollRecord, QueueError, Task, TaskResult, now_millis};
use crate::worker::Engine;

/// How one poll ended, for the poller.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Polled {
    /// Recorded: the task waits for its next poll, failed, or is a job now.
    Recorded,
    /// An account-level answer (or the gate is held for one): the pool
    /// must pause; the task is due again as soon as it resumes.
    Paused(Hold),
    /// Stopped by the shutdown before the answer: the task is due again.
    Stopped,
}

/// Polls `task` once: passes the rate gate, queries MiniMax, records the
/// answer. The slot taken with the task goes back unused when the poll
/// does not happen.
pub(crate) async fn poll_task(
    engine: &Engine,
    task: &Task,
    settings: &TaskSettings,
    cancel: &CancellationToken,
) -> Result<Polled, QueueError> {
    match engine.gate.acquire(cancel).await {
        Ok(()) => {}
        Err(GateError::Cancelled) => return give_back(engine, task, Polled::Stopped).await,
        Err(GateError::Held(hold)) => return give_back(engine, task, Polled::Paused(hold)).await,
        Err(GateError::Queue(e)) => return Err(e),
    }
    let api = engine.api();
    let answer = tokio::select! {
        _ = cancel.cancelled() => return give_back(engine, task, Polled::Stopped).await,
        answer = async {
            match task.api {
                TaskApi::V1 => api.query_task_v1(task.task_id).await,
                TaskApi::V2 => api.query_task_v2(task.task_id).await,
            }
        } => answer,
    };
    engine.observer.api_called(answer.as_ref().map(|_| ()));
    let when = poll_time(engine, task, settings);
    let (step, word) = match &answer {
        Ok(status) => {
            engine.gate.succeeded();
            (
                after_poll(PollAnswer::Status(status), when),
                word_of(status),
            )
        }
        Err(e) => {
            let class = e.class();
            if let ErrorClass::RateLimited { retry_after } = class {
                engine.rate_limited(retry_after).await;
            }
            warn!(
                task_id = task.task_id,
                trace_id = e.trace_id().unwrap_or(""),
                "task query failed: {e}"
            );
            let message = e.to_string();
            let when = poll_time(engine, task, settings);
            (after_poll(PollAnswer::Error(class, &message), when), None)
        }
    };
    record(engine, task, step, word.as_deref(), answer.is_err()).await
}

/// The task's age, deadline and the cooldown, now.
fn poll_time(engine: &Engine, task: &Task, settings: &TaskSettings) -> PollTime {
    let now = now_millis();
    let millis = |m: i64| Duration::from_millis(m.max(0) as u64);
    PollTime {
        age: millis(now - task.created_at),
        floor: settings.poll_floor,
        past_deadline: (now >= task.deadline_at)
            .then(|| millis(task.deadline_at - task.created_at)),
        cooldown: engine.gate.cooldown_remaining().unwrap_or(Duration::ZERO),
    }
}

/// MiniMax's word for where an unfinished task is.
fn word_of(status: &TaskStatus) -> Option<String> {
    match status {
        TaskStatus::Generating(w) | TaskStatus::Unrecognised(w) => Some(w.clone()),
        _ => None,
    }
}

async fn record(
    engine: &Engine,
    task: &Task,
    step: PollStep,
    word: Option<&str>,
    failed_call: bool,
) -> Result<Polled, QueueError> {
    let id = task.task_id;
    let record = match &step {
        PollStep::Again { after, note } => PollRecord::Pending {
            minimax_status: word,
            error: failed_call.then_some(note.as_str()),
            next_in: *after,
        },
        PollStep::File(file_id) => PollRecord::Finished(TaskResult::File(*file_id)),
        PollStep::Video => PollRecord::Finished(TaskResult::Video),
        PollStep::Fail(reason) => PollRecord::Failed { reason },
        PollStep::Pause { message, pause } => {
            let hold = Hold {
                message: message.clone(),
                pause: *pause,
            };
            engine.gate.hold(hold.clone());
            return give_back(engine, task, Polled::Paused(hold)).await;
        }
    };
    let applied = engine.queue.record_poll(id, &record).await?;
    if applied {
        match &step {
            PollStep::File(file_id) => {
                info!(task_id = id, file_id, "task finished: its file is queued")
            }
            PollStep::Video => info!(task_id = id, "task finished: its video is queued"),
            PollStep::Fail(reason) => warn!(task_id = id, "task failed: {reason}"),
            _ => {}
        }
    }
    Ok(Polled::Recorded)
}

/// The poll did not happen: the task is due again at once (its slot would
/// otherwise hold it for a minute).
async fn give_back(engine: &Engine, task: &Task, polled: Polled) -> Result<Polled, QueueError> {
    let release = PollRecord::Released {
        next_in: Duration::ZERO,
    };
    engine.queue.record_poll(task.task_id, &release).await?;
    Ok(polled)
}
