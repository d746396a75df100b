//! A lease holder's writes that end in a history line, and the heartbeat:
//! what each write records and says in the history, whether the lease was
//! still held, what a heartbeat reports. How a write reaches the database
//! is the backend's: on SQLite the update and its history line in one
//! write transaction, on PostgreSQL one statement (a data-modifying CTE),
//! one round trip on the worker's path.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use crate::queue::error::lease_held;
use crate::queue::state::JobState;
use crate::queue::{
    Heartbeat, Millis, QueueError, ReleaseReason, VerifiedFile, failure_message, now_millis,
};

/// A lease holder's write whose history line the orchestration words.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LeasedWrite<'a> {
    /// The verified size, digest and destination.
    Verified(&'a VerifiedFile<'a>),
    /// The digest and the progress forgotten.
    Cleared,
    /// Back to `queued`, due at `not_before`, uncounted; the lease ends.
    Released {
        reason: &'a str,
        not_before: Millis,
        reason_kept: ReleaseReason,
    },
    /// `cancelled`, as its user asked; the lease ends.
    Cancelled,
}

/// A counted failure, as a backend writes it.
#[derive(Clone, Debug)]
pub(crate) struct Failure<'a> {
    pub(crate) error: &'a str,
    /// `queued` (a retry is due) or `failed`.
    pub(crate) state: JobState,
    /// When the retry is due (this host's clock), and in how long.
    pub(crate) retry_at: Option<Millis>,
    pub(crate) retry_in: Option<i64>,
    /// The history line's kind and message.
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

/// The statements of a lease holder's writes; each matches only while
/// `owner` holds the lease of `file_id`.
pub(crate) trait LeaseStatements: Sync {
    /// Makes `write` with its history line (`kind`, `message`) at once.
    /// Returns the rows written: 0 when the lease is gone.
    fn write_leased(
        &self,
        file_id: i64,
        owner: &str,
        write: LeasedWrite<'_>,
        kind: &str,
        message: &str,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Records `failure` (attempts counted, the lease ended) with its
    /// history line. False when the lease is gone.
    fn write_failure(
        &self,
        file_id: i64,
        owner: &str,
        failure: &Failure<'_>,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;

    /// Extends the leases still held for `lease`; returns those renewed,
    /// each with whether its user asked for a cancel.
    fn renew_leases(
        &self,
        leases: &[(i64, String)],
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<(i64, bool)>, sqlx::Error>> + Send;
}

async fn leased<S: LeaseStatements>(
    store: &S,
    file_id: i64,
    owner: &str,
    write: LeasedWrite<'_>,
    kind: &str,
    message: &str,
) -> Result<(), QueueError> {
    let written = store
        .write_leased(file_id, owner, write, kind, message)
        .await?;
    lease_held(written, file_id)
}

pub(in crate::queue) async fn record_verified<S: LeaseStatements>(
    store: &S,
    file_id: i64,
    owner: &str,
    verified: &VerifiedFile<'_>,
) -> Result<(), QueueError> {
    let message = verified.history_message();
    let write = LeasedWrite::Verified(verified);
    leased(store, file_id, owner, write, "verified", &message).await
}

pub(in crate::queue) async fn clear_verified<S: LeaseStatements>(
    store: &S,
    file_id: i64,
    owner: &str,
    why: &str,
) -> Result<(), QueueError> {
    leased(
        store,
        file_id,
        owner,
        LeasedWrite::Cleared,
        "restarted",
        why,
    )
    .await
}

pub(in crate::queue) async fn release<S: LeaseStatements>(
    store: &S,
    file_id: i64,
    owner: &str,
    reason: &str,
    not_before: Millis,
    reason_kept: ReleaseReason,
) -> Result<(), QueueError> {
    let write = LeasedWrite::Released {
        reason,
        not_before,
        reason_kept,
    };
    leased(store, file_id, owner, write, "released", reason).await
}

pub(in crate::queue) async fn confirm_cancelled<S: LeaseStatements>(
    store: &S,
    file_id: i64,
    owner: &str,
) -> Result<(), QueueError> {
    let write = LeasedWrite::Cancelled;
    leased(
        store,
        file_id,
        owner,
        write,
        "cancelled",
        "stopped by its worker",
    )
    .await
}

pub(in crate::queue) async fn record_failure<S: LeaseStatements>(
    store: &S,
    file_id: i64,
    owner: &str,
    error: &str,
    retry_at: Option<Millis>,
) -> Result<(), QueueError> {
    let retry_in = retry_at.map(|at| at.saturating_sub(now_millis()).max(0));
    let (state, kind) = match retry_at {
        Some(_) => (JobState::Queued, "retry_scheduled"),
        None => (JobState::Failed, "failed"),
    };
    let failure = Failure {
        error,
        state,
        retry_at,
        retry_in,
        kind,
        message: failure_message(error, retry_in),
    };
    if store.write_failure(file_id, owner, &failure).await? {
        Ok(())
    } else {
        Err(QueueError::LeaseLost(file_id))
    }
}

pub(in crate::queue) async fn heartbeat<S: LeaseStatements>(
    store: &S,
    leases: &[(i64, String)],
    lease: Duration,
) -> Result<Heartbeat, QueueError> {
    let renewed = store.renew_leases(leases, lease).await?;
    let asked: HashSet<i64> = renewed
        .iter()
        .filter(|(_, cancel)| *cancel)
        .map(|(id, _)| *id)
        .collect();
    let renewed: HashSet<i64> = renewed.into_iter().map(|(id, _)| id).collect();
    // In the order the caller gave.
    let mut report = Heartbeat::default();
    for (file_id, _) in leases {
        if !renewed.contains(file_id) {
            report.lost.push(*file_id);
        } else if asked.contains(file_id) {
            report.cancel.push(*file_id);
        }
    }
    Ok(report)
}
