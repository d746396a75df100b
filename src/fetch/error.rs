//! How a download fails: [`FetchError`], and the translations into it of
//! what reqwest, the CDN's status codes and the file system report.

use std::time::Duration;

use super::file;
use super::range::{self, SizeLimit};
use super::url_policy::UrlRefusal;
use crate::http::{describe_reqwest, parse_retry_after};

#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("the CDN refused the download URL (HTTP {status}); it has probably expired")]
    UrlRejected { status: u16 },
    #[error("the download URL has expired or expires within seconds")]
    UrlExpired,
    #[error("the CDN answered HTTP {status}")]
    Cdn {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("download interrupted: {0}")]
    Network(String),
    /// A body brought less than [`super::STALL_FLOOR`] bytes in a read timeout.
    #[error("download stalled: {0}")]
    Stalled(String),
    #[error("size mismatch: expected {expected} bytes ({source_name} size), the CDN has {actual}")]
    SizeMismatch {
        expected: u64,
        actual: u64,
        source_name: &'static str,
    },
    /// The body went on past the size being verified: cut there, and the
    /// partial bytes thrown away (the file never held more than `expected`).
    #[error(
        "size mismatch: the CDN sent more than the {expected} bytes expected ({source_name} \
         size); the download was cut there and its bytes discarded"
    )]
    Oversized {
        expected: u64,
        source_name: &'static str,
    },
    /// Larger than `max_file_bytes`: announced so, or a body of unknown
    /// length that went on past it.
    #[error("{}", over_cap_text(*.max, *.size))]
    OverCap { max: u64, size: Option<u64> },
    /// The URL, or a redirect from it, is not one this client fetches.
    #[error(transparent)]
    UrlPolicy(#[from] UrlRefusal),
    #[error(
        "the CDN did not say how long the file is, and retrieve reported no size to verify against"
    )]
    UnknownLength,
    /// The archive cannot take the bytes now: full, or not writable. A
    /// host-level condition: the pool waits until `needed` bytes are free.
    #[error("{detail}")]
    Storage { detail: String, needed: u64 },
    #[error(
        "the file ({size} bytes) is larger than the whole filesystem of {dir} ({capacity} bytes)"
    )]
    TooLarge {
        size: u64,
        capacity: u64,
        dir: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("stopped")]
    Cancelled,
    /// The [`super::ProgressSink`] could not record a checkpoint; its own
    /// error, for the caller to take back (the download stopped there).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Why a [`super::ProgressSink`] could not record a checkpoint: the
/// caller's own error (the worker's is the queue's), carried through
/// untouched.
pub(crate) type CheckpointError = Box<dyn std::error::Error + Send + Sync>;

fn over_cap_text(max: u64, size: Option<u64>) -> String {
    let what = match size {
        Some(size) => format!("the file ({size} bytes) is larger than"),
        None => "the CDN did not say how long the file is and sent more than".to_string(),
    };
    format!("{what} max_file_bytes ({max} bytes): raise max_file_bytes in the config to fetch it")
}

impl FetchError {
    /// A file-system error: a full or unwritable archive is a
    /// [`FetchError::Storage`] (host-level), anything else plain I/O.
    pub(super) fn io(context: impl Into<String>, source: std::io::Error) -> FetchError {
        if file::is_disk_full(&source) {
            FetchError::Storage {
                detail: format!("disk full: {}: {source}", context.into()),
                needed: 0,
            }
        } else if file::is_unwritable(&source) {
            FetchError::Storage {
                detail: format!("the archive is not writable: {}: {source}", context.into()),
                needed: 0,
            }
        } else {
            FetchError::Io {
                context: context.into(),
                source,
            }
        }
    }

    /// A request's error: a redirect the URL policy refused, else what
    /// went wrong, described without the URL.
    pub(super) fn request(error: &reqwest::Error) -> FetchError {
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            if let Some(refusal) = cause.downcast_ref::<UrlRefusal>() {
                return FetchError::UrlPolicy(refusal.clone());
            }
            source = cause.source();
        }
        FetchError::Network(describe_reqwest(error))
    }

    /// The error for a CDN answer without a usable body: a refused URL (a
    /// fresh one may work), or a status to retry, not before the CDN's
    /// `Retry-After` when it gave one.
    pub(super) fn status(status: u16, retry_after: Option<&str>) -> FetchError {
        if range::url_refused(status) {
            return FetchError::UrlRejected { status };
        }
        FetchError::Cdn {
            status,
            retry_after: retry_after
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now())),
        }
    }

    /// The error for a body that went past its [`SizeLimit`].
    pub(super) fn oversized(limit: SizeLimit) -> FetchError {
        match limit {
            SizeLimit::Expected(expected) => FetchError::Oversized {
                expected: expected.bytes,
                source_name: expected.source.as_str(),
            },
            SizeLimit::Cap(max) => FetchError::OverCap { max, size: None },
        }
    }
}
