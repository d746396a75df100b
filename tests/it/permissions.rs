//! Files and their modes, through the real binary under a chosen umask: the
//! queue database, its WAL and shared memory (0600) and the partial
//! directory (0700) are private whatever the umask; the archive and its
//! files follow it. A key file others can read gives a warning naming it
//! and the fix.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use minimax_dl::policy::PARTIAL_DIR;

use crate::support::{self, World, assert_success, finish, signal, stderr, wait_for};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The binary with this umask.
fn under_umask(world: &World, umask: u32) -> tokio::process::Command {
    let mut cmd = world.command();
    // SAFETY: umask is async-signal-safe and touches nothing but the child.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(umask as libc::mode_t);
            Ok(())
        });
    }
    cmd
}

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", db.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_and_partial_dir_are_private_and_the_archive_follows_the_umask() {
    for umask in [0o022, 0o000] {
        let sim = support::sim(support::small_files()).await;
        let world = World::new().with_sim(&sim);
        let enqueue = under_umask(&world, umask)
            .args(["enqueue", "1", "2"])
            .output()
            .await
            .expect("enqueue");
        assert_success(&enqueue);
        assert_eq!(mode(&world.db), 0o600, "umask {umask:o}: the queue");

        // The WAL and shared memory exist while a process has the queue open.
        let run = under_umask(&world, umask)
            .arg("run")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn run");
        wait_for(Duration::from_secs(60), "both files done", || async {
            let status = world.status().await;
            (status["done"] == 2).then_some(())
        })
        .await;
        for suffix in ["-wal", "-shm"] {
            let path = sidecar(&world.db, suffix);
            assert_eq!(mode(&path), 0o600, "umask {umask:o}: {}", path.display());
        }
        signal(run.id().expect("pid"), "-TERM");
        assert_success(&finish(run, Duration::from_secs(30)).await);

        assert_eq!(
            mode(&world.out.join(PARTIAL_DIR)),
            0o700,
            "umask {umask:o}: the partial dir"
        );
        assert_eq!(
            mode(&world.out),
            0o777 & !umask,
            "umask {umask:o}: the archive"
        );
        for id in [1, 2] {
            let job = world.job(id).await;
            let path = PathBuf::from(job["path"].as_str().expect("a done job's path"));
            assert_eq!(mode(&path), 0o666 & !umask, "umask {umask:o}: {job}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_file_others_can_read_is_named_with_the_fix() {
    let world = World::new();
    let key = world.path("api_key");
    std::fs::write(&key, "sk-perm-test-key\n").unwrap();
    std::fs::write(
        &world.config,
        format!("api_key_file = {:?}\n", key.to_str().unwrap()),
    )
    .unwrap();
    for (file_mode, warned) in [(0o644, true), (0o640, true), (0o600, false)] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(file_mode)).unwrap();
        let out = world.run(&["enqueue", "1"]).await;
        assert_success(&out);
        let text = stderr(&out);
        let fix = format!("chmod 600 {}", key.display());
        assert_eq!(text.contains(&fix), warned, "mode {file_mode:o}: {text}");
        assert!(!text.contains("sk-perm-test-key"), "the key leaked: {text}");
    }
}
