//! The disk side of a single-stream download: the first few MiB on the
//! download's own task, the rest on a thread of its own.
//!
//! The async task receives and hashes (the chunk is still in the CPU cache);
//! the thread writes each chunk to the partial file straight from the
//! network's buffer (no copy into a write buffer, no hop through
//! `tokio::fs`). Writing into the page cache is the costliest step on the
//! machines measured (BENCHMARKS.md), and receive + hash cost about as much:
//! on two threads they overlap, which is what lets a verified, fsynced
//! download outpace `curl`.
//!
//! That overlap pays only once a file is large. Each chunk handed to the
//! thread costs two context switches, and the thread a spawn and a join;
//! for a small file (a batch of 1 MiB files, BENCHMARKS.md "CPU per file")
//! that was more than its write costs, and sixteen downloads at once
//! overlap with each other anyway. So the first [`INLINE_BYTES`] are
//! written where they arrive (a write into the page cache, a fraction of a
//! millisecond a chunk), and only a file that grows past them moves to the
//! thread. The fsyncs, which wait for the disk, always run off the async
//! threads.
//!
//! Every few MiB the thread asks the kernel to start writing the new bytes
//! back (`sync_file_range`, as RocksDB's `bytes_per_sync` does), so dirty
//! pages never pile up: a checkpoint's `fdatasync` and the final `fsync`
//! then find little left to flush instead of stalling the stream for
//! seconds.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// Chunks in flight to the thread; beyond this the download waits, so
/// memory stays bounded if the disk falls behind.
const IN_FLIGHT: usize = 4;

/// Bytes written between two writeback kicks.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// Bytes written on the download's own task before the writes move to a
/// thread (see the module's header).
const INLINE_BYTES: u64 = 4 * 1024 * 1024;

/// A disk operation that failed, and which one, for the error message.
#[derive(Debug)]
pub(crate) struct DiskError {
    /// "write", "fsync", "truncate": completes "cannot … {path}".
    pub operation: &'static str,
    pub source: io::Error,
}

/// How far a barrier makes the bytes sent so far durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// Handed to the kernel (written), not forced to disk.
    Written,
    /// `fdatasync`: the data is on disk.
    Data,
    /// `fsync`: data and metadata (the file is complete).
    All,
}

enum Command {
    Data(Bytes),
    Barrier(Durability, oneshot::Sender<()>),
    /// Truncate to zero: the download starts over.
    Restart(oneshot::Sender<()>),
}

pub(crate) struct DiskWriter {
    phase: Phase,
}

enum Phase {
    /// Small so far: written on the caller's task, at `position`.
    Inline { file: File, position: u64 },
    /// Large: written by a thread of its own.
    Threaded(Threaded),
    /// Closed, or lost to an fsync cut short.
    Closed,
}

impl DiskWriter {
    /// Appends to `file` from `position` on.
    pub(crate) fn start(file: File, position: u64) -> DiskWriter {
        let phase = if position >= INLINE_BYTES {
            Phase::Threaded(Threaded::start(file, position))
        } else {
            Phase::Inline { file, position }
        };
        DiskWriter { phase }
    }

