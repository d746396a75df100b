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

pub mod control;
pub mod engine;
pub mod events;
pub mod identity;
mod pipeline;
pub mod policy;
mod upload;

use std::time::Duration;

pub use control::JobControl;
pub use engine::Engine;
pub use events::{HostPauseKind, HostProblem, Observer, Observers, Outcome, read_host_pause};
pub use identity::{host_name, owner_is_dead, parse_owner, worker_identity};
pub use pipeline::{panic_message, process};
pub use policy::{
    Decision, MAX_CDN_RETRY_AFTER, PROGRESS_REQUEUE_DELAY, classify_fetch, decide,
    honour_retry_after,
};

/// How long a lease lasts without a heartbeat. Heartbeats come every second,
/// so a killed worker's jobs are claimable again after this long.
pub const LEASE: Duration = Duration::from_secs(30);
