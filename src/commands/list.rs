//! `list`: the jobs, or the generation tasks, one line (or one JSON
//! object) each, streamed.

use anyhow::{Result, bail};
use futures_util::StreamExt;

use super::{job_json, open_queue_to_read, task_json};
use crate::config::Settings;
use crate::queue::{JobState, Queue, TaskState};
use crate::runtime::exit;

/// What `list` was asked for.
pub(crate) struct Listing<'a> {
    pub state: Option<&'a str>,
    pub tasks: bool,
    pub limit: Option<u64>,
    pub json: bool,
}

pub(crate) async fn list(settings: &Settings, listing: Listing<'_>) -> Result<u8> {
    let generating = listing.state == Some(TaskState::Generating.as_str());
    if listing.tasks || generating {
        let state = listing
            .state
            .map(str::parse::<TaskState>)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let queue = open_queue_to_read(settings).await?;
        return list_tasks(&queue, state, listing.limit, listing.json).await;
    }
    let state = match listing.state.map(str::parse::<JobState>).transpose() {
        Ok(state) => state,
        Err(e) => bail!("{e}, or generating (tasks)"),
    };
    let queue = open_queue_to_read(settings).await?;
    let mut jobs = queue.list_stream(state, listing.limit);
    if listing.json {
        while let Some(job) = jobs.next().await {
            out!("{}", job_json(&job?));
        }
        return Ok(exit::OK);
    }
    out!(
        "{:>20}  {:<9}  {:>3}  {:>23}  PATH / LAST ERROR",
        "FILE_ID",
        "STATE",
        "TRY",
        "BYTES"
    );
    while let Some(job) = jobs.next().await {
        let job = job?;
        let bytes = match job.bytes_expected {
            Some(total) => format!("{}/{}", job.bytes_done, total),
            None => job.bytes_done.to_string(),
        };
        let detail = match job.state {
            JobState::Done => job.final_path.clone().unwrap_or_default(),
            _ => job.last_error.clone().unwrap_or_default(),
        };
        out!(
            "{:>20}  {:<9}  {:>3}  {:>23}  {}",
            job.file_id,
            job.state.as_str(),
            job.attempts,
            bytes,
            detail
        );
    }
    Ok(exit::OK)
}

async fn list_tasks(
    queue: &Queue,
    state: Option<TaskState>,
    limit: Option<u64>,
    as_json: bool,
) -> Result<u8> {
    let mut tasks = queue.list_tasks_stream(state, limit);
    if as_json {
        while let Some(task) = tasks.next().await {
            out!("{}", task_json(&task?));
        }
        return Ok(exit::OK);
    }
    out!(
        "{:>20}  {:<3}  {:<10}  {:>5}  {:>20}  MINIMAX STATUS / LAST ERROR",
        "TASK_ID",
        "API",
        "STATE",
        "POLLS",
        "FILE_ID"
    );
    while let Some(task) = tasks.next().await {
        let task = task?;
        let word = task
            .minimax_status
            .clone()
            .filter(|_| task.state == TaskState::Generating);
        let detail = task.last_error.clone().or(word).unwrap_or_default();
        out!(
            "{:>20}  {:<3}  {:<10}  {:>5}  {:>20}  {}",
            task.task_id,
            task.api.as_str(),
            task.state.as_str(),
            task.polls,
            task.file_id.map(|id| id.to_string()).unwrap_or_default(),
            detail
        );
    }
    Ok(exit::OK)
}
