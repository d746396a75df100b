//! The disk side of a single-stream download, on a thread of its own.
//!
//! The async task receives and hashes (the chunk is still in the CPU cache);
//! this thread writes each chunk to the partial file straight from the
//! network's buffer (no copy into a write buffer, no hop through
//! `tokio::fs`). Writing into the page cache is the costliest step on the
//! machines measured (BENCHMARKS.md), and receive + hash cost about as much:
//! on two threads they overlap, which is what lets a verified, fsynced
//! download outpace `curl`.
//!
//! Every few MiB the thread asks the kernel to start writing the new bytes
//! back (`sync_file_range`, as RocksDB's `bytes_per_sync` does), so dirty
//! pages never pile up: a checkpoint's `fdatasync` and the final `fsync`
//! then find little left to flush instead of stalling the stream for
//! seconds.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// Chunks in flight to the thread; beyond this the download waits, so
/// memory stays bounded if the disk falls behind.
const IN_FLIGHT: usize = 4;

/// Bytes written between two writeback kicks.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

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
    sender: Option<mpsc::Sender<Command>>,
    thread: Option<tokio::task::JoinHandle<Result<(), DiskError>>>,
    /// Set when the writer is dropped without `close`: the thread then
    /// writes nothing more, so no queued chunk lands after its owner is gone.
    abandoned: Arc<AtomicBool>,
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::SeqCst);
    }
}

impl DiskWriter {
    /// Appends to `file` from `position` on.
    pub(crate) fn start(file: File, position: u64) -> DiskWriter {
        let (sender, receiver) = mpsc::channel(IN_FLIGHT);
        let abandoned = Arc::new(AtomicBool::new(false));
        let stop = abandoned.clone();
        let thread =
            tokio::task::spawn_blocking(move || write_loop(file, position, receiver, &stop));
        DiskWriter {
            sender: Some(sender),
            thread: Some(thread),
            abandoned,
        }
    }

    /// Queues a chunk; chunks are written in order.
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), DiskError> {
        self.send(Command::Data(chunk)).await
    }

    /// Returns once everything queued is written (not yet durable).
    pub(crate) async fn flush(&mut self) -> Result<(), DiskError> {
        self.barrier(Durability::Written).await
    }

    /// Returns once everything queued is on disk (`fdatasync`).
    pub(crate) async fn sync(&mut self) -> Result<(), DiskError> {
        self.barrier(Durability::Data).await
    }

    /// Throws away everything written.
    pub(crate) async fn restart(&mut self) -> Result<(), DiskError> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Restart(reply)).await?;
        self.wait(done).await
    }

    /// Makes the file fully durable (`fsync`) and stops the thread.
    pub(crate) async fn finish(&mut self) -> Result<(), DiskError> {
        self.barrier(Durability::All).await?;
        self.close().await
    }

    /// Stops the thread and waits for it, so no queued write can land after
    /// the caller moves on (and perhaps reopens the file). Idempotent.
    pub(crate) async fn close(&mut self) -> Result<(), DiskError> {
        self.sender = None;
        match self.thread.take() {
            Some(thread) => thread.await.unwrap_or_else(|e| Err(thread_died(e))),
            None => Err(DiskError {
                operation: "write",
                source: io::Error::other("the disk writer was already closed"),
            }),
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
    async fn a_failed_write_is_reported_with_its_operation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        std::fs::write(&path, b"").unwrap();
        // Read-only: every write fails with EBADF.
        let read_only = File::open(&path).unwrap();
        let mut disk = DiskWriter::start(read_only, 0);
        // The first write is only queued; the error shows at the next
        // interaction with the thread.
        let _ = disk.write(Bytes::from_static(b"x")).await;
        let error = disk.flush().await.unwrap_err();
        assert_eq!(error.operation, "write");
        assert_eq!(error.source.raw_os_error(), Some(libc::EBADF));
    }
}
