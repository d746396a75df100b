//! Where the queue and a bucket archive are: plain values read from the
//! configuration and opened by their owners (`queue`, `archive::bucket`).
//! Pure; nothing of the crate is imported. `queue` re-exports
//! [`DbLocation`], `archive::bucket` its [`BucketLocation`].

pub(crate) mod bucket;
pub(crate) mod db;

pub(crate) use bucket::{BucketLocation, mistyped_store_url, names_object_store};
pub use db::DbLocation;
