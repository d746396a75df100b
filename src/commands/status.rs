//! `status`: the counts of each state.

use anyhow::Result;

use super::open_queue_to_read;
use crate::config::Settings;
use crate::queue::JobState;
use crate::runtime::exit;

pub async fn status(settings: &Settings, as_json: bool) -> Result<u8> {
    let queue = open_queue_to_read(settings).await?;
    let counts = queue.status().await?;
    if as_json {
        out!("{}", serde_json::to_string(&counts)?);
    } else {
        for state in JobState::ALL {
            out!("{:<10} {}", state.as_str(), counts.get(state));
        }
        out!("{:<10} {}", "bytes", counts.bytes_done);
    }
    Ok(exit::OK)
}
