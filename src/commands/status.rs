//! `status`: the counts of each state.

use anyhow::Result;

use super::open_queue_to_read;
use crate::config::Settings;
use crate::queue::{JobState, Queue};
use crate::runtime::exit;

pub async fn status(settings: &Settings, as_json: bool) -> Result<u8> {
    let queue = open_queue_to_read(settings).await?;
    out!("{}", report(&queue, as_json).await?);
    Ok(exit::OK)
}

/// What `status` prints, as one block: `status --watch` prints it again
/// at each refresh.
pub(super) async fn report(queue: &Queue, as_json: bool) -> Result<String> {
    let counts = queue.status().await?;
    if as_json {
        return Ok(serde_json::to_string(&counts)?);
    }
    let mut lines: Vec<String> = JobState::ALL
        .iter()
        .map(|&state| format!("{:<10} {}", state.as_str(), counts.get(state)))
        .collect();
    lines.push(format!("{:<10} {}", "bytes", counts.bytes_done));
    Ok(lines.join("\n"))
}