    /// Queues a chunk (or, while the file is small, writes it); chunks are
    /// written in order.
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), DiskError> {
        match &mut self.phase {
            Phase::Inline { file, position } => {
                if let Err(source) = file.write_all_at(&chunk, *position) {
                    self.phase = Phase::Closed;
                    return Err(DiskError {
                        operation: "write",
                        source,
                    });
                }
                *position += chunk.len() as u64;
                if *position >= INLINE_BYTES
                    && let Phase::Inline { file, position } =
                        std::mem::replace(&mut self.phase, Phase::Closed)
                {
                    self.phase = Phase::Threaded(Threaded::start(file, position));
                }
                Ok(())
            }
            Phase::Threaded(thread) => thread.send(Command::Data(chunk)).await,
            Phase::Closed => Err(closed()),
        }
    }

    /// Returns once everything queued is written (not yet durable).
    pub(crate) async fn flush(&mut self) -> Result<(), DiskError> {
        match &mut self.phase {
            Phase::Inline { .. } => Ok(()),
            Phase::Threaded(thread) => thread.barrier(Durability::Written).await,
            Phase::Closed => Err(closed()),
        }
    }

    /// Returns once everything queued is on disk (`fdatasync`).
    pub(crate) async fn sync(&mut self) -> Result<(), DiskError> {
        match &mut self.phase {
            Phase::Inline { .. } => self.sync_inline(Durability::Data).await,
            Phase::Threaded(thread) => thread.barrier(Durability::Data).await,
            Phase::Closed => Err(closed()),
        }
    }

    /// Throws away everything written.
    pub(crate) async fn restart(&mut self) -> Result<(), DiskError> {
        match &mut self.phase {
            Phase::Inline { file, position } => {
                file.set_len(0).map_err(|source| DiskError {
                    operation: "truncate",
                    source,
                })?;
                *position = 0;
                Ok(())
            }
            Phase::Threaded(thread) => {
                let (reply, done) = oneshot::channel();
                thread.send(Command::Restart(reply)).await?;
                thread.wait(done).await
            }
            Phase::Closed => Err(closed()),
        }
    }

    /// Makes the file fully durable (`fsync`) and stops the thread.
    pub(crate) async fn finish(&mut self) -> Result<(), DiskError> {
        match &mut self.phase {
            Phase::Inline { .. } => self.sync_inline(Durability::All).await?,
            Phase::Threaded(thread) => thread.barrier(Durability::All).await?,
            Phase::Closed => return Err(closed()),
        }
        self.close().await
    }

    /// Hands every byte to the kernel (no `fsync`: they may be lost to a
    /// power cut, not to a crash of this process) and stops the thread.
    pub(crate) async fn finish_unsynced(&mut self) -> Result<(), DiskError> {
        match &mut self.phase {
            // Inline writes are in the kernel as they return.
            Phase::Inline { .. } => {}
            Phase::Threaded(thread) => thread.barrier(Durability::Written).await?,
            Phase::Closed => return Err(closed()),
        }
        self.close().await
    }

    /// Stops the thread and waits for it, so no queued write can land after
    /// the caller moves on (and perhaps reopens the file). A second close
    /// is an error.
    pub(crate) async fn close(&mut self) -> Result<(), DiskError> {
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Inline { .. } => Ok(()),
            Phase::Threaded(mut thread) => thread.close().await,
            Phase::Closed => Err(closed()),
        }
    }

    /// An fsync of a file still written inline, on a blocking thread: it
    /// waits for the disk.
    async fn sync_inline(&mut self, durability: Durability) -> Result<(), DiskError> {
        let Phase::Inline { file, position } = std::mem::replace(&mut self.phase, Phase::Closed)
        else {
            return Err(closed());
        };
        let synced = tokio::task::spawn_blocking(move || {
            let synced = match durability {
                Durability::All => file.sync_all(),
                Durability::Data | Durability::Written => file.sync_data(),
            };
            (file, synced)
        })
        .await;
        match synced {
            Ok((file, Ok(()))) => {
                self.phase = Phase::Inline { file, position };
                Ok(())
            }
            Ok((_, Err(source))) => Err(DiskError {
                operation: "fsync",
                source,
            }),
            Err(e) => Err(thread_died(e)),
        }
    }
}

fn closed() -> DiskError {
    DiskError {
        operation: "write",
        source: io::Error::other("the disk writer was already closed"),
    }
}

/// The writes of a large file, on a thread of its own.
struct Threaded {
    sender: Option<mpsc::Sender<Command>>,
    thread: Option<tokio::task::JoinHandle<Result<(), DiskError>>>,
    /// Set when the writer is dropped without `close`: the thread then
    /// writes nothing more, so no queued chunk lands after its owner is gone.
    abandoned: Arc<AtomicBool>,
}

impl Drop for Threaded {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::SeqCst);
    }
}

impl Threaded {
    fn start(file: File, position: u64) -> Threaded {
        let (sender, receiver) = mpsc::channel(IN_FLIGHT);
        let abandoned = Arc::new(AtomicBool::new(false));
        let stop = abandoned.clone();
        let thread =
            tokio::task::spawn_blocking(move || write_loop(file, position, receiver, &stop));
        Threaded {
            sender: Some(sender),
            thread: Some(thread),
            abandoned,
        }
    }

    async fn close(&mut self) -> Result<(), DiskError> {
        self.sender = None;
        match self.thread.take() {
            Some(thread) => thread.await.unwrap_or_else(|e| Err(thread_died(e))),
            None => Err(closed()),
        }
    }

    async fn barrier(&mut self, durability: Durability) -> Result<(), DiskError> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Barrier(durability, reply)).await?;
        self.wait(done).await
    }

    async fn send(&mut self, command: Command) -> Result<(), DiskError> {
        let sent = match &self.sender {
            Some(sender) => sender.send(command).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.failure().await)
        }
    }

    async fn wait(&mut self, done: oneshot::Receiver<()>) -> Result<(), DiskError> {
        match done.await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.failure().await),
        }
    }

    /// The thread stopped early: the error it stopped on.
    async fn failure(&mut self) -> DiskError {
        match self.close().await {
            Err(error) => error,
            Ok(_) => DiskError {
                operation: "write",
                source: io::Error::other("the disk writer stopped unexpectedly"),
            },
        }
    }
}

