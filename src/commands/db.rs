//! `db copy`: a queue moved into another database, the source only read.

use anyhow::{Context, Result};

use crate::queue::copy::{self, CopyOptions};
use crate::queue::{DbLocation, Queue};
use crate::runtime::exit;
use crate::say;

pub(crate) async fn copy(from: &str, to: &str, merge: bool) -> Result<u8> {
    let source = Queue::open_read_only(&DbLocation(from.to_string())).await?;
    let target = Queue::open(&DbLocation(to.to_string())).await?;
    let options = CopyOptions {
        merge,
        // The copied jobs' partial files and archive are on this host.
        file_host: Some(crate::worker::host_name()),
    };
    say!(
        "minimax-dl: copying {} into {}",
        source.location(),
        target.location()
    );
    let mut last_said = 0;
    let report = copy::copy(&source, &target, &options, |copied| {
        if copied >= last_said + 100_000 {
            last_said = copied;
            say!("minimax-dl: {copied} jobs copied");
        }
    })
    .await
    .context("db copy stopped")?;
    out!(
        "copied {} jobs ({} already there, left as they were), {} history lines and {} generation tasks from {} into {}; counts match",
        report.copied,
        report.skipped,
        report.events,
        report.tasks,
        source.location(),
        target.location()
    );
    source.close().await;
    target.close().await;
    Ok(exit::OK)
}
