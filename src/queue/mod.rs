//! The durable job queue. [`Queue`] is the front type every caller uses: its
//! method list is the interface. Behind it a store holds the jobs (a
//! SQLite file, in `sqlite/`, or a PostgreSQL database shared by a fleet of
//! hosts, in `postgres/`); every state change is one short transaction there,
//! and the rules deciding which change is allowed live in [`state`] (pure),
//! the store only applies them with compare-and-set updates so two processes
//! never race.
//!
//! - `store.rs`: the `Store` trait, the contract both backends implement,
//!   written once as a list (with the `Queue` methods that only hand their
//!   call on), and the enum `Backend` that dispatches to one statically.
//! - `lease.rs`: a claim returns each job as [`Leased`], the job with its
//!   [`Lease`]; a lease holder's writes (checkpoint, digest, upload,
//!   outcome) are methods of the `Lease`, so only the holder writes.
//! - `types.rs`: jobs, events, counts and the other plain types (with the
//!   enums and parameter structs the interface takes instead of bools);
//!   `rows.rs`
//!   decodes jobs and counts from either store's rows.
//! - `group_commit.rs`: completions made at the same moment share a statement.
//! - `sqlite/`: `open.rs` (what a file holds and how it may be opened),
//!   `lease.rs` (claims, heartbeats, worker writes), `verbs.rs` (enqueue,
//!   retry, cancel), `reads.rs`, `api_calls.rs` (the API-call window).
//! - `postgres/`: the same files for PostgreSQL; times there come from the
//!   database's clock.
//! - [`DbLocation`] (which database, shown without its password, and
//!   which locations can never hold a queue) is plain data in
//!   `crate::location`, re-exported here.
//!
//! The queue never touches the network or the archive: it stores facts the
//! worker reports.

#[macro_use]
mod store;
pub(crate) mod copy;
mod error;
mod group_commit;
mod lease;
mod migrations;
mod orchestrate;
mod postgres;
mod rows;
mod sqlite;
pub(crate) mod state;
pub(crate) mod task;
/// Test-only staging (see `crate::test_hooks`): not in a release build.
#[cfg(feature = "test-hooks")]
pub mod testing;
mod types;

use std::sync::Arc;
use std::time::Duration;

pub use error::QueueError;
pub use lease::{Lease, Leased};
pub(crate) use postgres::set_deadline as set_database_deadline;
pub use sqlite::open;
pub(crate) use state::RetryPolicy;
pub use state::{JobState, UNKNOWN_ERROR_ATTEMPT_CAP};
pub use task::{NewTask, PollRecord, Task, TaskCounts, TaskEnqueueReport, TaskResult, TaskState};
use types::failure_message;
pub use types::{
    Claimable, CommitSync, DbLocation, EnqueueReport, FleetPause, FleetState, Heartbeat, HostPause,
    Job, JobEvent, Millis, ProbeWhen, PruneBatch, RecordedPath, ReleaseReason, StatusCounts,
    StoredObject, Upload, VerbOutcome, VerifiedFile, now_millis,
};
pub(crate) use types::{describe_delay, millis_after, owner_host};

use crate::partial::{ExpectedSize, Resume};
use group_commit::CompletionBatch;
use postgres::PgStore;
use sqlite::SqliteStore;
use store::{Backend, Store};

/// Refuses a location that can never hold a queue (an unknown scheme, an
/// in-memory database) before anything is opened or created.
fn check_location(location: &DbLocation) -> Result<(), QueueError> {
    if location.is_postgres() {
        return Ok(());
    }
    crate::location::db::check_location(&location.0).map_err(|why| QueueError::BadLocation {
        location: location.redacted(),
        why,
    })
}

/// The queue. Cheap to clone (connection pools inside).
#[derive(Clone, Debug)]
pub struct Queue {
    store: Backend,
    completions: Arc<CompletionBatch>,
    /// The account this process works for (see [`Queue::set_account`]),
    /// shared by every clone: a reload with a new key moves them all.
    account: Arc<std::sync::RwLock<Arc<str>>>,
}

/// Rows read a page at a time after the last key seen, up to `limit`:
/// `fetch(after, page)` reads one page in key order.
fn paged<'a, T, F, Fut>(
    limit: Option<u64>,
    key: fn(&T) -> i64,
    fetch: F,
) -> futures_util::stream::BoxStream<'a, Result<T, QueueError>>
where
    T: Send + 'a,
    F: Fn(Option<i64>, u64) -> Fut + Send + Sync + 'a,
    Fut: std::future::Future<Output = Result<Vec<T>, QueueError>> + Send + 'a,
{
    use futures_util::{StreamExt, TryStreamExt, stream};
    const PAGE: u64 = 1000;
    let fetch = Arc::new(fetch);
    let pages = stream::try_unfold((None, limit), move |(after, left)| {
        let fetch = fetch.clone();
        async move {
            if left == Some(0) {
                return Ok(None);
            }
            let page = left.map_or(PAGE, |l| l.min(PAGE));
            let rows = fetch(after, page).await?;
            let Some(last) = rows.last().map(key) else {
                return Ok(None);
            };
            // A short page was the last one.
            let state = if rows.len() as u64 == page {
                (Some(last), left.map(|l| l - page))
            } else {
                (None, Some(0))
            };
            Ok::<_, QueueError>(Some((stream::iter(rows.into_iter().map(Ok)), state)))
        }
    });
    pages.try_flatten().boxed()
}