fn thread_died(error: tokio::task::JoinError) -> DiskError {
    DiskError {
        operation: "write",
        source: io::Error::other(format!("the disk writer thread failed: {error}")),
    }
}

fn write_loop(
    mut file: File,
    mut position: u64,
    mut commands: mpsc::Receiver<Command>,
    abandoned: &AtomicBool,
) -> Result<(), DiskError> {
    let fail = |operation| move |source| DiskError { operation, source };
    file.seek(SeekFrom::Start(position))
        .map_err(fail("seek in"))?;
    let mut kicked = position;
    while let Some(command) = commands.blocking_recv() {
        match command {
            Command::Data(_) if abandoned.load(Ordering::SeqCst) => break,
            Command::Data(chunk) => {
                file.write_all(&chunk).map_err(fail("write"))?;
                position += chunk.len() as u64;
                if position - kicked >= WRITEBACK_EVERY {
                    start_writeback(&file, kicked, position - kicked);
                    kicked = position;
                }
            }
            Command::Barrier(durability, reply) => {
                match durability {
                    Durability::Written => {}
                    Durability::Data => file.sync_data().map_err(fail("fsync"))?,
                    Durability::All => file.sync_all().map_err(fail("fsync"))?,
                }
                let _ = reply.send(());
            }
            Command::Restart(reply) => {
                file.set_len(0).map_err(fail("truncate"))?;
                file.seek(SeekFrom::Start(0)).map_err(fail("truncate"))?;
                position = 0;
                kicked = 0;
                let _ = reply.send(());
            }
        }
    }
    Ok(())
}

/// Asks the kernel to start writing `len` bytes at `offset` back to disk,
/// without waiting. Best effort: durability comes from the fsyncs.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor this thread owns.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap()
    }

    #[tokio::test]
    async fn writes_in_order_across_restarts_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        let mut disk = DiskWriter::start(open(&path), 0);
        disk.write(Bytes::from_static(b"thrown away"))
            .await
            .unwrap();
        disk.sync().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"thrown away");
        disk.restart().await.unwrap();
        disk.write(Bytes::from_static(b"hello ")).await.unwrap();
        disk.flush().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello ");
        disk.close().await.unwrap();

        // Resume after "hello ".
        let mut disk = DiskWriter::start(open(&path), 6);
        disk.write(Bytes::from_static(b"world")).await.unwrap();
        disk.finish().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    }

    #[tokio::test]
    async fn more_than_the_writeback_interval_arrives_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        let mut disk = DiskWriter::start(open(&path), 0);
        let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        let chunks = (WRITEBACK_EVERY >> 20) * 2 + 1;
        for _ in 0..chunks {
            disk.write(Bytes::from(chunk.clone())).await.unwrap();
        }
        disk.finish().await.unwrap();
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len() as u64, chunks << 20);
        assert!(written.chunks(1 << 20).all(|c| c == chunk.as_slice()));
    }

    #[tokio::test]
    async fn a_file_that_grows_past_the_inline_bytes_moves_to_the_thread_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        let mut disk = DiskWriter::start(open(&path), 0);
        let chunk: Vec<u8> = (0..=250u8).cycle().take(300_000).collect();
        let chunks = INLINE_BYTES / chunk.len() as u64 + 3;
        for i in 0..chunks {
            disk.write(Bytes::from(chunk.clone())).await.unwrap();
            if i == 0 {
                assert!(matches!(disk.phase, Phase::Inline { .. }));
                disk.sync().await.unwrap();
                assert!(
                    matches!(disk.phase, Phase::Inline { .. }),
                    "kept after an fsync"
                );
            }
        }
        assert!(matches!(disk.phase, Phase::Threaded(_)));
        disk.finish().await.unwrap();
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len() as u64, chunks * chunk.len() as u64);
        assert!(written.chunks(chunk.len()).all(|c| c == chunk.as_slice()));
        assert!(disk.close().await.is_err(), "finish closed it");
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_with_its_operation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        std::fs::write(&path, b"").unwrap();
        // Read-only: every write fails with EBADF.
        // Small: the write itself fails.
        let mut disk = DiskWriter::start(File::open(&path).unwrap(), 0);
        let error = disk.write(Bytes::from_static(b"x")).await.unwrap_err();
        assert_eq!(error.operation, "write");
        assert_eq!(error.source.raw_os_error(), Some(libc::EBADF));
        // Large: the write is only queued; the error shows at the next
        // interaction with the thread.
        let mut disk = DiskWriter::start(File::open(&path).unwrap(), INLINE_BYTES);
        let _ = disk.write(Bytes::from_static(b"x")).await;
        let error = disk.flush().await.unwrap_err();
        assert_eq!(error.operation, "write");
        assert_eq!(error.source.raw_os_error(), Some(libc::EBADF));
    }
}
