//! Resumable, verified download of one file from its signed CDN URL.
//!
//! Bytes stream into a partial file under the output directory; progress is
//! made durable at checkpoints (flush, fdatasync, then the queue records the
//! length and the boot id). A resume in the same boot keeps every byte that
//! reached the kernel, one after a reboot only the fsynced prefix
//! ([`resume`]). The sha256 is computed while streaming, with resumed bytes
//! re-hashed from disk. This
//! client never carries the API key: the object store rejects requests that
//! do, and the key belongs to the API host alone. What it may fetch and
//! follow is [`url_policy`]; how much a body may bring is
//! [`range::SizeLimit`]; a body that brings less than [`STALL_FLOOR`] bytes
//! in a whole read timeout is cut.
//!
//! This file is the facade, [`Fetcher`]; behind it, `error.rs` is
//! [`FetchError`], `client.rs` the CDN client and stall watch,
//! `transfer.rs` one file over one stream (and the free-space check), and
//! `segmented.rs` one file over several connections.

mod client;
mod disk_writer;
mod error;
pub(crate) mod file;
pub(crate) mod naming;
pub(crate) mod pieces;
pub(crate) mod range;
pub(crate) mod resume;
mod segmented;
mod transfer;
pub(crate) mod url_policy;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use reqwest::Url;
use tokio_util::sync::CancellationToken;

use crate::test_hooks::TestHooks;
use client::Client;
use segmented::Segmented;
use transfer::SingleStream;
use url_policy::UrlPolicy;

pub(crate) use crate::partial::{Resume, SizeSource};
pub(crate) use client::made_progress;
pub(crate) use error::{CheckpointError, FetchError};

/// A verified partial file ready to be placed: fsynced, unless the
/// fetcher was told otherwise ([`Fetcher::with_verified_sync`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    pub size: u64,
    pub sha256: String,
    pub size_source: SizeSource,
}

/// Told about progress. `checkpoint` is called after the partial file was
/// fsynced, with the state to persist; `transferred` after every chunk, for
/// progress bars. Fetch knows nothing of where the state goes: an error
/// from `checkpoint` ends the download as [`FetchError::Checkpoint`].
/// `synced` and `restarted` are for metrics: how long each checkpoint's
/// fsync took, and a download starting again from byte 0.
pub(crate) trait ProgressSink: Sync {
    fn checkpoint(
        &self,
        state: &Resume,
    ) -> impl Future<Output = Result<(), CheckpointError>> + Send;
    fn transferred(&self, _bytes: u64) {}
    fn synced(&self, _took: Duration) {}
    fn restarted(&self) {}
}

/// One file to fetch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Download<'a> {
    pub file_id: i64,
    pub url: &'a Url,
    /// `bytes` from retrieve when it was > 0.
    pub api_size: Option<u64>,
    pub partial_path: &'a Path,
    /// The API's clock minus the host's, in seconds (0 when unknown): a
    /// URL in use is judged expired on the clock that signed it.
    pub clock_offset: i64,
}

impl Download<'_> {
    /// Must the URL be refreshed before the next request? `in_use`: it was
    /// used already.
    fn url_expired(&self, in_use: bool) -> bool {
        client::url_expired(self.url, in_use, self.clock_offset)
    }
}

#[derive(Clone)]
pub(crate) struct Fetcher {
    client: Client,
    policy: UrlPolicy,
    max_file_bytes: u64,
    /// Connections per large file (1: one stream).
    segments: u32,
    /// This boot's id, recorded with every checkpoint (see [`resume`]).
    boot_id: Option<String>,
    /// Whether a verified file is fsynced before it is handed over.
    sync_verified: bool,
}

impl Fetcher {
    /// A client that fetches what `policy` allows, following the redirects
    /// it allows, and cuts a body that stalls for `read_timeout`.
    pub(crate) fn new(
        connect_timeout: Duration,
        read_timeout: Duration,
        policy: UrlPolicy,
    ) -> Result<Fetcher, reqwest::Error> {
        Ok(Fetcher {
            client: Client::new(connect_timeout, read_timeout, policy.clone())?,
            policy,
            max_file_bytes: range::DEFAULT_MAX_FILE_BYTES,
            segments: 1,
            boot_id: resume::boot_id(None),
            sync_verified: true,
        })
    }

