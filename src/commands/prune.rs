//! `prune`: old done jobs and their history out of the queue, a batch at a
//! time; files stay where they are.

use std::time::Duration;

use anyhow::Result;

use super::{open_existing_queue, rfc3339};
use crate::config::Settings;
use crate::queue::now_millis;
use crate::runtime::exit;

/// Jobs deleted per transaction: a few milliseconds of the write lock.
const BATCH: u32 = 1000;

/// Rest between batches, so the writers of a running daemon get the lock.
const PAUSE: Duration = Duration::from_millis(20);

pub(crate) async fn prune(settings: &Settings, older_than: Duration) -> Result<u8> {
    let queue = open_existing_queue(settings).await?;
    let age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
    let before = now_millis().saturating_sub(age);
    let mut after = None;
    let mut removed = 0u64;
    loop {
        let batch = queue.prune_done(before, after, BATCH).await?;
        removed += batch.removed;
        let Some(last) = batch.last else { break };
        after = Some(last);
        tokio::time::sleep(PAUSE).await;
    }
    queue.close().await;
    out!(
        "pruned {removed} done jobs finished before {} and their history (files are untouched)",
        rfc3339(before)
    );
    Ok(exit::OK)
}
