//! Pure rules about jobs: their states and which user verbs apply to which
//! state (the retry schedule is [`crate::retry`], re-exported here). No I/O
//! here, so every rule is unit-tested directly; the store applies the
//! verdicts with compare-and-set updates.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Where a job is in its life. Only the worker holding a job's lease moves it
/// out of `Running`; users move jobs between the other states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!("unknown job state {s:?}: expected one of queued, running, done, failed, cancelled")
            })
    }
}

/// What `retry` may do to a job in a given state.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RetryVerdict {
    /// Back to `queued` with attempts reset.
    Requeue,
    /// Nothing to do; the message says why.
    Refuse(&'static str),
}

pub(crate) fn retry_verdict(state: JobState) -> RetryVerdict {
    match state {
        JobState::Failed | JobState::Cancelled => RetryVerdict::Requeue,
        JobState::Queued => RetryVerdict::Refuse("already queued"),
        JobState::Running => RetryVerdict::Refuse("running now"),
        JobState::Done => RetryVerdict::Refuse("already done"),
    }
}

/// What `cancel` may do to a job in a given state.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CancelVerdict {
    /// Cancelled at once: nobody is working on it.
    CancelNow,
    /// A live worker holds it: ask that worker to stop (it notices within a
    /// heartbeat) and let it record the cancellation.
    AskWorker,
    Refuse(&'static str),
}

pub(crate) fn cancel_verdict(state: JobState, lease_live: bool) -> CancelVerdict {
    match state {
        JobState::Queued => CancelVerdict::CancelNow,
        JobState::Running if lease_live => CancelVerdict::AskWorker,
        // The worker died holding it: nobody else will record anything.
        JobState::Running => CancelVerdict::CancelNow,
        JobState::Done => CancelVerdict::Refuse("already done"),
        JobState::Failed => CancelVerdict::Refuse("already failed (retry it or leave it)"),
        JobState::Cancelled => CancelVerdict::Refuse("already cancelled"),
    }
}

pub(crate) use crate::retry::RetryPolicy;

/// Failures of unknown kind (codes MiniMax has not documented) are retried,
/// but no more than this many times: they may well be permanent.
pub const UNKNOWN_ERROR_ATTEMPT_CAP: u32 = 5;

/// History kinds that count a failed attempt against `max_attempts`.
pub(crate) const COUNTED_FAILURES: [&str; 2] = ["retry_scheduled", "failed"];

/// The attempt number a history line shows. "Attempts" means one thing
/// everywhere users see it: failed tries that counted against
/// `max_attempts` (a job done at its first try has 0). A failure line shows
/// which one it was; a claim stores the number its try would get if it
/// failed (kept on disk as written) but shows none.
pub(crate) fn shown_attempt(kind: &str, stored: Option<u32>) -> Option<u32> {
    stored.filter(|_| COUNTED_FAILURES.contains(&kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
        }
        let err = "finished".parse::<JobState>().unwrap_err();
        assert!(err.contains("finished") && err.contains("queued"));
    }

    #[test]
    fn retry_applies_only_to_failed_and_cancelled() {
        assert_eq!(retry_verdict(JobState::Failed), RetryVerdict::Requeue);
        assert_eq!(retry_verdict(JobState::Cancelled), RetryVerdict::Requeue);
        for state in [JobState::Queued, JobState::Running, JobState::Done] {
            assert!(matches!(retry_verdict(state), RetryVerdict::Refuse(_)));
        }
    }

    #[test]
    fn cancel_rules() {
        assert_eq!(
            cancel_verdict(JobState::Queued, false),
            CancelVerdict::CancelNow
        );
        assert_eq!(
            cancel_verdict(JobState::Running, true),
            CancelVerdict::AskWorker
        );
        assert_eq!(
            cancel_verdict(JobState::Running, false),
            CancelVerdict::CancelNow
        );
        for state in [JobState::Done, JobState::Failed, JobState::Cancelled] {
            assert!(matches!(
                cancel_verdict(state, true),
                CancelVerdict::Refuse(_)
            ));
        }
    }

    #[test]
    fn exhaustion_honours_the_cap_for_unknown_errors() {
        let policy = RetryPolicy::default();
        assert!(!policy.exhausted(24, None));
        assert!(policy.exhausted(25, None));
        assert!(policy.exhausted(UNKNOWN_ERROR_ATTEMPT_CAP, Some(UNKNOWN_ERROR_ATTEMPT_CAP)));
        assert!(!policy.exhausted(
            UNKNOWN_ERROR_ATTEMPT_CAP - 1,
            Some(UNKNOWN_ERROR_ATTEMPT_CAP)
        ));
    }

    #[test]
    fn only_counted_failures_show_an_attempt_number() {
        assert_eq!(shown_attempt("claimed", Some(1)), None);
        assert_eq!(shown_attempt("reclaimed", Some(3)), None);
        assert_eq!(shown_attempt("retry_scheduled", Some(1)), Some(1));
        assert_eq!(shown_attempt("failed", Some(25)), Some(25));
        assert_eq!(shown_attempt("failed", None), None);
        assert_eq!(shown_attempt("released", None), None);
    }
}