    /// Takes this boot's id from the file a test names instead of the
    /// kernel (see [`crate::test_hooks`]).
    pub(crate) fn with_hooks(mut self, hooks: &TestHooks) -> Fetcher {
        if let Some(file) = hooks.boot_id_file() {
            self.boot_id = resume::boot_id(Some(file));
        }
        self
    }

    /// Whether a single-stream download fsyncs the verified file before
    /// handing it over (`true` unless told). Off for a bucket archive:
    /// there the staging copy only waits to be read back for its upload
    /// (from the page cache), and whoever finds it after a restart hashes
    /// it again before sending it (`worker::upload::recover`), so a power
    /// cut that ate unsynced bytes costs a download, never a wrong object.
    /// The fsync was the download's last wait, on the critical path of
    /// every upload. Checkpoints still fsync what they record.
    pub(crate) fn with_verified_sync(mut self, sync: bool) -> Fetcher {
        self.sync_verified = sync;
        self
    }

    /// Fetch large files over this many connections at once.
    pub(crate) fn with_segments(mut self, segments: u32) -> Fetcher {
        self.segments = segments.max(1);
        self
    }

    /// Refuse files larger than this (`max_file_bytes`), and cut a body of
    /// unknown length there.
    pub(crate) fn with_max_file_bytes(mut self, max: u64) -> Fetcher {
        self.max_file_bytes = max.max(1);
        self
    }

    /// Downloads (or resumes) `job` into its partial file and verifies it.
    /// `state` is updated as durable progress is made, so on error the
    /// caller knows how far it got.
    pub(crate) async fn download<S: ProgressSink>(
        &self,
        job: &Download<'_>,
        state: &mut Resume,
        sink: &S,
        cancel: &CancellationToken,
    ) -> Result<Verified, FetchError> {
        let url = self.policy.first(job.url)?;
        if url.scheme() != job.url.scheme() {
            tracing::debug!(
                file_id = job.file_id,
                host = url.host_str(),
                "plain http download URL upgraded to https"
            );
        }
        let job = &Download { url: &url, ..*job };
        let partial = job.partial_path;
        if let Some(dir) = partial.parent() {
            file::create_private_dir(dir)
                .await
                .map_err(|e| FetchError::io(format!("cannot create {}", dir.display()), e))?;
        }
        self.trust_partial(partial, state).await?;
        if self.segments > 1 {
            let segmented = Segmented {
                client: &self.client,
                max_file_bytes: self.max_file_bytes,
                segments: self.segments,
            };
            if let Some(verified) = segmented.download(job, state, sink, cancel).await? {
                return Ok(verified);
            }
        }
        let stream = SingleStream {
            client: &self.client,
            max_file_bytes: self.max_file_bytes,
            sync_verified: self.sync_verified,
        };
        stream.download(job, state, sink, cancel).await
    }

    /// Decides how much of the partial file this attempt keeps (see
    /// [`resume::trusted`]) and fsyncs it, so that `bytes_done` is always a
    /// durable length; from here on checkpoints carry this boot's id.
    async fn trust_partial(&self, partial: &Path, state: &mut Resume) -> Result<(), FetchError> {
        let on_disk = match tokio::fs::metadata(partial).await {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => {
                return Err(FetchError::io(
                    format!("cannot stat {}", partial.display()),
                    e,
                ));
            }
        };
        let kept = resume::trusted(state, on_disk, self.boot_id.as_deref());
        if on_disk > 0 {
            let path = partial.to_path_buf();
            tokio::task::spawn_blocking(move || std::fs::File::open(path)?.sync_data())
                .await
                .map_err(|e| FetchError::Network(format!("fsync task failed: {e}")))?
                .map_err(|e| FetchError::io(format!("cannot fsync {}", partial.display()), e))?;
        }
        *state = Resume {
            boot_id: self.boot_id.clone(),
            ..kept
        };
        Ok(())
    }
}
