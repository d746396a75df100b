//! Putting a verified file, and its sidecar, at its place in the archive.
//! Blocking file-system calls: the worker runs them off the async threads.
//!
//! The order, and what a crash between two steps leaves:
//!
//! 1. [`Archive::stage_sidecar`]: the sidecar is written to
//!    `.minimax-dl-partial/{id}.json` (temp file, fsync, rename, fsync of
//!    the directory). A crash leaves it there; the next attempt rewrites it.
//! 2. [`Archive::reserve`]: the path is chosen. With a template that may
//!    give two files one path, the name (and the sidecar's) is reserved by
//!    creating it exclusively (`O_EXCL`) with a marker naming the file id;
//!    a name that exists and is not this file's is skipped for the next
//!    candidate. A crash leaves the marker, which the same file's next
//!    attempt recognises as its own and takes again.
//! 3. The worker records the digest and the path in the queue.
//! 4. [`Archive::place`]: the staged sidecar is renamed next to the file's
//!    path, then the file into place (each replacing only this file's own
//!    marker, or its own older copy), then the directory is fsynced. A crash
//!    after the sidecar's rename leaves the sidecar beside the marker (or
//!    the old copy); the recovery of a recorded digest finishes the file's
//!    rename. The sidecar is never renamed after its file, so a file placed
//!    with sidecars on always has its sidecar.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::template::{Fields, MAX_COLLISION, PathTemplate, SIDECAR_SUFFIX};
use crate::fetch::file::sync_dir;
use crate::fetch::naming::pending_sidecar_path;

/// Where files go: the output directory, the naming template, and whether
/// each file gets a sidecar.
#[derive(Clone, Debug)]
pub(crate) struct Archive {
    pub dir: PathBuf,
    pub template: PathTemplate,
    pub sidecar: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PlaceError {
    #[error(
        "no free name for file {file_id}: {} and {MAX_COLLISION} variants of it belong to other files",
        .path.display()
    )]
    NoFreeName { file_id: i64, path: PathBuf },
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PlaceError {
    let path = path.to_path_buf();
    move |source| PlaceError::Io { what, path, source }
}

/// `clip.mp4` → `clip.mp4.json`.
pub(crate) fn sidecar_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(SIDECAR_SUFFIX);
    PathBuf::from(name)
}

/// What a reserved name holds until the file replaces it.
fn marker(file_id: i64) -> String {
    format!("minimax-dl: name reserved for file {file_id}\n")
}

/// Largest file [`is_ours`] reads to recognise a marker or a sidecar.
const RECOGNISE_MAX: u64 = 1 << 20;

/// Is the file at `path` this file's reservation marker, or its sidecar?
fn is_ours(path: &Path, file_id: i64) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.len() > RECOGNISE_MAX {
        return false;
    }
    let mut text = String::new();
    if fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .is_err()
    {
        return false;
    }
    text == marker(file_id) || super::sidecar::names_file(&text, file_id)
}

impl Archive {
    /// The archive with today's naming and no sidecars.
    pub(crate) fn new(dir: PathBuf) -> Archive {
        Archive {
            dir,
            template: PathTemplate::default(),
            sidecar: false,
        }
    }

    /// Writes the sidecar where it waits for its file (step 1).
    pub(crate) fn stage_sidecar(&self, file_id: i64, bytes: &[u8]) -> Result<(), PlaceError> {
        let staged = pending_sidecar_path(&self.dir, file_id);
        let temp = staged.with_extension("json.tmp");
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temp, &staged)?;
            match staged.parent() {
                Some(dir) => sync_dir(dir),
                None => Ok(()),
            }
        };
        write().map_err(io_error("write the sidecar", &staged))
    }

    /// Chooses the path of a file and reserves it (step 2). `recorded` is
    /// the path the queue holds for it from an earlier attempt: that one is
    /// its own, and kept (a re-download replaces the file there).
    pub(crate) fn reserve(
        &self,
        fields: &Fields<'_>,
        recorded: Option<&Path>,
    ) -> Result<PathBuf, PlaceError> {
        if let Some(path) = recorded {
            self.make_dirs(path)?;
            return Ok(path.to_path_buf());
        }
        let rel = self.template.expand(fields);
        if self.template.unique_per_file() {
            let path = self.dir.join(rel.to_path_buf());
            self.make_dirs(&path)?;
            return Ok(path);
        }
        for n in 0..=MAX_COLLISION {
            let path = self
                .dir
                .join(rel.candidate(n, fields.file_id).to_path_buf());
            self.make_dirs(&path)?;
            if !claim(&path, fields.file_id)? {
                continue;
            }
            if self.sidecar && !claim(&sidecar_path(&path), fields.file_id)? {
                // Ours since a moment ago: give it back.
                let _ = fs::remove_file(&path);
                continue;
            }
            return Ok(path);
        }
        Err(PlaceError::NoFreeName {
            file_id: fields.file_id,
            path: self.dir.join(rel.to_path_buf()),
        })
    }

    /// Moves the staged sidecar (if any) and the verified file to `path`,
    /// then makes both renames durable (step 4).
    pub(crate) fn place(
        &self,
        file_id: i64,
        partial: &Path,
        path: &Path,
    ) -> Result<(), PlaceError> {
        let staged = pending_sidecar_path(&self.dir, file_id);
        if staged.exists() {
            let beside = sidecar_path(path);
            let free =
                self.template.unique_per_file() || !beside.exists() || is_ours(&beside, file_id);
            if free {
                fs::rename(&staged, &beside).map_err(io_error("place the sidecar", &beside))?;
            } else {
                warn!(
                    "no sidecar for file {file_id}: {} belongs to another file",
                    beside.display()
                );
            }
        }
        fs::rename(partial, path).map_err(io_error("move the verified file to", path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(io_error("sync the directory", dir))?;
        }
        Ok(())
    }

    /// Creates the directories between the archive and `path`, each made
    /// durable in its parent.
    fn make_dirs(&self, path: &Path) -> Result<(), PlaceError> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        if parent.is_dir() {
            return Ok(());
        }
        let rel = parent.strip_prefix(&self.dir).unwrap_or(parent);
        let mut at = self.dir.clone();
        for part in rel.components() {
            let next = at.join(part);
            match fs::create_dir(&next) {
                Ok(()) => sync_dir(&at).map_err(io_error("sync the directory", &at))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error("create the directory", &next)(e)),
            }
            at = next;
        }
        Ok(())
    }
}

