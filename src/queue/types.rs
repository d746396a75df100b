//! The queue's plain types: what callers get back and pass in, whatever
//! store holds the jobs.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::JobState;
use crate::ids::TaskApi;
use crate::partial::{Resume, SizeSource};

/// Unix time in milliseconds, the unit of every timestamp in the database.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        .saturating_add(crate::test_hooks::clock_skew_ms())
}

pub(crate) fn millis_after(from: Millis, delay: Duration) -> Millis {
    from.saturating_add(delay.as_millis().min(i64::MAX as u128) as i64)
}

/// The host a lease owner names: the first field of `host:pidns:pid:tag-N`
/// (the whole name when it has no `:`). Claims record it as the job's
/// `file_host`, the host whose disk holds its partial file.
pub(crate) fn owner_host(owner: &str) -> &str {
    owner.split(':').next().unwrap_or(owner)
}

/// "in 2m 30s" style text for event messages.
pub(crate) fn describe_delay(millis: i64) -> String {
    let secs = (millis.max(0) as u64).div_ceil(1000);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// When a commit reaches the disk. Both keep the database consistent
/// through a crash or power loss; they differ in what a power loss may undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitSync {
    /// Every commit is fsynced before it returns: for user verbs (`enqueue`,
    /// `retry`, `cancel`), whose success the user is told about.
    Full,
    /// Commits are fsynced at the next WAL checkpoint: for worker state
    /// changes, every one of which is safe to lose on power loss (a claim
    /// reverts to queued, a checkpoint to an earlier length that was itself
    /// fsynced, a completion to a recorded digest that is re-verified).
    Normal,
}

pub use crate::location::DbLocation;

/// One file to download, as the queue knows it.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub file_id: i64,
    pub state: JobState,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Millis>,
    pub cancel_requested: bool,
    pub bytes_expected: Option<u64>,
    pub size_source: Option<SizeSource>,
    pub bytes_done: u64,
    pub validator: Option<String>,
    /// Segmented downloads: complete pieces (see `fetch::pieces`).
    pub pieces: Option<String>,
    /// The boot in which the partial bytes were written (see `fetch::resume`).
    #[serde(skip)]
    pub boot_id: Option<String>,
    pub filename: Option<String>,
    pub final_path: Option<String>,
    pub sha256: Option<String>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The host whose disk holds the partial file, and once done the final
    /// file (the first field of the lease owner of the latest claim).
    pub file_host: Option<String>,
    /// The generation task the file came from, if it came from one.
    pub task_id: Option<i64>,
    /// How the job is resolved when it came from a task: v2 jobs have no
    /// file id (they are keyed by their task id) and query the task for a
    /// fresh URL; v1 jobs retrieve their file like any other.
    pub task_api: Option<TaskApi>,
}

impl Job {
    pub fn lease_live(&self, now: Millis) -> bool {
        self.lease_expires_at.is_some_and(|t| t > now)
    }

    /// What the last attempt proved of the partial file.
    pub fn resume(&self) -> Resume {
        Resume {
            bytes_done: self.bytes_done,
            validator: self.validator.clone(),
            total: self.bytes_expected,
            pieces: self.pieces.clone(),
            boot_id: self.boot_id.clone(),
        }
    }
}

/// One line of a job's history.
#[derive(Clone, Debug, Serialize)]
pub struct JobEvent {
    pub at: Millis,
    pub kind: String,
    pub attempt: Option<u32>,
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EnqueueReport {
    pub added: u64,
    pub skipped: u64,
}

/// Job counts per state, plus the bytes downloaded so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub bytes_done: u64,
}

impl StatusCounts {
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Queued => self.queued,
            JobState::Running => self.running,
            JobState::Done => self.done,
            JobState::Failed => self.failed,
            JobState::Cancelled => self.cancelled,
        }
    }
}

/// What a heartbeat found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// Leases no longer held: the job was reclaimed or cancelled outright.
    pub lost: Vec<i64>,
    /// Jobs whose cancellation a user asked for.
    pub cancel: Vec<i64>,
}

/// What a user verb (retry, cancel) did to one id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerbOutcome {
    Applied,
    /// cancel on a running job: its worker was asked to stop.
    Requested,
    Refused(String),
    Unknown,
}

/// What one batch of `prune` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneBatch {
    /// Jobs deleted (with their history).
    pub removed: u64,
    /// The last id this batch looked at: the next batch starts after it.
    /// `None` when nothing was left to look at.
    pub last: Option<i64>,
}

