//! What workers report: to observers (progress bars, status lines) as they
//! go, and to the pool as the [`Outcome`] of each job's turn.

use std::path::PathBuf;
use std::time::Duration;

/// Hears what workers do, for progress bars and status lines.
pub trait Observer: Send + Sync {
    fn started(&self, _file_id: i64, _bytes_done: u64) {}
    fn size_known(&self, _file_id: i64, _total: u64) {}
    fn transferred(&self, _file_id: i64, _bytes: u64) {}
    fn finished(&self, _file_id: i64, _outcome: &Outcome) {}
}

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

/// The gate's hold is the account-level problem that set it.
impl From<crate::gate::Hold> for HostProblem {
    fn from(hold: crate::gate::Hold) -> HostProblem {
        HostProblem::Account {
            message: hold.message,
            pause: hold.pause,
        }
    }
}

impl HostProblem {
    pub fn message(&self) -> &str {
        match self {
            HostProblem::Account { message, .. } | HostProblem::DiskFull { message, .. } => message,
        }
    }
}
