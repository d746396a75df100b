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

mod disk_writer;
pub mod file;
pub mod naming;
pub mod pieces;
pub mod range;
pub mod resume;
mod segmented;
pub mod url_policy;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{
    CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderMap, HeaderValue, IF_RANGE, LAST_MODIFIED, RANGE,
    RETRY_AFTER,
};
use reqwest::{Method, Url};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::http::{USER_AGENT, describe_reqwest, parse_retry_after};
use disk_writer::{DiskError, DiskWriter};
use range::{Asked, Plan, ResponseHead, SizeLimit};
use url_policy::{UrlPolicy, UrlRefusal};

use crate::partial::ExpectedSize;
pub use crate::partial::{Resume, SizeSource};

/// A verified, fsynced partial file ready to be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub size: u64,
    pub sha256: String,
    pub size_source: SizeSource,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
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
    /// A body brought less than [`STALL_FLOOR`] bytes in a read timeout.
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
    /// The [`ProgressSink`] could not record a checkpoint; its own error,
    /// for the caller to take back (the download stopped there).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Why a [`ProgressSink`] could not record a checkpoint: the caller's own
/// error (the worker's is the queue's), carried through untouched.
pub type CheckpointError = Box<dyn std::error::Error + Send + Sync>;

fn over_cap_text(max: u64, size: Option<u64>) -> String {
    let what = match size {
        Some(size) => format!("the file ({size} bytes) is larger than"),
        None => "the CDN did not say how long the file is and sent more than".to_string(),
    };
    format!("{what} max_file_bytes ({max} bytes): raise max_file_bytes in the config to fetch it")
}

/// A body must bring at least this many bytes in every read timeout: a
/// server that drips a byte now and then, just often enough to beat a
/// plain idle timeout, is cut like one that sends nothing. 1 KiB a minute
/// (the default timeout) is far below any working connection.
pub const STALL_FLOOR: u64 = 1024;

/// Did a transfer move from `before` to `after` bytes far enough to count
/// as progress? Less than [`STALL_FLOOR`] is what a dripping server gives
/// each time: counting it would let such a server keep a job forever.
pub fn made_progress(before: u64, after: u64) -> bool {
    after >= before.saturating_add(STALL_FLOOR)
}

/// The idle-read rule for one body: its deadline moves on only when at
/// least [`STALL_FLOOR`] bytes arrived since it last moved.
struct IdleWatch {
    read_timeout: Duration,
    deadline: Instant,
    received: u64,
}

impl IdleWatch {
    fn start(read_timeout: Duration) -> IdleWatch {
        IdleWatch {
            read_timeout,
            deadline: Instant::now() + read_timeout,
            received: 0,
        }
    }

    fn received(&mut self, bytes: u64) {
        self.received += bytes;
        if self.received >= STALL_FLOOR {
            self.received = 0;
            self.deadline = Instant::now() + self.read_timeout;
        }
    }

    /// Waits for the next item of `body`, or `None` past the deadline.
    async fn next<S: futures_util::Stream + Unpin>(&self, body: &mut S) -> Option<Option<S::Item>> {
        tokio::time::timeout_at(self.deadline, body.next())
            .await
            .ok()
    }

    /// Why the body was cut.
    fn stalled(&self) -> String {
        match self.received {
            0 => format!("no data for {:?} (read_timeout_secs)", self.read_timeout),
            n => format!(
                "only {n} bytes in {:?}, under the {STALL_FLOOR} bytes every read timeout \
                 (read_timeout_secs) must bring",
                self.read_timeout
            ),
        }
    }
}

/// A request's error: a redirect the [`UrlPolicy`] refused, else what
/// went wrong, described without the URL.
fn request_error(error: &reqwest::Error) -> FetchError {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<UrlRefusal>() {
            return FetchError::UrlPolicy(refusal.clone());
        }
        source = cause.source();
    }
    FetchError::Network(describe_reqwest(error))
}

/// Asks the policy about every redirect, so that each hop is checked as
/// the first URL was.
fn redirect_policy(policy: UrlPolicy) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        match policy.redirect(attempt.previous(), attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    })
}

