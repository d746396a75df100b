//! One job, from a claimed lease to a verified file in the archive (or a
//! recorded reason why not). Only the worker holding a job's lease moves it
//! out of `running`; every write below is conditional on that lease.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::api::rate::{GateError, Hold};
use crate::api::{ApiClient, ApiError, ErrorClass, RateGate};
use crate::fetch::naming;
use crate::fetch::{Download, FetchError, Fetcher, ProgressSink, Resume, Verified, file};
use crate::partial::ExpectedSize;
use crate::queue::state::UNKNOWN_ERROR_ATTEMPT_CAP;
use crate::queue::{Job, Queue, QueueError, RetryPolicy, VerifiedFile, millis_after, now_millis};

/// How long a lease lasts without a heartbeat. Heartbeats come every second,
/// so a killed worker's jobs are claimable again after this long.
pub const LEASE: Duration = Duration::from_secs(30);

/// Fresh download URLs asked for within one claim before giving up on it.
const URL_REFRESHES: u32 = 3;

/// Everything workers share. Cheap to clone (handles inside).
#[derive(Clone)]
pub struct Engine {
    pub queue: Queue,
    api: Arc<RwLock<ApiClient>>,
    pub gate: Arc<RateGate>,
    pub fetcher: Fetcher,
    pub output_dir: PathBuf,
    pub policy: RetryPolicy,
    /// This process's part of every `lease_owner` it writes: host, pid
    /// namespace, pid and a random tag; [`Engine::next_owner`] adds a
    /// sequence number, so each claim holds a lease of its own.
    owner_prefix: String,
    claims: Arc<std::sync::atomic::AtomicU64>,
    pub observer: Arc<dyn Observer>,
}

impl Engine {
    pub fn new(
        queue: Queue,
        api: ApiClient,
        gate: Arc<RateGate>,
        fetcher: Fetcher,
        output_dir: PathBuf,
        policy: RetryPolicy,
        observer: Arc<dyn Observer>,
    ) -> Engine {
        Engine {
            queue,
            api: Arc::new(RwLock::new(api)),
            gate,
            fetcher,
            output_dir,
            policy,
            owner_prefix: worker_identity(),
            claims: Arc::default(),
            observer,
        }
    }

    /// A lease owner name for one claim. Unique per claim, so a job this
    /// process reclaims after losing it is never confused with the old task.
    pub fn next_owner(&self) -> String {
        let n = self.claims.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.owner_prefix)
    }

    pub fn api(&self) -> ApiClient {
        self.api.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps the API client (a reloaded key) for every later call.
    pub fn replace_api(&self, api: ApiClient) {
        *self.api.write().unwrap_or_else(|p| p.into_inner()) = api;
    }
}

/// `host:pidns:pid:tag`, unique per process run and readable in `show`.
/// Host and pid namespace let a restarted daemon tell that a lease's owner
/// is a dead process on this same machine (see [`owner_is_dead`]).
pub fn worker_identity() -> String {
    let tag: u32 = (now_millis() as u32) ^ std::process::id().rotate_left(16);
    format!(
        "{}:{}:{}:{tag:08x}",
        host_name(),
        pid_namespace(),
        std::process::id()
    )
}

/// The host's name (`gethostname`, which works where `/proc/sys` is hidden)
/// and the start of `/etc/machine-id`, which tells apart hosts that share a
/// name.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success (and we stop at the first NUL regardless).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_string()
    };
    let machine = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let machine: String = machine.trim().chars().take(12).collect();
    format!("{name}.{machine}").replace(':', "_")
}

/// Does process `pid` exist? `kill(pid, 0)` answers even where `/proc`
/// hides other users' processes: EPERM means it exists.
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 performs the permission and existence checks only.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| {
            let text = l.to_string_lossy().into_owned();
            text.split(['[', ']']).nth(1).map(str::to_string)
        })
        .unwrap_or_else(|| "0".into())
}