impl Queue {
    fn new(store: Backend) -> Queue {
        Queue {
            store,
            completions: Arc::default(),
            account: Arc::new(std::sync::RwLock::new(Arc::from(""))),
        }
    }

    /// Opens (creating if missing) the queue database and applies pending
    /// migrations (see [`Queue::open_with`]). A file that exists but is not
    /// a readable SQLite database, or a database that is another
    /// application's, is an error, never silently replaced by or turned into
    /// a queue.
    pub async fn open(location: &DbLocation) -> Result<Queue, QueueError> {
        Queue::open_with(location, CommitSync::Full).await
    }

    /// Opens the queue for a worker pool, whose commits need not each wait
    /// for the disk (see [`CommitSync::Normal`]).
    pub async fn open_for_workers(location: &DbLocation) -> Result<Queue, QueueError> {
        Queue::open_with(location, CommitSync::Normal).await
    }

    /// Opens the queue for a verb that writes: creates the file (and its
    /// directory) when missing, refuses a file that is someone else's
    /// database or that we may not write, migrates and marks it. A
    /// `postgres://` URL opens a PostgreSQL queue instead, creating its
    /// schema in an empty database.
    pub async fn open_with(location: &DbLocation, sync: CommitSync) -> Result<Queue, QueueError> {
        check_location(location)?;
        let store = if location.is_postgres() {
            Backend::Postgres(PgStore::open_with(location, sync).await?)
        } else {
            Backend::Sqlite(SqliteStore::open_with(location, sync).await?)
        };
        Ok(Queue::new(store))
    }

    /// Opens the queue for a verb that only reads (`status`, `list`, `show`):
    /// nothing created, nothing written (but an upgrade of an older schema,
    /// when we may write it).
    pub async fn open_read_only(location: &DbLocation) -> Result<Queue, QueueError> {
        check_location(location)?;
        let store = if location.is_postgres() {
            Backend::Postgres(PgStore::open_read_only(location).await?)
        } else {
            Backend::Sqlite(SqliteStore::open_read_only(location).await?)
        };
        Ok(Queue::new(store))
    }

    /// Opens an existing queue for a verb that changes it but adds no work
    /// (`retry`, `cancel`, `prune`, `verify --requeue`): a missing file, an
    /// empty one or a database without the schema is "no queue", never
    /// created, so a mistyped `--db` leaves nothing behind.
    pub async fn open_existing(location: &DbLocation) -> Result<Queue, QueueError> {
        check_location(location)?;
        let store = if location.is_postgres() {
            Backend::Postgres(PgStore::open_existing(location).await?)
        } else {
            Backend::Sqlite(SqliteStore::open_existing(location).await?)
        };
        Ok(Queue::new(store))
    }

    /// Says which MiniMax account this process calls the API for: a
    /// digest of its key (`ApiClient::account`), never the key. A pause is
    /// learned for one account and obeyed only by processes of that
    /// account, so a host with a wrong key never stops hosts with the
    /// right one. Until set (a verb without a key) the account is `""`,
    /// and [`Queue::fleet_state`] shows the newest pause of any account.
    pub fn set_account(&self, account: &str) {
        *self.account.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(account);
    }

