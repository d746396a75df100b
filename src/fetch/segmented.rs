//! Segmented download: one large file over several connections, like
//! `aria2c -x`. The file is cut into pieces handed out lowest first, so the
//! completed region stays nearly contiguous and the sha256 (which must be
//! computed in order) follows right behind the transfer, re-reading each
//! byte from disk. Each piece is one Range request checked against the
//! pinned length and validator. The length and validator are recorded
//! before the first piece is asked for; a piece is recorded as written once
//! it is complete (a resume in the same boot keeps it), and `bytes_done`
//! moves to the contiguous prefix at each fsynced checkpoint (all a resume
//! after a reboot keeps), so a crash loses at most the pieces in flight.

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{CONTENT_RANGE, ETAG, HeaderMap, LAST_MODIFIED, RETRY_AFTER};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::{ByteRange, Client, header, url_expired};
use super::error::FetchError;
use super::pieces::{PieceMap, piece_size_for};
use super::range::{self, choose_validator, parse_content_range};
use super::transfer::ensure_room;
use super::{Download, ProgressSink, Resume, SizeSource, Verified, resume};
use crate::http::describe_reqwest;

/// The segmented download, with the settings it needs of the
/// [`super::Fetcher`].
pub(super) struct Segmented<'a> {
    pub client: &'a Client,
    pub max_file_bytes: u64,
    /// Connections per file (more than 1).
    pub segments: u32,
}

/// Bytes buffered per connection before a positioned write: the buffer is
/// allocated once and never grows (see [`write_before_appending`]), so a
/// split download holds `segments` of these.
const PIECE_WRITE_BUFFER: usize = 512 * 1024;
/// Failed requests in a row on one connection before the download gives up.
const CONNECTION_FAILURES: u32 = 3;

enum PieceError {
    /// Give up on the whole download with this error.
    Fatal(FetchError),
    /// Put the piece back and try again.
    Retry(String),
    /// The object is not the one the pieces came from (or ranges are not
    /// honoured): the partial bytes must go.
    Changed(String),
    Cancelled,
}

struct Plan {
    total: u64,
    validator: Option<String>,
}

struct Shared {
    map: PieceMap,
    in_flight: BTreeSet<usize>,
}

impl Shared {
    fn next_piece(&mut self) -> Option<usize> {
        let next = self.map.pending().find(|i| !self.in_flight.contains(i))?;
        self.in_flight.insert(next);
        Some(next)
    }
}

struct Connection {
    client: Client,
    url: Url,
    /// The API's clock minus the host's (see `Download::clock_offset`).
    clock_offset: i64,
    file: Arc<std::fs::File>,
    validator: Option<String>,
    total: u64,
    transferred: Arc<AtomicU64>,
    cancel: CancellationToken,
    shared: Arc<Mutex<Shared>>,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Segmented<'_> {
    /// Downloads `job` over `segments` connections. `Ok(None)` when the file
    /// is better fetched as one stream (small, or the CDN ignores ranges).
    pub(crate) async fn download<S: ProgressSink>(
        &self,
        job: &Download<'_>,
        state: &mut Resume,
        sink: &S,
        cancel: &CancellationToken,
    ) -> Result<Option<Verified>, FetchError> {
        let Some(plan) = self.probe(job, cancel).await? else {
            return Ok(None);
        };
        let Some(map) = self.piece_map(job, state, &plan)? else {
            return Ok(None);
        };
        let file = open_sized(job.partial_path, plan.total).await?;
        state.total = Some(plan.total);
        state.validator = plan.validator.clone();
        state.bytes_done = map.contiguous_bytes();
        state.pieces = Some(map.encode());
        // Durable before any piece is asked for: every piece request and
        // any resume carries `If-Range`.
        sink.checkpoint(state).await?;
        let mut run = self.start_connections(job, &plan, file, map, cancel);
        let (failure, hash) = self.drive(&mut run, state, sink).await?;
        checkpoint(&run.file, &run.shared, state, sink).await?;
        if let Some(failure) = failure {
            return Err(give_up(job, failure, state, sink).await);
        }
        if cancel.is_cancelled() {
            return Err(FetchError::Cancelled);
        }
        if hash.hashed != plan.total {
            return Err(FetchError::Network(format!(
                "only {} of {} bytes arrived",
                hash.hashed, plan.total
            )));
        }
        let sync = run.file.clone();
        tokio::task::spawn_blocking(move || sync.sync_all())
            .await
            .map_err(|e| FetchError::Network(format!("fsync task failed: {e}")))?
            .map_err(|e| FetchError::io("cannot fsync the finished file", e))?;
        Ok(Some(Verified {
            size: plan.total,
            sha256: hex::encode(hash.hasher.unwrap_or_default().finalize()),
            size_source: if job.api_size.is_some() {
                SizeSource::Api
            } else {
                SizeSource::Cdn
            },
        }))
    }

