//! The pool's task poller: takes the generation tasks whose poll is due
//! (a slot in the queue, so that processes sharing it never poll one task
//! at once) and polls them one after another, every call under the pool's
//! rate gate. An account-level answer goes to the pool like a worker's
//! (the pool pauses, probes, resumes); while the gate is held, nothing is
//! polled. A panic while polling a task (a bug) is caught like a worker's:
//! the task is polled again later, and failed with the panic's message
//! after [`PANICS_BEFORE_FAILING`] of them, while the poller goes on with
//! the others (uncaught, it would end polling for the life of the daemon).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::running::Reporter;
use crate::config::TaskSettings;
use crate::intake::policy::{POLL_SLOT, poll_interval};
use crate::intake::{Polled, poll_task};
use crate::queue::{PollRecord, Task, now_millis};
use crate::worker::{Engine, Outcome, panic_message};

/// Tasks taken from the queue at once.
const BATCH: usize = 16;
/// How often an idle poller looks for due tasks (others may enqueue).
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// How often a poller held by a pause looks whether it is lifted.
const HELD_LOOK: Duration = Duration::from_millis(500);
/// Panics in polls of one task (in this process) before it is failed:
/// a bug that recurs on every poll must end the task, not poll it for ever.
pub(crate) const PANICS_BEFORE_FAILING: u32 = 3;

/// Panics met so far, by task.
type Panics = HashMap<i64, u32>;

pub(super) async fn run(
    engine: Engine,
    settings: TaskSettings,
    reporter: Reporter,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    let mut panics = Panics::new();
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
        poll_batch(&engine, &settings, &reporter, &stop, due, &mut panics).await;
    }
}

/// Polls each task in turn; a pause or the stop hands the rest back.
async fn poll_batch(
    engine: &Engine,
    settings: &TaskSettings,
    reporter: &Reporter,
    stop: &CancellationToken,
    due: Vec<Task>,
    panics: &mut Panics,
) {
    let mut tasks = due.into_iter();
    for task in tasks.by_ref() {
        let polled = std::panic::AssertUnwindSafe(async {
            engine.hooks.crash_point("poll-task");
            poll_task(engine, &task, settings, stop).await
        })
        .catch_unwind()
        .await;
        let polled = match polled {
            Ok(polled) => polled,
            Err(panic) => {
                after_panic(engine, settings, &task, &panic_message(&*panic), panics).await;
                continue;
            }
        };
        match polled {
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

/// A bug met while polling `task` (the panic itself was printed by the
/// panic hook): the task is due again after its usual interval with the
/// panic as its last error, and after [`PANICS_BEFORE_FAILING`] panics it
/// fails with it.
async fn after_panic(
    engine: &Engine,
    settings: &TaskSettings,
    task: &Task,
    message: &str,
    panics: &mut Panics,
) {
    let error = format!(
        "internal error (a bug in minimax-dl {}; please report it): {message}",
        env!("CARGO_PKG_VERSION")
    );
    error!(task_id = task.task_id, "{error}");
    let count = panics.entry(task.task_id).or_default();
    *count += 1;
    let record = if *count >= PANICS_BEFORE_FAILING {
        panics.remove(&task.task_id);
        PollRecord::Failed { reason: &error }
    } else {
        let age = Duration::from_millis((now_millis() - task.created_at).max(0) as u64);
        PollRecord::Pending {
            minimax_status: task.minimax_status.as_deref(),
            error: Some(&error),
            next_in: poll_interval(age, settings.poll_floor),
        }
    };
    if let Err(e) = engine.queue.record_poll(task.task_id, &record).await {
        warn!(task_id = task.task_id, "cannot record a task's poll: {e}");
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
