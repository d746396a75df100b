//! Is a host problem that paused the pool gone?

use tokio_util::sync::CancellationToken;

use crate::api::ErrorClass;
use crate::fetch::file::{FREE_SPACE_RESERVE, available_space};
use crate::ids::TaskApi;
use crate::queue::{JobState, QueueError, Task, TaskState};
use crate::worker::{Engine, HostProblem};

/// Free space wanted (beyond the reserve) before a disk-full pause lifts.
pub(crate) const DISK_RESUME_MARGIN: u64 = 64 * 1024 * 1024;

/// Is the host problem gone? Account: one API call succeeds (or fails for
/// a reason that is not the account's). Disk: space is back.
pub(super) async fn probe(
    engine: &Engine,
    problem: &HostProblem,
    shutdown: &CancellationToken,
) -> bool {
    match problem {
        HostProblem::DiskFull { needed, .. } => available_space(&engine.output_dir)
            .map(|free| free > FREE_SPACE_RESERVE + (*needed).max(DISK_RESUME_MARGIN))
            .unwrap_or(false),
        HostProblem::Account { .. } => probe_api(engine, shutdown, is_account).await,
        HostProblem::ApiUnreachable { .. } => probe_api(engine, shutdown, is_unreachable).await,
        HostProblem::Archive { .. } => match &engine.bucket {
            Some(bucket) => bucket.probe().await.is_ok(),
            None => true,
        },
    }
}

fn is_account(class: ErrorClass) -> bool {
    matches!(class, ErrorClass::Account { .. })
}

fn is_unreachable(class: ErrorClass) -> bool {
    class == ErrorClass::Unreachable
}

/// Is the API usable again? One call succeeds (or fails for a reason that
/// is not the pause's, `still(class)`): a retrieve of a queued job, else a
/// query of a generating task; with neither, there is nothing to pause for.
async fn probe_api(
    engine: &Engine,
    shutdown: &CancellationToken,
    still: fn(ErrorClass) -> bool,
) -> bool {
    let Ok(jobs) = engine.queue.list(Some(JobState::Queued), Some(1)).await else {
        return false;
    };
    let task = match jobs.first() {
        Some(_) => None,
        None => match first_generating_task(engine).await {
            Ok(task) => task,
            Err(_) => return false,
        },
    };
    if jobs.is_empty() && task.is_none() {
        return true;
    }
    if engine.gate.acquire_probe(shutdown).await.is_err() {
        return false;
    }
    let api = engine.api();
    let call = async {
        match (jobs.first(), &task) {
            (Some(job), _) if job.task_api == Some(TaskApi::V2) => {
                api.task_video(job.file_id).await.map(drop)
            }
            (Some(job), _) => api.retrieve(job.file_id).await.map(drop),
            (None, Some(task)) if task.api == TaskApi::V2 => {
                api.query_task_v2(task.task_id).await.map(drop)
            }
            (None, Some(task)) => api.query_task_v1(task.task_id).await.map(drop),
            (None, None) => Ok(()),
        }
    };
    let answer = tokio::select! {
        _ = shutdown.cancelled() => return false,
        answer = call => answer,
    };
    engine.observer.api_called(answer.as_ref().map(|_| ()));
    match answer {
        Ok(()) => true,
        Err(e) => !still(e.class()),
    }
}

async fn first_generating_task(engine: &Engine) -> Result<Option<Task>, QueueError> {
    use futures_util::TryStreamExt;
    let mut tasks = engine
        .queue
        .list_tasks_stream(Some(TaskState::Generating), Some(1));
    tasks.try_next().await
}