    /// The pieces of the file, with what earlier progress may keep; `None`
    /// when the file is too small to be worth cutting.
    fn piece_map(
        &self,
        job: &Download<'_>,
        state: &Resume,
        plan: &Plan,
    ) -> Result<Option<PieceMap>, FetchError> {
        if let Some(api) = job.api_size
            && api != plan.total
        {
            return Err(FetchError::SizeMismatch {
                expected: api,
                actual: plan.total,
                source_name: "api",
            });
        }
        if range::over_cap(Some(plan.total), self.max_file_bytes) {
            return Err(FetchError::OverCap {
                max: self.max_file_bytes,
                size: Some(plan.total),
            });
        }
        // Before anything is sized by the CDN's word: a length that cannot
        // fit on this filesystem fails here.
        ensure_room(
            job.partial_path,
            plan.total.saturating_sub(state.bytes_done),
        )?;
        let piece_size = piece_size_for(plan.total, self.segments);
        if plan.total < 2 * piece_size {
            return Ok(None);
        }
        // Earlier progress counts only if it came from this very object.
        let same_object = state.total == Some(plan.total)
            && state.validator == plan.validator
            && plan.validator.is_some();
        let map = match (&state.pieces, same_object) {
            (Some(text), true) => PieceMap::decode(text).filter(|m| m.total() == plan.total),
            (None, true) => Some(PieceMap::with_prefix(
                plan.total,
                piece_size,
                state.bytes_done,
            )),
            _ => None,
        }
        .unwrap_or_else(|| PieceMap::new(plan.total, piece_size));
        ensure_room(job.partial_path, plan.total - map.done_bytes())?;
        Ok(Some(map))
    }

    /// One task per connection, each taking pieces until none are left.
    fn start_connections(
        &self,
        job: &Download<'_>,
        plan: &Plan,
        file: Arc<std::fs::File>,
        map: PieceMap,
        cancel: &CancellationToken,
    ) -> Running {
        let mut run = Running {
            file,
            shared: Arc::new(Mutex::new(Shared {
                map,
                in_flight: BTreeSet::new(),
            })),
            transferred: Arc::new(AtomicU64::new(0)),
            stop: cancel.child_token(),
            connections: JoinSet::new(),
        };
        for _ in 0..self.segments {
            let connection = Connection {
                client: self.client.clone(),
                url: job.url.clone(),
                clock_offset: job.clock_offset,
                file: run.file.clone(),
                validator: plan.validator.clone(),
                total: plan.total,
                transferred: run.transferred.clone(),
                cancel: run.stop.clone(),
                shared: run.shared.clone(),
            };
            run.connections.spawn(connection.run());
        }
        run
    }