/// A complete file about to be placed: what `record_verified` stores.
#[derive(Clone, Copy, Debug)]
pub struct VerifiedFile<'a> {
    pub size: u64,
    pub size_source: SizeSource,
    pub sha256: &'a str,
    /// The name the API gave (before sanitising).
    pub filename: Option<&'a str>,
    pub final_path: &'a Path,
}

impl VerifiedFile<'_> {
    /// Its line in the job's history.
    pub(crate) fn history_message(&self) -> String {
        format!(
            "{} bytes verified against the {} size; sha256 {}",
            self.size,
            self.size_source.as_str(),
            self.sha256
        )
    }
}

/// What becomes of the reason a job is given back to the queue for
/// (`release`), besides its line in the job's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseReason {
    /// Also the job's `last_error` (`status`, `show`): something went wrong
    /// that does not count as an attempt (a rate limit, a full disk).
    AsLastError,
    /// Only the history line: nothing is wrong with the job (a shutdown),
    /// and the last error it had stands.
    HistoryOnly,
}

impl ReleaseReason {
    pub(crate) fn sets_last_error(self) -> bool {
        self == ReleaseReason::AsLastError
    }
}

/// What `refetch` does with the path a done job recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordedPath {
    /// The file changed: the new copy replaces it, under the same name.
    Keep,
    /// The file is missing: it has no claim on its name any more, and the
    /// path template chooses again.
    Forget,
}

impl RecordedPath {
    pub(crate) fn forgotten(self) -> bool {
        self == RecordedPath::Forget
    }
}

/// When `take_probe_slot` may take the next probe of a pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeWhen {
    /// Only once its probe time has come.
    IfDue,
    /// Now, early or not (the operator asked for a probe).
    Now,
}

impl ProbeWhen {
    pub(crate) fn even_if_early(self) -> bool {
        self == ProbeWhen::Now
    }
}

/// What the store said of a completed object (`record_uploaded`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredObject<'a> {
    pub etag: Option<&'a str>,
    pub version: Option<&'a str>,
}

/// A job's object in a bucket archive, as the queue recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// `s3://BUCKET/KEY`.
    pub object_url: String,
    /// A multipart upload started and not yet completed or aborted.
    pub upload_id: Option<String>,
    /// What the store said of the completed object.
    pub etag: Option<String>,
    pub version: Option<String>,
}

impl Upload {
    /// The history line of a completed upload.
    pub(crate) fn stored_message(url: &str, stored: StoredObject<'_>) -> String {
        let mut message = format!("uploaded to {url}");
        if let Some(etag) = stored.etag {
            message.push_str(&format!("; ETag {etag}"));
        }
        if let Some(version) = stored.version {
            message.push_str(&format!("; version {version}"));
        }
        message
    }
}

/// The history line of a counted failure: the error, and with a retry
/// `delay_ms` later, when the next attempt is.
pub(crate) fn failure_message(error: &str, delay_ms: Option<i64>) -> String {
    match delay_ms {
        Some(ms) => format!("{error}; next attempt in {}", describe_delay(ms)),
        None => error.to_string(),
    }
}

/// What every process sharing the queue agrees on (the `fleet` row): a
/// pause for an account-level answer and the cooldown after a rate limit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetState {
    pub pause: Option<FleetPause>,
    /// How much of the shared rate-limit cooldown is left.
    pub cooldown: Option<Duration>,
}

/// An account-level pause, as the process that met it recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetPause {
    pub message: String,
    /// The lease owner name of the process that paused (host first).
    pub paused_by: String,
    /// The account paused: a digest of its key (`ApiClient::account`).
    pub account: String,
    /// Which pause this is: a probe lifts only the pause it probed.
    pub epoch: i64,
    /// Until the next probe is due (zero: due now).
    pub probe_in: Duration,
}

/// A host's own pause, which other hosts do not obey (an API it cannot
/// connect to), as its daemon recorded it for `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPause {
    /// The host's name (the first field of its lease owners).
    pub host: String,
    pub message: String,
    /// The daemon that recorded it (its lease owner prefix).
    pub paused_by: String,
    /// How long it has lasted.
    pub lasted: Duration,
}

/// What `run --exit-when-idle` asks before it exits: is anything left that
/// this process could still claim?
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Claimable {
    /// Jobs waiting in `queued`, due now or later.
    pub queued: u64,
    /// Running jobs whose lease has expired: their worker is gone.
    pub abandoned: u64,
    /// Generation tasks still to poll: each may yet become a job.
    pub generating: u64,
}

impl Claimable {
    pub fn is_empty(&self) -> bool {
        self.queued == 0 && self.abandoned == 0 && self.generating == 0
    }
}
