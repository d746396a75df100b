//! `retry` and `cancel`: the user verbs that change jobs (and, for an id
//! no job has, the generation task of that id).

use std::time::Duration;

use anyhow::Result;

use super::{file_ids, open_existing_queue};
use crate::config::Settings;
use crate::queue::{JobState, VerbOutcome};
use crate::runtime::exit;
use crate::say;

/// Prints one line per id for retry/cancel; unknown ids make the exit 2.
fn report_verb(verb: &str, outcomes: &[(i64, VerbOutcome)]) -> Result<u8> {
    let mut code = exit::OK;
    for (id, outcome) in outcomes {
        match outcome {
            VerbOutcome::Applied => out!("{id}: {verb}"),
            VerbOutcome::Requested => out!("{id}: running; its worker was asked to stop"),
            VerbOutcome::Refused(why) => {
                say!("minimax-dl: {id}: not {verb}: {why}");
                code = exit::USAGE;
            }
            VerbOutcome::Unknown => {
                say!("minimax-dl: {id}: not in the queue");
                code = exit::USAGE;
            }
        }
    }
    Ok(code)
}

pub(crate) async fn retry(settings: &Settings, raw: &[String], all_failed: bool) -> Result<u8> {
    let queue = open_existing_queue(settings).await?;
    if all_failed {
        let n = queue.retry_all_failed().await?;
        out!("requeued {n} failed jobs");
        return Ok(exit::OK);
    }
    let ids = file_ids(raw)?;
    let mut outcomes = queue.retry(&ids).await?;
    let tasks = unknown(&outcomes);
    if !tasks.is_empty() {
        let polled = queue.retry_tasks(&tasks, settings.tasks.deadline).await?;
        take_task_outcomes(&mut outcomes, polled);
    }
    report_verb("requeued", &outcomes)
}

/// Ids no job has: they may name generation tasks.
fn unknown(outcomes: &[(i64, VerbOutcome)]) -> Vec<i64> {
    outcomes
        .iter()
        .filter(|(_, o)| *o == VerbOutcome::Unknown)
        .map(|(id, _)| *id)
        .collect()
}

/// The tasks' outcomes in place of "not in the queue".
fn take_task_outcomes(outcomes: &mut [(i64, VerbOutcome)], tasks: Vec<(i64, VerbOutcome)>) {
    for (id, task) in tasks {
        if let Some(slot) = outcomes
            .iter_mut()
            .find(|(i, o)| *i == id && *o == VerbOutcome::Unknown)
        {
            slot.1 = match task {
                VerbOutcome::Refused(why) => VerbOutcome::Refused(format!("task {why}")),
                other => other,
            };
        }
    }
}

pub(crate) async fn cancel(settings: &Settings, raw: &[String]) -> Result<u8> {
    let ids = file_ids(raw)?;
    let queue = open_existing_queue(settings).await?;
    let mut outcomes = queue.cancel(&ids).await?;
    let tasks = unknown(&outcomes);
    if !tasks.is_empty() {
        take_task_outcomes(&mut outcomes, queue.cancel_tasks(&tasks).await?);
    }
    // Wait for live workers to confirm (they check every second).
    let asked: Vec<i64> = outcomes
        .iter()
        .filter(|(_, o)| *o == VerbOutcome::Requested)
        .map(|(id, _)| *id)
        .collect();
    let mut code = report_verb("cancelled", &outcomes)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut pending = asked;
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut still = Vec::new();
        for id in pending {
            match queue.get(id).await? {
                Some(job) if job.state == JobState::Running => still.push(id),
                Some(job) => out!("{id}: {}", job.state),
                None => {}
            }
        }
        pending = still;
    }
    for id in pending {
        say!(
            "minimax-dl: {id}: its worker has not confirmed yet; it will stop at its next heartbeat"
        );
        code = code.max(exit::JOB_FAILURES);
    }
    Ok(code)
}
