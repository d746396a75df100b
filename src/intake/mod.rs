//! Task intake: MiniMax generation tasks in, downloads out. A task waits
//! in the queue while it generates, is polled under the rate gate like
//! every API call, and once finished becomes a job like any file id.
//!
//! - [`policy`] (pure): the poll schedule, and what one poll means.
//! - [`poll`]: one poll of one task: gate, query, record.
//! - [`sync`]: `minimax-dl sync`: the v2 task list, page by page, into
//!   the queue.
//! - [`callback`]: what a callback MiniMax POSTs does to the queue.
//!
//! Imports `worker` (the [`Engine`](crate::worker::Engine)), `api`,
//! `gate` and `queue`; never `daemon`, `commands`, `runtime`, `demo`,
//! `metrics` or `listen` (which serves [`callback`] on `run --listen`).

pub(crate) mod callback;
pub(crate) mod policy;
pub(crate) mod poll;
pub(crate) mod sync;

pub(crate) use callback::{CallbackReply, ReceiveError, receive};
pub(crate) use poll::{Polled, poll_task};
pub(crate) use sync::{SyncError, SyncOptions, SyncReport, sync};
