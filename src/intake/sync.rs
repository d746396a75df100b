//! `minimax-dl sync`: "archive everything this account generated". Pages
//! through the v2 task list and enqueues every video task not yet known;
//! a task the list already shows finished becomes its job at once, one
//! still generating is polled like any other. Idempotent: a second run
//! adds nothing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::api::{ApiClient, ApiError, ErrorClass, ListedTask, TaskStatus};
use crate::gate::{GateError, RateGate};
use crate::ids::TaskApi;
use crate::queue::{NewTask, Queue, QueueError, TaskResult};

/// What to list.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SyncOptions {
    /// Only tasks created at or after this Unix time (seconds).
    pub since: Option<i64>,
    pub page_size: u32,
    /// The deadline of the tasks enqueued.
    pub deadline: Duration,
}

/// A bound on pages, whatever `total` says.
const MAX_PAGES: u32 = 100_000;

/// Transient failures of one page in a row before `sync` gives up.
const PAGE_TRIES: u32 = 5;

/// What `sync` found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct SyncReport {
    pub pages: u32,
    /// Tasks the list showed.
    pub listed: u64,
    /// New to the queue.
    pub added: u64,
    /// Already in the queue (any state).
    pub known: u64,
    /// Of those added (or known and still generating), finished already:
    /// their jobs were enqueued at once.
    pub handed_over: u64,
    /// Failed, cancelled or expired at MiniMax: nothing to archive.
    pub skipped_failed: u64,
    /// Not video (an H3-Context-IR prompt).
    pub skipped_not_video: u64,
    /// Created before `--since`.
    pub skipped_old: u64,
    /// List items without a usable task id.
    pub unreadable: u64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error("listing tasks (page {page}): {error}")]
    Api { page: u32, error: ApiError },
    #[error("stopped")]
    Stopped,
    #[error("the pool is paused: {0}")]
    Held(String),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Why a listed task is left out, if it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    Failed,
    NotVideo,
    Old,
}

/// What to do with one listed task: the task to enqueue (with its result
/// when the list shows it finished), or why it is skipped. Pure.
pub(crate) fn choose(task: &ListedTask, since: Option<i64>) -> Result<NewTask, Skip> {
    if since.is_some_and(|since| task.created_at.is_some_and(|at| at < since)) {
        return Err(Skip::Old);
    }
    if task.not_video {
        return Err(Skip::NotVideo);
    }
    let result = match &task.status {
        TaskStatus::Failed(_) => return Err(Skip::Failed),
        TaskStatus::Video(_) => Some(TaskResult::Video),
        TaskStatus::File(id) => Some(TaskResult::File(*id)),
        TaskStatus::Generating(_) | TaskStatus::Unrecognised(_) => None,
    };
    Ok(NewTask {
        task_id: task.id,
        api: TaskApi::V2,
        result,
    })
}

/// Is there a page after `page`, having seen `seen` items so far (this
/// page's `items` included)? Pure. The server chooses its page size
/// (MiniMax documents no maximum, and its example serves 20 whatever is
/// asked), so a page shorter than asked proves nothing: the list is
/// exhausted by an empty page, or once `total` items were seen.
pub(crate) fn more_pages(page: u32, seen: u64, items: usize, total: Option<u64>) -> bool {
    if items == 0 || page >= MAX_PAGES {
        return false;
    }
    total.is_none_or(|total| seen < total)
}

/// Pages through the v2 task list, every call under `gate`, and enqueues
/// what [`choose`] keeps, page by page (a run stopped half way keeps what
/// it committed).
pub(crate) async fn sync(
    api: &ApiClient,
    gate: &RateGate,
    queue: &Queue,
    options: SyncOptions,
    cancel: &CancellationToken,
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    let mut page = 1;
    let mut seen = 0u64;
    loop {
        let listed = list_page(api, gate, page, options.page_size, cancel).await?;
        report.pages = page;
        report.listed += listed.items.len() as u64;
        report.unreadable += listed.unreadable;
        let mut batch = Vec::new();
        for task in &listed.items {
            match choose(task, options.since) {
                Ok(new) => batch.push(new),
                Err(Skip::Failed) => report.skipped_failed += 1,
                Err(Skip::NotVideo) => report.skipped_not_video += 1,
                Err(Skip::Old) => report.skipped_old += 1,
            }
        }
        let enqueued = queue.enqueue_tasks(&batch, options.deadline).await?;
        report.added += enqueued.added;
        report.known += enqueued.known;
        report.handed_over += enqueued.handed_over;
        let items = listed.items.len() + listed.unreadable as usize;
        seen += items as u64;
        debug!(page, items, total = ?listed.total, "task list page read");
        if !more_pages(page, seen, items, listed.total) {
            return Ok(report);
        }
        page += 1;
    }
}

