//! One job, from a claimed lease to a verified file in the archive (or a
//! recorded reason why not). Only the worker holding a job's lease moves it
//! out of `running`; every write below is conditional on that lease.
//!
//! - [`engine`]: the [`Engine`] every worker shares.
//! - [`pipeline`]: one claimed job: resolve, fetch, verify, record, place,
//!   and the recording of a failure.
//! - `upload`: the last steps when the archive is a bucket: key, record,
//!   upload, HEAD, done, the local copy removed.
//! - [`policy`]: pure: what a failure means for the job ([`decide`]).
//! - [`identity`]: this process's lease owner name, and whether another
//!   owner is a dead process on this host (libc).
//! - [`events`]: what workers report: [`Observer`], [`Outcome`].
//! - [`control`]: a job's stop signals ([`JobControl`]).

pub(crate) mod control;
pub(crate) mod engine;
pub(crate) mod events;
pub(crate) mod identity;
mod pipeline;
pub(crate) mod policy;
mod upload;

use std::time::Duration;

pub(crate) use control::JobControl;
pub(crate) use engine::{Engine, resize_permits};
pub(crate) use events::{
    HostPauseKind, HostProblem, Observer, Observers, Outcome, read_host_pause,
};
pub use identity::host_name;
pub(crate) use identity::owner_is_dead;
pub(crate) use pipeline::{panic_message, process};

/// How long a lease lasts without a heartbeat. Heartbeats come every second,
/// so a killed worker's jobs are claimable again after this long.
pub(crate) const LEASE: Duration = Duration::from_secs(30);
