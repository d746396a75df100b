//! The filesystem side of a download: partial files, hashing what is on
//! disk, free space, and the atomic placement of a verified file.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Bytes kept free beyond the file itself, so the queue database and logs
/// can still be written when the archive disk is nearly full.
pub const FREE_SPACE_RESERVE: u64 = 16 * 1024 * 1024;

/// Is this I/O error the disk being full (or over quota)?
pub fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || error.raw_os_error() == Some(28)
}

/// Is this I/O error the archive refusing writes (read-only, permissions)?
pub fn is_unwritable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
    )
}

/// Feeds the first `len` bytes of `path` to `hasher`. Resumed bytes are
/// re-hashed from disk, never trusted from memory of an earlier run.
pub fn hash_prefix(path: &Path, len: u64, hasher: &mut Sha256) -> io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut remaining = len;
    let mut buf = vec![0u8; 1 << 20];
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is shorter than {len} bytes", path.display()),
            ));
        }
        hasher.update(&buf[..n]);
        remaining -= n as u64;
    }
    Ok(())
}

/// Size and sha256 (lower hex) of a whole file.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let len = std::fs::metadata(path)?.len();
    let mut hasher = Sha256::new();
    hash_prefix(path, len, &mut hasher)?;
    Ok((len, hex::encode(hasher.finalize())))
}

/// Moves a verified, fsynced file to its final name atomically (replacing
/// any file of that name) and makes the rename itself durable.
pub fn place(partial: &Path, final_path: &Path) -> io::Result<()> {
    std::fs::rename(partial, final_path)?;
    if let Some(dir) = final_path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Free bytes on the filesystem holding `path`.
pub fn available_space(path: &Path) -> io::Result<u64> {
    fs4::available_space(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_sha256_of_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello world").unwrap();
        let (len, sha) = hash_file(&path).unwrap();
        assert_eq!(len, 11);
        assert_eq!(
            sha,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let mut h = Sha256::new();
        assert!(hash_prefix(&path, 12, &mut h).is_err());
    }

    #[test]
    fn place_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"new").unwrap();
        std::fs::write(&b, b"old").unwrap();
        place(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"new");
        assert!(!a.exists());
    }

    #[test]
    fn enospc_is_recognised() {
        assert!(is_disk_full(&io::Error::from_raw_os_error(28)));
        assert!(!is_disk_full(&io::Error::from_raw_os_error(13)));
        assert!(is_unwritable(&io::Error::from_raw_os_error(13)));
        assert!(is_unwritable(&io::Error::from_raw_os_error(30)));
        assert!(!is_unwritable(&io::Error::from_raw_os_error(28)));
    }
}