impl FetchError {
    fn io(context: impl Into<String>, source: std::io::Error) -> FetchError {
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
}

/// Told about progress. `checkpoint` is called after the partial file was
/// fsynced, with the state to persist; `transferred` after every chunk, for
/// progress bars. Fetch knows nothing of where the state goes: an error
/// from `checkpoint` ends the download as [`FetchError::Checkpoint`].
/// `synced` and `restarted` are for metrics: how long each checkpoint's
/// fsync took, and a download starting again from byte 0.
pub trait ProgressSink: Sync {
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
pub struct Download<'a> {
    pub file_id: i64,
    pub url: &'a Url,
    /// `bytes` from retrieve when it was > 0.
    pub api_size: Option<u64>,
    pub partial_path: &'a Path,
    /// The API's clock minus the host's, in seconds (0 when unknown): a
    /// URL in use is judged expired on the clock that signed it.
    pub clock_offset: i64,
}

#[derive(Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    policy: UrlPolicy,
    max_file_bytes: u64,
    read_timeout: Duration,
    checkpoint_interval: Duration,
    /// Connections per large file (1: one stream).
    segments: u32,
    /// This boot's id, recorded with every checkpoint (see [`resume`]).
    boot_id: Option<String>,
}

impl Fetcher {
    /// A client that fetches what `policy` allows, following the redirects
    /// it allows, and cuts a body that stalls for `read_timeout`.
    pub fn new(
        connect_timeout: Duration,
        read_timeout: Duration,
        policy: UrlPolicy,
    ) -> Result<Fetcher, reqwest::Error> {
        // No default headers, no cookies: nothing but the signed URL reaches
        // the CDN. reqwest drops Authorization on cross-host redirects too,
        // but this client never has one to drop.
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .redirect(redirect_policy(policy.clone()))
            .build()?;
        Ok(Fetcher {
            http,
            policy,
            max_file_bytes: range::DEFAULT_MAX_FILE_BYTES,
            read_timeout,
            checkpoint_interval: Duration::from_secs(2),
            segments: 1,
            boot_id: resume::boot_id(),
        })
    }

    /// Fetch large files over this many connections at once.
    pub fn with_segments(mut self, segments: u32) -> Fetcher {
        self.segments = segments.max(1);
        self
    }

    /// Refuse files larger than this (`max_file_bytes`), and cut a body of
    /// unknown length there.
    pub fn with_max_file_bytes(mut self, max: u64) -> Fetcher {
        self.max_file_bytes = max.max(1);
        self
    }

