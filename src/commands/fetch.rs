//! `fetch ID`: one file in the foreground, its path on stdout.

use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{file_ids, open_queue_for_workers};
use crate::config::Settings;
use crate::daemon;
use crate::progress;
use crate::queue::{JobState, Queue};
use crate::runtime::{Interrupt, OnStop, engine, exit, host_problem_exit, spawn_signal_handler};
use crate::say;
use crate::worker::Outcome;

/// Longest wait `fetch` sits through in the foreground before another turn
/// (a rate-limit cool-down, a short back-off). A job handed back for longer
/// (a CDN's `Retry-After` of half an hour, say) stays queued for `run`, and
/// `fetch` says so and exits 1, as for a retry scheduled after a failure.
const FOREGROUND_WAIT_MAX: Duration = Duration::from_secs(60);

pub(crate) async fn fetch(settings: &Settings, raw: &str) -> Result<u8> {
    let id = file_ids(&[raw.to_string()])?[0];
    let queue = open_queue_for_workers(settings).await?;
    let (bars, observer) = progress::for_stderr(None);
    // Everything that can fail before any work (the key, the archive
    // directory) is checked before the id is enqueued: a failed call leaves
    // the queue as it was.
    let engine = engine(settings, queue.clone(), observer)?;
    queue.enqueue(&[id]).await?;
    if let Some(job) = queue.get(id).await? {
        match job.state {
            JobState::Done => return print_path(&job.final_path.unwrap_or_default()),
            JobState::Failed | JobState::Cancelled => {
                queue.retry(&[id]).await?;
            }
            _ => {}
        }
    }
    let shutdown = CancellationToken::new();
    let interrupt = spawn_signal_handler(shutdown.clone(), None, OnStop::Interrupt);
    let code = loop {
        let outcome = daemon::fetch_one(&engine, id, &shutdown).await?;
        if let Some(code) = turn_ended(outcome, id, &queue, &shutdown, &interrupt).await? {
            break code;
        }
    };
    if let Some(b) = bars {
        b.finish();
    }
    queue.close().await;
    Ok(code)
}

/// What the end of a turn on `id` means to `fetch`: an exit code, or (for
/// a requeue, once the job is due) `None`, another turn.
async fn turn_ended(
    outcome: Option<Outcome>,
    id: i64,
    queue: &Queue,
    shutdown: &CancellationToken,
    interrupt: &Interrupt,
) -> Result<Option<u8>> {
    let code = match outcome {
        Some(Outcome::Done { path, .. }) => print_path(&path.display().to_string())?,
        Some(Outcome::Failed { error }) => {
            say!("minimax-dl: file {id} failed: {error}");
            exit::JOB_FAILURES
        }
        Some(Outcome::RetryLater { error, delay }) => {
            say!(
                "minimax-dl: file {id}: {error}. It stays queued; `minimax-dl run` retries it in {}s",
                delay.as_secs()
            );
            exit::JOB_FAILURES
        }
        Some(Outcome::Requeued { reason }) => {
            let due = queue.get(id).await?.map_or(0, |j| j.next_attempt_at);
            let wait = Duration::from_millis((due - crate::queue::now_millis()).max(0) as u64);
            if wait > FOREGROUND_WAIT_MAX {
                say!(
                    "minimax-dl: file {id}: {reason}. It stays queued; `minimax-dl run` retries it in {}s",
                    wait.as_secs()
                );
                exit::JOB_FAILURES
            } else {
                info!("{reason}; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => interrupted(id, interrupt),
                    _ = tokio::time::sleep(wait) => return Ok(None),
                }
            }
        }
        Some(Outcome::Cancelled) => {
            say!("minimax-dl: file {id} was cancelled");
            exit::JOB_FAILURES
        }
        Some(Outcome::Paused(problem)) => {
            say!("minimax-dl: {}", problem.message());
            host_problem_exit(&problem)
        }
        Some(Outcome::Stopped) => interrupted(id, interrupt),
        Some(Outcome::LeaseLost) | None => match queue.get(id).await? {
            Some(job) if job.state == JobState::Done => {
                print_path(&job.final_path.unwrap_or_default())?
            }
            _ => {
                say!("minimax-dl: file {id} is being downloaded by another worker");
                exit::JOB_FAILURES
            }
        },
    };
    Ok(Some(code))
}

/// The path of the file in the archive, on stdout.
fn print_path(path: &str) -> Result<u8> {
    out!("{path}");
    Ok(exit::OK)
}

/// `fetch` stopped by a signal: say so, and exit with the signal's code.
fn interrupted(id: i64, interrupt: &Interrupt) -> u8 {
    say!("minimax-dl: interrupted; file {id} stays queued and resumes from its last checkpoint");
    interrupt.code().unwrap_or(exit::INTERRUPTED)
}
