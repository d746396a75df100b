//! Is a host problem that paused the pool gone?

use tokio_util::sync::CancellationToken;

use crate::fetch::file::{FREE_SPACE_RESERVE, available_space};
use crate::worker::{Engine, HostProblem};

/// Free space wanted (beyond the reserve) before a disk-full pause lifts.
pub const DISK_RESUME_MARGIN: u64 = 64 * 1024 * 1024;

/// Is the host problem gone? Account: one retrieve call succeeds (or fails
/// for a reason that is not the account's). Disk: space is back.
pub(super) async fn probe(
    engine: &Engine,
    problem: &HostProblem,
    shutdown: &CancellationToken,
) -> bool {
    match problem {
        HostProblem::DiskFull { needed, .. } => available_space(&engine.output_dir)
            .map(|free| free > FREE_SPACE_RESERVE + (*needed).max(DISK_RESUME_MARGIN))
            .unwrap_or(false),
        HostProblem::Account { .. } => {
            let Ok(jobs) = engine
                .queue
                .list(Some(crate::queue::JobState::Queued), Some(1))
                .await
            else {
                return false;
            };
            let Some(job) = jobs.first() else {
                return true;
            };
            if engine.gate.acquire_probe(shutdown).await.is_err() {
                return false;
            }
            let api = engine.api();
            let answer = tokio::select! {
                _ = shutdown.cancelled() => return false,
                answer = api.retrieve(job.file_id) => answer,
            };
            engine.observer.api_called(answer.as_ref().map(|_| ()));
            match answer {
                Ok(_) => true,
                Err(e) => !matches!(e.class(), crate::api::ErrorClass::Account { .. }),
            }
        }
    }
}
