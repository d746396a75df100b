//! One claimed job from lease to outcome: resolve (rate gate, retrieve),
//! fetch, verify, record the digest, place the file, mark it done; or
//! settle the failure through [`decide`](super::decide).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{Instrument, info, warn};

use super::policy::{Decision, classify_fetch, decide, honour_retry_after};
use super::{Engine, HostProblem, JobControl, LEASE, Outcome};
use crate::api::{ApiError, ErrorClass, FileInfo};
use crate::archive::Fields;
use crate::archive::sidecar::{self, Sidecar};
use crate::fetch::naming;
use crate::fetch::{
    CheckpointError, Download, FetchError, ProgressSink, Resume, Verified, file, made_progress,
};
use crate::gate::{GateError, Hold};
use crate::ids::TaskApi;
use crate::partial::ExpectedSize;
use crate::queue::{
    Job, Lease, Leased, QueueError, ReleaseReason, VerifiedFile, millis_after, now_millis,
};

/// Fresh download URLs asked for within one claim before giving up on it.
const URL_REFRESHES: u32 = 3;

/// A uniform draw in [0, 1) for retry jitter.
fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_millis());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

struct JobSink<'a> {
    engine: &'a Engine,
    lease: &'a Lease,
    file_id: i64,
    api_size: Option<u64>,
    /// Since when the queue database has not answered this job's
    /// checkpoints, if it has not.
    unanswered_since: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long a download goes on while the queue database does not answer
/// its checkpoints: well inside the lease, which nobody renews meanwhile
/// if the heartbeat cannot reach the database either, so that the job is
/// not worked here after another process may have claimed it.
const UNANSWERED_CHECKPOINTS: Duration = LEASE.saturating_sub(Duration::from_secs(5));

/// How long a checkpoint waits for a database that did not answer the
/// last checkpoint or the last lease heartbeat. A checkpoint holds up the
/// transfer, and a database that refuses connections keeps a caller
/// waiting for a connection up to the queue's deadline (10 s): waited for
/// whole, the checkpoints of an outage would stand the download still. A
/// database that answers is waited for as long as it takes.
const OUTAGE_PATIENCE: Duration = Duration::from_millis(500);

impl JobSink<'_> {
    /// Whether the download may go on without the checkpoint that began
    /// at `began` recorded: for [`UNANSWERED_CHECKPOINTS`] from the start
    /// of the first checkpoint the database did not answer (the bytes stay
    /// on disk and the next checkpoint records them).
    fn may_go_on_unrecorded(&self, began: std::time::Instant) -> bool {
        let mut since = self
            .unanswered_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        since.get_or_insert(began).elapsed() < UNANSWERED_CHECKPOINTS
    }

    /// Since when the database has not answered this job's checkpoints.
    fn unanswered_since(&self) -> Option<std::time::Instant> {
        *self
            .unanswered_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

impl ProgressSink for JobSink<'_> {
    /// A refusal comes back to [`settle`] as the queue's own error.
    async fn checkpoint(&self, state: &Resume) -> Result<(), CheckpointError> {
        let expected = ExpectedSize::of(self.api_size, state.total);
        if let Some(expected) = expected {
            self.engine
                .observer
                .size_known(self.file_id, expected.bytes);
        }
        let began = std::time::Instant::now();
        let mut call = std::pin::pin!(self.lease.checkpoint(state, expected));
        let silent = self.unanswered_since().is_some() || self.engine.queue_silent();
        let recorded = if silent {
            match tokio::time::timeout(OUTAGE_PATIENCE, call.as_mut()).await {
                Ok(recorded) => recorded,
                Err(_) if self.may_go_on_unrecorded(began) => {
                    self.engine.observer.checkpointed(began.elapsed());
                    return Ok(());
                }
                // Past the grace: the database's own answer ends the job.
                Err(_) => call.await,
            }
        } else {
            call.await
        };
        self.engine.observer.checkpointed(began.elapsed());
        match recorded {
            Ok(()) => {
                *self
                    .unanswered_since
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Err(e) if e.is_unreachable() && self.may_go_on_unrecorded(began) => Ok(()),
            Err(e) => Err(CheckpointError::from(e)),
        }
    }

    fn transferred(&self, bytes: u64) {
        self.engine.observer.transferred(self.file_id, bytes);
    }

    fn synced(&self, took: Duration) {
        self.engine.observer.synced(took);
    }

    fn restarted(&self) {
        self.engine.observer.restarted(self.file_id);
    }
}

enum Failure {
    Api(ApiError),
    Fetch(FetchError),
    UrlRefused(String),
    Stopped,
    /// Turned back at the rate gate: another worker met an account-level
    /// error, and the pool is about to pause.
    Held(Hold),
}

/// Why a step of the pipeline did not get its result: the job's own
/// failure, settled by [`settle`], or the queue's error, which ends the
/// job's turn as it is (a lost lease, a database that does not answer).
enum StepError {
    Failed(Failure),
    Queue(QueueError),
}

impl From<Failure> for StepError {
    fn from(failure: Failure) -> StepError {
        StepError::Failed(failure)
    }
}

impl From<QueueError> for StepError {
    fn from(error: QueueError) -> StepError {
        StepError::Queue(error)
    }
}

/// Works one claimed job to its outcome and records it.
pub(crate) async fn process(
    engine: &Engine,
    job: Leased,
    control: &JobControl,
) -> Result<Outcome, QueueError> {
    use futures_util::FutureExt;
    let span = tracing::info_span!("job", file_id = job.file_id);
    let file_id = job.file_id;
    let claimed = job.clone();
    let outcome = match std::panic::AssertUnwindSafe(process_inner(engine, job, control))
        .catch_unwind()
        .instrument(span.clone())
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => {
            after_panic(engine, &claimed, &panic_message(&*panic))
                .instrument(span)
                .await
        }
    };
    match &outcome {
        Ok(o) => engine.observer.finished(file_id, o),
        Err(QueueError::LeaseLost(_)) => engine.observer.finished(file_id, &Outcome::LeaseLost),
        Err(_) => {}
    }
    match outcome {
        Err(QueueError::LeaseLost(_)) => Ok(Outcome::LeaseLost),
        other => other,
    }
}

