//! What a resume may trust of a partial file, and when progress is made
//! durable.
//!
//! Bytes that `write()` handed to the kernel survive the death of the
//! process (SIGKILL, the OOM killer, a panic); only a kernel crash or a
//! power loss can lose them, and either changes the boot id. So every
//! checkpoint records the boot id, and a resume in the same boot keeps the
//! partial file as it is (re-hashed from disk), while a resume after a
//! reboot keeps only the prefix that was fsynced (`bytes_done`). The policy
//! is pure; reading the boot id is the only I/O here.

use std::path::Path;
use std::time::Duration;

use super::Resume;
use super::pieces::PieceMap;

const KERNEL_BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// How often a running download makes its progress durable.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

/// A checkpoint fires at least this often in bytes as well as in time, so
/// a fast link loses a bounded amount to a power loss.
pub(crate) const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

/// The boot id of the running kernel, or the content of `file` standing
/// for it (a test hook: a test simulates a reboot between two runs by
/// changing it). `None` when it cannot be read: then no partial byte
/// beyond `bytes_done` is trusted.
pub(crate) fn boot_id(file: Option<&Path>) -> Option<String> {
    boot_id_at(file.unwrap_or(Path::new(KERNEL_BOOT_ID)))
}

fn boot_id_at(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim().to_string()).filter(|id| !id.is_empty())
}

/// The progress a resume keeps, given what was recorded, the partial file's
/// length on disk and the boot id now. Pure.
///
/// Same boot: everything written survives, so a single-stream file is kept
/// to its length on disk (never beyond the pinned length), and a segmented
/// one to the pieces recorded as written. Another boot, an unknown one, or a
/// piece map that cannot be read: only the fsynced `bytes_done` prefix.
pub(crate) fn trusted(recorded: &Resume, on_disk: u64, boot_now: Option<&str>) -> Resume {
    let same_boot = boot_now.is_some_and(|now| recorded.boot_id.as_deref() == Some(now));
    let fsynced = recorded.bytes_done.min(on_disk);
    let (bytes_done, pieces) = match recorded.pieces.as_deref() {
        None if same_boot => (on_disk.min(recorded.total.unwrap_or(u64::MAX)), None),
        None => (fsynced, None),
        Some(text) => match PieceMap::decode(text) {
            // A segmented file is sized in full at once: its length says
            // nothing about which pieces arrived; the map does.
            Some(map) if on_disk == map.total() => {
                let map = if same_boot {
                    map
                } else {
                    PieceMap::with_prefix(map.total(), map.piece_size(), fsynced)
                };
                (map.contiguous_bytes(), Some(map.encode()))
            }
            _ => (fsynced, None),
        },
    };
    Resume {
        bytes_done,
        pieces,
        ..recorded.clone()
    }
}

/// Is a checkpoint (fdatasync, then record) due? Every `interval` or every
/// [`CHECKPOINT_BYTES`] since the last one, whichever comes first. Pure.
pub(crate) fn checkpoint_due(
    since_last: Duration,
    bytes_since_last: u64,
    interval: Duration,
) -> bool {
    since_last >= interval || bytes_since_last >= CHECKPOINT_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(bytes_done: u64, boot: Option<&str>) -> Resume {
        Resume {
            bytes_done,
            validator: Some("\"v1\"".into()),
            total: Some(1000),
            pieces: None,
            boot_id: boot.map(str::to_string),
        }
    }

    #[test]
    fn the_same_boot_keeps_every_byte_on_disk() {
        let kept = trusted(&recorded(0, Some("b1")), 700, Some("b1"));
        assert_eq!(kept.bytes_done, 700);
        assert_eq!(kept.validator.as_deref(), Some("\"v1\""));
        assert_eq!(
            trusted(&recorded(0, Some("b1")), 1500, Some("b1")).bytes_done,
            1000,
            "never beyond the pinned length"
        );
    }

    #[test]
    fn another_boot_keeps_only_the_fsynced_prefix() {
        assert_eq!(
            trusted(&recorded(300, Some("b1")), 700, Some("b2")).bytes_done,
            300
        );
        assert_eq!(
            trusted(&recorded(300, None), 700, Some("b1")).bytes_done,
            300,
            "a checkpoint without a boot id (written before 0006)"
        );
        assert_eq!(
            trusted(&recorded(300, Some("b1")), 700, None).bytes_done,
            300,
            "a boot id that cannot be read now"
        );
        assert_eq!(
            trusted(&recorded(300, Some("b1")), 100, Some("b2")).bytes_done,
            100,
            "never beyond what is on disk"
        );
    }

    #[test]
    fn a_segmented_file_is_judged_by_its_piece_map() {
        let mut map = PieceMap::new(1000, 100);
        for i in [0, 1, 2, 4] {
            map.mark_done(i);
        }
        let state = Resume {
            bytes_done: 100,
            pieces: Some(map.encode()),
            ..recorded(100, Some("b1"))
        };
        let same = trusted(&state, 1000, Some("b1"));
        assert_eq!((same.bytes_done, same.pieces), (300, Some(map.encode())));
        let rebooted = trusted(&state, 1000, Some("b2"));
        assert_eq!(
            (rebooted.bytes_done, rebooted.pieces.as_deref()),
            (100, Some("100/1000/0"))
        );
        let truncated = trusted(&state, 300, Some("b1"));
        assert_eq!((truncated.bytes_done, truncated.pieces), (100, None));
        let garbage = Resume {
            pieces: Some("nonsense".into()),
            ..state
        };
        assert_eq!(trusted(&garbage, 1000, Some("b1")).bytes_done, 100);
    }

    #[test]
    fn checkpoints_fire_on_time_or_on_bytes() {
        let two = Duration::from_secs(2);
        assert!(!checkpoint_due(Duration::from_millis(500), 1 << 20, two));
        assert!(checkpoint_due(two, 0, two));
        assert!(checkpoint_due(
            Duration::from_millis(500),
            CHECKPOINT_BYTES,
            two
        ));
    }

    #[test]
    fn a_boot_id_is_the_trimmed_text_of_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boot_id");
        std::fs::write(&path, "6f1c0ba4-0000\n").unwrap();
        assert_eq!(boot_id_at(&path).as_deref(), Some("6f1c0ba4-0000"));
        std::fs::write(&path, " \n").unwrap();
        assert_eq!(boot_id_at(&path), None, "empty");
        assert_eq!(boot_id_at(&dir.path().join("missing")), None);
        assert!(
            boot_id_at(Path::new(KERNEL_BOOT_ID)).is_some_and(|id| id.len() >= 32),
            "the kernel's own"
        );
    }
}
