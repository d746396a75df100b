//! The [`Engine`]: everything workers share.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::events::Observer;
use super::identity::worker_identity;
use crate::api::ApiClient;
use crate::archive::Archive;
use crate::archive::bucket::Bucket;
use crate::fetch::Fetcher;
use crate::gate::RateGate;
use crate::queue::{Queue, RetryPolicy};
use crate::test_hooks::TestHooks;

/// The upload stage's places at a low `concurrency`: the AWS CLI's
/// requests in flight (`max_concurrent_requests`). Measured against 16
/// (BENCHMARKS.md, "Upload to a bucket"): 500 × 2 MiB on the two-core
/// machine took minimax-dl and the store less CPU with 10 in four pairs
/// out of four, and ended 2.5% sooner.
pub(crate) const UPLOAD_STAGE_MIN: usize = 10;

/// The upload stage's places beside a pool of `concurrency` downloads: as
/// many uploads as downloads at least, and enough that small files, each a
/// few MiB of the shared buffer budget
/// (`archive::bucket::UPLOAD_BUFFER_BUDGET`), go up many at a time at a
/// low `concurrency`.
pub(crate) fn upload_stage_places(concurrency: u32) -> usize {
    (concurrency as usize).max(UPLOAD_STAGE_MIN)
}

/// Changes `permits` from `from` places to `to`: at once when it grows;
/// when it shrinks, the surplus is taken out of circulation as jobs give
/// their places back, so no job under way is cut short.
pub(crate) fn resize_permits(permits: &Arc<Semaphore>, from: usize, to: usize) {
    if to > from {
        permits.add_permits(to - from);
    } else if to < from {
        let (permits, surplus) = (permits.clone(), (from - to) as u32);
        tokio::spawn(async move {
            if let Ok(taken) = permits.acquire_many_owned(surplus).await {
                taken.forget();
            }
        });
    }
}

/// Everything workers share. Cheap to clone (handles inside).
#[derive(Clone)]
pub(crate) struct Engine {
    pub queue: Queue,
    api: Arc<RwLock<ApiClient>>,
    pub gate: Arc<RateGate>,
    pub fetcher: Fetcher,
    pub output_dir: PathBuf,
    /// Where files go in `output_dir`, and whether they get sidecars.
    pub archive: Arc<Archive>,
    /// The archive's bucket when `output_dir` is `s3://…`; `output_dir`
    /// is then the staging directory files wait in before they go up.
    pub bucket: Option<Arc<Bucket>>,
    /// The places of the upload stage: a job whose verified file goes up
    /// to the bucket takes one, and gives its download slot back (see
    /// `worker::upload`), so jobs in flight are at most the pool's
    /// `concurrency` downloads plus these.
    pub upload_stage: Arc<Semaphore>,
    pub policy: RetryPolicy,
    /// This process's part of every `lease_owner` it writes: host, pid
    /// namespace, pid and a random tag; [`Engine::next_owner`] adds a
    /// sequence number, so each claim holds a lease of its own.
    owner_prefix: String,
    claims: Arc<AtomicU64>,
    /// Whether the queue database left the last lease heartbeat
    /// unanswered (see [`Engine::queue_silent`]).
    queue_silent: Arc<AtomicBool>,
    pub observer: Arc<dyn Observer>,
    /// What the tests asked of this process (inert in a release build).
    pub hooks: TestHooks,
}

impl Engine {
    pub(crate) fn new(
        queue: Queue,
        api: ApiClient,
        gate: Arc<RateGate>,
        fetcher: Fetcher,
        output_dir: PathBuf,
        policy: RetryPolicy,
        observer: Arc<dyn Observer>,
    ) -> Engine {
        // Pauses are this key's account's (see `ApiClient::account`).
        queue.set_account(&api.account());
        Engine {
            queue,
            api: Arc::new(RwLock::new(api)),
            gate,
            fetcher,
            archive: Arc::new(Archive::new(output_dir.clone())),
            output_dir,
            bucket: None,
            upload_stage: Arc::new(Semaphore::new(UPLOAD_STAGE_MIN)),
            policy,
            owner_prefix: worker_identity(),
            claims: Arc::default(),
            queue_silent: Arc::default(),
            observer,
            hooks: TestHooks::default(),
        }
    }

    /// Runs under `hooks` (see [`crate::test_hooks`]).
    pub(crate) fn with_hooks(mut self, hooks: TestHooks) -> Engine {
        self.hooks = hooks;
        self
    }