/// A bug met while working `job` (the panic itself was printed by the
/// panic hook): the job is not left under a lease that its heartbeat
/// would keep renewing, it is retried later like any transient failure,
/// and after its attempts it fails with the panic's message.
async fn after_panic(engine: &Engine, job: &Leased, message: &str) -> Result<Outcome, QueueError> {
    let error = format!(
        "internal error (a bug in minimax-dl {}; please report it): {message}",
        env!("CARGO_PKG_VERSION")
    );
    tracing::error!("{error}");
    retry_transient(engine, job, &error).await
}

/// What a panic said, when it said it with a string.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

async fn process_inner(
    engine: &Engine,
    job: Leased,
    control: &JobControl,
) -> Result<Outcome, QueueError> {
    engine.observer.started(job.file_id, job.bytes_done);
    if job.sha256.is_some() {
        let recovered = match &engine.bucket {
            Some(bucket) => super::upload::recover(engine, bucket, &job, control).await?,
            None => recover_verified(engine, &job).await?,
        };
        if let Some(outcome) = recovered {
            return Ok(outcome);
        }
    }
    let partial = naming::partial_path(&engine.output_dir, job.file_id);
    let mut resume = job.resume();
    let started_at = resume.bytes_done;
    match fetch_with_fresh_urls(engine, &job, &partial, &mut resume, control).await {
        Ok((verified, info)) => match &engine.bucket {
            Some(bucket) => {
                let local = (partial.as_path(), &info);
                super::upload::finish(engine, bucket, &job, control, local, verified).await
            }
            None => finish(engine, &job, &partial, &info, verified).await,
        },
        Err(StepError::Queue(e)) => Err(e),
        Err(StepError::Failed(failure)) => {
            let progressed = made_progress(started_at, resume.bytes_done);
            settle(engine, &job, &partial, failure, progressed, control).await
        }
    }
}

/// A verified partial file, and what retrieve said of it.
type Fetched = (Verified, FileInfo);