/// The `(host, pid namespace, pid)` a lease owner names, if it has that form.
pub fn parse_owner(owner: &str) -> Option<(&str, &str, u32)> {
    let mut parts = owner.split(':');
    let (host, ns, pid, _tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((host, ns, pid.parse().ok()?))
}

/// Is `owner` a process of this host and pid namespace that no longer
/// exists? Only then may its leases be taken before they expire; an owner
/// elsewhere (another host sharing the queue) is always waited for.
pub fn owner_is_dead(owner: &str) -> bool {
    let Some((host, ns, pid)) = parse_owner(owner) else {
        return false;
    };
    host == host_name()
        && ns == pid_namespace()
        && pid != std::process::id()
        && !process_exists(pid)
}

/// Hears what workers do, for progress bars and status lines.
pub trait Observer: Send + Sync {
    fn started(&self, _file_id: i64, _bytes_done: u64) {}
    fn size_known(&self, _file_id: i64, _total: u64) {}
    fn transferred(&self, _file_id: i64, _bytes: u64) {}
    fn finished(&self, _file_id: i64, _outcome: &Outcome) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// How one job's turn ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Done {
        path: PathBuf,
        size: u64,
        sha256: String,
    },
    /// A counted failure; the job waits in `queued` for its next attempt.
    RetryLater {
        error: String,
        delay: Duration,
    },
    Failed {
        error: String,
    },
    /// Back to `queued` without counting an attempt.
    Requeued {
        reason: String,
    },
    Cancelled,
    /// Shutdown: back to `queued`, partial bytes kept.
    Stopped,
    /// The host cannot work any job until something changes.
    Paused(HostProblem),
    /// Another worker took the job over (our lease had expired).
    LeaseLost,
}

#[derive(Clone, Debug, PartialEq)]
pub enum HostProblem {
    /// Bad key, no balance, quota: the operator must act.
    Account {
        message: String,
        pause: Option<Duration>,
    },
    /// The archive is full (or not writable): wait until `needed` bytes
    /// (plus the reserve) are free.
    DiskFull { message: String, needed: u64 },
}

impl HostProblem {
    pub fn message(&self) -> &str {
        match self {
            HostProblem::Account { message, .. } | HostProblem::DiskFull { message, .. } => message,
        }
    }
}

/// The owner name under which this worker holds `job`'s lease.
fn lease_owner(job: &Job) -> &str {
    job.lease_owner.as_deref().unwrap_or_default()
}

/// A job's stop signals: shutdown (the parent token) or a user's cancel.
#[derive(Clone)]
pub struct JobControl {
    pub cancel: CancellationToken,
    pub user_cancelled: Arc<AtomicBool>,
    pub lease_lost: Arc<AtomicBool>,
}