    /// Hashes the contiguous prefix as it grows, reports progress and
    /// checkpoints, until every connection has ended and the hash has
    /// caught up. Returns the first connection's failure, if any.
    async fn drive<S: ProgressSink>(
        &self,
        run: &mut Running,
        state: &mut Resume,
        sink: &S,
    ) -> Result<(Option<PieceError>, InOrderHash), FetchError> {
        let mut hash = InOrderHash::default();
        let mut reported = 0u64;
        let mut synced = Synced::now(&run.shared);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut failure: Option<PieceError> = None;
        loop {
            hash.catch_up(&run.file, lock(&run.shared).map.contiguous_bytes());
            if run.connections.is_empty() && hash.task.is_none() {
                break;
            }
            tokio::select! {
                joined = run.connections.join_next(), if !run.connections.is_empty() => {
                    if let Some(e) = connection_failure(joined) {
                        failure.get_or_insert(e);
                        run.stop.cancel();
                    }
                }
                done = hash.wait() => {
                    if let Err(e) = hash.absorb(done) {
                        run.stop.cancel();
                        run.connections.shutdown().await;
                        return Err(e);
                    }
                }
                _ = tick.tick() => {
                    let now = run.transferred.load(Ordering::Relaxed);
                    sink.transferred(now - reported);
                    reported = now;
                    let unsynced = lock(&run.shared).map.done_bytes() - synced.done_bytes;
                    if resume::checkpoint_due(synced.at.elapsed(), unsynced, resume::CHECKPOINT_INTERVAL) {
                        synced = checkpoint(&run.file, &run.shared, state, sink).await?;
                    } else {
                        record_written(&run.shared, state, sink).await?;
                    }
                }
            }
        }
        sink.transferred(run.transferred.load(Ordering::Relaxed) - reported);
        Ok((failure, hash))
    }

    /// Asks for byte 0 only: learns the length and validator, and whether
    /// ranges are honoured at all.
    async fn probe(
        &self,
        job: &Download<'_>,
        cancel: &CancellationToken,
    ) -> Result<Option<Plan>, FetchError> {
        let first = ByteRange {
            from: 0,
            last: Some(0),
        };
        let response = self.client.get(job.url, Some(first), None, cancel).await?;
        let header = |name| header(response.headers(), name);
        match response.status().as_u16() {
            206 => {}
            200 => return Ok(None),
            status => return Err(FetchError::status(status, header(RETRY_AFTER))),
        }
        let total = header(CONTENT_RANGE)
            .and_then(parse_content_range)
            .and_then(|r| r.total);
        let validator = choose_validator(header(ETAG), header(LAST_MODIFIED));
        Ok(total.map(|total| Plan { total, validator }))
    }
}

/// A segmented download under way: the sized file, the shared piece map,
/// and the connections' tasks.
struct Running {
    file: Arc<std::fs::File>,
    shared: Arc<Mutex<Shared>>,
    transferred: Arc<AtomicU64>,
    stop: CancellationToken,
    connections: JoinSet<Result<(), PieceError>>,
}

/// The sha256 of the file's contiguous prefix, computed in order from disk
/// by one blocking task at a time, right behind the transfer.
#[derive(Default)]
struct InOrderHash {
    hasher: Option<Sha256>,
    /// Bytes hashed so far.
    hashed: u64,
    task: Option<tokio::task::JoinHandle<std::io::Result<(Sha256, u64)>>>,
}

impl InOrderHash {
    /// Hashes on up to `contiguous`, unless a task is already at work.
    fn catch_up(&mut self, file: &Arc<std::fs::File>, contiguous: u64) {
        if self.task.is_some() || contiguous <= self.hashed {
            return;
        }
        let (file, mut h, from) = (
            file.clone(),
            self.hasher.take().unwrap_or_default(),
            self.hashed,
        );
        self.task = Some(tokio::task::spawn_blocking(move || {
            hash_range(&file, from, contiguous, &mut h)?;
            Ok((h, contiguous))
        }));
    }

    /// The running task's end; never, when none runs.
    async fn wait(&mut self) -> Result<std::io::Result<(Sha256, u64)>, tokio::task::JoinError> {
        match self.task.as_mut() {
            Some(h) => h.await,
            None => std::future::pending().await,
        }
    }

    fn absorb(
        &mut self,
        done: Result<std::io::Result<(Sha256, u64)>, tokio::task::JoinError>,
    ) -> Result<(), FetchError> {
        self.task = None;
        match done {
            Ok(Ok((h, upto))) => {
                self.hasher = Some(h);
                self.hashed = upto;
                Ok(())
            }
            Ok(Err(e)) => Err(FetchError::io(
                "cannot re-read the partial file to hash it",
                e,
            )),
            Err(e) => Err(FetchError::Network(format!("hashing task failed: {e}"))),
        }
    }
}