/// Resolve and download; a URL the CDN refuses (or that has expired) is
/// replaced by a fresh one, up to [`URL_REFRESHES`] times in a row without
/// progress.
async fn fetch_with_fresh_urls(
    engine: &Engine,
    job: &Leased,
    partial: &Path,
    resume: &mut Resume,
    control: &JobControl,
) -> Result<Fetched, StepError> {
    let mut refusals = 0u32;
    loop {
        let info = resolve(engine, job, control).await?;
        let download = Download {
            file_id: job.file_id,
            url: &info.download_url,
            api_size: info.bytes,
            partial_path: partial,
            clock_offset: info.clock_offset.unwrap_or(0),
        };
        let before = resume.bytes_done;
        let sink = JobSink {
            engine,
            lease: &job.lease,
            file_id: job.file_id,
            api_size: info.bytes,
            unanswered_since: std::sync::Mutex::default(),
        };
        match engine
            .fetcher
            .download(&download, resume, &sink, &control.cancel)
            .await
        {
            Ok(verified) => return Ok((verified, info)),
            Err(e @ (FetchError::UrlRejected { .. } | FetchError::UrlExpired)) => {
                // A URL that brought bytes before it ran out was not
                // refused: with a short lifetime every large file needs
                // several.
                refusals = if resume.bytes_done > before {
                    1
                } else {
                    refusals + 1
                };
                if refusals >= URL_REFRESHES {
                    return Err(Failure::UrlRefused(e.to_string()).into());
                }
                info!("{e}; asking the API for a fresh one");
            }
            Err(FetchError::Cancelled) => return Err(Failure::Stopped.into()),
            Err(e) => return Err(Failure::Fetch(e).into()),
        }
    }
}

/// Passes the rate gate and asks the API for the file's download URL (a
/// v2 task's job: the task's fresh URL).
async fn resolve(
    engine: &Engine,
    job: &Leased,
    control: &JobControl,
) -> Result<FileInfo, StepError> {
    let file_id = job.file_id;
    match engine.gate.acquire(&control.cancel).await {
        Ok(()) => {}
        Err(GateError::Cancelled) => return Err(Failure::Stopped.into()),
        Err(GateError::Held(hold)) => return Err(Failure::Held(hold).into()),
        Err(GateError::Queue(e)) => return Err(e.into()),
    }
    let api = engine.api();
    let call = async {
        match job.task_api {
            Some(TaskApi::V2) => api.task_video(file_id).await,
            _ => api.retrieve(file_id).await,
        }
    };
    let retrieved = tokio::select! {
        _ = control.cancel.cancelled() => return Err(Failure::Stopped.into()),
        r = call => r,
    };
    engine.observer.api_called(retrieved.as_ref().map(|_| ()));
    match retrieved {
        Ok(info) => {
            engine.gate.succeeded();
            Ok(info)
        }
        Err(e) => {
            warn!(
                trace_id = e.trace_id().unwrap_or(""),
                "retrieve failed: {e}"
            );
            Err(Failure::Api(e).into())
        }
    }
}

/// Verified bytes → staged sidecar and reserved path → recorded digest →
/// atomic rename → done. Each step is durable before the next, so a crash
/// anywhere recovers in [`recover_verified`] without a second download
/// (`archive::place` says what each crash leaves).
async fn finish(
    engine: &Engine,
    job: &Leased,
    partial: &Path,
    info: &FileInfo,
    verified: Verified,
) -> Result<Outcome, QueueError> {
    let final_path = match reserve(engine, job, partial, info, &verified).await {
        Ok(path) => path,
        Err(error) => return retry_transient(engine, job, &error).await,
    };
    engine.hooks.crash_point("after-reserve");
    let final_path = final_path.as_path();
    let record = VerifiedFile {
        size: verified.size,
        size_source: verified.size_source,
        sha256: &verified.sha256,
        filename: info.filename.as_deref(),
        final_path,
    };
    job.lease.record_verified(&record).await?;
    engine.hooks.crash_point("after-verified");
    if let Err(error) = place(engine, job.file_id, partial, final_path).await {
        return retry_transient(engine, job, &error).await;
    }
    engine.hooks.crash_point("after-rename");
    job.lease.complete(final_path).await?;
    info!(
        size = verified.size,
        sha256 = %verified.sha256,
        size_source = verified.size_source.as_str(),
        path = %final_path.display(),
        "done"
    );
    Ok(Outcome::Done {
        path: final_path.to_path_buf(),
        size: verified.size,
        sha256: verified.sha256,
    })
}

