//! A job's stop signals, shared by its task and the pool's heartbeat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

/// A job's stop signals: shutdown (the parent token) or a user's cancel.
#[derive(Clone)]
pub(crate) struct JobControl {
    pub cancel: CancellationToken,
    pub user_cancelled: Arc<AtomicBool>,
    pub lease_lost: Arc<AtomicBool>,
}

impl JobControl {
    pub(crate) fn new(shutdown: &CancellationToken) -> JobControl {
        JobControl {
            cancel: shutdown.child_token(),
            user_cancelled: Arc::new(AtomicBool::new(false)),
            lease_lost: Arc::new(AtomicBool::new(false)),
        }
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
