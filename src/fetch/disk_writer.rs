//! The disk side of a single-stream download, on a thread of its own.
//!
//! The async task only receives; this thread hashes each chunk while it is
//! still in the CPU cache and writes it to the partial file straight from
//! the network's buffer (no copy into a write buffer, no hop through
//! `tokio::fs`). Receiving and writing then use both cores instead of taking
//! turns on one, which is what lets a verified, fsynced download keep pace
//! with `curl`.
//!
//! Every few MiB the thread asks the kernel to start writing the new bytes
//! back (`sync_file_range`, as RocksDB's `bytes_per_sync` does), so dirty
//! pages never pile up: a checkpoint's `fdatasync` and the final `fsync`
//! then find little left to flush instead of stalling the stream for
//! seconds.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// Chunks in flight to the thread; beyond this the download waits, so
/// memory stays bounded if the disk falls behind.
const IN_FLIGHT: usize = 16;

/// Bytes written between two writeback kicks.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// A disk operation that failed, and which one, for the error message.
#[derive(Debug)]
pub struct DiskError {
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
    /// Truncate to zero and forget the hash: the download starts over.
    Restart(oneshot::Sender<()>),
}

pub struct DiskWriter {
    sender: Option<mpsc::Sender<Command>>,
    thread: Option<tokio::task::JoinHandle<Result<Sha256, DiskError>>>,
}

impl DiskWriter {
    /// Appends at `position` of `file`, hashing from `hasher` (the state
    /// after the resumed prefix).
    pub fn start(file: File, hasher: Sha256, position: u64) -> DiskWriter {
        let (sender, receiver) = mpsc::channel(IN_FLIGHT);
        let thread =
            tokio::task::spawn_blocking(move || write_loop(file, hasher, position, receiver));
        DiskWriter {
            sender: Some(sender),
            thread: Some(thread),
        }
    }

    /// Queues a chunk; it is hashed and written in order.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), DiskError> {
        self.send(Command::Data(chunk)).await
    }

    /// Returns once everything queued is written (not yet durable).
    pub async fn flush(&mut self) -> Result<(), DiskError> {
        self.barrier(Durability::Written).await
    }

    /// Returns once everything queued is on disk (`fdatasync`).
    pub async fn sync(&mut self) -> Result<(), DiskError> {
        self.barrier(Durability::Data).await
    }

    /// Throws away everything written and hashed.
    pub async fn restart(&mut self) -> Result<(), DiskError> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Restart(reply)).await?;
        self.wait(done).await
    }

    /// Makes the file fully durable (`fsync`) and returns the sha256 of all
    /// its bytes, lower hex.
    pub async fn finish(&mut self) -> Result<String, DiskError> {
        self.barrier(Durability::All).await?;
        let hasher = self.close().await?;
        Ok(hex::encode(hasher.finalize()))
    }

    /// Stops the thread and waits for it, so no queued write can land after
    /// the caller moves on (and perhaps reopens the file). Idempotent.
    pub async fn close(&mut self) -> Result<Sha256, DiskError> {
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
    mut hasher: Sha256,
    mut position: u64,
    mut commands: mpsc::Receiver<Command>,
) -> Result<Sha256, DiskError> {
    let fail = |operation| move |source| DiskError { operation, source };
    file.seek(SeekFrom::Start(position))
        .map_err(fail("seek in"))?;
    let mut kicked = position;
    while let Some(command) = commands.blocking_recv() {
        match command {
            Command::Data(chunk) => {
                hasher.update(&chunk);
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
                hasher = Sha256::new();
                position = 0;
                kicked = 0;
                let _ = reply.send(());
            }
        }
    }
    Ok(hasher)
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

    const HELLO_WORLD_SHA256: &str =
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

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
    async fn writes_and_hashes_across_restarts_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        let mut disk = DiskWriter::start(open(&path), Sha256::new(), 0);
        disk.write(Bytes::from_static(b"thrown away"))
            .await
            .unwrap();
        disk.sync().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"thrown away");
        disk.restart().await.unwrap();
        disk.write(Bytes::from_static(b"hello ")).await.unwrap();
        disk.flush().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello ");
        drop(disk.close().await.unwrap());

        // Resume after "hello ": the hash continues from the prefix's state.
        let mut prefix = Sha256::new();
        prefix.update(b"hello ");
        let mut disk = DiskWriter::start(open(&path), prefix, 6);
        disk.write(Bytes::from_static(b"world")).await.unwrap();
        assert_eq!(disk.finish().await.unwrap(), HELLO_WORLD_SHA256);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_with_its_operation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        std::fs::write(&path, b"").unwrap();
        // Read-only: every write fails with EBADF.
        let read_only = File::open(&path).unwrap();
        let mut disk = DiskWriter::start(read_only, Sha256::new(), 0);
        // The first write is only queued; the error shows at the next
        // interaction with the thread.
        let _ = disk.write(Bytes::from_static(b"x")).await;
        let error = disk.flush().await.unwrap_err();
        assert_eq!(error.operation, "write");
        assert_eq!(error.source.raw_os_error(), Some(libc::EBADF));
    }
}