/// What a connection's end says about the download: nothing when it ran
/// out of pieces.
fn connection_failure(
    joined: Option<Result<Result<(), PieceError>, tokio::task::JoinError>>,
) -> Option<PieceError> {
    match joined {
        Some(Ok(Ok(()))) | None => None,
        Some(Ok(Err(e))) => Some(e),
        Some(Err(e)) => Some(PieceError::Retry(format!("download task failed: {e}"))),
    }
}

/// The error a failed segmented download ends with; when the object
/// changed, the partial file is deleted and the reset recorded first.
async fn give_up<S: ProgressSink>(
    job: &Download<'_>,
    failure: PieceError,
    state: &mut Resume,
    sink: &S,
) -> FetchError {
    match failure {
        PieceError::Fatal(e) => e,
        PieceError::Retry(why) => FetchError::Network(why),
        PieceError::Cancelled => FetchError::Cancelled,
        PieceError::Changed(why) => {
            let path = job.partial_path.to_path_buf();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
            state.reset();
            sink.restarted();
            if let Err(e) = sink.checkpoint(state).await {
                return e.into();
            }
            FetchError::Network(format!("restarting from byte 0: {why}"))
        }
    }
}

/// Opens (or creates) the partial file at its full length.
async fn open_sized(partial: &Path, total: u64) -> Result<Arc<std::fs::File>, FetchError> {
    let path = partial.to_path_buf();
    let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if file.metadata()?.len() != total {
            file.set_len(total)?;
        }
        Ok(file)
    })
    .await
    .map_err(|e| FetchError::Network(format!("file task failed: {e}")))?
    .map_err(|e| FetchError::io(format!("cannot open {}", partial.display()), e))?;
    Ok(Arc::new(file))
}

/// Whether the buffered bytes go to disk before `incoming` more are
/// appended: when they would not fit. Appending first (and writing once
/// full) made the vector double its capacity on nearly every piece: a
/// split download held twice the buffers it meant to.
fn write_before_appending(buffered: usize, incoming: usize, capacity: usize) -> bool {
    buffered > 0 && buffered + incoming > capacity
}

/// When the partial file was last fsynced, and how many piece bytes were
/// complete then.
struct Synced {
    at: tokio::time::Instant,
    done_bytes: u64,
}

impl Synced {
    fn now(shared: &Mutex<Shared>) -> Synced {
        Synced {
            at: tokio::time::Instant::now(),
            done_bytes: lock(shared).map.done_bytes(),
        }
    }
}

/// fsyncs the file, then records the pieces that were complete before it
/// and their contiguous prefix as `bytes_done`.
async fn checkpoint<S: ProgressSink>(
    file: &Arc<std::fs::File>,
    shared: &Arc<Mutex<Shared>>,
    state: &mut Resume,
    sink: &S,
) -> Result<Synced, FetchError> {
    let snapshot = lock(shared).map.clone();
    let synced = Synced {
        at: tokio::time::Instant::now(),
        done_bytes: snapshot.done_bytes(),
    };
    let sync = file.clone();
    let began = tokio::time::Instant::now();
    tokio::task::spawn_blocking(move || sync.sync_data())
        .await
        .map_err(|e| FetchError::Network(format!("fsync task failed: {e}")))?
        .map_err(|e| FetchError::io("cannot fsync the partial file", e))?;
    sink.synced(began.elapsed());
    state.bytes_done = snapshot.contiguous_bytes();
    state.pieces = Some(snapshot.encode());
    sink.checkpoint(state).await?;
    Ok(synced)
}

/// Records the pieces written since the last record, without an fsync:
/// they survive a crash of this process, and `bytes_done` still says what
/// survives a reboot.
async fn record_written<S: ProgressSink>(
    shared: &Arc<Mutex<Shared>>,
    state: &mut Resume,
    sink: &S,
) -> Result<(), FetchError> {
    let pieces = lock(shared).map.encode();
    if state.pieces.as_deref() == Some(pieces.as_str()) {
        return Ok(());
    }
    state.pieces = Some(pieces);
    sink.checkpoint(state).await?;
    Ok(())
}

