//! Fixity checks (`verify`): is an archived file still the one that was
//! verified when it was downloaded? Reads only: a file is opened read-only
//! and never written, renamed or removed.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Read size: large enough that a disk streams at full speed.
const BUFFER: usize = 4 << 20;

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fixity {
    /// Same size, same sha256.
    Ok,
    /// Nothing at the recorded path.
    Missing,
    /// Another size or another digest; the text says which.
    Changed(String),
    /// There but unreadable (permissions, I/O error): not checked.
    Unreadable(String),
}

impl Fixity {
    /// `ok`, `missing`, `changed` or `unreadable`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Fixity::Ok => "ok",
            Fixity::Missing => "missing",
            Fixity::Changed(_) => "changed",
            Fixity::Unreadable(_) => "unreadable",
        }
    }

    pub(crate) fn detail(&self) -> Option<&str> {
        match self {
            Fixity::Changed(d) | Fixity::Unreadable(d) => Some(d),
            _ => None,
        }
    }
}

/// Checks the file at `path` against the recorded `size` and `sha256`;
/// `read` hears of every buffer read (progress).
pub(crate) fn check(path: &Path, size: u64, sha256: &str, read: &dyn Fn(u64)) -> Fixity {
    // Non-blocking: a FIFO in the file's place would otherwise block the
    // open until someone writes to it (the flag changes nothing for a
    // regular file), and is then reported as not a regular file.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Fixity::Missing,
        Err(e) => return Fixity::Unreadable(e.to_string()),
    };
    let len = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Fixity::Changed("not a regular file".into()),
        Err(e) => return Fixity::Unreadable(e.to_string()),
    };
    if len != size {
        return Fixity::Changed(format!("{len} bytes, {size} recorded"));
    }
    match hash(file, read) {
        Ok((n, _)) if n != size => Fixity::Changed(format!(
            "{n} bytes read, {size} recorded (the file changed while being read)"
        )),
        Ok((_, digest_hex)) if digest_hex == sha256 => Fixity::Ok,
        Ok((_, digest_hex)) => Fixity::Changed(format!("sha256 {digest_hex}, {sha256} recorded")),
        Err(e) => Fixity::Unreadable(e.to_string()),
    }
}

/// Bytes read and their sha256, reading ahead sequentially.
fn hash(mut file: std::fs::File, read: &dyn Fn(u64)) -> io::Result<(u64, String)> {
    // SAFETY: posix_fadvise only advises the kernel about an open
    // descriptor we own; it touches no memory of ours.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        read(n as u64);
    }
    Ok((total, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    #[test]
    fn finds_ok_missing_and_changed_files_without_touching_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello world").unwrap();
        let none = |_| {};
        assert_eq!(check(&path, 11, HELLO, &none), Fixity::Ok);
        assert_eq!(
            check(&dir.path().join("gone"), 11, HELLO, &none),
            Fixity::Missing
        );
        let shorter = check(&path, 12, HELLO, &none);
        assert!(matches!(&shorter, Fixity::Changed(d) if d.contains("11 bytes, 12 recorded")));
        std::fs::write(&path, b"hello worle").unwrap();
        let other = check(&path, 11, HELLO, &none);
        assert_eq!(other.label(), "changed");
        assert!(other.detail().unwrap().contains(HELLO));
        assert_eq!(check(dir.path(), 11, HELLO, &none).label(), "changed");
        assert_eq!(std::fs::read(&path).unwrap(), b"hello worle");
    }
}
