//! `verify`: the fixity check. Done jobs are streamed from the queue and
//! their files re-hashed a few at a time; each gets a line, the summary
//! goes to stderr, and the exit code says whether all were intact.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use futures_util::stream::{self, BoxStream};
use futures_util::{StreamExt, TryStreamExt};

use super::{file_ids, open_existing_queue, open_queue_to_read};
use crate::archive::bucket::{Bucket, BucketLocation, BucketOptions, names_object_store};
use crate::archive::fixity::{self, Fixity};
use crate::config::Settings;
use crate::progress::Tally;
use crate::queue::{Job, JobState, Queue, QueueError, RecordedPath};
use crate::runtime::exit;
use crate::say;

/// Files hashed at once, at most: enough to keep a disk array busy, few
/// enough that one disk does not seek between them.
const MAX_PARALLEL: usize = 4;

pub(crate) async fn verify(
    settings: &Settings,
    raw: &[String],
    all: bool,
    requeue: bool,
    quick: bool,
) -> Result<u8> {
    let queue = if requeue {
        open_existing_queue(settings).await?
    } else {
        open_queue_to_read(settings).await?
    };
    let (jobs, total, mut code) = if all {
        let done = queue.status().await?.done;
        (
            queue.list_stream(Some(JobState::Done), None),
            done,
            exit::OK,
        )
    } else {
        let (jobs, code) = done_jobs(&queue, raw).await?;
        let total = jobs.len() as u64;
        (stream::iter(jobs.into_iter().map(Ok)).boxed(), total, code)
    };
    let tally = Tally::new(total, "verify");
    let how = How {
        bucket: crate::runtime::bucket(settings)?,
        quick,
        requeue,
    };
    if let Some(bucket) = &how.bucket {
        // A store we cannot reach or that refuses us would make every object
        // "unreadable", each after its own retries: say so once instead.
        if let Err(e) = bucket.probe().await {
            anyhow::bail!("cannot verify the archive: {e}");
        }
    }
    let counts = check_all(&queue, jobs, &how, &tally).await;
    tally.finish();
    let counts = counts?;
    say!("minimax-dl: verify: {}", counts.summary());
    if counts.not_ok() > 0 && code == exit::OK {
        code = exit::JOB_FAILURES;
    }
    Ok(code)
}

/// The jobs named, each of them done; the others are reported and make the
/// exit 2, as for retry and cancel.
async fn done_jobs(queue: &Queue, raw: &[String]) -> Result<(Vec<Job>, u8)> {
    let mut code = exit::OK;
    let mut jobs = Vec::new();
    for id in file_ids(raw)? {
        match queue.get(id).await? {
            None => {
                say!("minimax-dl: {id}: not in the queue");
                code = exit::USAGE;
            }
            Some(job) if job.state != JobState::Done => {
                say!(
                    "minimax-dl: {id}: {}, not done: there is no archived file to verify",
                    job.state.as_str()
                );
                code = exit::USAGE;
            }
            Some(job) => jobs.push(job),
        }
    }
    Ok((jobs, code))
}

/// What was found, per kind.
#[derive(Default)]
struct Counts {
    ok: u64,
    missing: u64,
    changed: u64,
    unreadable: u64,
    requeued: u64,
}

impl Counts {
    fn add(&mut self, fixity: &Fixity) {
        match fixity {
            Fixity::Ok => self.ok += 1,
            Fixity::Missing => self.missing += 1,
            Fixity::Changed(_) => self.changed += 1,
            Fixity::Unreadable(_) => self.unreadable += 1,
        }
    }

    fn not_ok(&self) -> u64 {
        self.missing + self.changed + self.unreadable
    }

    fn summary(&self) -> String {
        let mut text = format!(
            "{} files: {} ok, {} missing, {} changed, {} unreadable",
            self.ok + self.not_ok(),
            self.ok,
            self.missing,
            self.changed,
            self.unreadable
        );
        if self.requeued > 0 {
            text.push_str(&format!(
                "; {} requeued for a fresh download",
                self.requeued
            ));
        }
        text
    }
}

/// How to check: the archive's bucket (for `s3://` files), whether to
/// trust sizes and stored digests (`--quick`), and whether to requeue.
struct How {
    bucket: Option<Arc<Bucket>>,
    quick: bool,
    requeue: bool,
}