    /// See [`Queue::set_account`].
    pub fn account(&self) -> Arc<str> {
        self.account
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Leases up to `limit` due jobs to `owner`: abandoned leases first, then
    /// queued jobs in `next_attempt_at` order; none while this process's
    /// account is paused. Atomic across processes as [`Queue::claim`] is,
    /// and returns the jobs in that order, fewer (or none) when fewer are due.
    /// A pool with several free workers claims for all of them at once:
    /// one transaction instead of one per job is most of what lets the queue
    /// hand out thousands of jobs a second.
    pub async fn claim_batch(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Leased>, QueueError> {
        let account = self.account();
        let jobs = on_store_within!(self, s => Store::claim_batch(s, owner, &account, lease, limit).await)?;
        Ok(self.leased(jobs, owner))
    }

    /// Claimed `jobs` with their leases, held by `owner`.
    fn leased(&self, jobs: Vec<Job>, owner: &str) -> Vec<Leased> {
        jobs.into_iter()
            .map(|job| Leased::claimed(self, job, owner))
            .collect()
    }

    /// An account-level answer (1004, 1008, ...): no process of this
    /// account claims a job until a probe lifts the pause. A pause in force
    /// keeps its cause and probe time. Returns the pause's epoch.
    pub async fn pause_fleet(
        &self,
        message: &str,
        paused_by: &str,
        first_probe_after: Duration,
    ) -> Result<i64, QueueError> {
        let account = self.account();
        on_store_within!(self, s => Store::pause_fleet(s, &account, message, paused_by, first_probe_after).await)
    }

    /// The shared cooldown, and this account's pause (any account's newest,
    /// when no account is set).
    pub async fn fleet_state(&self) -> Result<FleetState, QueueError> {
        let account = self.account();
        on_store_within!(self, s => Store::fleet_state(s, &account).await)
    }

    /// Takes the next probe of this account's pause if it is due (or at
    /// once, with [`ProbeWhen::Now`]), moving the one after to
    /// `next_probe_after` from now: one prober at a time, fleet wide.
    /// Returns the epoch of the pause to probe.
    pub async fn take_probe_slot(
        &self,
        next_probe_after: Duration,
        when: ProbeWhen,
    ) -> Result<Option<i64>, QueueError> {
        let account = self.account();
        on_store_within!(self, s => Store::take_probe_slot(s, &account, next_probe_after, when).await)
    }

    /// A probe of this account's pause `epoch` succeeded: lifts it, unless
    /// a newer pause replaced it meanwhile. Returns whether it lifted one.
    pub async fn lift_pause(&self, epoch: i64) -> Result<bool, QueueError> {
        let account = self.account();
        on_store_within!(self, s => Store::lift_pause(s, &account, epoch).await)
    }

    /// The location as it may be shown (a PostgreSQL URL without its password).
    pub fn location(&self) -> &str {
        on_store!(self, s => Store::location(s))
    }

    pub async fn close(&self) {
        on_store!(self, s => Store::close(s).await)
    }

    /// Leases the next due job to `owner`: a queued job whose time has come,
    /// or a running job whose worker stopped renewing its lease. Atomic
    /// across processes: the write lock is held from the choice to the update.
    pub async fn claim(&self, owner: &str, lease: Duration) -> Result<Option<Leased>, QueueError> {
        Ok(self.claim_batch(owner, lease, 1).await?.pop())
    }

    /// Jobs in `file_id` order, read a page at a time: `list` on a queue of
    /// millions prints its first line at once, holds one page in memory, and
    /// never keeps a read open while its output is being consumed (an open
    /// read would stop the daemon's WAL from being checkpointed).
    pub fn list_stream(
        &self,
        state: Option<JobState>,
        limit: Option<u64>,
    ) -> futures_util::stream::BoxStream<'_, Result<Job, QueueError>> {
        paged(
            limit,
            |job: &Job| job.file_id,
            move |after, page| async move {
                on_store_within!(self, s => Store::list_page(s, state, after, page).await)
            },
        )
    }

    /// Tasks in task id order, a page at a time (as [`Queue::list_stream`]).
    pub fn list_tasks_stream(
        &self,
        state: Option<TaskState>,
        limit: Option<u64>,
    ) -> futures_util::stream::BoxStream<'_, Result<Task, QueueError>> {
        paged(
            limit,
            |task: &Task| task.task_id,
            move |after, page| async move {
                on_store_within!(self, s => Store::list_tasks_page(s, state, after, page).await)
            },
        )
    }

    /// The longest an idle pool should wait between looks at the queue: a
    /// job enqueued by another process starts within about this long even
    /// if no wake-up reaches the pool.
    pub fn idle_poll_max(&self) -> Duration {
        on_store!(self, s => Store::idle_poll_max(s))
    }

    /// Waits up to `max` for new work: a job enqueued, retried or given
    /// back by any process (a NOTIFY on PostgreSQL; SQLite has no such
    /// signal, so there it simply waits).
    pub async fn wait_for_work(&self, max: Duration) {
        on_store!(self, s => Store::wait_for_work(s, max).await)
    }

    /// Claims one particular job now (`fetch ID`), even if its retry time
    /// has not come: a user asked for it.
    pub async fn claim_id(
        &self,
        file_id: i64,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Leased>, QueueError> {
        let job = on_store_within!(self, s => Store::claim_id(s, file_id, owner, lease).await)?;
        Ok(job.map(|job| Leased::claimed(self, job, owner)))
    }

    /// [`Queue::list_stream`], collected.
    pub async fn list(
        &self,
        state: Option<JobState>,
        limit: Option<u64>,
    ) -> Result<Vec<Job>, QueueError> {
        use futures_util::TryStreamExt;
        self.list_stream(state, limit).try_collect().await
    }
}
