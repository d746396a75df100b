//! `list`: the jobs, one line (or one JSON object) each, streamed.

use anyhow::Result;
use futures_util::StreamExt;

use super::{job_json, open_queue_to_read};
use crate::config::Settings;
use crate::queue::JobState;
use crate::runtime::exit;

pub async fn list(
    settings: &Settings,
    state: Option<JobState>,
    limit: Option<u64>,
    as_json: bool,
) -> Result<u8> {
    let queue = open_queue_to_read(settings).await?;
    let mut jobs = queue.list_stream(state, limit);
    if as_json {
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