/// A piece answered with an error status: a server error is retried on
/// this connection; a refused URL, or a CDN that said when to come back
/// (`Retry-After`), stops the whole download for the worker to act on, as
/// on a single stream.
fn piece_status_error(error: FetchError) -> PieceError {
    match error {
        FetchError::Cdn {
            retry_after: None, ..
        } => PieceError::Retry(error.to_string()),
        other => PieceError::Fatal(other),
    }
}

fn hash_range(
    file: &std::fs::File,
    from: u64,
    to: u64,
    hasher: &mut Sha256,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let want = ((to - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..want], at)?;
        hasher.update(&buf[..want]);
        at += want as u64;
    }
    Ok(())
}

impl Connection {
    /// Takes pieces, lowest first, until none are left.
    async fn run(self) -> Result<(), PieceError> {
        let mut failures = 0;
        loop {
            if self.cancel.is_cancelled() {
                return Err(PieceError::Cancelled);
            }
            let Some(index) = lock(&self.shared).next_piece() else {
                return Ok(());
            };
            let (start, end) = lock(&self.shared).map.range(index);
            let result = self.fetch_piece(start, end).await;
            let mut shared = lock(&self.shared);
            shared.in_flight.remove(&index);
            match result {
                Ok(()) => {
                    shared.map.mark_done(index);
                    failures = 0;
                }
                Err(PieceError::Retry(why)) => {
                    failures += 1;
                    if failures >= CONNECTION_FAILURES {
                        return Err(PieceError::Retry(why));
                    }
                    tracing::debug!(start, "piece failed, retrying: {why}");
                }
                Err(other) => return Err(other),
            }
        }
    }

    async fn fetch_piece(&self, start: u64, end: u64) -> Result<(), PieceError> {
        // The probe used the URL first: every piece is a use of a URL in use.
        if url_expired(&self.url, true, self.clock_offset) {
            return Err(PieceError::Fatal(FetchError::UrlExpired));
        }
        let range = ByteRange {
            from: start,
            last: Some(end - 1),
        };
        let validator = self.validator.as_deref();
        let response = self
            .client
            .get(&self.url, Some(range), validator, &self.cancel)
            .await
            .map_err(|e| match e {
                FetchError::Cancelled => PieceError::Cancelled,
                FetchError::Network(why) => PieceError::Retry(why),
                refused => PieceError::Fatal(refused),
            })?;
        self.check_piece_head(start, end, response.status().as_u16(), response.headers())?;
        self.receive_piece(response, start, end).await
    }

    /// A piece's answer must be a 206 for exactly the bytes asked, from the
    /// object the other pieces came from.
    fn check_piece_head(
        &self,
        start: u64,
        end: u64,
        status: u16,
        headers: &HeaderMap,
    ) -> Result<(), PieceError> {
        let header = |name| header(headers, name);
        match status {
            206 => {}
            200 => {
                return Err(PieceError::Changed(
                    "the CDN answered a range with the whole file".into(),
                ));
            }
            status => {
                return Err(piece_status_error(FetchError::status(
                    status,
                    header(RETRY_AFTER),
                )));
            }
        }
        let range = header(CONTENT_RANGE).and_then(parse_content_range);
        if range.map(|r| (r.first, r.last, r.total))
            != Some((Some(start), Some(end - 1), Some(self.total)))
        {
            return Err(PieceError::Changed(format!(
                "asked for bytes {start}-{} of {}, got {:?}",
                end - 1,
                self.total,
                header(CONTENT_RANGE)
            )));
        }
        let validator = choose_validator(header(ETAG), header(LAST_MODIFIED));
        if let (Some(had), Some(now)) = (&self.validator, &validator)
            && had != now
        {
            return Err(PieceError::Changed(format!("validator {had} became {now}")));
        }
        Ok(())
    }