/// Checks every job of the stream, `MAX_PARALLEL` at a time, printing a
/// line per file in the stream's order. A closed stdout (`| head`) ends
/// the check quietly.
async fn check_all(
    queue: &Queue,
    jobs: BoxStream<'_, Result<Job, QueueError>>,
    how: &How,
    tally: &Tally,
) -> Result<Counts> {
    let parallel = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, MAX_PARALLEL);
    let mut results = jobs
        .map_ok(|job| {
            let tally = tally.clone();
            async move {
                let fixity = check_job(&job, how, tally).await;
                Ok((job, fixity))
            }
        })
        .try_buffered(parallel);
    let mut counts = Counts::default();
    while let Some((job, fixity)) = results.try_next().await? {
        tally.file_done();
        counts.add(&fixity);
        let requeued = how.requeue && repair(queue, &job, &fixity).await?;
        counts.requeued += u64::from(requeued);
        let line = line(&job, &fixity, requeued);
        let printed = tally.suspend(|| writeln!(io::stdout().lock(), "{line}"));
        match printed {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            other => other?,
        }
    }
    Ok(counts)
}

/// Hashes one job's file off the async threads, or its object in the
/// bucket.
async fn check_job(job: &Job, how: &How, tally: Tally) -> Fixity {
    let Some(place) = job.final_path.clone() else {
        return Fixity::Missing;
    };
    let (Some(size), Some(sha256)) = (job.bytes_expected, job.sha256.clone()) else {
        return Fixity::Unreadable("the queue holds no size or sha256 for it".into());
    };
    if names_object_store(&place) {
        return check_object(&place, size, &sha256, how).await;
    }
    let path = PathBuf::from(place);
    if how.quick {
        return match std::fs::metadata(&path) {
            Ok(m) if m.len() == size => Fixity::Ok,
            Ok(m) => Fixity::Changed(format!("{} bytes, {size} recorded", m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Fixity::Missing,
            Err(e) => Fixity::Unreadable(e.to_string()),
        };
    }
    let checked = tokio::task::spawn_blocking(move || {
        fixity::check(&path, size, &sha256, &|n| tally.read(n))
    })
    .await;
    checked.unwrap_or_else(|e| Fixity::Unreadable(format!("the check failed: {e}")))
}

/// One object, with the archive's bucket client when the object is in its
/// bucket, else a client for the bucket the URL names (same credentials).
async fn check_object(url: &str, size: u64, sha256: &str, how: &How) -> Fixity {
    if let Some(bucket) = &how.bucket
        && let Some(key) = bucket.key_of(url)
    {
        return bucket.check(&key, size, sha256, how.quick).await;
    }
    let other = url
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(name, _)| BucketLocation::parse(&format!("s3://{name}")).ok());
    let Some(location) = other else {
        return Fixity::Unreadable(format!("{url} names no bucket this build can read"));
    };
    let env = |name: &str| std::env::var(name).ok();
    match Bucket::connect(location, &env, &BucketOptions::default()) {
        Ok(bucket) => match bucket.key_of(url) {
            Some(key) => bucket.check(&key, size, sha256, how.quick).await,
            None => Fixity::Missing,
        },
        Err(e) => Fixity::Unreadable(e.to_string()),
    }
}

/// `--requeue`: a missing or changed file goes back to the queue. Whether
/// it did (a job changed meanwhile is left alone).
async fn repair(queue: &Queue, job: &Job, fixity: &Fixity) -> Result<bool, QueueError> {
    let path = job.final_path.as_deref().unwrap_or("its path");
    let (reason, recorded_path) = match fixity {
        Fixity::Missing => (
            format!("verify: {path} is missing; downloading again"),
            RecordedPath::Forget,
        ),
        Fixity::Changed(what) => (
            format!("verify: {path} changed ({what}); downloading again"),
            RecordedPath::Keep,
        ),
        Fixity::Ok | Fixity::Unreadable(_) => return Ok(false),
    };
    let sha256 = job.sha256.as_deref().unwrap_or_default();
    queue
        .refetch(job.file_id, sha256, recorded_path, &reason)
        .await
}

/// `changed    42  /archive/42-a.mp4  (10 bytes, 12 recorded)  [requeued]`.
fn line(job: &Job, fixity: &Fixity, requeued: bool) -> String {
    let mut text = format!(
        "{:<10} {:>20}  {}",
        fixity.label(),
        job.file_id,
        job.final_path.as_deref().unwrap_or("-")
    );
    if let Some(detail) = fixity.detail() {
        text.push_str(&format!("  ({detail})"));
    }
    if requeued {
        text.push_str("  [requeued]");
    }
    text
}