impl JobControl {
    pub fn new(shutdown: &CancellationToken) -> JobControl {
        JobControl {
            cancel: shutdown.child_token(),
            user_cancelled: Arc::new(AtomicBool::new(false)),
            lease_lost: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The heartbeat found the lease gone (another worker took the job):
    /// stop at once and write nothing more about the job.
    pub fn lose_lease(&self) {
        self.lease_lost.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }

    /// A user ran `cancel` on this job.
    pub fn cancel_by_user(&self) {
        self.user_cancelled.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }
}

/// What to do with a job after a failure. Pure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    Fail,
    /// Counted: the next attempt waits this long.
    RetryAfter(Duration),
    /// Not counted: back to the queue, due after this long.
    Requeue(Duration),
    /// Not counted: the job goes back at once and the pool pauses.
    PauseHost,
}

/// After a transfer that made progress, try again this soon.
pub const PROGRESS_REQUEUE_DELAY: Duration = Duration::from_secs(1);

pub fn decide(
    class: ErrorClass,
    attempts_before: u32,
    policy: &RetryPolicy,
    progressed: bool,
    cooldown: Duration,
    jitter_unit: f64,
) -> Decision {
    match class {
        ErrorClass::Permanent => Decision::Fail,
        ErrorClass::RateLimited { .. } => Decision::Requeue(cooldown),
        ErrorClass::Account { .. } => Decision::PauseHost,
        ErrorClass::Transient | ErrorClass::Unknown if progressed => {
            Decision::Requeue(PROGRESS_REQUEUE_DELAY)
        }
        ErrorClass::Transient | ErrorClass::Unknown => {
            let attempts = attempts_before + 1;
            let cap = (class == ErrorClass::Unknown).then_some(UNKNOWN_ERROR_ATTEMPT_CAP);
            if policy.exhausted(attempts, cap) {
                Decision::Fail
            } else {
                Decision::RetryAfter(policy.delay_for(attempts, jitter_unit))
            }
        }
    }
}

/// Longest wait a CDN's `Retry-After` can impose: past it the signed URL has
/// expired anyway, and the next attempt asks the API for a fresh one.
pub const MAX_CDN_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A CDN that said when to come back (`Retry-After` on a 429 or 503) is not
/// asked again sooner, up to [`MAX_CDN_RETRY_AFTER`]; never sooner than the
/// retry schedule says either.
pub fn honour_retry_after(decision: Decision, retry_after: Option<Duration>) -> Decision {
    let Some(wait) = retry_after.map(|w| w.min(MAX_CDN_RETRY_AFTER)) else {
        return decision;
    };
    match decision {
        Decision::RetryAfter(delay) => Decision::RetryAfter(delay.max(wait)),
        Decision::Requeue(delay) => Decision::Requeue(delay.max(wait)),
        other => other,
    }
}

/// How the worker classifies a download failure.
pub fn classify_fetch(error: &FetchError) -> ErrorClass {
    match error {
        FetchError::SizeMismatch { .. } | FetchError::TooLarge { .. } => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

/// A uniform draw in [0, 1) for retry jitter.
fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_millis());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Test hook: `MINIMAX_DL_CRASH_AT=<point>` aborts the process there, so the
/// tests can prove each crash point recovers. Inert unless set.
fn crash_point(point: &str) {
    if std::env::var("MINIMAX_DL_CRASH_AT").is_ok_and(|v| v == point) {
        crate::say!("minimax-dl: crashing at {point} (MINIMAX_DL_CRASH_AT)");
        crate::stderr::sink().flush(Duration::from_millis(200));
        std::process::abort();
    }
}

struct JobSink<'a> {
    engine: &'a Engine,
    owner: &'a str,
    file_id: i64,
    api_size: Option<u64>,
}

impl ProgressSink for JobSink<'_> {
    async fn checkpoint(&self, state: &Resume) -> Result<(), QueueError> {
        let expected = ExpectedSize::of(self.api_size, state.total);
        if let Some(expected) = expected {
            self.engine
                .observer
                .size_known(self.file_id, expected.bytes);
        }
        self.engine
            .queue
            .checkpoint(self.file_id, self.owner, state, expected)
            .await
    }

