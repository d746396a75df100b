//! The bucket archive (`--out s3://BUCKET/PREFIX`) through the real binary,
//! the simulator and a real S3-compatible store (SeaweedFS, see
//! `s3_store.rs`): files go up whole and verified, `verify` reads them back
//! and repairs what changed, a kill during an upload leaves no parts, a
//! store that goes away makes jobs wait, and bad credentials stop the pool
//! with a clear message and no secret printed.

use std::time::{Duration, Instant};

use minimax_sim::SimConfig;
use serde_json::Value;

use crate::s3_store::{S3Store, SECRET_KEY, WRITER_ACCESS_KEY, WRITER_SECRET_KEY};
use crate::support::{
    self, World, assert_exit, assert_success, enqueue, finish, ids, signal, spawn, stderr, stdout,
    wait_for,
};

const BUCKET: &str = "videos";

async fn store_with_bucket() -> Option<S3Store> {
    let store = S3Store::start().await?;
    store.create_bucket(BUCKET).await;
    Some(store)
}

/// A done job's object: in the bucket under the prefix, with the
/// simulator's bytes (read back through S3).
async fn assert_object(store: &S3Store, sim: &minimax_sim::Simulator, job: &Value) {
    assert_object_in(store, BUCKET, sim, job).await;
}

/// [`assert_object`] in `bucket`.
async fn assert_object_in(
    store: &S3Store,
    bucket: &str,
    sim: &minimax_sim::Simulator,
    job: &Value,
) {
    let id = job["file_id"].as_i64().unwrap();
    assert_eq!(job["state"], "done", "{job}");
    let url = job["path"].as_str().expect("a done job has a place");
    let key = url
        .strip_prefix(&format!("s3://{bucket}/"))
        .unwrap_or_else(|| panic!("{url} is not in s3://{bucket}/"));
    let (status, body) = store
        .request("GET", &format!("/{bucket}/{key}"), "", b"")
        .await;
    assert_eq!(status, 200, "GET {url}");
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    assert_eq!(digest, sim.expected_sha256(id), "bytes of {url}");
    assert_eq!(job["sha256"].as_str(), Some(digest.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_files_go_up_verify_reads_them_back_and_requeue_repairs_a_changed_one() {
    let Some(store) = store_with_bucket().await else {
        return;
    };
    let sim = support::sim(SimConfig {
        default_file_size: 32 * 1024,
        ..SimConfig::default()
    })
    .await;
    let world = store.world(World::new().with_sim(&sim), BUCKET, "mm/2026");
    enqueue(&world, &ids(1..=200)).await;
    let out = world
        .run(&["run", "--exit-when-idle", "--concurrency", "8"])
        .await;
    assert_success(&out);
    let jobs = world.jobs().await;
    assert_eq!(jobs.len(), 200);
    for job in &jobs {
        assert_object(&store, &sim, job).await;
    }
    let mut keys = store.keys(BUCKET, "mm/2026/").await;
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 200, "one object a file: {keys:?}");
    assert!(store.open_uploads(BUCKET).await.is_empty());
    // The staging directory keeps nothing once the files are up.
    let staged = support::files_under(&world.dir.path().join("staging"));
    assert!(staged.is_empty(), "left in staging: {staged:?}");

    let out = world.run(&["verify", "--all"]).await;
    assert_success(&out);
    assert!(
        stderr(&out).contains("200 files: 200 ok"),
        "{}",
        stderr(&out)
    );
    let out = world.run(&["verify", "--all", "--quick"]).await;
    assert_success(&out);

    // An object changed behind our back: verify finds it, --requeue and a
    // run put the right bytes back under the same key.
    let url = jobs[7]["path"].as_str().unwrap().to_string();
    let key = url.strip_prefix(&format!("s3://{BUCKET}/")).unwrap();
    let (status, _) = store
        .request("PUT", &format!("/{BUCKET}/{key}"), "", b"not the video")
        .await;
    assert_eq!(status, 200);
    let out = world.run(&["verify", "--all"]).await;
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("changed"), "{}", stdout(&out));
    assert!(stdout(&out).contains(&url), "{}", stdout(&out));
    let out = world.run(&["verify", "--all", "--quick"]).await;
    assert_exit(&out, 1);
    let out = world.run(&["verify", "--all", "--requeue"]).await;
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("[requeued]"), "{}", stdout(&out));
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    let out = world.run(&["verify", "--all"]).await;
    assert_success(&out);
    let id = jobs[7]["file_id"].as_i64().unwrap();
    let job = world.job(id).await;
    assert_eq!(job["path"].as_str(), Some(url.as_str()), "same key");
    assert_object(&store, &sim, &job).await;
    // `export` names the objects.
    let out = world.run(&["export"]).await;
    assert_success(&out);
    assert_eq!(stdout(&out).matches("s3://videos/mm/2026/").count(), 200);
}