    /// Downloads (or resumes) `job` into its partial file and verifies it.
    /// `state` is updated as durable progress is made, so on error the
    /// caller knows how far it got.
    pub async fn download<S: ProgressSink>(
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
        if self.segments > 1
            && let Some(verified) = self.download_segmented(job, state, sink, cancel).await?
        {
            return Ok(verified);
        }
        // One stream from here: a piece map from an earlier segmented run is
        // reduced to its contiguous prefix.
        state.pieces = None;
        let (file, hasher) = open_for_stream(partial, state).await?;
        let position = state.bytes_done;
        let mut transfer = Transfer {
            disk: DiskWriter::start(file, position),
            hasher,
            state,
            sink,
            partial,
            position,
            last_checkpoint: Instant::now(),
            checkpoint_interval: self.checkpoint_interval,
        };
        let streamed = self.stream_whole_file(job, &mut transfer, cancel).await;
        let verified = streamed.and_then(|()| verify_size(job, transfer.state));
        let (size, size_source) = match verified {
            Ok(verified) => verified,
            Err(error) => {
                // No queued write may land after we return (the next attempt
                // reopens the file); the error that ended us is the one to report.
                let _ = transfer.disk.close().await;
                return Err(error);
            }
        };
        transfer
            .disk
            .finish()
            .await
            .map_err(|e| transfer.disk_error(e))?;
        let sha256 = hex::encode(std::mem::take(&mut transfer.hasher).finalize());
        Ok(Verified {
            size,
            sha256,
            size_source,
        })
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

    /// Requests the rest of the file until it is complete, resuming at once
    /// while bytes keep coming.
    async fn stream_whole_file<S: ProgressSink>(
        &self,
        job: &Download<'_>,
        transfer: &mut Transfer<'_, S>,
        cancel: &CancellationToken,
    ) -> Result<(), FetchError> {
        let mut stalled_requests = 0u32;
        let mut in_use = false;
        loop {
            if cancel.is_cancelled() {
                transfer.checkpoint().await?;
                return Err(FetchError::Cancelled);
            }
            let start = transfer.state.bytes_done;
            let outcome = self.one_request(job, transfer, in_use, cancel).await;
            in_use = true;
            let progressed = made_progress(start, transfer.state.bytes_done);
            match outcome {
                Ok(RequestOutcome::Complete) => return Ok(()),
                // A request that stalled having brought next to nothing
                // goes back to the worker at once: a dripping server is
                // not asked again and again inside one attempt.
                Err(stalled @ FetchError::Stalled(_)) if !progressed => return Err(stalled),
                Ok(RequestOutcome::Incomplete(why))
                | Err(FetchError::Network(why) | FetchError::Stalled(why)) => {
                    // A request that brought nothing twice in a row goes
                    // back to the worker.
                    stalled_requests = if progressed { 0 } else { stalled_requests + 1 };
                    if stalled_requests >= 2 {
                        return Err(FetchError::Network(why));
                    }
                    tracing::debug!(
                        file_id = job.file_id,
                        offset = transfer.state.bytes_done,
                        "resuming: {why}"
                    );
                }
                Err(other) => return Err(other),
            }
        }
    }

    async fn one_request<S: ProgressSink>(
        &self,
        job: &Download<'_>,
        transfer: &mut Transfer<'_, S>,
        in_use: bool,
        cancel: &CancellationToken,
    ) -> Result<RequestOutcome, FetchError> {
        let offset = transfer.state.bytes_done;
        if range::refresh_before_request(job.url, in_use, unix_now(), job.clock_offset) {
            return Err(FetchError::UrlExpired);
        }
        let size_known_before = transfer.state.total.or(job.api_size);
        if let Some(total) = size_known_before {
            check_free_space(job.partial_path, total.saturating_sub(offset))?;
        }
        let response = self.send(job.url, transfer.state, cancel).await?;
        let status = response.status().as_u16();
        let head = take_head(
            job,
            transfer,
            status,
            response.headers(),
            self.max_file_bytes,
        );
        if let Some(ended) = head.await? {
            return Ok(ended);
        }
        // Durable before the first byte of this body is written, so any
        // resume of these bytes, however early, carries `If-Range`.
        transfer.sink.checkpoint(transfer.state).await?;
        if let (None, Some(total)) = (size_known_before, transfer.state.total) {
            check_free_space(
                job.partial_path,
                total.saturating_sub(transfer.state.bytes_done),
            )?;
        }
        self.receive_body(job, transfer, response, cancel).await
    }

    /// GET from the state's `bytes_done` on, with `If-Range` when a
    /// validator is pinned.
    async fn send(
        &self,
        url: &Url,
        state: &Resume,
        cancel: &CancellationToken,
    ) -> Result<reqwest::Response, FetchError> {
        let offset = state.bytes_done;
        let mut request = self.http.get(url.clone());
        if offset > 0 {
            request = request.header(RANGE, format!("bytes={offset}-"));
            if let Some(v) = &state.validator {
                request = request.header(IF_RANGE, v.as_str());
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => Err(FetchError::Cancelled),
            r = request.send() => r.map_err(|e| request_error(&e)),
        }
    }

    /// Streams a body into the partial file until it ends, stalls or is
    /// cut; a body that ends short of the length is `Incomplete`.
    async fn receive_body<S: ProgressSink>(
        &self,
        job: &Download<'_>,
        transfer: &mut Transfer<'_, S>,
        response: reqwest::Response,
        cancel: &CancellationToken,
    ) -> Result<RequestOutcome, FetchError> {
        let mut body = response.bytes_stream();
        let limit = SizeLimit::of(
            ExpectedSize::of(job.api_size, transfer.state.total),
            self.max_file_bytes,
        );
        let mut watch = IdleWatch::start(self.read_timeout);
        loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    transfer.checkpoint().await?;
                    return Err(FetchError::Cancelled);
                }
                next = watch.next(&mut body) => next,
            };
            match next {
                Some(Some(Ok(chunk))) => {
                    if limit.passed_by(transfer.position, chunk.len() as u64) {
                        transfer.restart().await?;
                        return Err(oversized(limit));
                    }
                    watch.received(chunk.len() as u64);
                    transfer.write(chunk).await?;
                }
                Some(Some(Err(e))) => {
                    transfer.checkpoint().await?;
                    return Err(request_error(&e));
                }
                Some(None) => break,
                None => {
                    transfer.checkpoint().await?;
                    return Err(FetchError::Stalled(watch.stalled()));
                }
            }
        }
        let done = transfer.position;
        if transfer.state.total.is_none() && job.api_size.is_none() {
            // A chunked answer with no length: ask for it before trusting the end.
            transfer.state.total = tokio::select! {
                _ = cancel.cancelled() => return Err(FetchError::Cancelled),
                total = self.head_length(job.url) => total,
            };
        }
        match transfer.state.total.or(job.api_size) {
            Some(total) if done < total => {
                transfer.checkpoint().await?;
                Ok(RequestOutcome::Incomplete(format!(
                    "the body ended at byte {done} of {total}"
                )))
            }
            _ => {
                // Complete: the caller verifies and fsyncs once; no
                // checkpoint is needed for bytes about to be recorded whole.
                transfer.flush().await?;
                Ok(RequestOutcome::Complete)
            }
        }
    }

    async fn head_length(&self, url: &Url) -> Option<u64> {
        let response = self
            .http
            .request(Method::HEAD, url.clone())
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    }
}

