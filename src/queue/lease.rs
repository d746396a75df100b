//! The lease a claim hands out, as a value: "only the lease holder writes"
//! is a type. A claim ([`Queue::claim`], [`Queue::claim_batch`],
//! [`Queue::claim_id`]) returns each job as [`Leased`], the job with its
//! [`Lease`]; every write a worker makes about its job (progress, the
//! verified digest, an upload, an outcome) is a method of the lease, so no
//! code can write about a job without having claimed it, nor under an
//! owner name it did not claim with.
//!
//! The store still checks every write against the lease it holds (an
//! expired lease may have been claimed by another worker since): each
//! method fails with [`QueueError::LeaseLost`] once the lease is gone.

use std::path::Path;
use std::sync::Arc;

use super::store::Store;
use super::{
    ExpectedSize, Job, Millis, Queue, QueueError, ReleaseReason, Resume, StoredObject, VerifiedFile,
};

/// The right to write about one job, held by one owner name until the
/// lease expires unrenewed. Cheap to clone (the queue inside is).
#[derive(Clone, Debug)]
pub struct Lease {
    queue: Queue,
    file_id: i64,
    owner: Arc<str>,
}

/// A claimed job: the job as the claim left it, and its lease.
#[derive(Clone, Debug)]
pub struct Leased {
    pub job: Job,
    pub lease: Lease,
}

/// A claimed job reads as the job it is.
impl std::ops::Deref for Leased {
    type Target = Job;

    fn deref(&self) -> &Job {
        &self.job
    }
}

impl Leased {
    /// `job` as claimed by `owner` from `queue`.
    pub(super) fn claimed(queue: &Queue, job: Job, owner: &str) -> Leased {
        let lease = Lease {
            queue: queue.clone(),
            file_id: job.file_id,
            owner: Arc::from(owner),
        };
        Leased { job, lease }
    }
}

impl Queue {
    /// A handle on `owner`'s lease of `file_id` without claiming it: for
    /// tests that write as a given owner, to prove that a write by anyone
    /// but the holder is refused. The product gets its leases from claims.
    #[cfg(feature = "test-hooks")]
    pub fn lease_of(&self, file_id: i64, owner: &str) -> Lease {
        Lease {
            queue: self.clone(),
            file_id,
            owner: Arc::from(owner),
        }
    }
}

impl Lease {
    pub fn file_id(&self) -> i64 {
        self.file_id
    }

    /// The owner name the job was claimed under.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Records durable progress of the partial file, and the size it will
    /// be checked against when one is known.
    pub async fn checkpoint(
        &self,
        progress: &Resume,
        expected: Option<ExpectedSize>,
    ) -> Result<(), QueueError> {
        let (id, owner) = (self.file_id, &*self.owner);
        on_store_within!(self.queue, s => Store::checkpoint(s, id, owner, progress, expected).await)
    }

    /// Records the verified size and digest of the complete partial file,
    /// and where it goes. Written before the rename, so a crash after it can
    /// finish the job by re-hashing instead of re-downloading, and never
    /// accepts other bytes.
    pub async fn record_verified(&self, verified: &VerifiedFile<'_>) -> Result<(), QueueError> {
        let (id, owner) = (self.file_id, &*self.owner);
        on_store_within!(self.queue, s => Store::record_verified(s, id, owner, verified).await)
    }

    /// Forgets a recorded digest whose file is gone or no longer matches.
    pub async fn clear_verified(&self, why: &str) -> Result<(), QueueError> {
        let (id, owner) = (self.file_id, &*self.owner);
        on_store_within!(self.queue, s => Store::clear_verified(s, id, owner, why).await)
    }

    /// A failure that counts against the job's attempts. With `retry_at` the
    /// job waits in `queued` until then; without, it ends `failed`. The
    /// lease ends.
    pub async fn record_failure(
        &self,
        error: &str,
        retry_at: Option<Millis>,
    ) -> Result<(), QueueError> {
        let (id, owner) = (self.file_id, &*self.owner);
        on_store_within!(self.queue, s => Store::record_failure(s, id, owner, error, retry_at).await)
    }

    /// Gives the job back to the queue, due at `not_before`, without
    /// counting an attempt: shutdown, rate limits, account-level pauses, a
    /// full disk, or a transfer that made progress before failing. Partial
    /// bytes stay. The lease ends.
    pub async fn release(
        &self,
        reason: &str,
        not_before: Millis,
        reason_kept: ReleaseReason,
    ) -> Result<(), QueueError> {
        let (id, owner) = (self.file_id, &*self.owner);
        on_store_within!(self.queue, s => Store::release(s, id, owner, reason, not_before, reason_kept).await)
    }

    /// Records where the job's file goes in a bucket archive, and the
    /// multipart upload started for it (`None`: a single PUT, or none in
    /// flight): before the first part is sent, so a crash leaves an id
    /// the next worker aborts.
    pub async fn record_upload(
        &self,
        object_url: &str,
        upload_id: Option<&str>,
    ) -> Result<(), QueueError> {
        let (id, owner) = (self.file_id, &*self.owner);
        on_store_within!(self.queue, s => Store::record_upload(s, id, owner, object_url, upload_id).await)
    }

    /// The object is complete: no upload in flight any more, and what
    /// the store said of it (history line `uploaded`).
    pub async fn record_uploaded(&self, stored: StoredObject<'_>) -> Result<(), QueueError> {
        let (id, owner) = (self.file_id, &*self.owner);
        on_store_within!(self.queue, s => Store::record_uploaded(s, id, owner, stored).await)
    }

    /// The worker stopped a job whose cancellation was requested. The lease
    /// ends.
    pub async fn confirm_cancelled(&self) -> Result<(), QueueError> {
        let (id, owner) = (self.file_id, &*self.owner);
        on_store_within!(self.queue, s => Store::confirm_cancelled(s, id, owner).await)
    }

    /// The file is verified and in place at `final_path`: the job is done,
    /// and the lease ends. Completions made at the same moment share one
    /// statement (see `group_commit.rs`).
    pub async fn complete(&self, final_path: &Path) -> Result<(), QueueError> {
        self.queue
            .complete(self.file_id, &self.owner, final_path)
            .await
    }
}
