//! One file over one stream: the open partial file and its running hash
//! ([`Transfer`]), the request loop that resumes a body cut short, the
//! reading of each response's head, and the free-space check every
//! download makes before it sizes anything.

use std::path::Path;

use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderMap, LAST_MODIFIED, RETRY_AFTER};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{ByteRange, Client, header, made_progress};
use super::disk_writer::{DiskError, DiskWriter};
use super::error::FetchError;
use super::range::{self, Asked, Plan, ResponseHead, SizeLimit};
use super::{Download, ProgressSink, Resume, SizeSource, Verified, file, resume};
use crate::partial::ExpectedSize;

/// The single-stream download, with the settings it needs of the
/// [`super::Fetcher`].
pub(super) struct SingleStream<'a> {
    pub client: &'a Client,
    pub max_file_bytes: u64,
    /// fsync the verified file (see [`super::Fetcher::with_verified_sync`]).
    pub sync_verified: bool,
}

enum RequestOutcome {
    Complete,
    Incomplete(String),
}

impl SingleStream<'_> {
    /// Fetches the rest of `job` from `state.bytes_done` on, then verifies
    /// its size and fsyncs it.
    pub(crate) async fn download<S: ProgressSink>(
        &self,
        job: &Download<'_>,
        state: &mut Resume,
        sink: &S,
        cancel: &CancellationToken,
    ) -> Result<Verified, FetchError> {
        // A piece map from an earlier segmented run is reduced to its
        // contiguous prefix.
        state.pieces = None;
        let (file, hasher) = open_for_stream(job.partial_path, state).await?;
        let mut transfer = Transfer::start(file, hasher, state, sink, job.partial_path);
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
        let sha256 = transfer.finish(self.sync_verified).await?;
        Ok(Verified {
            size,
            sha256,
            size_source,
        })
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
        if job.url_expired(in_use) {
            return Err(FetchError::UrlExpired);
        }
        let size_known_before = transfer.state.total.or(job.api_size);
        if let Some(total) = size_known_before {
            ensure_room(job.partial_path, total.saturating_sub(offset))?;
        }
        // From `bytes_done` on, with `If-Range` when a validator is pinned.
        let range = (offset > 0).then_some(ByteRange {
            from: offset,
            last: None,
        });
        let validator = transfer.state.validator.as_deref();
        let response = self.client.get(job.url, range, validator, cancel).await?;
        let status = response.status().as_u16();
        if let Some(ended) = self
            .take_head(job, transfer, status, response.headers())
            .await?
        {
            return Ok(ended);
        }
        // Durable before the first byte of this body is written, so any
        // resume of these bytes, however early, carries `If-Range`.
        transfer.sink.checkpoint(transfer.state).await?;
        if let (None, Some(total)) = (size_known_before, transfer.state.total) {
            ensure_room(
                job.partial_path,
                total.saturating_sub(transfer.state.bytes_done),
            )?;
        }
        self.receive_body(job, transfer, response, cancel).await
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
        let mut watch = self.client.watch();
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
                        return Err(FetchError::oversized(limit));
                    }
                    watch.received(chunk.len() as u64);
                    transfer.write(chunk).await?;
                }
                Some(Some(Err(e))) => {
                    transfer.checkpoint().await?;
                    return Err(FetchError::request(&e));
                }
                Some(None) => break,
                None => {
                    transfer.checkpoint().await?;
                    return Err(FetchError::Stalled(watch.stalled()));
                }
            }
        }
        self.body_ended(job, transfer, cancel).await
    }

    /// A body ended: complete, or `Incomplete` when short of the length
    /// (asked of a HEAD when neither the CDN nor the API said it).
    async fn body_ended<S: ProgressSink>(
        &self,
        job: &Download<'_>,
        transfer: &mut Transfer<'_, S>,
        cancel: &CancellationToken,
    ) -> Result<RequestOutcome, FetchError> {
        let done = transfer.position;
        if transfer.state.total.is_none() && job.api_size.is_none() {
            // A chunked answer with no length: ask for it before trusting the end.
            transfer.state.total = tokio::select! {
                _ = cancel.cancelled() => return Err(FetchError::Cancelled),
                total = self.client.head_length(job.url) => total,
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

    /// Reads a response's head against what was asked ([`range::plan_response`]):
    /// pins the length and validator, restarts from byte 0 when the bytes on
    /// disk belong to another object, or ends the request (`Some`) when there
    /// is no body to take.
    async fn take_head<S: ProgressSink>(
        &self,
        job: &Download<'_>,
        transfer: &mut Transfer<'_, S>,
        status: u16,
        headers: &HeaderMap,
    ) -> Result<Option<RequestOutcome>, FetchError> {
        let head = ResponseHead {
            status,
            content_length: header(headers, CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
            content_range: header(headers, CONTENT_RANGE),
            etag: header(headers, ETAG),
            last_modified: header(headers, LAST_MODIFIED),
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
                return Err(FetchError::status(status, header(headers, RETRY_AFTER)));
            }
        };
        self.check_announced(job, total)?;
        transfer.state.total = total.or(transfer.state.total);
        transfer.state.validator = validator;
        Ok(None)
    }

    /// The length the CDN announced (`total`) against the API's and the
    /// `max_file_bytes` cap.
    fn check_announced(&self, job: &Download<'_>, total: Option<u64>) -> Result<(), FetchError> {
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
        if range::over_cap(announced, self.max_file_bytes) {
            return Err(FetchError::OverCap {
                max: self.max_file_bytes,
                size: announced,
            });
        }
        Ok(())
    }
}

/// Opens the partial file for one stream, cut to `bytes_done`, with the
/// sha256 of the bytes it keeps, re-read from disk: one trip to a blocking
/// thread for all of it (a download's open is on the path of every file).
async fn open_for_stream(
    partial: &Path,
    state: &mut Resume,
) -> Result<(std::fs::File, Sha256), FetchError> {
    if state.bytes_done == 0 {
        state.validator = None;
        state.total = None;
    }
    let (path, keep) = (partial.to_path_buf(), state.bytes_done);
    tokio::task::spawn_blocking(move || open_cut_and_hash(&path, keep))
        .await
        .map_err(|e| FetchError::Network(format!("opening task failed: {e}")))?
}

fn open_cut_and_hash(partial: &Path, keep: u64) -> Result<(std::fs::File, Sha256), FetchError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(partial)
        .map_err(|e| FetchError::io(format!("cannot open {}", partial.display()), e))?;
    file.set_len(keep)
        .map_err(|e| FetchError::io(format!("cannot truncate {}", partial.display()), e))?;
    let mut hasher = Sha256::new();
    if keep > 0 {
        file::hash_prefix(partial, keep, &mut hasher)
            .map_err(|e| FetchError::io(format!("cannot re-read {}", partial.display()), e))?;
    }
    Ok((file, hasher))
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

/// Is there room for `needed` more bytes (plus the reserve)? A file larger
/// than the whole filesystem can never fit: that fails the job, not the host.
pub(super) fn ensure_room(partial: &Path, needed: u64) -> Result<(), FetchError> {
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
}

impl<'a, S: ProgressSink> Transfer<'a, S> {
    fn start(
        file: std::fs::File,
        hasher: Sha256,
        state: &'a mut Resume,
        sink: &'a S,
        partial: &'a Path,
    ) -> Transfer<'a, S> {
        let position = state.bytes_done;
        Transfer {
            disk: DiskWriter::start(file, position),
            hasher,
            state,
            sink,
            partial,
            position,
            last_checkpoint: Instant::now(),
        }
    }

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
            resume::CHECKPOINT_INTERVAL,
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

    /// fsyncs the verified file (unless not `sync`: then every byte is
    /// only in the kernel); its sha256.
    async fn finish(&mut self, sync: bool) -> Result<String, FetchError> {
        let finished = if sync {
            self.disk.finish().await
        } else {
            self.disk.finish_unsynced().await
        };
        finished.map_err(|e| self.disk_error(e))?;
        Ok(hex::encode(std::mem::take(&mut self.hasher).finalize()))
    }

    fn disk_error(&self, error: DiskError) -> FetchError {
        FetchError::io(
            format!("cannot {} {}", error.operation, self.partial.display()),
            error.source,
        )
    }
}
