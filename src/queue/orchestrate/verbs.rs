//! The user verbs that judge each job before changing it (`retry`,
//! `cancel`): one transaction per id, the verdict `state.rs`'s.

use std::future::Future;

use super::Dialect;
use crate::queue::state::{self, CancelVerdict, JobState, RetryVerdict};
use crate::queue::{QueueError, VerbOutcome};

/// The statements of the verbs; each write brings its history line.
pub(crate) trait VerbStatements: Dialect {
    /// The job's state and whether its lease is live on the store's clock,
    /// read under a row lock where the backend locks rows. `None`: no such job.
    fn job_for_verb(
        tx: &mut Self::Tx,
        file_id: i64,
    ) -> impl Future<Output = Result<Option<(JobState, bool)>, sqlx::Error>> + Send;

    /// Back to `queued` from `from`, attempts reset; history line `retried`.
    fn requeue(
        tx: &mut Self::Tx,
        file_id: i64,
        from: JobState,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// `cancelled` from `from`, the lease ended; history line `cancelled`.
    fn cancel_now(
        tx: &mut Self::Tx,
        file_id: i64,
        from: JobState,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// A running job's worker asked to stop; history line `cancel_requested`.
    fn ask_worker(
        tx: &mut Self::Tx,
        file_id: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

pub(in crate::queue) async fn retry<S: VerbStatements>(
    store: &S,
    ids: &[i64],
) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
    job_verb(store, ids, JobVerb::Retry).await
}

pub(in crate::queue) async fn cancel<S: VerbStatements>(
    store: &S,
    ids: &[i64],
) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
    job_verb(store, ids, JobVerb::Cancel).await
}

/// A user verb on jobs.
#[derive(Clone, Copy, Debug)]
enum JobVerb {
    Retry,
    Cancel,
}

/// A user verb on jobs, one transaction per id (the job read under a row
/// lock where the backend locks rows).
async fn job_verb<S: VerbStatements>(
    store: &S,
    ids: &[i64],
    verb: JobVerb,
) -> Result<Vec<(i64, VerbOutcome)>, QueueError> {
    let mut outcomes = Vec::with_capacity(ids.len());
    for &id in ids {
        let mut tx = store.begin().await?;
        let outcome = match S::job_for_verb(&mut tx, id).await? {
            None => VerbOutcome::Unknown,
            Some((from, lease_live)) => apply::<S>(&mut tx, id, verb, from, lease_live).await?,
        };
        S::commit(tx).await?;
        outcomes.push((id, outcome));
    }
    Ok(outcomes)
}

/// `verb` on job `id`, found in state `from`, as `state.rs`'s verdict says.
async fn apply<S: VerbStatements>(
    tx: &mut S::Tx,
    id: i64,
    verb: JobVerb,
    from: JobState,
    lease_live: bool,
) -> Result<VerbOutcome, sqlx::Error> {
    Ok(match verb {
        JobVerb::Retry => match state::retry_verdict(from) {
            RetryVerdict::Refuse(why) => VerbOutcome::Refused(why.to_string()),
            RetryVerdict::Requeue => {
                S::requeue(tx, id, from).await?;
                VerbOutcome::Applied
            }
        },
        JobVerb::Cancel => match state::cancel_verdict(from, lease_live) {
            CancelVerdict::Refuse(why) => VerbOutcome::Refused(why.to_string()),
            CancelVerdict::CancelNow => {
                S::cancel_now(tx, id, from).await?;
                VerbOutcome::Applied
            }
            CancelVerdict::AskWorker => {
                S::ask_worker(tx, id).await?;
                VerbOutcome::Requested
            }
        },
    })
}
