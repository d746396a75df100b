//! Where files go and what is known about them.
//!
//! - `template.rs` (pure): `path_template`, parsed at config load and
//!   expanded per file into a relative path of sanitised components.
//! - `place.rs`: choosing, reserving and taking a file's path, with its
//!   sidecar; collisions get a deterministic suffix, nothing is overwritten
//!   that is not the file's own.
//! - `sidecar.rs`: what `NAME.json` beside a file says.
//! - `fixity.rs`: `verify`'s check of one file against its recorded digest.
//! - `manifest.rs` (pure): `export`'s lines, JSON Lines or CSV.
//!
//! The archive knows the queue's job type (for the manifest) and the fetch
//! module's file helpers, nothing of the API, the gate or the workers.

pub(crate) mod bucket;
pub(crate) mod fixity;
pub(crate) mod manifest;
pub(crate) mod place;
pub(crate) mod sidecar;
pub(crate) mod template;

pub(crate) use place::Archive;
pub(crate) use template::{Fields, PathTemplate};
