//! The contract between [`Queue`] and the database that holds the jobs:
//! the [`Store`] trait, every operation a backend provides and what each
//! promises, written once in [`store_contract!`] below. The compiler holds
//! each backend (`SqliteStore` in `sqlite/`, `PgStore` in `postgres/`) to
//! that one list: a method missing, with other arguments, or whose future
//! is not `Send` is a build error, not a gap found in production. The
//! contract suite (`tests/it/queue_contract.rs`) runs against each and
//! judges what the methods do.
//!
//! Dispatch stays static: [`Backend`] is an enum of the stores, and
//! [`on_store!`] runs a call on whichever one backs a queue, through the
//! trait. Async methods do not go through `dyn` easily, and two backends
//! need no more.
//!
//! The list has two parts: methods that `Queue` offers as they are (each
//! becomes a `Queue` method of the same name and documentation, calling
//! the store under the statement deadline), and the store's own methods,
//! which `Queue` and [`Lease`](super::Lease) wrap (a claim's lease, the
//! account a pause belongs to, paging, the group commit). Each part has a
//! `written once` section: those methods are the functions of the same
//! name in `orchestrate/`, one body for both backends over the statements
//! each supplies; the others are each backend's own.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use super::group_commit::Completion;
use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{
    Claimable, EnqueueReport, ExpectedSize, FleetState, Heartbeat, HostPause, Job, JobEvent,
    JobState, Millis, NewTask, PollRecord, ProbeWhen, PruneBatch, Queue, QueueError, RecordedPath,
    ReleaseReason, Resume, StatusCounts, StoredObject, Task, TaskCounts, TaskEnqueueReport,
    TaskState, Upload, VerbOutcome, VerifiedFile,
};

/// The store behind a queue, one variant a backend.
#[derive(Clone, Debug)]
pub(super) enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Runs `$call` with `$s` bound to whichever store backs `$queue`.
macro_rules! on_store {
    ($queue:expr, $s:ident => $call:expr) => {
        match &$queue.store {
            $crate::queue::store::Backend::Sqlite($s) => $call,
            $crate::queue::store::Backend::Postgres($s) => $call,
        }
    };
}

/// [`on_store!`] for a call that talks to the database: on PostgreSQL it
/// runs under the statement deadline (`postgres::within`), so a server that
/// accepted the connection and stopped answering is an unreachable
/// database after `db_timeout_secs`, not a verb or a worker waiting for
/// ever. SQLite is a local file: its waits are its busy timeout's.
macro_rules! on_store_within {
    ($queue:expr, $s:ident => $call:expr) => {
        match &$queue.store {
            $crate::queue::store::Backend::Sqlite($s) => $call,
            $crate::queue::store::Backend::Postgres($s) => {
                $crate::queue::postgres::within(async { $call }).await
            }
        }
    };
}