/// Takes the name `path` for `file_id`: creates it exclusively with the
/// marker, or finds it already this file's. `false` when it is another's.
fn claim(path: &Path, file_id: i64) -> Result<bool, PlaceError> {
    let created = OpenOptions::new().write(true).create_new(true).open(path);
    match created {
        Ok(mut file) => {
            file.write_all(marker(file_id).as_bytes())
                .and_then(|()| file.sync_data())
                .map_err(io_error("reserve the name", path))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(is_ours(path, file_id)),
        Err(e) => Err(io_error("reserve the name", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(file_id: i64, filename: &str) -> Fields<'_> {
        Fields {
            file_id,
            task_id: None,
            filename: Some(filename),
            purpose: None,
            created: None,
            downloaded: 0,
        }
    }

    fn archive(dir: &Path, template: &str, sidecar: bool) -> Archive {
        Archive {
            dir: dir.to_path_buf(),
            template: PathTemplate::parse(template).unwrap(),
            sidecar,
        }
    }

    #[test]
    fn two_files_with_one_name_get_two_paths_and_keep_them() {
        let dir = tempfile::tempdir().unwrap();
        let a = archive(dir.path(), "clips/{filename}", true);
        let first = a.reserve(&fields(1, "same.mp4"), None).unwrap();
        let second = a.reserve(&fields(2, "same.mp4"), None).unwrap();
        assert_eq!(first, dir.path().join("clips/same.mp4"));
        assert_eq!(second, dir.path().join("clips/same-2.mp4"));
        // A retry of the first file (its marker still there) takes its name again.
        assert_eq!(a.reserve(&fields(1, "same.mp4"), None).unwrap(), first);
        // A file that exists without being ours is never taken.
        std::fs::write(dir.path().join("clips/other.mp4"), b"user's").unwrap();
        let third = a.reserve(&fields(3, "other.mp4"), None).unwrap();
        assert_eq!(third, dir.path().join("clips/other-3.mp4"));
        assert_eq!(
            std::fs::read(dir.path().join("clips/other.mp4")).unwrap(),
            b"user's"
        );
    }

    #[test]
    fn a_taken_sidecar_name_moves_the_file_on_too() {
        let dir = tempfile::tempdir().unwrap();
        let a = archive(dir.path(), "{filename}", true);
        std::fs::write(dir.path().join("x.mp4.json"), b"someone's").unwrap();
        let path = a.reserve(&fields(5, "x.mp4"), None).unwrap();
        assert_eq!(path, dir.path().join("x-5.mp4"));
        assert!(!dir.path().join("x.mp4").exists(), "reservation given back");
    }

    #[test]
    fn placing_moves_the_staged_sidecar_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(crate::fetch::naming::PARTIAL_DIR)).unwrap();
        let a = archive(dir.path(), "{filename}", true);
        let path = a.reserve(&fields(9, "v.mp4"), None).unwrap();
        a.stage_sidecar(9, br#"{"file_id":9}"#).unwrap();
        let partial = crate::fetch::naming::partial_path(dir.path(), 9);
        std::fs::write(&partial, b"video").unwrap();
        a.place(9, &partial, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"video");
        assert_eq!(
            std::fs::read(sidecar_path(&path)).unwrap(),
            br#"{"file_id":9}"#
        );
        assert!(!pending_sidecar_path(dir.path(), 9).exists());
    }
}