/// The error for a body that went past its [`SizeLimit`].
fn oversized(limit: SizeLimit) -> FetchError {
    match limit {
        SizeLimit::Expected(expected) => FetchError::Oversized {
            expected: expected.bytes,
            source_name: expected.source.as_str(),
        },
        SizeLimit::Cap(max) => FetchError::OverCap { max, size: None },
    }
}

/// Reads a response's head against what was asked ([`range::plan_response`]):
/// pins the length and validator, restarts from byte 0 when the bytes on
/// disk belong to another object, or ends the request (`Some`) when there
/// is no body to take.
async fn take_head<S: ProgressSink>(
    job: &Download<'_>,
    transfer: &mut Transfer<'_, S>,
    status: u16,
    headers: &HeaderMap,
    max_file_bytes: u64,
) -> Result<Option<RequestOutcome>, FetchError> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let head = ResponseHead {
        status,
        content_length: header(CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
        content_range: header(CONTENT_RANGE),
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
    };
    let asked = Asked {
        offset: transfer.state.bytes_done,
        validator: transfer.state.validator.as_deref(),
        pinned_total: transfer.state.total,
    };
    let (total, validator) = match range::plan_response(asked, &head) {
        Plan::Append {
            total, validator, ..
        } => (total, validator),
        Plan::RestartWithBody {
            total,
            validator,
            reason,
        } => {
            tracing::info!(file_id = job.file_id, "restarting from byte 0: {reason}");
            transfer.restart().await?;
            (total, validator)
        }
        Plan::RestartFresh { reason } => {
            tracing::info!(file_id = job.file_id, "restarting from byte 0: {reason}");
            transfer.restart().await?;
            return Ok(Some(RequestOutcome::Incomplete(reason)));
        }
        Plan::AlreadyComplete { total } => {
            transfer.state.total = Some(total);
            return Ok(Some(RequestOutcome::Complete));
        }
        Plan::UrlRejected { status } | Plan::Retry { status } => {
            return Err(status_error(status, header(RETRY_AFTER)));
        }
    };
    if let (Some(api), Some(cdn)) = (job.api_size, total)
        && api != cdn
    {
        return Err(FetchError::SizeMismatch {
            expected: api,
            actual: cdn,
            source_name: "api",
        });
    }
    let announced = total.or(job.api_size);
    if range::over_cap(announced, max_file_bytes) {
        return Err(FetchError::OverCap {
            max: max_file_bytes,
            size: announced,
        });
    }
    transfer.state.total = total.or(transfer.state.total);
    transfer.state.validator = validator;
    Ok(None)
}

/// Opens the partial file for one stream, cut to `bytes_done`, with the
/// sha256 of the bytes it keeps, re-read from disk.
async fn open_for_stream(
    partial: &Path,
    state: &mut Resume,
) -> Result<(std::fs::File, Sha256), FetchError> {
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(partial)
        .await
        .map_err(|e| FetchError::io(format!("cannot open {}", partial.display()), e))?;
    if state.bytes_done == 0 {
        state.validator = None;
        state.total = None;
    }
    file.set_len(state.bytes_done)
        .await
        .map_err(|e| FetchError::io(format!("cannot truncate {}", partial.display()), e))?;
    let mut hasher = Sha256::new();
    if state.bytes_done > 0 {
        let (path, len) = (partial.to_path_buf(), state.bytes_done);
        hasher = tokio::task::spawn_blocking(move || {
            let mut h = Sha256::new();
            file::hash_prefix(&path, len, &mut h).map(|_| h)
        })
        .await
        .map_err(|e| FetchError::Network(format!("hashing task failed: {e}")))?
        .map_err(|e| FetchError::io(format!("cannot re-read {}", partial.display()), e))?;
    }
    Ok((file.into_std().await, hasher))
}