/// The sidecar of a verified file, when sidecars are on.
pub(super) fn sidecar_bytes(
    engine: &Engine,
    job: &Job,
    info: &FileInfo,
    verified: &Verified,
    downloaded: std::time::SystemTime,
) -> Option<Vec<u8>> {
    let task_id = job.task_id.map(|t| t.to_string());
    engine.archive.sidecar.then(|| {
        Sidecar {
            file_id: job.file_id,
            task_id: task_id.as_deref(),
            file: &info.object,
            size: verified.size,
            size_source: verified.size_source,
            sha256: &verified.sha256,
            downloaded_at: humantime::format_rfc3339_seconds(downloaded).to_string(),
            minimax_dl_version: sidecar::VERSION,
        }
        .to_bytes()
    })
}

/// The values a path template names, for a file downloaded at `downloaded`.
pub(super) fn template_fields<'a>(
    job: &Job,
    task_id: Option<&'a str>,
    info: &'a FileInfo,
    downloaded: std::time::SystemTime,
) -> Fields<'a> {
    Fields {
        file_id: job.file_id,
        task_id,
        filename: info.filename.as_deref(),
        purpose: info.purpose.as_deref(),
        created: info.created_at,
        downloaded: downloaded
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    }
}

/// The bytes on disk must still be the ones hashed: what is wrong when
/// they are not (the partial file is then removed).
pub(super) async fn changed_since_verified(partial: &Path, size: u64) -> Option<String> {
    let partial = partial.to_path_buf();
    tokio::task::spawn_blocking(move || changed_on_disk(&partial, size))
        .await
        .unwrap_or_else(|e| Some(format!("checking the verified file failed: {e}")))
}

/// [`changed_since_verified`] on the calling thread, for a caller already
/// off the async threads.
fn changed_on_disk(partial: &Path, size: u64) -> Option<String> {
    let on_disk = std::fs::metadata(partial).map(|m| m.len()).ok();
    if on_disk == Some(size) {
        return None;
    }
    let _ = std::fs::remove_file(partial);
    Some(format!(
        "the partial file changed after it was verified ({} bytes on disk, {size} verified)",
        on_disk.map_or("no".to_string(), |n| n.to_string()),
    ))
}

/// Checks the verified bytes are still on disk ([`changed_since_verified`]),
/// stages the sidecar (when sidecars are on), then chooses and reserves
/// the file's path: the one recorded by an earlier attempt, else the
/// template's, moved on past names that belong to other files. One trip
/// to a blocking thread for all three: a batch of small files pays these
/// trips once a file.
async fn reserve(
    engine: &Engine,
    job: &Job,
    partial: &Path,
    info: &FileInfo,
    verified: &Verified,
) -> Result<PathBuf, String> {
    let downloaded = std::time::SystemTime::now();
    let staged = sidecar_bytes(engine, job, info, verified, downloaded);
    let archive = engine.archive.clone();
    let recorded = job.final_path.as_ref().map(PathBuf::from);
    let (job, info, partial, size) = (
        job.clone(),
        info.clone(),
        partial.to_path_buf(),
        verified.size,
    );
    let chosen = tokio::task::spawn_blocking(move || {
        if let Some(changed) = changed_on_disk(&partial, size) {
            return Err(changed);
        }
        if let Some(bytes) = staged {
            archive
                .stage_sidecar(job.file_id, &bytes)
                .map_err(|e| e.to_string())?;
        }
        let task_id = job.task_id.map(|t| t.to_string());
        let fields = template_fields(&job, task_id.as_deref(), &info, downloaded);
        archive
            .reserve(&fields, recorded.as_deref())
            .map_err(|e| e.to_string())
    })
    .await;
    match chosen {
        Ok(result) => result,
        Err(e) => Err(format!("choosing the file's path failed: {e}")),
    }
}

/// Moves the staged sidecar and the verified file into place (see
/// `archive::place`) off the async threads; the error says why it could
/// not.
async fn place(
    engine: &Engine,
    file_id: i64,
    partial: &Path,
    final_path: &Path,
) -> Result<(), String> {
    let archive = engine.archive.clone();
    let (from, to) = (partial.to_path_buf(), final_path.to_path_buf());
    match tokio::task::spawn_blocking(move || archive.place(file_id, &from, &to)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("placing the file failed: {e}")),
    }
}