    fn transferred(&self, bytes: u64) {
        self.engine.observer.transferred(self.file_id, bytes);
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

/// Works one claimed job to its outcome and records it.
pub async fn process(
    engine: &Engine,
    job: Job,
    control: &JobControl,
) -> Result<Outcome, QueueError> {
    let span = tracing::info_span!("job", file_id = job.file_id);
    let file_id = job.file_id;
    let outcome = process_inner(engine, job, control).instrument(span).await;
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

async fn process_inner(
    engine: &Engine,
    job: Job,
    control: &JobControl,
) -> Result<Outcome, QueueError> {
    engine.observer.started(job.file_id, job.bytes_done);
    if job.sha256.is_some()
        && let Some(outcome) = recover_verified(engine, &job).await?
    {
        return Ok(outcome);
    }
    let partial = naming::partial_path(&engine.output_dir, job.file_id);
    let mut resume = job.resume();
    let started_at = resume.bytes_done;
    let mut refusals = 0u32;
    let result = loop {
        match engine.gate.acquire(&control.cancel).await {
            Ok(()) => {}
            Err(GateError::Cancelled) => break Err(Failure::Stopped),
            Err(GateError::Held(hold)) => break Err(Failure::Held(hold)),
            Err(GateError::Queue(e)) => return Err(e),
        }
        let api = engine.api();
        let retrieved = tokio::select! {
            _ = control.cancel.cancelled() => break Err(Failure::Stopped),
            r = api.retrieve(job.file_id) => r,
        };
        let info = match retrieved {
            Ok(info) => {
                engine.gate.succeeded();
                info
            }
            Err(e) => {
                warn!(
                    trace_id = e.trace_id().unwrap_or(""),
                    "retrieve failed: {e}"
                );
                break Err(Failure::Api(e));
            }
        };
        let final_path =
            naming::final_path(&engine.output_dir, job.file_id, info.filename.as_deref());
        let download = Download {
            file_id: job.file_id,
            url: &info.download_url,
            api_size: info.bytes,
            partial_path: &partial,
        };
        let sink = JobSink {
            engine,
            owner: lease_owner(&job),
            file_id: job.file_id,
            api_size: info.bytes,
        };
        match engine
            .fetcher
            .download(&download, &mut resume, &sink, &control.cancel)
            .await
        {
            Ok(verified) => break Ok((verified, final_path, info.filename)),
            Err(e @ (FetchError::UrlRejected { .. } | FetchError::UrlExpired)) => {
                refusals += 1;
                if refusals >= URL_REFRESHES {
                    break Err(Failure::UrlRefused(e.to_string()));
                }
                info!("{e}; asking the API for a fresh one");
            }
            Err(FetchError::Cancelled) => break Err(Failure::Stopped),
            Err(e) => break Err(Failure::Fetch(e)),
        }
    };
    match result {
        Ok((verified, final_path, filename)) => {
            let destination = Destination {
                partial: &partial,
                final_path: &final_path,
                filename: filename.as_deref(),
            };
            finish(engine, &job, destination, verified).await
        }
        Err(failure) => {
            let progressed = resume.bytes_done > started_at;
            settle(engine, &job, &partial, failure, progressed, control).await
        }
    }
}

/// Where a verified file is and where it goes.
#[derive(Clone, Copy)]
struct Destination<'a> {
    partial: &'a Path,
    final_path: &'a Path,
    filename: Option<&'a str>,
}

/// Verified bytes → recorded digest → atomic rename → done. Each step is
/// durable before the next, so a crash anywhere recovers in
/// [`recover_verified`] without a second download.
async fn finish(
    engine: &Engine,
    job: &Job,
    destination: Destination<'_>,
    verified: Verified,
) -> Result<Outcome, QueueError> {
    let owner = lease_owner(job);
    let Destination {
        partial,
        final_path,
        filename,
    } = destination;
    // The bytes on disk must still be the ones hashed.
    let on_disk = tokio::fs::metadata(partial).await.map(|m| m.len()).ok();
    if on_disk != Some(verified.size) {
        let error = format!(
            "the partial file changed after it was verified ({} bytes on disk, {} verified)",
            on_disk.map_or("no".to_string(), |n| n.to_string()),
            verified.size
        );
        let _ = tokio::fs::remove_file(partial).await;
        return settle_error(engine, job, &error, ErrorClass::Transient, false, None).await;
    }
    let record = VerifiedFile {
        size: verified.size,
        size_source: verified.size_source,
        sha256: &verified.sha256,
        filename,
        final_path,
    };
    engine
        .queue
        .record_verified(job.file_id, owner, &record)
        .await?;
    crash_point("after-verified");
    let (from, to) = (partial.to_path_buf(), final_path.to_path_buf());
    let placed = tokio::task::spawn_blocking(move || file::place(&from, &to)).await;
    match placed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let error = format!(
                "cannot move the verified file to {}: {e}",
                final_path.display()
            );
            return settle_error(engine, job, &error, ErrorClass::Transient, false, None).await;
        }
        Err(e) => {
            let error = format!("placing the file failed: {e}");
            return settle_error(engine, job, &error, ErrorClass::Transient, false, None).await;
        }
    }
    crash_point("after-rename");
    engine
        .queue
        .complete(job.file_id, owner, final_path)
        .await?;
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

/// A previous worker recorded a verified digest and then stopped. Finish
/// its work if the bytes on disk still match; otherwise start over.
async fn recover_verified(engine: &Engine, job: &Job) -> Result<Option<Outcome>, QueueError> {
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
        if candidate == partial {
            let (from, to) = (partial.clone(), final_path.clone());
            let placed = tokio::task::spawn_blocking(move || file::place(&from, &to)).await;
            if !matches!(placed, Ok(Ok(()))) {
                // Keep the verified file: this is worth another try later.
                let error = format!("cannot move the verified file to {}", final_path.display());
                return settle_error(engine, job, &error, ErrorClass::Transient, false, None)
                    .await
                    .map(Some);
            }
        }
        engine
            .queue
            .complete(job.file_id, lease_owner(job), final_path)
            .await?;
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
    let _ = std::fs::remove_file(&partial);
    engine
        .queue
        .clear_verified(
            job.file_id,
            lease_owner(job),
            "the recorded verified file is missing or changed; downloading again",
        )
        .await?;
    Ok(None)
}

async fn settle(
    engine: &Engine,
    job: &Job,
    partial: &Path,
    failure: Failure,
    progressed: bool,
    control: &JobControl,
) -> Result<Outcome, QueueError> {
    let owner = lease_owner(job);
    if control.lease_lost.load(Ordering::SeqCst) {
        return Ok(Outcome::LeaseLost);
    }
    // The CDN's `Retry-After`, when it gave one: the next attempt waits for it.
    let mut cdn_retry_after = None;
    let (class, error) = match failure {
        Failure::Stopped => {
            if control.user_cancelled.load(Ordering::SeqCst) {
                engine.queue.confirm_cancelled(job.file_id, owner).await?;
                return Ok(Outcome::Cancelled);
            }
            engine
                .queue
                .release(
                    job.file_id,
                    owner,
                    "stopped by shutdown; partial bytes kept",
                    now_millis(),
                    false,
                )
                .await?;
            return Ok(Outcome::Stopped);
        }
        Failure::Held(hold) => {
            // The job's last error says why it waits, as for the worker
            // that met the answer.
            let reason = format!("paused before its API call: {}", hold.message);
            engine
                .queue
                .release(job.file_id, owner, &reason, now_millis(), true)
                .await?;
            return Ok(Outcome::Paused(HostProblem::Account {
                message: hold.message,
                pause: hold.pause,
            }));
        }
        Failure::Fetch(FetchError::Queue(e)) => return Err(e),
        Failure::Fetch(FetchError::Storage {
            detail: message,
            needed,
        }) => {
            engine
                .queue
                .release(job.file_id, owner, &message, now_millis(), true)
                .await?;
            return Ok(Outcome::Paused(HostProblem::DiskFull { message, needed }));
        }
        Failure::Fetch(e) => {
            let class = classify_fetch(&e);
            if class == ErrorClass::Permanent {
                let _ = std::fs::remove_file(partial);
            }
            if let FetchError::Cdn { retry_after, .. } = e {
                cdn_retry_after = retry_after;
            }
            (class, e.to_string())
        }
        Failure::UrlRefused(last) => (
            ErrorClass::Transient,
            format!("{URL_REFRESHES} fresh download URLs in a row did not work; last: {last}"),
        ),
        Failure::Api(e) => {
            let class = e.class();
            if let ErrorClass::RateLimited { retry_after } = class {
                let wait = engine.gate.rate_limited(retry_after);
                warn!(
                    "rate limited by the API; the whole pool waits {}s",
                    wait.as_secs()
                );
            }
            (class, e.to_string())
        }
    };
    settle_error(engine, job, &error, class, progressed, cdn_retry_after).await
}

async fn settle_error(
    engine: &Engine,
    job: &Job,
    error: &str,
    class: ErrorClass,
    progressed: bool,
    retry_after: Option<Duration>,
) -> Result<Outcome, QueueError> {
    let owner = lease_owner(job);
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
            engine
                .queue
                .record_failure(job.file_id, owner, error, None)
                .await?;
            warn!("failed: {error}");
            Ok(Outcome::Failed {
                error: error.to_string(),
            })
        }
        Decision::RetryAfter(delay) => {
            engine
                .queue
                .record_failure(job.file_id, owner, error, Some(millis_after(now, delay)))
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
            engine
                .queue
                .release(job.file_id, owner, error, millis_after(now, after), true)
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
            engine.gate.hold(Hold {
                message: error.to_string(),
                pause,
            });
            engine
                .queue
                .release(job.file_id, owner, error, now, true)
                .await?;
            Ok(Outcome::Paused(HostProblem::Account {
                message: error.to_string(),
                pause,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_COOLDOWN: Duration = Duration::ZERO;

    #[test]
    fn a_cdn_retry_after_delays_the_next_attempt_but_never_shortens_it() {
        let minute = Duration::from_secs(60);
        assert_eq!(
            honour_retry_after(Decision::RetryAfter(Duration::from_secs(15)), Some(minute)),
            Decision::RetryAfter(minute)
        );
        assert_eq!(
            honour_retry_after(Decision::RetryAfter(minute * 10), Some(minute)),
            Decision::RetryAfter(minute * 10),
            "the retry schedule's longer delay stands"
        );
        assert_eq!(
            honour_retry_after(Decision::Requeue(PROGRESS_REQUEUE_DELAY), Some(minute)),
            Decision::Requeue(minute)
        );
        assert_eq!(
            honour_retry_after(
                Decision::RetryAfter(minute),
                Some(Duration::from_secs(86_400))
            ),
            Decision::RetryAfter(MAX_CDN_RETRY_AFTER),
            "capped: the URL would have expired by then"
        );
        assert_eq!(
            honour_retry_after(Decision::Fail, Some(minute)),
            Decision::Fail
        );
        assert_eq!(
            honour_retry_after(Decision::RetryAfter(minute), None),
            Decision::RetryAfter(minute)
        );
    }

    #[test]
    fn permanent_errors_fail_at_once() {
        let p = RetryPolicy::default();
        assert_eq!(
            decide(ErrorClass::Permanent, 0, &p, false, NO_COOLDOWN, 0.5),
            Decision::Fail
        );
        assert_eq!(
            decide(ErrorClass::Permanent, 0, &p, true, NO_COOLDOWN, 0.5),
            Decision::Fail
        );
    }

    #[test]
    fn transient_errors_back_off_until_the_budget_is_spent() {
        let p = RetryPolicy::default();
        assert_eq!(
            decide(ErrorClass::Transient, 0, &p, false, NO_COOLDOWN, 0.5),
            Decision::RetryAfter(p.delay_for(1, 0.5))
        );
        assert_eq!(
            decide(ErrorClass::Transient, 23, &p, false, NO_COOLDOWN, 0.5),
            Decision::RetryAfter(p.delay_for(24, 0.5))
        );
        assert_eq!(
            decide(ErrorClass::Transient, 24, &p, false, NO_COOLDOWN, 0.5),
            Decision::Fail
        );
    }

    #[test]
    fn unknown_errors_get_a_smaller_budget() {
        let p = RetryPolicy::default();
        assert!(matches!(
            decide(
                ErrorClass::Unknown,
                UNKNOWN_ERROR_ATTEMPT_CAP - 2,
                &p,
                false,
                NO_COOLDOWN,
                0.5
            ),
            Decision::RetryAfter(_)
        ));
        assert_eq!(
            decide(
                ErrorClass::Unknown,
                UNKNOWN_ERROR_ATTEMPT_CAP - 1,
                &p,
                false,
                NO_COOLDOWN,
                0.5
            ),
            Decision::Fail
        );
    }

    #[test]
    fn progress_rate_limits_and_account_errors_never_burn_attempts() {
        let p = RetryPolicy::default();
        assert_eq!(
            decide(ErrorClass::Transient, 24, &p, true, NO_COOLDOWN, 0.5),
            Decision::Requeue(PROGRESS_REQUEUE_DELAY)
        );
        let cooldown = Duration::from_secs(20);
        assert_eq!(
            decide(
                ErrorClass::RateLimited { retry_after: None },
                24,
                &p,
                false,
                cooldown,
                0.5
            ),
            Decision::Requeue(cooldown)
        );
        assert_eq!(
            decide(
                ErrorClass::Account { pause: None },
                24,
                &p,
                false,
                NO_COOLDOWN,
                0.5
            ),
            Decision::PauseHost
        );
    }

    #[test]
    fn size_mismatch_is_permanent_and_network_trouble_is_not() {
        let mismatch = FetchError::SizeMismatch {
            expected: 1,
            actual: 2,
            source_name: "api",
        };
        assert_eq!(classify_fetch(&mismatch), ErrorClass::Permanent);
        assert_eq!(
            classify_fetch(&FetchError::Network("reset".into())),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_fetch(&FetchError::UrlRejected { status: 403 }),
            ErrorClass::Transient
        );
    }

    #[test]
    fn owners_name_host_namespace_and_pid() {
        let me = worker_identity();
        let (host, ns, pid) = parse_owner(&me).unwrap();
        assert_eq!(
            (host, ns, pid),
            (
                host_name().as_str(),
                pid_namespace().as_str(),
                std::process::id()
            )
        );
        assert!(!owner_is_dead(&me), "this process is alive");
        assert_eq!(parse_owner("a:b:c"), None);
        assert_eq!(parse_owner("a:b:notapid:t"), None);
    }

    #[test]
    fn only_dead_local_owners_are_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = format!("{}:{}:{pid}:00000000", host_name(), pid_namespace());
        assert!(owner_is_dead(&dead));
        let elsewhere = format!("another-host:{}:{pid}:00000000", pid_namespace());
        assert!(!owner_is_dead(&elsewhere));
        assert!(!owner_is_dead("garbage"));
    }

    #[test]
    fn jitter_draws_are_in_the_unit_interval() {
        for _ in 0..100 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