/// The error for a CDN answer without a usable body: a refused URL (a
/// fresh one may work), or a status to retry, not before the CDN's
/// `Retry-After` when it gave one.
fn status_error(status: u16, retry_after: Option<&str>) -> FetchError {
    if range::url_refused(status) {
        return FetchError::UrlRejected { status };
    }
    FetchError::Cdn {
        status,
        retry_after: retry_after.and_then(|v| parse_retry_after(v, std::time::SystemTime::now())),
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The size of a fully received file against the size it must have: the
/// API's when it gave one, else the CDN's pinned length.
fn verify_size(job: &Download<'_>, state: &Resume) -> Result<(u64, SizeSource), FetchError> {
    let size = state.bytes_done;
    let ExpectedSize {
        bytes: expected,
        source: size_source,
    } = ExpectedSize::of(job.api_size, state.total).ok_or(FetchError::UnknownLength)?;
    if size != expected {
        return Err(FetchError::SizeMismatch {
            expected,
            actual: size,
            source_name: size_source.as_str(),
        });
    }
    Ok((size, size_source))
}

enum RequestOutcome {
    Complete,
    Incomplete(String),
}

/// Is there room for `needed` more bytes (plus the reserve)? A file larger
/// than the whole filesystem can never fit: that fails the job, not the host.
fn check_free_space(partial: &Path, needed: u64) -> Result<(), FetchError> {
    let dir = partial.parent().unwrap_or(partial);
    if let Ok(capacity) = fs4::total_space(dir)
        && needed > capacity
    {
        return Err(FetchError::TooLarge {
            size: needed,
            capacity,
            dir: dir.display().to_string(),
        });
    }
    match file::available_space(dir) {
        Ok(available) if available < needed.saturating_add(file::FREE_SPACE_RESERVE) => {
            Err(FetchError::Storage {
                detail: format!(
                    "disk full: {} has {available} bytes free, {needed} more are needed (plus a {} MiB reserve)",
                    dir.display(),
                    file::FREE_SPACE_RESERVE >> 20
                ),
                needed,
            })
        }
        _ => Ok(()),
    }
}

/// The open partial file (written by its own thread) and the running hash.
struct Transfer<'a, S> {
    disk: DiskWriter,
    /// sha256 of every byte handed to `disk`, resumed prefix included.
    hasher: Sha256,
    state: &'a mut Resume,
    sink: &'a S,
    partial: &'a Path,
    /// Bytes handed to the disk thread so far; `state.bytes_done` is the
    /// durable part of it.
    position: u64,
    last_checkpoint: Instant,
    checkpoint_interval: Duration,
}

impl<S: ProgressSink> Transfer<'_, S> {
    async fn write(&mut self, chunk: bytes::Bytes) -> Result<(), FetchError> {
        let len = chunk.len() as u64;
        self.hasher.update(&chunk);
        self.disk
            .write(chunk)
            .await
            .map_err(|e| self.disk_error(e))?;
        self.position += len;
        self.sink.transferred(len);
        let unsynced = self.position - self.state.bytes_done;
        if resume::checkpoint_due(
            self.last_checkpoint.elapsed(),
            unsynced,
            self.checkpoint_interval,
        ) {
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Waits until every byte is written (no fsync); `state.bytes_done`
    /// then counts them, for the caller to verify and fsync.
    async fn flush(&mut self) -> Result<(), FetchError> {
        self.disk.flush().await.map_err(|e| self.disk_error(e))?;
        self.state.bytes_done = self.position;
        Ok(())
    }

    /// Makes everything written so far durable, then records it.
    async fn checkpoint(&mut self) -> Result<(), FetchError> {
        self.last_checkpoint = Instant::now();
        if self.position != self.state.bytes_done {
            let began = Instant::now();
            self.disk.sync().await.map_err(|e| self.disk_error(e))?;
            self.sink.synced(began.elapsed());
            self.state.bytes_done = self.position;
        }
        self.sink.checkpoint(self.state).await?;
        Ok(())
    }

    /// Throws the partial bytes away: they belong to another version of the
    /// file, or the server would not resume them.
    async fn restart(&mut self) -> Result<(), FetchError> {
        self.disk.restart().await.map_err(|e| self.disk_error(e))?;
        self.sink.restarted();
        self.hasher = Sha256::new();
        self.position = 0;
        self.state.reset();
        self.sink.checkpoint(self.state).await?;
        Ok(())
    }

    fn disk_error(&self, error: DiskError) -> FetchError {
        FetchError::io(
            format!("cannot {} {}", error.operation, self.partial.display()),
            error.source,
        )
    }
}
