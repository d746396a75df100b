//! The seam between [`Queue`](super::Queue) and the database that holds the
//! jobs. An enum rather than a trait object: the store's methods are async,
//! and async methods do not go through `dyn` easily. Each backend is a
//! variant, a folder (`sqlite/`, `postgres/`), and an arm in [`on_store!`];
//! the contract suite (`tests/it/queue_contract.rs`) runs against each.

use super::postgres::PgStore;
use super::sqlite::SqliteStore;

#[derive(Clone, Debug)]
pub(super) enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Runs `$call` with `$s` bound to whichever store backs `$queue`.
macro_rules! on_store {
    ($queue:expr, $s:ident => $call:expr) => {
        match &$queue.store {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $call,
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
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $crate::queue::postgres::within(async { $call }).await,
        }
    };
}

/// `Queue` methods that only hand their call to the store, each written as
/// its signature and its documentation: the body is the same for all.
macro_rules! delegate_to_store {
    ($($(#[$attr:meta])* pub async fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?)
        -> $ret:ty;)*) => {
        $(
            $(#[$attr])*
            pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                on_store_within!(self, s => s.$name($($arg),*).await)
            }
        )*
    };
}
