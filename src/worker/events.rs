//! What workers report: to observers (progress bars, status lines,
//! metrics) as they go, and to the pool as the [`Outcome`] of each job's
//! turn.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::api::ApiError;

/// Hears what workers and the pool do, for progress bars, status lines and
/// metrics. Every method has an empty default: an observer listens only
/// to what it shows.
pub(crate) trait Observer: Send + Sync {
    fn started(&self, _file_id: i64, _bytes_done: u64) {}
    fn size_known(&self, _file_id: i64, _total: u64) {}
    fn transferred(&self, _file_id: i64, _bytes: u64) {}
    fn finished(&self, _file_id: i64, _outcome: &Outcome) {}
    /// The API answered a retrieve call (or could not be reached).
    fn api_called(&self, _answer: Result<(), &ApiError>) {}
    /// A rate-limit answer: the whole pool waits `_cooldown`.
    fn rate_limited(&self, _cooldown: Duration) {}
    /// Durable progress was recorded in the queue; the write took `_took`.
    fn checkpointed(&self, _took: Duration) {}
    /// A partial file was fsynced; that took `_took`.
    fn synced(&self, _took: Duration) {}
    /// A download threw its partial bytes away and starts from byte 0.
    fn restarted(&self, _file_id: i64) {}
    /// The pool paused (the problem, and how long until its next probe),
    /// or resumed (`None`).
    fn paused(&self, _pause: Option<(&HostProblem, Duration)>) {}
    /// The pool's heartbeat turned (every second while it runs).
    fn alive(&self) {}
    /// The pool's poller polled a generation task and recorded the answer.
    fn task_polled(&self) {}
}

/// Several observers hearing the same events (log lines and metrics).
pub(crate) struct Observers(pub Vec<Arc<dyn Observer>>);

impl Observer for Observers {
    fn started(&self, file_id: i64, bytes_done: u64) {
        self.0.iter().for_each(|o| o.started(file_id, bytes_done));
    }
    fn size_known(&self, file_id: i64, total: u64) {
        self.0.iter().for_each(|o| o.size_known(file_id, total));
    }
    fn transferred(&self, file_id: i64, bytes: u64) {
        self.0.iter().for_each(|o| o.transferred(file_id, bytes));
    }
    fn finished(&self, file_id: i64, outcome: &Outcome) {
        self.0.iter().for_each(|o| o.finished(file_id, outcome));
    }
    fn api_called(&self, answer: Result<(), &ApiError>) {
        self.0.iter().for_each(|o| o.api_called(answer));
    }
    fn rate_limited(&self, cooldown: Duration) {
        self.0.iter().for_each(|o| o.rate_limited(cooldown));
    }
    fn checkpointed(&self, took: Duration) {
        self.0.iter().for_each(|o| o.checkpointed(took));
    }
    fn synced(&self, took: Duration) {
        self.0.iter().for_each(|o| o.synced(took));
    }
    fn restarted(&self, file_id: i64) {
        self.0.iter().for_each(|o| o.restarted(file_id));
    }
    fn paused(&self, pause: Option<(&HostProblem, Duration)>) {
        self.0.iter().for_each(|o| o.paused(pause));
    }
    fn alive(&self) {
        self.0.iter().for_each(|o| o.alive());
    }
    fn task_polled(&self) {
        self.0.iter().for_each(|o| o.task_polled());
    }
}

/// How one job's turn ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
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
pub(crate) enum HostProblem {
    /// Bad key, no balance, quota: the operator must act.
    Account {
        message: String,
        pause: Option<Duration>,
    },
    /// The archive is full (or not writable): wait until `needed` bytes
    /// (plus the reserve) are free.
    DiskFull { message: String, needed: u64 },
    /// The API host cannot be connected to from here: this host waits and
    /// probes, the others (whose network may be fine) go on.
    ApiUnreachable { message: String },
    /// The archive bucket does not answer or refuses us. `lasting`: bad
    /// credentials, no such bucket (the operator must act: a batch stops);
    /// otherwise the store may come back (a batch waits for it too).
    Archive { message: String, lasting: bool },
}

/// The gate's hold is the account-level problem that set it.
impl From<crate::gate::Hold> for HostProblem {
    fn from(hold: crate::gate::Hold) -> HostProblem {
        HostProblem::Account {
            message: hold.message,
            pause: hold.pause,
        }
    }
}

/// Marks a recorded host pause that is an archive bucket's stop, not an
/// API this host cannot reach (`host_pauses` holds one text a host).
const ARCHIVE_PAUSE_MARK: &str = "archive bucket: ";

/// What a recorded host pause (its text in the queue's `host_pauses`) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostPauseKind {
    ApiUnreachable,
    Archive,
}

/// The kind of a recorded host pause and its message (pure; the inverse of
/// [`HostProblem::host_pause_record`]).
pub(crate) fn read_host_pause(recorded: &str) -> (HostPauseKind, &str) {
    match recorded.strip_prefix(ARCHIVE_PAUSE_MARK) {
        Some(message) => (HostPauseKind::Archive, message),
        None => (HostPauseKind::ApiUnreachable, recorded),
    }
}

impl HostProblem {
    /// The text this host's pause leaves in the queue's `host_pauses`, so
    /// that `status` on any host says why this one waits: only for the
    /// problems another host may not share (an API it cannot reach, its
    /// archive bucket); `None` for the rest (an account's pause is the
    /// queue's fleet pause, a full disk shows in this host's own log).
    pub(crate) fn host_pause_record(&self) -> Option<String> {
        match self {
            HostProblem::ApiUnreachable { message } => Some(message.clone()),
            HostProblem::Archive { message, .. } => Some(format!("{ARCHIVE_PAUSE_MARK}{message}")),
            HostProblem::Account { .. } | HostProblem::DiskFull { .. } => None,
        }
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            HostProblem::Account { message, .. }
            | HostProblem::DiskFull { message, .. }
            | HostProblem::ApiUnreachable { message } => message,
            HostProblem::Archive { message, .. } => message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_host_pause_reads_back_as_its_kind_and_message() {
        let archive = HostProblem::Archive {
            message: "s3://v at http://127.0.0.1:8333 has no such bucket".into(),
            lasting: true,
        };
        let recorded = archive.host_pause_record().unwrap();
        assert_eq!(
            read_host_pause(&recorded),
            (HostPauseKind::Archive, archive.message())
        );
        let api = HostProblem::ApiUnreachable {
            message: "cannot connect to the MiniMax API".into(),
        };
        let recorded = api.host_pause_record().unwrap();
        assert_eq!(
            read_host_pause(&recorded),
            (HostPauseKind::ApiUnreachable, api.message())
        );
        let disk = HostProblem::DiskFull {
            message: "full".into(),
            needed: 1,
        };
        assert_eq!(disk.host_pause_record(), None);
    }
}
