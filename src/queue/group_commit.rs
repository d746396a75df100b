//! Group commit: completions made at the same moment share one statement.

use std::collections::HashSet;
use std::path::Path;

use tokio::sync::oneshot;

use super::error::lease_held;
use super::store::Store;
use super::{JobState, Queue, QueueError};

/// Completions waiting for the next group commit (see [`Queue::complete`]).
#[derive(Debug, Default)]
pub(super) struct CompletionBatch {
    waiting: std::sync::Mutex<Vec<PendingCompletion>>,
    /// Held by the caller committing a batch.
    committer: tokio::sync::Mutex<()>,
}

#[derive(Clone, Debug)]
pub(crate) struct Completion {
    pub(crate) file_id: i64,
    pub(crate) owner: String,
    pub(crate) path: String,
}

type PendingCompletion = (Completion, oneshot::Sender<Result<(), QueueError>>);

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Queue {
    /// The file is verified and in place: the job is done (see
    /// [`Lease::complete`](super::Lease::complete), the only caller).
    ///
    /// Concurrent calls share one statement (group commit, the way LevelDB
    /// batches concurrent writers): the caller that finds the committer free
    /// commits every completion waiting, and the others find theirs already
    /// done. Each still returns only once its own completion is committed.
    pub(super) async fn complete(
        &self,
        file_id: i64,
        owner: &str,
        final_path: &Path,
    ) -> Result<(), QueueError> {
        let completion = Completion {
            file_id,
            owner: owner.to_string(),
            path: final_path.to_string_lossy().into_owned(),
        };
        let (reply, mut outcome) = oneshot::channel();
        lock(&self.completions.waiting).push((completion.clone(), reply));
        let turn = self.completions.committer.lock().await;
        match outcome.try_recv() {
            Ok(result) => return result,
            // Still waiting, so ours is in the batch this caller takes.
            Err(oneshot::error::TryRecvError::Empty) => {}
            // Taken by a committer that was dropped mid-way: do it alone.
            Err(oneshot::error::TryRecvError::Closed) => {
                drop(turn);
                return self.complete_after_lost_reply(&completion).await;
            }
        }
        // Completions that are ready to be made (workers finishing at the
        // same moment) join this batch: yield while the batch still grows.
        // This waits only for runnable tasks, never for a timer.
        let mut waiting = lock(&self.completions.waiting).len();
        loop {
            tokio::task::yield_now().await;
            let now_waiting = lock(&self.completions.waiting).len();
            if now_waiting == waiting {
                break;
            }
            waiting = now_waiting;
        }
        let batch = std::mem::take(&mut *lock(&self.completions.waiting));
        // One completion per job in the statement: a second one for the same
        // job (a stale worker's, say) is answered on its own afterwards, so
        // it cannot be told of the other's success.
        let mut seen = HashSet::new();
        let (firsts, repeats): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|(c, _)| seen.insert(c.file_id));
        let (completions, replies): (Vec<Completion>, Vec<_>) = firsts.into_iter().unzip();
        match on_store_within!(self, s => Store::complete_many(s, &completions).await) {
            Ok(done) => {
                for (completion, reply) in completions.iter().zip(replies) {
                    let held = u64::from(done.contains(&completion.file_id));
                    let _ = reply.send(lease_held(held, completion.file_id));
                }
            }
            // Each alone, so every caller gets the error of its own.
            Err(_) => {
                for (completion, reply) in completions.iter().zip(replies) {
                    let _ = reply.send(self.complete_alone(completion).await);
                }
            }
        }
        for (completion, reply) in repeats {
            let _ = reply.send(self.complete_alone(&completion).await);
        }
        drop(turn);
        match outcome.await {
            Ok(result) => result,
            Err(_) => self.complete_after_lost_reply(&completion).await,
        }
    }

    async fn complete_alone(&self, completion: &Completion) -> Result<(), QueueError> {
        let done = on_store_within!(self, s => Store::complete_many(s, std::slice::from_ref(completion)).await)?;
        lease_held(
            u64::from(done.contains(&completion.file_id)),
            completion.file_id,
        )
    }

    /// A committer took this completion and was dropped before answering:
    /// its statement may or may not have committed. Done at this path means
    /// it did.
    async fn complete_after_lost_reply(&self, completion: &Completion) -> Result<(), QueueError> {
        match self.complete_alone(completion).await {
            Err(QueueError::LeaseLost(id)) => match self.get(id).await? {
                Some(job)
                    if job.state == JobState::Done
                        && job.final_path.as_deref() == Some(completion.path.as_str()) =>
                {
                    Ok(())
                }
                _ => Err(QueueError::LeaseLost(id)),
            },
            other => other,
        }
    }
}
