//! `db copy`: moves a queue (jobs with their attempts, schedules, leases,
//! recorded digests, and their history; generation tasks as they are)
//! from one store into another, for a user who outgrows one host. The source is only read. The API-call window
//! and the fleet row are not copied: they describe the last minute, not the
//! archive.

use std::collections::HashSet;

use futures_util::TryStreamExt;

use super::{Job, JobState, Queue, QueueError, StatusCounts, now_millis};

/// Jobs per page: read from the source, written to the target in one
/// transaction.
const PAGE: usize = 1000;

#[derive(Clone, Debug, Default)]
pub(crate) struct CopyOptions {
    /// Copy into a queue that already has jobs: ids it has are left as
    /// they are (and counted as skipped).
    pub merge: bool,
    /// The host whose archive and partial files the copied jobs refer to
    /// (the source's host), recorded where a job names none.
    pub file_host: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CopyReport {
    pub copied: u64,
    pub skipped: u64,
    pub events: u64,
    /// Generation tasks copied (tasks the target had are left as they are).
    pub tasks: u64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CopyError {
    #[error(
        "{target} already holds {jobs} jobs: copy into an empty queue, or pass --merge to add only the ids it does not have"
    )]
    TargetNotEmpty { target: String, jobs: u64 },
    #[error(
        "{source_db} has {live} jobs running under live leases: stop the daemons using it (`systemctl stop minimax-dl`) and copy again"
    )]
    SourceBusy { source_db: String, live: u64 },
    #[error(
        "the copy does not match its source: {source_db} has {expected}, {target} has {found}. Nothing in the source was changed; drop the target's tables and copy again"
    )]
    Mismatch {
        source_db: String,
        target: String,
        expected: String,
        found: String,
    },
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Copies every job of `source` into `target`, a page at a time, then
/// checks the per-state counts of both by a full scan. `progress` is told
/// the jobs copied so far after each page.
pub(crate) async fn copy(
    source: &Queue,
    target: &Queue,
    options: &CopyOptions,
    mut progress: impl FnMut(u64),
) -> Result<CopyReport, CopyError> {
    let before = target.status_by_scan().await?;
    let already = total(&before);
    if already > 0 && !options.merge {
        return Err(CopyError::TargetNotEmpty {
            target: target.location().to_string(),
            jobs: already,
        });
    }
    refuse_live_leases(source).await?;
    let mut report = CopyReport::default();
    let mut pages = source.list_stream(None, None).try_chunks(PAGE);
    while let Some(page) = pages.try_next().await.map_err(|e| e.1)? {
        let ids: Vec<i64> = page.iter().map(|job| job.file_id).collect();
        let events = source.events_of(&ids).await?;
        let page = with_file_host(page, options.file_host.as_deref());
        let copied = target.import(&page, &events).await?;
        report.copied += copied;
        report.skipped += page.len() as u64 - copied;
        report.events += events.len() as u64;
        progress(report.copied);
    }
    let mut tasks = source.list_tasks_stream(None, None).try_chunks(PAGE);
    while let Some(page) = tasks.try_next().await.map_err(|e| e.1)? {
        report.tasks += target.import_tasks(&page).await?;
    }
    check_counts(source, target, options, &before).await?;
    Ok(report)
}

/// Jobs with bytes on a disk (a partial file, a digest, a placed file) that
/// name no host, from a queue made before the column, are given `host`:
/// their files are there, and that host resumes them. A job never started
/// has nothing anywhere and stays without one.
fn with_file_host(mut jobs: Vec<Job>, host: Option<&str>) -> Vec<Job> {
    for job in &mut jobs {
        let on_disk = job.bytes_done > 0 || job.sha256.is_some() || job.final_path.is_some();
        if job.file_host.is_none() && on_disk {
            job.file_host = host.map(str::to_string);
        }
    }
    jobs
}

fn total(counts: &StatusCounts) -> u64 {
    JobState::ALL.iter().map(|&s| counts.get(s)).sum()
}

/// A daemon working the source would go on changing jobs the copy has
/// already taken.
async fn refuse_live_leases(source: &Queue) -> Result<(), CopyError> {
    let now = now_millis();
    let live = source
        .list_stream(Some(JobState::Running), None)
        .try_filter(|job| std::future::ready(job.lease_live(now)))
        .try_fold(0u64, |n, _| async move { Ok(n + 1) })
        .await?;
    if live > 0 {
        return Err(CopyError::SourceBusy {
            source_db: source.location().to_string(),
            live,
        });
    }
    Ok(())
}

/// Into an empty target: the same count per state. Merged: every source
/// id is in the target (copied now or there before).
async fn check_counts(
    source: &Queue,
    target: &Queue,
    options: &CopyOptions,
    before: &StatusCounts,
) -> Result<(), CopyError> {
    let expected = source.status_by_scan().await?;
    let found = target.status_by_scan().await?;
    let matches = if options.merge {
        total(&found) >= total(before) && missing_ids(source, target).await?.is_empty()
    } else {
        JobState::ALL
            .iter()
            .all(|&s| expected.get(s) == found.get(s))
    };
    if matches {
        return Ok(());
    }
    Err(CopyError::Mismatch {
        source_db: source.location().to_string(),
        target: target.location().to_string(),
        expected: describe(&expected),
        found: describe(&found),
    })
}

async fn missing_ids(source: &Queue, target: &Queue) -> Result<Vec<i64>, QueueError> {
    let have: HashSet<i64> = target
        .list_stream(None, None)
        .map_ok(|job| job.file_id)
        .try_collect()
        .await?;
    source
        .list_stream(None, None)
        .map_ok(|job| job.file_id)
        .try_filter(|id| std::future::ready(!have.contains(id)))
        .try_collect()
        .await
}

fn describe(counts: &StatusCounts) -> String {
    JobState::ALL
        .iter()
        .map(|&s| format!("{} {}", counts.get(s), s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
