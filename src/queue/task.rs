//! Generation tasks as the queue keeps them: a task waits in `generating`
//! while MiniMax makes its video, is polled on a stored schedule, and once
//! finished becomes a job (linked to it by `task_id`). Plain types and the
//! pure rules of which verb applies to which task state.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use super::Millis;
use crate::ids::TaskApi;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// MiniMax is generating it: polled until it ends.
    Generating,
    /// Finished: its result is a job (`file_id`).
    Done,
    /// Ended without a file (MiniMax's reason, or the deadline).
    Failed,
    /// A user stopped polling it.
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 4] = [
        TaskState::Generating,
        TaskState::Done,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Generating => "generating",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!("unknown task state {s:?}: expected generating, done, failed or cancelled")
            })
    }
}

/// A generation task as the queue knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Task {
    pub task_id: i64,
    pub api: TaskApi,
    pub state: TaskState,
    /// Queries answered so far.
    pub polls: u32,
    pub next_poll_at: Millis,
    /// Still generating at this time: the task fails.
    pub deadline_at: Millis,
    /// MiniMax's last word on it (`Processing`, `running`, ...).
    pub minimax_status: Option<String>,
    /// The job it became, once done.
    pub file_id: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What a finished task hands over to the downloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskResult {
    /// v1: the file MiniMax generated, downloaded like any file id.
    File(i64),
    /// v2: the task's video. There is no file id: the job is keyed by the
    /// task id, and each attempt queries the task for a fresh URL.
    Video,
}

impl TaskResult {
    /// The id of the job a task with this result becomes.
    pub fn job_id(self, task_id: i64) -> i64 {
        match self {
            TaskResult::File(file_id) => file_id,
            TaskResult::Video => task_id,
        }
    }
}

/// A task to add, with its result when it is already known to have
/// finished (a callback, the task list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub task_id: i64,
    pub api: TaskApi,
    pub result: Option<TaskResult>,
}

/// What `enqueue_tasks` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TaskEnqueueReport {
    /// Tasks new to the queue.
    pub added: u64,
    /// Tasks it had already (any state).
    pub known: u64,
    /// Tasks that became jobs in this call (already finished).
    pub handed_over: u64,
}

/// What one poll found, for `record_poll`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollRecord<'a> {
    /// Not finished: counted as a poll, next one after `next_in`.
    Pending {
        minimax_status: Option<&'a str>,
        /// What went wrong with this poll, if something did.
        error: Option<&'a str>,
        next_in: Duration,
    },
    /// The poll did not happen (a pause, a shutdown): due again after
    /// `next_in`, uncounted.
    Released {
        next_in: Duration,
    },
    /// Finished: becomes a job in the same transaction.
    Finished(TaskResult),
    Failed {
        reason: &'a str,
    },
}

/// Tasks per state, and the polls recorded of them all (by every process
/// sharing the queue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    pub generating: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub polls: u64,
}

impl TaskCounts {
    pub fn get(&self, state: TaskState) -> u64 {
        match state {
            TaskState::Generating => self.generating,
            TaskState::Done => self.done,
            TaskState::Failed => self.failed,
            TaskState::Cancelled => self.cancelled,
        }
    }

    pub fn set(&mut self, state: TaskState, n: u64) {
        match state {
            TaskState::Generating => self.generating = n,
            TaskState::Done => self.done = n,
            TaskState::Failed => self.failed = n,
            TaskState::Cancelled => self.cancelled = n,
        }
    }

    pub fn total(&self) -> u64 {
        self.generating + self.done + self.failed + self.cancelled
    }
}

/// A finished task's result job was in the queue already (`linked`: the
/// task it names, if any). Whether to link it to this task, and what the
/// task says about it. A v1 file enqueued by hand is linked to its task; a
/// v2 task whose id a file job holds cannot be keyed by it (its download
/// would be that file's): the task says so. Pure.
pub(crate) fn existing_job(
    job_id: i64,
    task_id: i64,
    result: TaskResult,
    linked: Option<i64>,
) -> (bool, Option<String>) {
    match (result, linked) {
        (_, Some(other)) if other == task_id => (false, None),
        (TaskResult::File(_), None) => (
            true,
            Some(format!(
                "file {job_id} was already in the queue: linked to this task"
            )),
        ),
        (TaskResult::File(_), Some(other)) => (
            false,
            Some(format!(
                "file {job_id} was already in the queue, from task {other}"
            )),
        ),
        (TaskResult::Video, _) => (
            false,
            Some(format!(
                "its id is already a job of the queue (file {job_id}): its video was not enqueued"
            )),
        ),
    }
}

/// The history line a job made from a task starts with.
pub(crate) fn from_task_message(task: &Task) -> String {
    format!(
        "from generation task {} ({}), finished after {} polls",
        task.task_id, task.api, task.polls
    )
}

/// What `cancel` may do to a task: only a generating one stops.
pub(crate) fn cancel_task_verdict(state: TaskState) -> Result<(), &'static str> {
    match state {
        TaskState::Generating => Ok(()),
        TaskState::Done => Err("already done (its download is a job: cancel that)"),
        TaskState::Failed => Err("already failed"),
        TaskState::Cancelled => Err("already cancelled"),
    }
}

/// What `retry` may do to a task: a failed or cancelled one generates
/// (is polled) again, with a new deadline.
pub(crate) fn retry_task_verdict(state: TaskState) -> Result<(), &'static str> {
    match state {
        TaskState::Failed | TaskState::Cancelled => Ok(()),
        TaskState::Generating => Err("still generating"),
        TaskState::Done => Err("already done (retry its job instead)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_verbs_apply_where_they_should() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>().unwrap(), state);
        }
        assert!(
            "queued"
                .parse::<TaskState>()
                .unwrap_err()
                .contains("generating")
        );
        assert!(cancel_task_verdict(TaskState::Generating).is_ok());
        assert!(retry_task_verdict(TaskState::Failed).is_ok());
        assert!(retry_task_verdict(TaskState::Cancelled).is_ok());
        for state in [TaskState::Done, TaskState::Failed, TaskState::Cancelled] {
            assert!(cancel_task_verdict(state).is_err());
        }
        for state in [TaskState::Generating, TaskState::Done] {
            assert!(retry_task_verdict(state).is_err());
        }
    }

    #[test]
    fn a_v2_result_is_keyed_by_its_task() {
        assert_eq!(TaskResult::File(9).job_id(1), 9);
        assert_eq!(TaskResult::Video.job_id(1), 1);
    }
}