/// A failure of this attempt on this host (the archive, a changed partial
/// file): counted and retried on the schedule like a network error.
pub(super) async fn retry_transient(
    engine: &Engine,
    job: &Leased,
    error: &str,
) -> Result<Outcome, QueueError> {
    settle_error(engine, job, error, ErrorClass::Transient, false, None).await
}

/// A previous worker recorded a verified digest and then stopped. Finish
/// its work if the bytes on disk still match; otherwise start over.
async fn recover_verified(engine: &Engine, job: &Leased) -> Result<Option<Outcome>, QueueError> {
    let (Some(sha), Some(size)) = (job.sha256.clone(), job.bytes_expected) else {
        return Ok(None);
    };
    let partial = naming::partial_path(&engine.output_dir, job.file_id);
    let final_path = job.final_path.as_ref().map(PathBuf::from);
    let candidates: Vec<PathBuf> = final_path
        .iter()
        .cloned()
        .chain([partial.clone()])
        .collect();
    for candidate in candidates {
        let path = candidate.clone();
        let hashed = tokio::task::spawn_blocking(move || file::hash_file(&path)).await;
        let Ok(Ok((len, digest))) = hashed else {
            continue;
        };
        if len != size || digest != sha {
            continue;
        }
        let Some(final_path) = &final_path else { break };
        if candidate == partial
            && place(engine, job.file_id, &partial, final_path)
                .await
                .is_err()
        {
            // Keep the verified file: this is worth another try later.
            let error = format!("cannot move the verified file to {}", final_path.display());
            return retry_transient(engine, job, &error).await.map(Some);
        }
        job.lease.complete(final_path).await?;
        engine
            .queue
            .note(
                job.file_id,
                "recovered",
                "verified file found intact after a restart",
            )
            .await?;
        info!("recovered a verified file after a restart");
        return Ok(Some(Outcome::Done {
            path: final_path.clone(),
            size,
            sha256: sha,
        }));
    }
    file::remove_quietly(vec![partial]).await;
    job.lease
        .clear_verified("the recorded verified file is missing or changed; downloading again")
        .await?;
    Ok(None)
}

/// Records why this turn ended without a file: a stop, a pause, or a
/// failure weighed by [`settle_error`].
async fn settle(
    engine: &Engine,
    job: &Leased,
    partial: &Path,
    failure: Failure,
    progressed: bool,
    control: &JobControl,
) -> Result<Outcome, QueueError> {
    if control.lease_lost.load(Ordering::SeqCst) {
        return Ok(Outcome::LeaseLost);
    }
    let (class, error, cdn_retry_after) = match failure {
        Failure::Stopped => return stopped(job, control).await,
        Failure::Held(hold) => {
            // The job's last error says why it waits, as for the worker
            // that met the answer.
            let reason = format!("paused before its API call: {}", hold.message);
            job.lease
                .release(&reason, now_millis(), ReleaseReason::AsLastError)
                .await?;
            return Ok(Outcome::Paused(hold.into()));
        }
        // The queue refused a checkpoint (the lease is lost, the database
        // failed): the worker's own error, as if it had written it itself.
        Failure::Fetch(FetchError::Checkpoint(e)) => match e.downcast::<QueueError>() {
            Ok(e) => return Err(*e),
            Err(other) => weigh_fetch(partial, FetchError::Checkpoint(other)),
        },
        Failure::Fetch(FetchError::Storage {
            detail: message,
            needed,
        }) => {
            job.lease
                .release(&message, now_millis(), ReleaseReason::AsLastError)
                .await?;
            return Ok(Outcome::Paused(HostProblem::DiskFull { message, needed }));
        }
        Failure::Fetch(e) => weigh_fetch(partial, e),
        Failure::UrlRefused(last) => (
            ErrorClass::Transient,
            format!("{URL_REFRESHES} fresh download URLs in a row did not work; last: {last}"),
            None,
        ),
        Failure::Api(e) => weigh_api(engine, e).await,
    };
    settle_error(engine, job, &error, class, progressed, cdn_retry_after).await
}

