//! `export`: the archive's manifest, streamed a page of jobs at a time.

use std::io::{self, BufWriter, Write};

use anyhow::Result;
use futures_util::StreamExt;

use super::open_queue_to_read;
use crate::archive::manifest::{Row, csv_header};
use crate::cli::ExportFormat;
use crate::config::Settings;
use crate::queue::{JobState, Queue};
use crate::runtime::exit;

pub(crate) async fn export(
    settings: &Settings,
    format: ExportFormat,
    state: Option<JobState>,
) -> Result<u8> {
    let queue = open_queue_to_read(settings).await?;
    match write_manifest(&queue, format, state).await {
        // `| head` has read enough.
        Err(e) if is_broken_pipe(&e) => Ok(exit::OK),
        Err(e) => Err(e),
        Ok(()) => Ok(exit::OK),
    }
}

async fn write_manifest(
    queue: &Queue,
    format: ExportFormat,
    state: Option<JobState>,
) -> Result<()> {
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout());
    if format == ExportFormat::Csv {
        out.write_all(csv_header().as_bytes())?;
        out.write_all(b"\r\n")?;
    }
    let mut jobs = queue.list_stream(state, None);
    while let Some(job) = jobs.next().await {
        let row = Row::of(&job?);
        match format {
            ExportFormat::Jsonl => {
                out.write_all(row.json_line().as_bytes())?;
                out.write_all(b"\n")?;
            }
            ExportFormat::Csv => {
                out.write_all(row.csv_line().as_bytes())?;
                out.write_all(b"\r\n")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