    /// Names files with `template` and writes sidecars when `sidecar`.
    pub(crate) fn with_naming(
        mut self,
        template: crate::archive::PathTemplate,
        sidecar: bool,
    ) -> Engine {
        self.archive = Arc::new(Archive {
            dir: self.output_dir.clone(),
            template,
            sidecar,
        });
        self
    }

    /// Archives to `bucket` instead of `output_dir`, with an upload stage
    /// of [`upload_stage_places`] for `concurrency`.
    pub(crate) fn with_bucket(mut self, bucket: Option<Arc<Bucket>>, concurrency: u32) -> Engine {
        self.bucket = bucket;
        self.upload_stage = Arc::new(Semaphore::new(upload_stage_places(concurrency)));
        self
    }

    /// A reload changed the pool's `concurrency` from `from` to `to`: the
    /// upload stage follows it, as the downloads do.
    pub(crate) fn resize_upload_stage(&self, from: u32, to: u32) {
        resize_permits(
            &self.upload_stage,
            upload_stage_places(from),
            upload_stage_places(to),
        );
    }

    /// This process's name in the queue (`host:pidns:pid:tag`): who paused
    /// the queue, for the others' logs.
    pub(crate) fn identity(&self) -> &str {
        &self.owner_prefix
    }

    /// A lease owner name for one claim. Unique per claim, so a job this
    /// process reclaims after losing it is never confused with the old task.
    pub(crate) fn next_owner(&self) -> String {
        let n = self.claims.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.owner_prefix)
    }

    /// Records whether the queue database answered the last lease
    /// heartbeat, for the checkpoints of this process's downloads.
    pub(crate) fn set_queue_silent(&self, silent: bool) {
        self.queue_silent.store(silent, Ordering::Relaxed);
    }

    /// Whether the queue database is known not to answer: a checkpoint
    /// then waits for it only briefly, and the download goes on.
    pub(crate) fn queue_silent(&self) -> bool {
        self.queue_silent.load(Ordering::Relaxed)
    }

    pub(crate) fn api(&self) -> ApiClient {
        self.api.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The API answered "too many": every caller sharing the queue cools
    /// down (see [`RateGate::rate_limited`]), the observers hear it, and
    /// the log says for how long. Returns the cooldown.
    pub(crate) async fn rate_limited(&self, retry_after: Option<Duration>) -> Duration {
        let wait = self.gate.rate_limited(retry_after).await;
        self.observer.rate_limited(wait);
        tracing::warn!(
            "rate limited by the API; every worker sharing the queue waits {}s",
            wait.as_secs()
        );
        wait
    }

    /// Swaps the API client (a reloaded key) for every later call.
    pub(crate) fn replace_api(&self, api: ApiClient) {
        self.queue.set_account(&api.account());
        *self.api.write().unwrap_or_else(|p| p.into_inner()) = api;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (yielding to the spawned shrink) until `permits` has `want`
    /// free places.
    async fn settles_at(permits: &Semaphore, want: usize) -> bool {
        for _ in 0..1000 {
            if permits.available_permits() == want {
                return true;
            }
            tokio::task::yield_now().await;
        }
        false
    }

    #[tokio::test]
    async fn places_grow_at_once_and_shrink_as_jobs_give_them_back() {
        let permits = Arc::new(Semaphore::new(4));
        resize_permits(&permits, 4, 6);
        assert_eq!(permits.available_permits(), 6);
        let held = permits.clone().acquire_many_owned(5).await.unwrap();
        resize_permits(&permits, 6, 2);
        assert!(
            settles_at(&permits, 1).await,
            "one free while five are held"
        );
        drop(held);
        assert!(
            settles_at(&permits, 2).await,
            "four of the five returned are taken out: {}",
            permits.available_permits()
        );
        resize_permits(&permits, 2, 2);
        assert!(settles_at(&permits, 2).await);
    }

    #[test]
    fn the_upload_stage_has_as_many_places_as_downloads_and_never_fewer_than_its_floor() {
        assert_eq!(upload_stage_places(1), UPLOAD_STAGE_MIN);
        assert_eq!(
            upload_stage_places(UPLOAD_STAGE_MIN as u32),
            UPLOAD_STAGE_MIN
        );
        assert_eq!(upload_stage_places(40), 40);
    }
}
