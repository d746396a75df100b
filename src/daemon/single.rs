//! `fetch ID`: one job, claimed by its id and worked in the foreground,
//! with the same task, heartbeat and lease as a job of the pool.

use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::IDLE_POLL_MAX;
use super::running::RunningDownloads;
use crate::queue::QueueError;
use crate::worker::{Engine, LEASE, Outcome};

/// Claims `file_id` and works it until its turn ends. `None`: it could not
/// be claimed (done already, or held by another worker's lease). A host
/// problem ends the turn as `Outcome::Paused`, a cancelled `shutdown` as
/// `Outcome::Stopped`.
pub(crate) async fn fetch_one(
    engine: &Engine,
    file_id: i64,
    shutdown: &CancellationToken,
) -> Result<Option<Outcome>, QueueError> {
    let mut downloads = RunningDownloads::start(engine).await?;
    let end = work(engine, &mut downloads, file_id, shutdown).await;
    downloads.finish().await;
    Ok(end)
}

async fn work(
    engine: &Engine,
    downloads: &mut RunningDownloads,
    file_id: i64,
    shutdown: &CancellationToken,
) -> Option<Outcome> {
    loop {
        if shutdown.is_cancelled() {
            return Some(Outcome::Stopped);
        }
        let owner = engine.next_owner();
        let job = match engine.queue.claim_id(file_id, &owner, LEASE).await {
            Ok(Some(job)) => job,
            Ok(None) => return None,
            Err(e) => {
                warn!("cannot claim a job: {e}; retrying shortly");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(IDLE_POLL_MAX) => {}
                }
                continue;
            }
        };
        downloads.spawn(job, shutdown, None);
        let (_, outcome) = tokio::select! {
            biased;
            report = downloads.next_report() => report,
            _ = shutdown.cancelled() => return Some(Outcome::Stopped),
        };
        match outcome {
            Ok(Outcome::Paused(problem)) => {
                error!(file_id, "pausing all work: {}", problem.message());
                return Some(Outcome::Paused(problem));
            }
            Ok(outcome) => return Some(outcome),
            // Try again: the claim tells what became of the job.
            Err(e) => error!(file_id, "queue error while recording a job: {e}"),
        }
    }
}
