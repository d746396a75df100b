//! A job's stop signals, shared by its task and the pool's heartbeat, and
//! the pool's download slot it holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

/// A job's stop signals: shutdown (the parent token) or a user's cancel.
#[derive(Clone)]
pub(crate) struct JobControl {
    pub cancel: CancellationToken,
    pub user_cancelled: Arc<AtomicBool>,
    pub lease_lost: Arc<AtomicBool>,
    /// The pool's permit for this job's download, while the job holds it.
    download_slot: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl JobControl {
    /// A job's control under `shutdown`, holding `download_slot` (the
    /// pool's worker permit; none for `fetch ID`).
    pub(crate) fn new(
        shutdown: &CancellationToken,
        download_slot: Option<OwnedSemaphorePermit>,
    ) -> JobControl {
        JobControl {
            cancel: shutdown.child_token(),
            user_cancelled: Arc::new(AtomicBool::new(false)),
            lease_lost: Arc::new(AtomicBool::new(false)),
            download_slot: Arc::new(Mutex::new(download_slot)),
        }
    }

    /// The job needs its download slot no more (its file is verified and
    /// in the upload stage, or its turn is over): the pool may claim the
    /// next job with it. Once; later calls do nothing.
    pub(crate) fn give_back_download_slot(&self) {
        let permit = self
            .download_slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(permit);
    }

    /// The heartbeat found the lease gone (another worker took the job):
    /// stop at once and write nothing more about the job.
    pub(crate) fn lose_lease(&self) {
        self.lease_lost.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }

    /// A user ran `cancel` on this job.
    pub(crate) fn cancel_by_user(&self) {
        self.user_cancelled.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }
}
