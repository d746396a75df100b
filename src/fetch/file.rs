//! The filesystem side of a download: partial files, hashing what is on
//! disk, free space, and the atomic placement of a verified file.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Bytes kept free beyond the file itself, so the queue database and logs
/// can still be written when the archive disk is nearly full.
pub(crate) const FREE_SPACE_RESERVE: u64 = 16 * 1024 * 1024;

/// Is this I/O error the disk being full (or over quota)?
pub(crate) fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || error.raw_os_error() == Some(28)
}

/// Is this I/O error the archive refusing writes (read-only, permissions)?
pub(crate) fn is_unwritable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
    )
}

/// Removes `paths` on the blocking pool; one already gone is not an error.
/// Unlinking a large file frees every page it holds in the page cache
/// (0.3 s for 1 GiB here), which must not stall an async thread and the
/// transfers it drives.
pub(crate) async fn remove_quietly(paths: Vec<std::path::PathBuf>) {
    let _ = tokio::task::spawn_blocking(move || {
        for path in paths {
            let _ = std::fs::remove_file(path);
        }
    })
    .await;
}

/// Feeds the first `len` bytes of `path` to `hasher`. Resumed bytes are
/// re-hashed from disk, never trusted from memory of an earlier run.
pub(crate) fn hash_prefix(path: &Path, len: u64, hasher: &mut Sha256) -> io::Result<()> {
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

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Mode of the partial directory: partial files are unverified bytes of the
/// archive, for this user alone. (The archive itself follows the umask.)
pub(crate) const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates the partial directory `dir` with mode 0700 whatever the umask,
/// its parents as the umask says, and brings an existing one (from an older
/// version) to 0700 when it can: one it may not change (another user's)
/// stays as it is.
pub(crate) async fn create_private_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || private_dir(&dir))
        .await
        .map_err(io::Error::other)?
}

fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new()
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode != PRIVATE_DIR_MODE {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE));
    }
    Ok(())
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

    #[tokio::test]
    async fn the_partial_dir_is_private_even_when_it_existed() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let partial = root.path().join("a/.p");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        create_private_dir(&partial).await.unwrap();
        assert_eq!(mode(&partial), 0o700);
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&partial).await.unwrap();
        assert_eq!(mode(&partial), 0o700, "an older, open one is tightened");
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