    /// Writes a piece's body at its place in the file, buffered.
    async fn receive_piece(
        &self,
        response: reqwest::Response,
        start: u64,
        end: u64,
    ) -> Result<(), PieceError> {
        let mut body = response.bytes_stream();
        let mut buffer = Vec::with_capacity(PIECE_WRITE_BUFFER);
        let mut written = start;
        let mut watch = self.client.watch();
        loop {
            let next = tokio::select! {
                _ = self.cancel.cancelled() => return Err(PieceError::Cancelled),
                next = watch.next(&mut body) => next,
            };
            match next {
                Some(Some(Ok(chunk))) => {
                    watch.received(chunk.len() as u64);
                    if written + (buffer.len() + chunk.len()) as u64 > end {
                        return Err(PieceError::Changed(
                            "the CDN sent more bytes than asked for".into(),
                        ));
                    }
                    if write_before_appending(buffer.len(), chunk.len(), buffer.capacity()) {
                        let len = buffer.len() as u64;
                        buffer = self.write(buffer, written).await?;
                        written += len;
                    }
                    buffer.extend_from_slice(&chunk);
                    self.transferred
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                Some(Some(Err(e))) => return Err(PieceError::Retry(describe_reqwest(&e))),
                Some(None) => break,
                None => return Err(PieceError::Retry(watch.stalled())),
            }
        }
        if !buffer.is_empty() {
            let len = buffer.len() as u64;
            self.write(buffer, written).await?;
            written += len;
        }
        if written != end {
            return Err(PieceError::Retry(format!(
                "the body ended at byte {written} of {end}"
            )));
        }
        Ok(())
    }

    /// Writes `buffer` at `at` off the async threads; returns it emptied for reuse.
    async fn write(&self, mut buffer: Vec<u8>, at: u64) -> Result<Vec<u8>, PieceError> {
        let file = self.file.clone();
        let (result, buffer) = tokio::task::spawn_blocking(move || {
            let result = file.write_all_at(&buffer, at);
            buffer.clear();
            (result, buffer)
        })
        .await
        .map_err(|e| PieceError::Retry(format!("write task failed: {e}")))?;
        result
            .map_err(|e| PieceError::Fatal(FetchError::io("cannot write the partial file", e)))?;
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffers chunks of the given sizes the way `receive_piece` does and
    /// returns the largest capacity the buffer reached and the bytes written.
    fn buffer_through(chunks: &[usize]) -> (usize, usize) {
        let mut buffer = Vec::with_capacity(PIECE_WRITE_BUFFER);
        let (mut largest, mut written) = (buffer.capacity(), 0);
        for &len in chunks {
            if write_before_appending(buffer.len(), len, buffer.capacity()) {
                written += buffer.len();
                buffer.clear();
            }
            buffer.extend_from_slice(&vec![7u8; len]);
            largest = largest.max(buffer.capacity());
        }
        (largest, written + buffer.len())
    }

    #[test]
    fn the_piece_buffer_never_grows_past_its_first_allocation() {
        // hyper hands over chunks of uneven sizes, up to its ~400 KiB read buffer.
        let chunks: Vec<usize> = (0..400).map(|i| 1 + (i * 7919) % (400 * 1024)).collect();
        let (largest, written) = buffer_through(&chunks);
        assert_eq!(largest, PIECE_WRITE_BUFFER);
        assert_eq!(
            written,
            chunks.iter().sum::<usize>(),
            "every byte is written once"
        );
    }

    #[test]
    fn a_chunk_larger_than_the_buffer_is_taken_whole_when_nothing_waits() {
        assert!(!write_before_appending(
            0,
            PIECE_WRITE_BUFFER * 2,
            PIECE_WRITE_BUFFER
        ));
        assert!(write_before_appending(
            1,
            PIECE_WRITE_BUFFER,
            PIECE_WRITE_BUFFER
        ));
        assert!(!write_before_appending(
            1,
            PIECE_WRITE_BUFFER - 1,
            PIECE_WRITE_BUFFER
        ));
    }
}
