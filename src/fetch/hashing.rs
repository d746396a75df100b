//! The running sha256 of a single-stream download, on a thread of its own:
//! receiving and hashing then use both cores instead of taking turns on one,
//! which is what lets a verified download keep pace with `curl`.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Chunks in flight to the hashing thread; beyond this the download waits,
/// so memory stays bounded if hashing falls behind.
const IN_FLIGHT: usize = 64;

enum Message {
    Data(Bytes),
    Reset,
}

pub struct HashPipe {
    sender: mpsc::Sender<Message>,
    thread: tokio::task::JoinHandle<Sha256>,
}

impl HashPipe {
    /// Starts hashing from `initial` (the state after any resumed prefix).
    pub fn start(initial: Sha256) -> HashPipe {
        let (sender, mut receiver) = mpsc::channel(IN_FLIGHT);
        let thread = tokio::task::spawn_blocking(move || {
            let mut hasher = initial;
            while let Some(message) = receiver.blocking_recv() {
                match message {
                    Message::Data(bytes) => hasher.update(&bytes),
                    Message::Reset => hasher = Sha256::new(),
                }
            }
            hasher
        });
        HashPipe { sender, thread }
    }

    pub async fn update(&self, bytes: Bytes) {
        // The thread only ends when the sender is dropped.
        let _ = self.sender.send(Message::Data(bytes)).await;
    }

    /// Forget everything hashed so far (the download restarts at byte 0).
    pub async fn reset(&self) {
        let _ = self.sender.send(Message::Reset).await;
    }

    /// The digest of everything sent, lower hex.
    pub async fn finish(self) -> Result<String, tokio::task::JoinError> {
        drop(self.sender);
        Ok(hex::encode(self.thread.await?.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn digests_match_a_plain_sha256_across_resets() {
        let pipe = HashPipe::start(Sha256::new());
        pipe.update(Bytes::from_static(b"thrown away")).await;
        pipe.reset().await;
        pipe.update(Bytes::from_static(b"hello ")).await;
        pipe.update(Bytes::from_static(b"world")).await;
        assert_eq!(
            pipe.finish().await.unwrap(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let mut prefix = Sha256::new();
        prefix.update(b"hello ");
        let pipe = HashPipe::start(prefix);
        pipe.update(Bytes::from_static(b"world")).await;
        assert_eq!(
            pipe.finish().await.unwrap(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }
}