/// One page, through the gate, tried again after a rate limit (uncounted)
/// or a passing failure (up to [`PAGE_TRIES`] in a row).
async fn list_page(
    api: &ApiClient,
    gate: &RateGate,
    page: u32,
    page_size: u32,
    cancel: &CancellationToken,
) -> Result<crate::api::TaskPage, SyncError> {
    let mut failures = 0;
    loop {
        match gate.acquire(cancel).await {
            Ok(()) => {}
            Err(GateError::Cancelled) => return Err(SyncError::Stopped),
            Err(GateError::Held(hold)) => return Err(SyncError::Held(hold.message)),
            Err(GateError::Queue(e)) => return Err(e.into()),
        }
        let error = match api.list_tasks_v2(page, page_size).await {
            Ok(listed) => {
                gate.succeeded();
                return Ok(listed);
            }
            Err(error) => error,
        };
        match error.class() {
            ErrorClass::RateLimited { retry_after } => {
                let wait = gate.rate_limited(retry_after).await;
                warn!(
                    "rate limited while listing tasks; waiting {}s",
                    wait.as_secs()
                );
            }
            ErrorClass::Transient | ErrorClass::Unknown if failures + 1 < PAGE_TRIES => {
                failures += 1;
                warn!("listing tasks (page {page}) failed, trying again: {error}");
                tokio::select! {
                    _ = cancel.cancelled() => return Err(SyncError::Stopped),
                    _ = tokio::time::sleep(Duration::from_secs(1 << failures)) => {}
                }
            }
            _ => return Err(SyncError::Api { page, error }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: i64, status: TaskStatus, created_at: Option<i64>) -> ListedTask {
        ListedTask {
            id,
            status,
            created_at,
            not_video: false,
        }
    }

    #[test]
    fn finished_tasks_come_with_their_result_and_dead_ends_are_skipped() {
        let url = reqwest::Url::parse("https://c/v.mp4").unwrap();
        let done = choose(&listed(1, TaskStatus::Video(url), None), None).unwrap();
        assert_eq!(
            (done.task_id, done.api, done.result),
            (1, TaskApi::V2, Some(TaskResult::Video))
        );
        let running = choose(
            &listed(2, TaskStatus::Generating("running".into()), None),
            None,
        )
        .unwrap();
        assert_eq!(running.result, None);
        let odd = choose(
            &listed(3, TaskStatus::Unrecognised("paused".into()), None),
            None,
        )
        .unwrap();
        assert_eq!(odd.result, None, "an unknown status is polled, not skipped");
        assert_eq!(
            choose(&listed(4, TaskStatus::Failed("1026".into()), None), None),
            Err(Skip::Failed)
        );
        let mut text = listed(5, TaskStatus::Generating("queued".into()), None);
        text.not_video = true;
        assert_eq!(choose(&text, None), Err(Skip::NotVideo));
    }

    #[test]
    fn since_keeps_tasks_created_at_or_after_it() {
        let at = |t| listed(1, TaskStatus::Generating("queued".into()), t);
        assert_eq!(choose(&at(Some(99)), Some(100)), Err(Skip::Old));
        assert!(choose(&at(Some(100)), Some(100)).is_ok());
        assert!(choose(&at(None), Some(100)).is_ok(), "no date: kept");
    }

    #[test]
    fn paging_ends_at_an_empty_page_or_the_total_never_at_a_short_page() {
        // (page, seen so far, items on this page, total) → another page?
        let cases = [
            (1, 20, 20, Some(476), true), // the server serves 20 though 100 were asked
            (23, 460, 20, Some(476), true), // 16 left
            (24, 476, 16, Some(476), false), // total reached
            (3, 40, 0, Some(1000), false), // an empty page ends it whatever total says
            (1, 100, 100, None, true),    // no total: on until an empty page
            (2, 140, 40, None, true),     // a short page is not the last
            (1, 100, 100, Some(100), false),
            (MAX_PAGES, 5, 5, None, false), // the bound
        ];
        for (page, seen, items, total, more) in cases {
            assert_eq!(
                more_pages(page, seen, items, total),
                more,
                "page {page}, seen {seen}, items {items}, total {total:?}"
            );
        }
    }
}
