//! The store's decisions written once, for both backends: which statements
//! a write runs, in which order, in one transaction, and what their answers
//! mean (a task handed over as its job, a verb's verdict applied, a lease
//! found gone, a rate moved). A backend supplies only its part, through the
//! traits here: its transaction and its clock ([`Dialect`]: SQLite binds
//! this host's `now_millis()` taken once per transaction, PostgreSQL writes
//! `mdl_now_ms()`, the database's clock), and its statements (one method
//! each, named for what the statement does, in `sqlite/` and `postgres/`).
//!
//! What stays a backend's own is where the two differ in structure, not
//! only in spelling: PostgreSQL's single-statement CTEs on the hot path
//! (the claims, the group commit, a lease holder's write and its history
//! line in one round trip), its array-batched heartbeat and enqueue, the
//! API-call window behind an advisory lock, waiting for work on `LISTEN`;
//! and statements that run alone, whose text is all there is to them. The
//! account pauses are such statements: a pause in force keeping its cause
//! and probe time, one prober taking the slot, are each one upsert or
//! compare-and-set, atomic on its own; written here as a read and then a
//! write, they would need a lock on a row that may not exist yet.
//!
//! `store.rs` makes the methods written here the [`Store`](super::store::Store)
//! methods of both backends (the `once` entries of its list).

mod lease;
mod rate;
mod tasks;
mod uploads;
mod verbs;

use std::future::Future;

pub(crate) use lease::{Failure, LeaseStatements, LeasedWrite};
pub(super) use lease::{
    clear_verified, confirm_cancelled, heartbeat, record_failure, record_verified, release,
};
pub(crate) use rate::RateStatements;
pub(super) use rate::move_rate;
pub(crate) use tasks::TaskStatements;
pub(super) use tasks::{cancel_tasks, enqueue_tasks, import_tasks, record_poll, retry_tasks};
pub(crate) use uploads::UploadStatements;
pub(super) use uploads::{record_upload, record_uploaded};
pub(crate) use verbs::VerbStatements;
pub(super) use verbs::{cancel, retry};

/// A backend's write transaction and the statements every orchestration
/// needs. `Tx` carries the clock: what "now" means in its statements.
pub(crate) trait Dialect: Sync {
    /// A write transaction (SQLite: under the write lock taken up front,
    /// with the time it began; PostgreSQL: a transaction of the pool).
    type Tx: Send;

    fn begin(&self) -> impl Future<Output = Result<Self::Tx, sqlx::Error>> + Send;

    fn commit(tx: Self::Tx) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Appends a line to a job's history, at the transaction's time.
    fn insert_event(
        tx: &mut Self::Tx,
        file_id: i64,
        kind: &str,
        message: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}
