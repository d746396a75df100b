//! A full disk is a host-level condition: jobs go back to the queue with
//! their attempts untouched, nothing corrupt reaches the archive, the pool
//! stops claiming, and work resumes once space is back. The archive is put
//! on a small tmpfs, which needs root (CI runs as root).

use std::path::{Path, PathBuf};
use std::time::Duration;

use minimax_dl::queue::{DbLocation, JobState, Queue};
use minimax_sim::{CdnFault, CdnFaultRule, Faults, SimConfig};

use crate::support::{self, World, assert_exit, assert_success, assert_verified};

/// A tmpfs mounted for one test, unmounted on drop.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size_mib: u64) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            support::skip_or_fail(
                &format!("cannot mount a tmpfs at {}", path.display()),
                "run the tests as root (or with CAP_SYS_ADMIN)",
            );
            return None;
        }
        Some(SmallDisk {
            path: path.to_path_buf(),
        })
    }

    fn grow(&self, size_mib: u64) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size_mib}m")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount tmpfs");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

const MIB: u64 = 1024 * 1024;

fn archive_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disk_that_fills_mid_stream_stops_the_batch_with_exit_4_and_loses_nothing() {
    // No Content-Length (chunked), no API size: only the write can find out.
    let sim = support::sim(SimConfig {
        default_file_size: 80 * MIB,
        faults: Faults {
            cdn: vec![CdnFaultRule::new(CdnFault::TruncateChunked(u64::MAX))],
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let mut world = World::new().with_sim(&sim);
    let Some(disk) = SmallDisk::mount(&world.dir.path().join("small"), 64) else {
        return;
    };
    world.out = disk.path.join("archive");
    assert_success(&world.run(&["enqueue", "1", "2"]).await);
    let out = world
        .run(&["run", "--exit-when-idle", "--concurrency", "1"])
        .await;
    assert_exit(&out, 4);
    assert!(
        support::stderr(&out).contains("disk full"),
        "{}",
        support::stderr(&out)
    );
    let q = Queue::open(&DbLocation(world.db.to_string_lossy().into_owned()))
        .await
        .unwrap();
    for job in q.list(None, None).await.unwrap() {
        assert_eq!(job.state, JobState::Queued, "{job:?}");
        assert_eq!(job.attempts, 0, "a full disk burns no attempts");
        if job.file_id == 1 {
            assert!(
                job.last_error
                    .as_deref()
                    .unwrap_or("")
                    .contains("disk full"),
                "{job:?}"
            );
        }
    }
    assert!(
        archive_files(&world.out).is_empty(),
        "nothing at any final path"
    );
    assert_eq!(
        sim.stats().api_requests_by_file.get(&2),
        None,
        "the pool stopped claiming"
    );

    disk.grow(512);
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    for job in world.jobs().await {
        assert_verified(&world, &sim, &job);
    }
}

/// Fills a tmpfs until `free` bytes are left.
fn leave_free(disk: &SmallDisk, free: u64) {
    let now = minimax_dl::parts::available_space(&disk.path).unwrap();
    let filler = vec![0u8; (now - free) as usize];
    std::fs::write(disk.path.join("filler"), filler).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_known_size_that_cannot_fit_now_is_refused_before_downloading() {
    let sim = support::sim(SimConfig {
        default_file_size: 30 * MIB,
        report_bytes: true,
        ..SimConfig::default()
    })
    .await;
    let mut world = World::new().with_sim(&sim);
    let Some(disk) = SmallDisk::mount(&world.dir.path().join("small"), 64) else {
        return;
    };
    world.out = disk.path.join("archive");
    leave_free(&disk, 24 * MIB);
    assert_success(&world.run(&["enqueue", "3"]).await);
    let out = world.run(&["run", "--exit-when-idle"]).await;
    assert_exit(&out, 4);
    assert_eq!(
        sim.stats().cdn_bytes_sent,
        0,
        "nothing fetched for a file that cannot fit"
    );
    let job = world.job(3).await;
    assert_eq!(job["state"], "queued");
    assert_eq!(job["attempts"], 0);
    assert!(
        job["last_error"].as_str().unwrap().contains("disk full"),
        "{job}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_larger_than_the_whole_filesystem_fails_instead_of_pausing() {
    // A lying Content-Length or a huge file: waiting for space would wait forever.
    let sim = support::sim(SimConfig {
        default_file_size: 100 * MIB,
        ..SimConfig::default()
    })
    .await;
    let mut world = World::new().with_sim(&sim);
    let Some(disk) = SmallDisk::mount(&world.dir.path().join("small"), 32) else {
        return;
    };
    world.out = disk.path.join("archive");
    assert_success(&world.run(&["enqueue", "3"]).await);
    for segments in ["1", "4"] {
        let out = world
            .run(&["run", "--exit-when-idle", "--segments", segments])
            .await;
        assert_exit(&out, 1);
        let job = world.job(3).await;
        assert_eq!(job["state"], "failed", "{job}");
        assert!(
            job["last_error"]
                .as_str()
                .unwrap()
                .contains("larger than the whole filesystem"),
            "{job}"
        );
        assert_success(&world.run(&["retry", "3"]).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_resumes_by_itself_once_space_is_freed() {
    let sim = support::sim(SimConfig {
        default_file_size: 40 * MIB,
        ..SimConfig::default()
    })
    .await;
    let mut world = World::new().with_sim(&sim);
    let Some(disk) = SmallDisk::mount(&world.dir.path().join("small"), 128) else {
        return;
    };
    world.out = disk.path.join("archive");
    leave_free(&disk, 28 * MIB);
    std::fs::write(&world.config, "probe_interval_secs = 1\n").unwrap();
    assert_success(&world.run(&["enqueue", "6"]).await);
    let child = world
        .command()
        .args(["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let q = Queue::open(&DbLocation(world.db.to_string_lossy().into_owned()))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while q.get(6).await.unwrap().and_then(|j| j.last_error).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no disk-full pause recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::remove_file(disk.path.join("filler")).unwrap();
    while q.get(6).await.unwrap().map(|j| j.state) != Some(JobState::Done) {
        assert!(
            std::time::Instant::now() < deadline,
            "did not resume after space was freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_success(&out);
    assert_verified(&world, &sim, &world.job(6).await);
}
