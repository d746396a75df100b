//! The pool's task poller: takes the generation tasks whose poll is due
//! (a slot in the queue, so that processes sharing it never poll one task
//! at once) and polls them one after another, every call under the pool's
//! rate gate. An account-level answer goes to the pool like a worker's
//! (the pool pauses, probes, resumes); while the gate is held, nothing is
//! polled.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::tasks::Reporter;
use crate::config::TaskSettings;
use crate::intake::policy::POLL_SLOT;
use crate::intake::{Polled, poll_task};
use crate::queue::{PollRecord, Task, now_millis};
use crate::worker::{Engine, Outcome};

/// Tasks taken from the queue at once.
const BATCH: usize = 16;
/// How often an idle poller looks for due tasks (others may enqueue).
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// How often a poller held by a pause looks whether it is lifted.
const HELD_LOOK: Duration = Duration::from_millis(500);

pub(super) async fn run(
    engine: Engine,
    settings: TaskSettings,
    reporter: Reporter,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        if engine.gate.held().is_some() {
            pause(&stop, HELD_LOOK).await;
            continue;
        }
        let due = match engine.queue.take_due_tasks(BATCH, POLL_SLOT).await {
            Ok(due) => {
                failures = 0;
                due
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    warn!("cannot take due tasks from the queue: {e}");
                }
                pause(&stop, IDLE_LOOK * failures.min(30)).await;
                continue;
            }
        };
        if due.is_empty() {
            pause(&stop, until_next_poll(&engine).await).await;
            continue;
        }
        poll_batch(&engine, &settings, &reporter, &stop, due).await;
    }
}

/// Polls each task in turn; a pause or the stop hands the rest back.
async fn poll_batch(
    engine: &Engine,
    settings: &TaskSettings,
    reporter: &Reporter,
    stop: &CancellationToken,
    due: Vec<Task>,
) {
    let mut tasks = due.into_iter();
    for task in tasks.by_ref() {
        match poll_task(engine, &task, settings, stop).await {
            Ok(Polled::Recorded) => {
                engine.observer.task_polled();
                continue;
            }
            Ok(Polled::Paused(hold)) => {
                let _ = reporter.send((task.task_id, Ok(Outcome::Paused(hold.into()))));
            }
            Ok(Polled::Stopped) => {}
            Err(e) => {
                warn!(task_id = task.task_id, "cannot record a task's poll: {e}");
                continue;
            }
        }
        break;
    }
    let release = PollRecord::Released {
        next_in: Duration::ZERO,
    };
    for task in tasks {
        let _ = engine.queue.record_poll(task.task_id, &release).await;
    }
}

/// How long to wait for the next due task: until it is due, at most
/// [`IDLE_LOOK`] (another process may enqueue one due at once).
async fn until_next_poll(engine: &Engine) -> Duration {
    match engine.queue.next_task_poll().await {
        Ok(Some(due)) => Duration::from_millis((due - now_millis()).clamp(10, 1000) as u64),
        _ => IDLE_LOOK,
    }
    .min(IDLE_LOOK)
}

async fn pause(stop: &CancellationToken, wait: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(wait) => {}
    }
}
