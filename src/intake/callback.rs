//! What a callback MiniMax POSTs to `/callback/{token}` does to the queue.
//! A challenge is echoed; a finished task becomes its job at once (no
//! waiting for the next poll); any other update makes the task known and
//! due for a poll now, so the poll (not the callback, which may be late,
//! repeated or forged) decides a failure. Every delivery may repeat:
//! enqueueing is idempotent.

use std::time::Duration;

use crate::api::task::parse_callback;
use crate::api::{Callback, CallbackError, TaskStatus};
use crate::queue::{NewTask, Queue, QueueError, TaskResult};

/// Why a delivery was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReceiveError {
    /// The body is not a callback: the sender's mistake (400).
    #[error(transparent)]
    Body(#[from] CallbackError),
    /// The queue did not commit it: MiniMax should deliver it again (503).
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Parses a delivery's body and applies it (see [`apply_callback`]).
pub(crate) async fn receive(
    queue: &Queue,
    body: &[u8],
    deadline: Duration,
) -> Result<CallbackReply, ReceiveError> {
    let callback = parse_callback(body)?;
    Ok(apply_callback(queue, callback, deadline).await?)
}

/// What the handler answers once the queue has committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CallbackReply {
    /// Echo this challenge.
    Challenge(String),
    /// The update was taken (or was already known).
    Taken {
        task_id: i64,
        /// The task's result was enqueued by this delivery.
        handed_over: bool,
    },
}

/// Applies one parsed callback. Returns only after the queue committed.
pub(crate) async fn apply_callback(
    queue: &Queue,
    callback: Callback,
    deadline: Duration,
) -> Result<CallbackReply, QueueError> {
    let (id, api, status) = match callback {
        Callback::Challenge(challenge) => return Ok(CallbackReply::Challenge(challenge)),
        Callback::Task { id, api, status } => (id, api, status),
    };
    let result = match status {
        TaskStatus::File(file_id) => Some(TaskResult::File(file_id)),
        TaskStatus::Video(_) => Some(TaskResult::Video),
        _ => None,
    };
    let task = NewTask {
        task_id: id,
        api,
        result,
    };
    let report = queue.enqueue_tasks(&[task], deadline).await?;
    if result.is_none() {
        queue.poll_task_now(id).await?;
    }
    Ok(CallbackReply::Taken {
        task_id: id,
        handed_over: report.handed_over > 0,
    })
}

#[cfg(test)]
mod tests {
    //! Deliveries in every order MiniMax may make them (repeated, late,
    //! contradicting an end the queue already knows) on a real queue: each
    //! leaves the queue as the first delivery of its kind did.

    use super::*;
    use crate::ids::TaskApi;
    use crate::queue::{DbLocation, PollRecord, TaskState};

    const DAY: Duration = Duration::from_secs(86_400);

    async fn queue() -> (tempfile::TempDir, Queue) {
        let dir = tempfile::tempdir().unwrap();
        let location = DbLocation(dir.path().join("queue.db").to_string_lossy().into_owned());
        let queue = Queue::open(&location).await.unwrap();
        (dir, queue)
    }

    fn v1(id: i64, status: TaskStatus) -> Callback {
        Callback::Task {
            id,
            api: TaskApi::V1,
            status,
        }
    }

    fn processing() -> TaskStatus {
        TaskStatus::Generating("Processing".into())
    }

    async fn deliver(queue: &Queue, callback: Callback) -> CallbackReply {
        apply_callback(queue, callback, DAY).await.unwrap()
    }

    async fn state(queue: &Queue, task_id: i64) -> (TaskState, Option<i64>) {
        let task = queue.get_task(task_id).await.unwrap().expect("task known");
        (task.state, task.file_id)
    }

    fn taken(task_id: i64, handed_over: bool) -> CallbackReply {
        CallbackReply::Taken {
            task_id,
            handed_over,
        }
    }

    #[tokio::test]
    async fn a_challenge_is_echoed_and_records_nothing() {
        let (_dir, queue) = queue().await;
        let reply = deliver(&queue, Callback::Challenge("c-1".into())).await;
        assert_eq!(reply, CallbackReply::Challenge("c-1".into()));
        assert_eq!(queue.task_counts().await.unwrap().generating, 0);
    }

    #[tokio::test]
    async fn a_repeated_success_hands_the_file_over_once() {
        let (_dir, queue) = queue().await;
        assert_eq!(
            deliver(&queue, v1(1, TaskStatus::File(10))).await,
            taken(1, true)
        );
        for _ in 0..3 {
            assert_eq!(
                deliver(&queue, v1(1, TaskStatus::File(10))).await,
                taken(1, false)
            );
        }
        assert_eq!(state(&queue, 1).await, (TaskState::Done, Some(10)));
        assert_eq!(queue.status().await.unwrap().queued, 1, "one job");
    }

    #[tokio::test]
    async fn a_processing_after_the_success_changes_nothing() {
        let (_dir, queue) = queue().await;
        deliver(&queue, v1(2, TaskStatus::File(20))).await;
        assert_eq!(deliver(&queue, v1(2, processing())).await, taken(2, false));
        assert_eq!(state(&queue, 2).await, (TaskState::Done, Some(20)));
        assert!(queue.get(20).await.unwrap().is_some(), "the job stays");
        assert_eq!(queue.status().await.unwrap().queued, 1);
    }

    #[tokio::test]
    async fn a_success_after_processing_updates_hands_the_file_over() {
        let (_dir, queue) = queue().await;
        for _ in 0..2 {
            assert_eq!(deliver(&queue, v1(3, processing())).await, taken(3, false));
            assert_eq!(state(&queue, 3).await, (TaskState::Generating, None));
        }
        assert_eq!(
            deliver(&queue, v1(3, TaskStatus::File(30))).await,
            taken(3, true)
        );
        assert_eq!(state(&queue, 3).await, (TaskState::Done, Some(30)));
    }

    #[tokio::test]
    async fn a_failure_callback_never_fails_the_task() {
        let (_dir, queue) = queue().await;
        let failed = TaskStatus::Failed("forged or early".into());
        assert_eq!(deliver(&queue, v1(4, failed)).await, taken(4, false));
        assert_eq!(state(&queue, 4).await, (TaskState::Generating, None));
        let due = queue.take_due_tasks(8, DAY).await.unwrap();
        assert_eq!(due.len(), 1, "due for a poll now: the query decides");
    }

    #[tokio::test]
    async fn a_success_for_a_task_its_query_failed_changes_nothing() {
        let (_dir, queue) = queue().await;
        deliver(&queue, v1(5, processing())).await;
        let due = queue.take_due_tasks(8, DAY).await.unwrap();
        assert_eq!(due.len(), 1);
        let failed = PollRecord::Failed {
            reason: "MiniMax says Fail",
        };
        assert!(queue.record_poll(5, &failed).await.unwrap());
        assert_eq!(
            deliver(&queue, v1(5, TaskStatus::File(50))).await,
            taken(5, false)
        );
        assert_eq!(state(&queue, 5).await, (TaskState::Failed, None));
        assert!(queue.get(50).await.unwrap().is_none(), "no job from it");
    }
}
