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
pub enum ReceiveError {
    /// The body is not a callback: the sender's mistake (400).
    #[error(transparent)]
    Body(#[from] CallbackError),
    /// The queue did not commit it: MiniMax should deliver it again (503).
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Parses a delivery's body and applies it (see [`apply_callback`]).
pub async fn receive(
    queue: &Queue,
    body: &[u8],
    deadline: Duration,
) -> Result<CallbackReply, ReceiveError> {
    let callback = parse_callback(body)?;
    Ok(apply_callback(queue, callback, deadline).await?)
}

/// What the handler answers once the queue has committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallbackReply {
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
pub async fn apply_callback(
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