/// A stop: a lost lease writes nothing more; a user's cancel is
/// confirmed; a shutdown hands the job back uncounted, its partial bytes
/// kept.
pub(super) async fn stopped(job: &Leased, control: &JobControl) -> Result<Outcome, QueueError> {
    if control.lease_lost.load(Ordering::SeqCst) {
        return Ok(Outcome::LeaseLost);
    }
    if control.user_cancelled.load(Ordering::SeqCst) {
        job.lease.confirm_cancelled().await?;
        return Ok(Outcome::Cancelled);
    }
    job.lease
        .release(
            "stopped by shutdown; partial bytes kept",
            now_millis(),
            ReleaseReason::HistoryOnly,
        )
        .await?;
    Ok(Outcome::Stopped)
}

/// A download failure's class and message, and the CDN's `Retry-After`
/// when it gave one (the next attempt waits for it). A permanent one
/// deletes the partial file.
fn weigh_fetch(partial: &Path, e: FetchError) -> (ErrorClass, String, Option<Duration>) {
    let class = classify_fetch(&e);
    if class == ErrorClass::Permanent {
        let _ = std::fs::remove_file(partial);
    }
    let retry_after = match e {
        FetchError::Cdn { retry_after, .. } => retry_after,
        _ => None,
    };
    (class, e.to_string(), retry_after)
}

/// An API failure's class and message; a rate-limit answer starts the
/// cooldown of every process sharing the queue.
async fn weigh_api(engine: &Engine, e: ApiError) -> (ErrorClass, String, Option<Duration>) {
    let class = e.class();
    if let ErrorClass::RateLimited { retry_after } = class {
        engine.rate_limited(retry_after).await;
    }
    (class, e.to_string(), None)
}

async fn settle_error(
    engine: &Engine,
    job: &Leased,
    error: &str,
    class: ErrorClass,
    progressed: bool,
    retry_after: Option<Duration>,
) -> Result<Outcome, QueueError> {
    let cooldown = engine.gate.cooldown_remaining().unwrap_or(Duration::ZERO);
    let now = now_millis();
    let decision = decide(
        class,
        job.attempts,
        &engine.policy,
        progressed,
        cooldown,
        jitter_unit(),
    );
    match honour_retry_after(decision, retry_after) {
        Decision::Fail => {
            job.lease.record_failure(error, None).await?;
            warn!("failed: {error}");
            Ok(Outcome::Failed {
                error: error.to_string(),
            })
        }
        Decision::RetryAfter(delay) => {
            job.lease
                .record_failure(error, Some(millis_after(now, delay)))
                .await?;
            warn!(
                "attempt {} failed, retrying in {}s: {error}",
                job.attempts + 1,
                delay.as_secs()
            );
            Ok(Outcome::RetryLater {
                error: error.to_string(),
                delay,
            })
        }
        Decision::Requeue(after) => {
            job.lease
                .release(error, millis_after(now, after), ReleaseReason::AsLastError)
                .await?;
            Ok(Outcome::Requeued {
                reason: error.to_string(),
            })
        }
        Decision::PauseHost => {
            let pause = match class {
                ErrorClass::Account { pause } => pause,
                _ => None,
            };
            // Before anything else: the other workers must not call the API.
            let hold = Hold {
                message: error.to_string(),
                pause,
            };
            engine.gate.hold(hold.clone());
            job.lease
                .release(error, now, ReleaseReason::AsLastError)
                .await?;
            Ok(Outcome::Paused(match class {
                ErrorClass::Unreachable => HostProblem::ApiUnreachable {
                    message: error.to_string(),
                },
                _ => hold.into(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_draws_are_in_the_unit_interval() {
        for _ in 0..100 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn a_verified_file_that_changed_on_disk_is_removed_and_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join("7.part");
        std::fs::write(&partial, b"0123456789").unwrap();
        assert_eq!(
            changed_on_disk(&partial, 10),
            None,
            "the verified size is on disk"
        );
        let why = changed_on_disk(&partial, 12).expect("two bytes short");
        assert!(why.contains("10 bytes on disk, 12 verified"), "{why}");
        assert!(!partial.exists(), "the file that changed is removed");
        let why = changed_on_disk(&partial, 12).expect("gone");
        assert!(why.contains("no bytes on disk"), "{why}");
    }
}