/// Writes the [`Store`] trait from the list of its methods, its
/// implementation by each backend, and the `Queue` methods that only hand
/// their call to the store. A method of a `written once` section is the
/// function of that name in `orchestrate/`, generic over the backend's
/// statements; any other is the backend's own method of that name (an
/// inherent method wins over the trait's in a path).
macro_rules! store_contract {
    (
        offered by Queue {
            $($(#[$q_attr:meta])* pub async fn $q_name:ident(&self $(, $q_arg:ident: $q_ty:ty)* $(,)?)
                -> $q_ret:ty;)*
        }
        offered by Queue, written once {
            $($(#[$qo_attr:meta])* pub async fn $qo_name:ident(&self $(, $qo_arg:ident: $qo_ty:ty)* $(,)?)
                -> $qo_ret:ty;)*
        }
        wrapped by Queue and Lease {
            $($(#[$s_attr:meta])* async fn $s_name:ident(&self $(, $s_arg:ident: $s_ty:ty)* $(,)?)
                -> $s_ret:ty;)*
        }
        wrapped by Queue and Lease, written once {
            $($(#[$so_attr:meta])* async fn $so_name:ident(&self $(, $so_arg:ident: $so_ty:ty)* $(,)?)
                -> $so_ret:ty;)*
        }
    ) => {
        /// The contract every backend keeps (see the module header). Every
        /// write is one transaction (or one statement); a lease holder's
        /// write matches only while `owner` holds the lease of `file_id`,
        /// and fails with `QueueError::LeaseLost` once it does not.
        pub(crate) trait Store {
            /// The location as it may be shown (a PostgreSQL URL without
            /// its password).
            fn location(&self) -> &str;
            /// The longest an idle pool should wait between looks at the
            /// queue (see `Queue::idle_poll_max`).
            fn idle_poll_max(&self) -> Duration;
            /// Waits up to `max` for new work (see `Queue::wait_for_work`).
            fn wait_for_work(&self, max: Duration) -> impl Future<Output = ()> + Send;
            /// Closes the connections.
            fn close(&self) -> impl Future<Output = ()> + Send;
            $($(#[$q_attr])* fn $q_name(&self $(, $q_arg: $q_ty)*)
                -> impl Future<Output = $q_ret> + Send;)*
            $($(#[$qo_attr])* fn $qo_name(&self $(, $qo_arg: $qo_ty)*)
                -> impl Future<Output = $qo_ret> + Send;)*
            $($(#[$s_attr])* fn $s_name(&self $(, $s_arg: $s_ty)*)
                -> impl Future<Output = $s_ret> + Send;)*
            $($(#[$so_attr])* fn $so_name(&self $(, $so_arg: $so_ty)*)
                -> impl Future<Output = $so_ret> + Send;)*
        }

        store_contract!(@implement SqliteStore;
            own { $($q_name($($q_arg: $q_ty),*) -> $q_ret;)* $($s_name($($s_arg: $s_ty),*) -> $s_ret;)* }
            once { $($qo_name($($qo_arg: $qo_ty),*) -> $qo_ret;)* $($so_name($($so_arg: $so_ty),*) -> $so_ret;)* });
        store_contract!(@implement PgStore;
            own { $($q_name($($q_arg: $q_ty),*) -> $q_ret;)* $($s_name($($s_arg: $s_ty),*) -> $s_ret;)* }
            once { $($qo_name($($qo_arg: $qo_ty),*) -> $qo_ret;)* $($so_name($($so_arg: $so_ty),*) -> $so_ret;)* });

        impl Queue {
            $(
                $(#[$q_attr])*
                pub async fn $q_name(&self $(, $q_arg: $q_ty)*) -> $q_ret {
                    on_store_within!(self, s => Store::$q_name(s $(, $q_arg)*).await)
                }
            )*
            $(
                $(#[$qo_attr])*
                pub async fn $qo_name(&self $(, $qo_arg: $qo_ty)*) -> $qo_ret {
                    on_store_within!(self, s => Store::$qo_name(s $(, $qo_arg)*).await)
                }
            )*
        }
    };
    (@implement $backend:ident;
        own { $($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)* }
        once { $($o_name:ident($($o_arg:ident: $o_ty:ty),*) -> $o_ret:ty;)* }) => {
        impl Store for $backend {
            fn location(&self) -> &str {
                $backend::location(self)
            }
            fn idle_poll_max(&self) -> Duration {
                $backend::idle_poll_max(self)
            }
            fn wait_for_work(&self, max: Duration) -> impl Future<Output = ()> + Send {
                $backend::wait_for_work(self, max)
            }
            fn close(&self) -> impl Future<Output = ()> + Send {
                $backend::close(self)
            }
            $(
                fn $name(&self $(, $arg: $ty)*) -> impl Future<Output = $ret> + Send {
                    $backend::$name(self $(, $arg)*)
                }
            )*
            $(
                fn $o_name(&self $(, $o_arg: $o_ty)*) -> impl Future<Output = $o_ret> + Send {
                    super::orchestrate::$o_name(self $(, $o_arg)*)
                }
            )*
        }
    };
}

store_contract! {
    offered by Queue {
    // ---- a host's own pauses, for `status` ----

    /// Records (or refreshes) `host`'s own pause, shown by `status` for
    /// `valid_for` unless refreshed again: a pause no other host obeys.
    /// A pause in force keeps the time it began.
    pub async fn record_host_pause(&self, host: &str, message: &str, paused_by: &str,
        valid_for: Duration) -> Result<(), QueueError>;

    /// `host`'s pause is over (only the one `paused_by` recorded).
    pub async fn lift_host_pause(&self, host: &str, paused_by: &str) -> Result<(), QueueError>;

    /// The hosts' own pauses in force, by host.
    pub async fn host_pauses(&self) -> Result<Vec<HostPause>, QueueError>;

    // ---- user verbs ----

    /// Adds ids not yet in the queue; ids already present are counted as
    /// skipped. All or nothing: one transaction for the whole call.
    pub async fn enqueue(&self, ids: &[i64]) -> Result<EnqueueReport, QueueError>;

    /// `retry --all-failed`: returns how many jobs went back to the queue.
    pub async fn retry_all_failed(&self) -> Result<u64, QueueError>;

    /// `verify --requeue`: a done job whose file is missing or changed goes
    /// back to `queued` for a fresh download (attempts reset, digest and
    /// progress forgotten, the reason as its last error and in its
    /// history). Applies only while the job is done with this digest.
    /// `path` says whether the recorded path is kept, so the new copy
    /// replaces the changed one, or forgotten (a missing file has no
    /// claim on its name any more). Returns whether it applied.
    pub async fn refetch(&self, file_id: i64, recorded_sha256: &str, path: RecordedPath,
        reason: &str) -> Result<bool, QueueError>;

    /// `prune`: deletes up to `limit` done jobs last changed before
    /// `done_before`, with their history, among ids after `after`, in
    /// one short transaction. Files are never touched. Call again with
    /// the returned `last` until it is `None`.
    pub async fn prune_done(&self, done_before: Millis, after: Option<i64>, limit: u32)
        -> Result<PruneBatch, QueueError>;

    /// Appends a note to a job's history without changing its state.
    pub async fn note(&self, file_id: i64, kind: &str, message: &str)
        -> Result<(), QueueError>;

    // ---- the lease protocol ----

    /// Expires at once the leases of owners `is_dead` says are gone (a
    /// daemon killed on this host), so its jobs resume without waiting out
    /// the lease. Returns how many jobs were freed.
    pub async fn expire_leases_of_dead_owners(&self, is_dead: impl Fn(&str) -> bool + Send + Sync)
        -> Result<u64, QueueError>;

    /// What the queue knows of a job's object in a bucket archive.
    pub async fn upload(&self, file_id: i64) -> Result<Option<Upload>, QueueError>;

    // ---- reads ----

    /// Counts per state from `job_counts` (kept by triggers): constant time
    /// however long the queue.
    pub async fn status(&self) -> Result<StatusCounts, QueueError>;

    /// The same counts computed from the jobs themselves (a full scan), to
    /// check `status` against.
    pub async fn status_by_scan(&self) -> Result<StatusCounts, QueueError>;

    pub async fn get(&self, file_id: i64) -> Result<Option<Job>, QueueError>;

    pub async fn events(&self, file_id: i64) -> Result<Vec<JobEvent>, QueueError>;

    /// When the earliest queued job becomes due (None when nothing is
    /// queued), so an idle worker can sleep until then.
    pub async fn next_due(&self) -> Result<Option<Millis>, QueueError>;

    // ---- `db copy` ----

    /// The history of these jobs, oldest first per job.
    pub async fn events_of(&self, ids: &[i64]) -> Result<Vec<(i64, JobEvent)>, QueueError>;

    /// Takes in jobs copied from another queue as they are (state,
    /// attempts, schedule, lease, digest) with their history, in one
    /// transaction. Ids already here are left alone. Returns how many
    /// jobs were added.
    pub async fn import(&self, jobs: &[Job], events: &[(i64, JobEvent)])
        -> Result<u64, QueueError>;

    // ---- the API-call window ----

    /// Counts one API call against the cap of `per_minute` calls in any
    /// `window`, if the cap allows it now. Returns `None` when the call may
    /// go, or when the oldest call in the window leaves it.
    pub async fn reserve_api_call(&self, per_minute: u32, window: Duration)
        -> Result<Option<Millis>, QueueError>;

    /// API calls counted in the last `window`, by every process: how
    /// much of the cap is in use (`status`).
    pub async fn api_calls_in_window(&self, window: Duration) -> Result<u64, QueueError>;

    /// The fleet's adaptive rate as stored (`status`, the dashboard).
    pub async fn rate_state(&self) -> Result<crate::rate::RateState, QueueError>;

    // ---- the fleet: what every process sharing the queue obeys ----

    /// The API said "too many": no process calls it for `wait` (a longer
    /// cooldown already set stands). [`Queue::reserve_api_call`] answers
    /// with the cooldown's end until then.
    pub async fn cool_fleet(&self, wait: Duration) -> Result<(), QueueError>;

    /// What `run --exit-when-idle` checks before exiting: queued jobs (due
    /// or not), abandoned leases anywhere, and generating tasks. Jobs
    /// running under a live lease belong to their process, on this host
    /// or another.
    pub async fn claimable(&self) -> Result<Claimable, QueueError>;

    // ---- generation tasks ----

    /// Takes up to `limit` generating tasks whose poll is due, moving
    /// their next poll `slot` on: another process polls them only if
    /// this one has not recorded its poll by then.
    pub async fn take_due_tasks(&self, limit: usize, slot: Duration)
        -> Result<Vec<Task>, QueueError>;

    /// Makes a generating task due for a poll now (a callback said it
    /// moved). Returns whether it was waiting.
    pub async fn poll_task_now(&self, task_id: i64) -> Result<bool, QueueError>;

    pub async fn get_task(&self, task_id: i64) -> Result<Option<Task>, QueueError>;

    /// Tasks per state (a scan of the tasks' state index).
    pub async fn task_counts(&self) -> Result<TaskCounts, QueueError>;

    /// When the earliest generating task is due for a poll.
    pub async fn next_task_poll(&self) -> Result<Option<Millis>, QueueError>;

    }
    offered by Queue, written once {
    // ---- decided in `orchestrate/`: the heartbeat, verbs, the rate, tasks ----

    /// Extends the leases this worker pool holds, one `(file_id, owner)` per
    /// running job. Reports the jobs whose lease is gone (another worker
    /// took them: their task must stop) and those a user asked to cancel.
    pub async fn heartbeat(&self, leases: &[(i64, String)], lease: Duration)
        -> Result<Heartbeat, QueueError>;

    /// Applies `event` to the fleet's adaptive rate on the store's
    /// clock, with the calls every process made in the last `window`,
    /// and stores the result; with `cooldown`, also cools the fleet as
    /// [`Queue::cool_fleet`] does, in the same transaction. Events from
    /// every process are applied one at a time.
    pub async fn move_rate(&self, window: Duration, cooldown: Option<Duration>,
        event: crate::rate::RateEvent)
        -> Result<(crate::rate::RateState, crate::rate::Change), QueueError>;

    /// `retry`: failed or cancelled jobs back to `queued`, attempts reset.
    pub async fn retry(&self, ids: &[i64]) -> Result<Vec<(i64, VerbOutcome)>, QueueError>;

    /// `cancel`: queued jobs (and running ones whose worker died) are
    /// cancelled at once; a live worker is asked to stop.
    pub async fn cancel(&self, ids: &[i64]) -> Result<Vec<(i64, VerbOutcome)>, QueueError>;

    /// Adds tasks not yet in the queue, each generating (due for a poll
    /// now) with a deadline `deadline` from now; tasks already there are
    /// counted as known. A task given with its result (a callback, the
    /// task list) and still generating becomes its job at once. All or
    /// nothing: one transaction for the whole call.
    pub async fn enqueue_tasks(&self, tasks: &[NewTask], deadline: Duration)
        -> Result<TaskEnqueueReport, QueueError>;

    /// Records what a poll of a generating task found; a finished task
    /// becomes its job (queued, linked to the task) in the same
    /// transaction. Returns false when the task was not generating any
    /// more (cancelled meanwhile, or finished by a callback).
    pub async fn record_poll(&self, task_id: i64, record: &PollRecord<'_>)
        -> Result<bool, QueueError>;

    /// `db copy`: takes in tasks copied from another queue as they are
    /// (state, polls, schedule, deadline, result), in one transaction.
    /// Ids already here are left alone. Returns how many were added.
    pub async fn import_tasks(&self, tasks: &[Task]) -> Result<u64, QueueError>;

    /// `cancel` of generating tasks: no more polls.
    pub async fn cancel_tasks(&self, ids: &[i64]) -> Result<Vec<(i64, VerbOutcome)>, QueueError>;

    /// `retry` of failed or cancelled tasks: generating again, due now,
    /// with a new deadline `deadline` from now.
    pub async fn retry_tasks(&self, ids: &[i64], deadline: Duration)
        -> Result<Vec<(i64, VerbOutcome)>, QueueError>;

    }
    wrapped by Queue and Lease {
        // ---- claims: `Queue` hands each job out with its `Lease` ----

        /// Leases up to `limit` due jobs to `owner` for `lease`: abandoned
        /// leases first, then queued jobs in `next_attempt_at` order; none
        /// while `account` is paused. Atomic across processes; the jobs in
        /// that order.
        async fn claim_batch(&self, owner: &str, account: &str, lease: Duration, limit: usize)
            -> Result<Vec<Job>, QueueError>;

        /// Leases `file_id` to `owner` now, due or not (`fetch ID`), unless
        /// a live lease holds it or it is not queued.
        async fn claim_id(&self, file_id: i64, owner: &str, lease: Duration)
            -> Result<Option<Job>, QueueError>;

        // ---- a lease holder's writes (`Lease`'s methods) ----

        /// Durable progress of the partial file, and the size it will be
        /// checked against when one is known.
        async fn checkpoint(&self, file_id: i64, owner: &str, progress: &Resume,
            expected: Option<ExpectedSize>) -> Result<(), QueueError>;

        /// Many completions in one statement (the group commit): each
        /// `done` at its path if its owner still held the lease. Returns
        /// the jobs completed.
        async fn complete_many(&self, completions: &[Completion])
            -> Result<HashSet<i64>, QueueError>;

        // ---- an account's pause (`Queue` knows the account) ----

        /// Pauses `account` (a pause in force keeps its cause and probe
        /// time). Returns the pause's epoch.
        async fn pause_fleet(&self, account: &str, message: &str, paused_by: &str,
            first_probe_after: Duration) -> Result<i64, QueueError>;

        /// The shared cooldown and `account`'s pause (any account's newest
        /// for `""`).
        async fn fleet_state(&self, account: &str) -> Result<FleetState, QueueError>;

        /// Takes `account`'s next probe, `when` allows, moving the one after
        /// `next_probe_after` on: one prober at a time, fleet wide.
        async fn take_probe_slot(&self, account: &str, next_probe_after: Duration,
            when: ProbeWhen) -> Result<Option<i64>, QueueError>;

        /// Lifts `account`'s pause `epoch`, unless a newer one replaced it.
        async fn lift_pause(&self, account: &str, epoch: i64) -> Result<bool, QueueError>;

        // ---- pages (`Queue` streams them) ----

        /// Up to `page` jobs after `after` in `file_id` order.
        async fn list_page(&self, state: Option<JobState>, after: Option<i64>, page: u64)
            -> Result<Vec<Job>, QueueError>;

        /// Up to `page` tasks after `after` in task id order.
        async fn list_tasks_page(&self, state: Option<TaskState>, after: Option<i64>, page: u64)
            -> Result<Vec<Task>, QueueError>;
    }
    wrapped by Queue and Lease, written once {
        // ---- decided in `orchestrate/`: a lease holder's writes ----

        /// The verified size, digest and destination, with history line
        /// `verified`.
        async fn record_verified(&self, file_id: i64, owner: &str,
            verified: &VerifiedFile<'_>) -> Result<(), QueueError>;

        /// Forgets the digest and the progress, with history line
        /// `restarted` saying `why`.
        async fn clear_verified(&self, file_id: i64, owner: &str, why: &str)
            -> Result<(), QueueError>;

        /// A counted failure: `queued` until `retry_at`, or `failed`
        /// without; the lease ends; history line `retry_scheduled` or
        /// `failed` with the attempt.
        async fn record_failure(&self, file_id: i64, owner: &str, error: &str,
            retry_at: Option<Millis>) -> Result<(), QueueError>;

        /// Back to `queued`, due at `not_before`, uncounted; the lease ends;
        /// history line `released`, and `last_error` as `reason_kept` says.
        async fn release(&self, file_id: i64, owner: &str, reason: &str,
            not_before: Millis, reason_kept: ReleaseReason) -> Result<(), QueueError>;

        /// `cancelled`, as its user asked; the lease ends.
        async fn confirm_cancelled(&self, file_id: i64, owner: &str) -> Result<(), QueueError>;

        /// Where the job's object goes and the multipart upload in flight.
        async fn record_upload(&self, file_id: i64, owner: &str, object_url: &str,
            upload_id: Option<&str>) -> Result<(), QueueError>;

        /// The object is complete: no upload in flight, what the bucket
        /// said of it, history line `uploaded`.
        async fn record_uploaded(&self, file_id: i64, owner: &str, stored: StoredObject<'_>)
            -> Result<(), QueueError>;

    }
}