/// Sidecars go up as objects beside their files, and each object carries
/// the content type its name says (a video served from the bucket plays in
/// a browser). A subtitle file is in the test because the store would not
/// type it by itself (it does `.mp4` and `.json` from its own table).
#[tokio::test(flavor = "multi_thread")]
async fn sidecars_go_up_beside_their_files_and_objects_carry_their_content_types() {
    let Some(store) = store_with_bucket().await else {
        return;
    };
    let sim = support::sim(SimConfig {
        default_file_size: 64 * 1024,
        faults: minimax_sim::Faults {
            filenames: [(3, "captions.srt".to_string())].into(),
            ..minimax_sim::Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = store.world(World::new().with_sim(&sim), BUCKET, "typed");
    std::fs::write(&world.config, "sidecar = true\n").expect("write config");
    enqueue(&world, &ids(1..=3)).await;
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    let mut keys = store.keys(BUCKET, "typed/").await;
    keys.sort();
    assert_eq!(keys.len(), 6, "three files and their sidecars: {keys:?}");
    for job in world.jobs().await {
        assert_object(&store, &sim, &job).await;
        let url = job["path"].as_str().unwrap();
        let key = url.strip_prefix("s3://videos/").unwrap().to_string();
        let expected = if key.ends_with(".srt") {
            "application/x-subrip"
        } else {
            "video/mp4"
        };
        let (content_type, _) = store.get_typed(BUCKET, &key).await;
        assert_eq!(content_type.as_deref(), Some(expected), "{key}");
        let (content_type, body) = store.get_typed(BUCKET, &format!("{key}.json")).await;
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{key}.json"
        );
        let sidecar: Value = serde_json::from_slice(&body).expect("the sidecar is JSON");
        assert_eq!(sidecar["file_id"], job["file_id"], "{sidecar}");
        assert_eq!(sidecar["sha256"], job["sha256"], "{sidecar}");
    }
    assert!(keys.iter().any(|k| k.ends_with("captions.srt")), "{keys:?}");
}

/// Peak resident memory of a running process, from /proc (kB).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_300_mb_file_goes_up_in_parts_in_bounded_memory() {
    let Some(store) = store_with_bucket().await else {
        return;
    };
    let size = 300 * 1024 * 1024;
    let sim = support::sim(SimConfig {
        default_file_size: size,
        ..SimConfig::default()
    })
    .await;
    let world = store.world(World::new().with_sim(&sim), BUCKET, "big");
    enqueue(&world, &ids(1..=1)).await;
    let child = spawn(&world, &["run", "--exit-when-idle"]);
    let pid = child.id().unwrap();
    let mut peak = 0;
    let watch = async {
        while let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (out, ()) = tokio::join!(finish(child, Duration::from_secs(600)), watch);
    assert_success(&out);
    let job = world.job(1).await;
    assert_object(&store, &sim, &job).await;
    assert!(
        support::event_kinds(&job).iter().any(|k| k == "upload"),
        "a multipart upload was recorded: {job}"
    );
    assert!(store.open_uploads(BUCKET).await.is_empty());
    eprintln!("peak RSS of a 300 MiB download and upload: {} KiB", peak);
    assert!(peak > 0, "the process was watched");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB is over 64 MiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_during_an_upload_leaves_one_complete_object_and_no_open_upload() {
    let Some(store) = store_with_bucket().await else {
        return;
    };
    let sim = support::sim(SimConfig {
        default_file_size: 96 * 1024 * 1024,
        ..SimConfig::default()
    })
    .await;
    let world = store.world(World::new().with_sim(&sim), BUCKET, "");
    enqueue(&world, &ids(1..=1)).await;
    let q = support::queue(&world).await;
    let child = spawn(&world, &["run", "--exit-when-idle"]);
    let pid = child.id().unwrap();
    // The multipart upload is recorded before its first part goes up.
    wait_for(
        Duration::from_secs(300),
        "a multipart upload to start",
        || async { q.upload(1).await.unwrap().and_then(|u| u.upload_id) },
    )
    .await;
    signal(pid, "-KILL");
    let _ = finish(child, Duration::from_secs(30)).await;
    let open = store.open_uploads(BUCKET).await;
    let keys = store.keys(BUCKET, "").await;
    assert!(
        !keys.iter().any(|k| !k.ends_with(".json")),
        "nothing under a final key before the upload completes: {keys:?} (open uploads {open:?})"
    );
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    let job = world.job(1).await;
    assert_object(&store, &sim, &job).await;
    assert_eq!(store.keys(BUCKET, "").await.len(), 1);
    let open = store.open_uploads(BUCKET).await;
    assert!(open.is_empty(), "multipart uploads left open: {open:?}");
    let history = job.to_string();
    assert!(history.contains("uploaded to s3://videos/"), "{history}");
}

/// A crash between the upload and its HEAD: the next attempt finds the
/// object complete with this digest (the upload was recorded before the
/// first byte went up, so it looks) and does not send it again. A first
/// attempt, with no upload recorded, sends without that HEAD.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_upload_costs_the_next_attempt_one_head_not_the_upload() {
    let Some(store) = store_with_bucket().await else {
        return;
    };
    let sim = support::sim(support::small_files()).await;
    let world = store.world(World::new().with_sim(&sim), BUCKET, "crash");
    enqueue(&world, &ids(1..=1)).await;
    let crashed = world
        .command()
        .env("MINIMAX_DL_CRASH_AT", "after-upload")
        .args(["run", "--exit-when-idle"])
        .output()
        .await
        .expect("run minimax-dl");
    assert!(
        stderr(&crashed).contains("crashing at after-upload"),
        "the crash point did not fire: {}",
        stderr(&crashed)
    );
    assert!(
        !stderr(&crashed).contains("not sent again"),
        "{}",
        stderr(&crashed)
    );
    assert_eq!(store.keys(BUCKET, "crash/").await.len(), 1);
    let out = world.run(&["run", "--exit-when-idle"]).await;
    assert_success(&out);
    assert!(
        stderr(&out).contains("already in the bucket with this digest; not sent again"),
        "{}",
        stderr(&out)
    );
    let job = world.job(1).await;
    assert_object(&store, &sim, &job).await;
    assert_eq!(store.keys(BUCKET, "crash/").await.len(), 1);
}

/// A job's verified file goes up in the upload stage, not in its download
/// slot: with one slot, the second job is claimed and downloaded while the
/// first one's upload is still under way. The store is frozen, so no
/// upload can end before both jobs have recorded theirs (the record comes
/// after the download, the verification and the entry into the stage).
#[tokio::test(flavor = "multi_thread")]
async fn with_one_download_slot_the_next_file_downloads_while_the_first_uploads() {
    let Some(store) = store_with_bucket().await else {
        return;
    };
    let sim = support::sim(support::small_files()).await;
    let world = store.world(World::new().with_sim(&sim), BUCKET, "stage");
    std::fs::write(&world.config, "probe_interval_secs = 1\n").unwrap();
    enqueue(&world, &ids(1..=2)).await;
    let q = support::queue(&world).await;
    store.freeze();
    let child = spawn(&world, &["run", "--exit-when-idle", "--concurrency", "1"]);
    wait_for(
        Duration::from_secs(60),
        "both jobs uploading at once with one download slot",
        || async {
            let first = q.upload(1).await.unwrap();
            let second = q.upload(2).await.unwrap();
            (first.is_some() && second.is_some()).then_some(())
        },
    )
    .await;
    let during = q.status().await.unwrap();
    assert_eq!(during.done, 0, "no upload ended while the store was frozen");
    store.thaw();
    let out = finish(child, Duration::from_secs(120)).await;
    assert_success(&out);
    for job in &world.jobs().await {
        assert_object(&store, &sim, job).await;
    }
    assert_eq!(store.keys(BUCKET, "stage/").await.len(), 2);
}

/// A bucket archive's staging copy is not fsynced after its download (it
/// only waits to be read back for its upload), so a power cut may leave it
/// wrong under the digest recorded for it. The next run, on another boot,
/// hashes it before sending anything, finds it changed, and downloads the
/// file again: the object gets the right bytes, never what was on disk.
#[tokio::test(flavor = "multi_thread")]
async fn a_staging_copy_spoiled_by_a_power_cut_is_downloaded_again_not_uploaded() {
    let Some(store) = store_with_bucket().await else {
        return;
    };
    let sim = support::sim(support::small_files()).await;
    let world = World::new();
    let boot_id = world.path("boot_id");
    std::fs::write(&boot_id, "boot-one\n").unwrap();
    let world = store
        .world(world.with_sim(&sim), BUCKET, "power")
        .env("MINIMAX_DL_BOOT_ID_FILE", boot_id.to_str().unwrap());
    enqueue(&world, &ids(1..=1)).await;
    let crashed = world
        .command()
        .env("MINIMAX_DL_CRASH_AT", "after-verified")
        .args(["run", "--exit-when-idle"])
        .output()
        .await
        .expect("run minimax-dl");
    assert!(
        stderr(&crashed).contains("crashing at after-verified"),
        "the crash point did not fire: {}",
        stderr(&crashed)
    );
    let staged = support::files_under(&world.dir.path().join("staging"));
    assert_eq!(staged.len(), 1, "the verified copy waits: {staged:?}");
    // What a power cut leaves of pages never written back: zeros.
    let len = std::fs::metadata(&staged[0]).unwrap().len();
    std::fs::write(&staged[0], vec![0u8; len as usize]).unwrap();
    std::fs::write(&boot_id, "boot-two\n").unwrap();
    let out = world.run(&["run", "--exit-when-idle"]).await;
    assert_success(&out);
    let job = world.job(1).await;
    assert!(
        job.to_string().contains("downloading again"),
        "the history says why: {job}"
    );
    assert_object(&store, &sim, &job).await;
    assert_eq!(store.keys(BUCKET, "power/").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_goes_away_makes_jobs_wait_and_the_batch_ends_when_it_returns() {
    let Some(mut store) = store_with_bucket().await else {
        return;
    };
    let sim = support::throttled_sim(256 * 1024, 2 * 1024 * 1024).await;
    let world = store.world(World::new().with_sim(&sim), BUCKET, "");
    std::fs::write(&world.config, "probe_interval_secs = 1\nmax_attempts = 2\n").unwrap();
    enqueue(&world, &ids(1..=30)).await;
    let child = spawn(&world, &["run", "--exit-when-idle", "--concurrency", "2"]);
    let q = support::queue(&world).await;
    wait_for(Duration::from_secs(120), "a few files up", || async {
        (q.status().await.unwrap().done >= 3).then_some(())
    })
    .await;
    store.stop();
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = q.status().await.unwrap();
    assert_eq!(during.failed, 0, "nothing failed while the store was away");
    assert!(
        during.done < 30,
        "the store was away before the batch ended"
    );
    store.run().await;
    let out = finish(child, Duration::from_secs(300)).await;
    assert_success(&out);
    let log = stderr(&out);
    assert!(
        log.contains("did not answer"),
        "the log says the store did not answer: {log}"
    );
    let jobs = world.jobs().await;
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:?}");
    for job in &jobs {
        assert_object(&store, &sim, job).await;
    }
    eprintln!("store away for {:?}", stopped.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_stop_the_batch_naming_the_store_and_never_print_the_secret() {
    let Some(store) = store_with_bucket().await else {
        return;
    };
    let sim = support::sim(support::small_files()).await;
    let wrong_secret = "wrong-secret-b6f1e0c2a9";
    let world = store
        .world(World::new().with_sim(&sim), BUCKET, "")
        .env("AWS_SECRET_ACCESS_KEY", wrong_secret);
    enqueue(&world, &ids(1..=3)).await;
    let out = world.run(&["run", "--exit-when-idle"]).await;
    assert_exit(&out, 4);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        text.contains(&format!("s3://{BUCKET} at {}", store.endpoint())),
        "{text}"
    );
    assert!(
        !text.contains(wrong_secret),
        "the secret was printed: {text}"
    );
    assert!(!text.contains(SECRET_KEY), "{text}");
    let status = world.status().await;
    assert_eq!(
        status["jobs"]["failed"]
            .as_u64()
            .or(status["failed"].as_u64()),
        Some(0),
        "{status}"
    );
}

/// `verify` against a store that refuses the credentials says so once,
/// naming the store, instead of calling every object unreadable.
#[tokio::test(flavor = "multi_thread")]
async fn verify_with_bad_credentials_says_so_once_instead_of_calling_every_object_unreadable() {
    let Some(store) = store_with_bucket().await else {
        return;
    };
    let sim = support::sim(support::small_files()).await;
    let mut world = store.world(World::new().with_sim(&sim), BUCKET, "");
    enqueue(&world, &ids(1..=3)).await;
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    let wrong_secret = "wrong-secret-5c0d9e41";
    world
        .extra_env
        .push(("AWS_SECRET_ACCESS_KEY".into(), wrong_secret.into()));
    let out = world.run(&["verify", "--all", "--quick"]).await;
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("cannot verify the archive"), "{text}");
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        text.contains(&format!("s3://{BUCKET} at {}", store.endpoint())),
        "{text}"
    );
    assert!(!text.contains("unreadable"), "{text}");
    assert!(
        !text.contains(wrong_secret),
        "the secret was printed: {text}"
    );
}

/// A missing bucket is a storage-level stop like a full disk: a daemon
/// keeps its jobs queued and fails none, says why naming the store
/// (`status` from another process, `/readyz`, the dashboard), probes, and
/// archives everything once the bucket is made. The identity may not make
/// buckets (SeaweedFS makes a missing one on the first write of one that
/// may), and the store answers its writes into the missing bucket with
/// AccessDenied: the message must still say the bucket is missing.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_makes_a_daemon_wait_saying_why_until_the_bucket_is_made() {
    let Some(store) = S3Store::start().await else {
        return;
    };
    const MISSING: &str = "made-later";
    let sim = support::sim(support::small_files()).await;
    let world = store
        .world(World::new().with_sim(&sim), MISSING, "mm")
        .env("AWS_ACCESS_KEY_ID", WRITER_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", WRITER_SECRET_KEY);
    std::fs::write(&world.config, "probe_interval_secs = 1\n").unwrap();
    enqueue(&world, &ids(1..=6)).await;
    let daemon = support::run_listening(&world, &[]).await;
    let store_name = format!("s3://{MISSING}/mm at {}", store.endpoint());
    let why = format!("{store_name} has no such bucket");

    let client = support::http();
    let last = std::sync::Mutex::new(String::new());
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(answer) = client.get(daemon.url("/readyz")).send().await
                && let Ok(body) = answer.text().await
            {
                if body.contains(&why) {
                    return body;
                }
                *last.lock().unwrap() = body;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let ready = waited.unwrap_or_else(|_| {
        panic!(
            "/readyz did not say {why:?} in 60 s: {}\nthe daemon's log:\n{}",
            last.lock().unwrap(),
            daemon.log.lock().unwrap()
        )
    });
    assert!(ready.contains("\"ready\":false"), "{ready}");
    let state = daemon.text("/api/state").await;
    assert!(state.contains(&why), "dashboard state: {state}");
    let shown = wait_for(Duration::from_secs(60), "status to say why", || async {
        let status = world.status().await;
        let stopped = status["archive_stopped"].as_array().cloned()?;
        stopped.into_iter().next()
    })
    .await;
    assert!(
        shown["message"].as_str().is_some_and(|m| m.contains(&why)),
        "{shown}"
    );
    let text = stdout(&world.run(&["status"]).await);
    let line = text
        .lines()
        .find(|l| l.starts_with("no archive"))
        .unwrap_or_else(|| panic!("no 'no archive' line:\n{text}"));
    assert!(
        line.contains(&why) && line.contains("resumes by itself"),
        "{line}"
    );
    // Several probes later, still nothing failed or done.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = world.status().await;
    assert_eq!(
        (&status["queued"], &status["failed"], &status["done"]),
        (
            &serde_json::json!(6),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "{status}"
    );

    store.create_bucket(MISSING).await;
    let q = support::queue(&world).await;
    wait_for(Duration::from_secs(120), "every file archived", || async {
        (q.status().await.unwrap().done == 6).then_some(())
    })
    .await;
    for job in &world.jobs().await {
        assert_object_in(&store, MISSING, &sim, job).await;
    }
    assert_eq!(
        store.keys(MISSING, "mm/").await.len(),
        6,
        "one object a file"
    );
    let status = world.status().await;
    assert_eq!(status["archive_stopped"], serde_json::json!([]), "{status}");
    assert_eq!(daemon.stop().await.code(), Some(0));
}

/// Three daemons on one PostgreSQL queue (as on three hosts, each with a
/// staging directory of its own) fill one bucket: every file exactly once,
/// with the simulator's bytes.
#[tokio::test(flavor = "multi_thread")]
async fn three_daemons_on_one_postgres_queue_fill_one_bucket_with_every_file_once() {
    let Some(db) = support::PgTestDb::create().await else {
        return;
    };
    let Some(store) = store_with_bucket().await else {
        return;
    };
    const FILES: i64 = 120;
    let sim = support::sim(SimConfig {
        default_file_size: 48 * 1024,
        ..SimConfig::default()
    })
    .await;
    let world = store.world(
        World::new().on_database(&db.url).with_sim(&sim),
        BUCKET,
        "fleet",
    );
    enqueue(&world, &ids(1..=FILES)).await;
    let hosts: Vec<_> = (0..3)
        .map(|n| {
            let staging = world.path(&format!("staging-{n}"));
            world
                .command()
                .env("MINIMAX_DL_STAGING_DIR", &staging)
                .args(["run", "--exit-when-idle", "--concurrency", "4"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn minimax-dl")
        })
        .collect();
    for host in hosts {
        assert_success(&finish(host, Duration::from_secs(300)).await);
    }
    let jobs = world.jobs().await;
    assert_eq!(jobs.len(), FILES as usize);
    for job in &jobs {
        assert_object(&store, &sim, job).await;
    }
    let keys = store.keys(BUCKET, "fleet/").await;
    let unique: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(keys.len(), FILES as usize, "{keys:?}");
    assert_eq!(unique.len(), FILES as usize);
    assert!(store.open_uploads(BUCKET).await.is_empty());
}

/// The bucket's secret key (the right one, and a wrong one) never reaches
/// an output at trace level, the queue database or the staging directory:
/// a good run, a run with a wrong secret, `verify`, `export`, `show`.
#[tokio::test(flavor = "multi_thread")]
async fn no_bucket_secret_reaches_any_output_or_the_database() {
    let Some(store) = store_with_bucket().await else {
        return;
    };
    let sim = support::sim(support::small_files()).await;
    let world = store
        .world(World::new().with_sim(&sim), BUCKET, "secret")
        .env("MINIMAX_DL_LOG", "trace");
    enqueue(&world, &ids(1..=4)).await;
    let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
    let mut keep = |what: &str, out: &std::process::Output| {
        seen.push((format!("{what}: stdout"), out.stdout.clone()));
        seen.push((format!("{what}: stderr"), out.stderr.clone()));
    };
    let out = world.run(&["run", "--exit-when-idle"]).await;
    assert_success(&out);
    keep("run", &out);
    for args in [
        &["verify", "--all"][..],
        &["export"][..],
        &["show", "1"][..],
        &["status"][..],
    ] {
        let out = world.run(args).await;
        assert_success(&out);
        keep(args[0], &out);
    }
    let wrong = "wrong-secret-never-shown-1d2f";
    let bad = store
        .world(World::new().with_sim(&sim), BUCKET, "secret")
        .env("MINIMAX_DL_LOG", "trace")
        .env("AWS_SECRET_ACCESS_KEY", wrong);
    enqueue(&bad, &ids(1..=1)).await;
    let out = bad.run(&["run", "--exit-when-idle"]).await;
    assert_exit(&out, 4);
    keep("run with a wrong secret", &out);
    for w in [&world, &bad] {
        for path in support::files_under(w.dir.path()) {
            if let Ok(bytes) = std::fs::read(&path) {
                seen.push((path.display().to_string(), bytes));
            }
        }
    }
    let leaks: Vec<&String> = seen
        .iter()
        .filter(|(_, bytes)| {
            [SECRET_KEY, wrong]
                .iter()
                .any(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()))
        })
        .map(|(what, _)| what)
        .collect();
    assert!(
        leaks.is_empty(),
        "the bucket's secret key leaked into {leaks:?}"
    );
}
