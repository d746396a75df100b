//! The workers behind `run` and `fetch`. The pool ([`run`]: `run`, `demo`) claims
//! jobs up to the concurrency, pauses the whole pool on account-level
//! errors or a full disk and probes until they are gone, applies reloads,
//! and stops cleanly on one cancellation token. [`single`] is `fetch ID`:
//! one job, claimed by id, in the foreground. Both run their jobs through
//! `running::RunningDownloads`: the spawned workers, their lease heartbeat
//! and the user cancels it passes on.

use std::time::Duration;

mod heartbeat;
mod outage;
mod poller;
mod pool;
mod probe;
mod running;
pub(crate) mod single;

pub(crate) use outage::{BATCH_GRACE, Outage};
pub use pool::gather_permits;
pub(crate) use pool::run;
pub(crate) use single::fetch_one;

use crate::worker::HostProblem;

/// Longest sleep of an idle pool between looks at the queue: a job enqueued
/// by another process starts within about this long.
pub(crate) const IDLE_POLL_MAX: Duration = Duration::from_millis(1000);
const IDLE_POLL_MIN: Duration = Duration::from_millis(25);
/// Most jobs claimed in one statement.
const CLAIM_BATCH_MAX: usize = 64;
/// How long a claim waits for more workers to finish (see [`gather_permits`]).
pub const CLAIM_LINGER: Duration = Duration::from_millis(1);
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub(crate) struct RunOptions {
    pub concurrency: u32,
    pub exit_when_idle: bool,
    pub probe_interval: Duration,
    /// How long a batch waits out an API it cannot connect to before it
    /// gives up (`api_unreachable_secs`).
    pub api_unreachable: Duration,
    /// How generation tasks are polled (the pool runs their poller).
    pub tasks: crate::config::TaskSettings,
}

/// Why the pool returned.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RunEnd {
    /// `--exit-when-idle`: nothing left queued or running.
    Idle,
    /// The shutdown token was cancelled.
    Stopped,
    /// `--exit-when-idle` met a host-level problem.
    Blocked(HostProblem),
    /// `--exit-when-idle` could not reach the queue database for
    /// [`outage::BATCH_GRACE`]: what the last try said.
    Unreachable(String),
}

/// A change of settings delivered on SIGHUP: a new API client (key) and
/// concurrency.
#[derive(Clone)]
pub(crate) struct Reload {
    pub api: crate::api::ApiClient,
    pub concurrency: u32,
    pub rate: crate::config::RateSettings,
}
