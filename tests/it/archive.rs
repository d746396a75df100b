//! The archive side, through the real binary and the simulator: naming
//! templates with hostile values and collisions, sidecars, `export`,
//! `verify` (and `--requeue` repairing what it found), `prune` while `run`
//! works.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use minimax_dl::queue::testing::{JobPatch, patch_job};
use minimax_dl::queue::{DbLocation, JobState, Queue};
use minimax_sim::{Faults, SimConfig, Simulator};
use serde_json::Value;

use crate::support::{
    self, World, assert_exit, assert_success, assert_verified, enqueue, files_under, finish, ids,
    sha256_of, spawn, stdout,
};

async fn run_idle(world: &World) {
    assert_success(
        &world
            .run(&["run", "--exit-when-idle", "--concurrency", "4"])
            .await,
    );
}

fn config(world: &World, text: &str) {
    std::fs::write(&world.config, text).expect("write config");
}

fn sidecar_of(path: &Path) -> Value {
    let mut name = path.as_os_str().to_os_string();
    name.push(".json");
    let text = std::fs::read_to_string(PathBuf::from(name)).expect("a sidecar beside the file");
    serde_json::from_str(&text).expect("the sidecar is JSON")
}

async fn sim_with_names(names: &HashMap<i64, String>) -> Simulator {
    support::sim(SimConfig {
        faults: Faults {
            filenames: names.clone(),
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await
}

// ---------------------------------------------------------------------------
// Templates, collisions, sidecars
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_and_colliding_names_never_leave_the_archive_or_overwrite() {
    let names: Vec<&str> = vec![
        "same.mp4",
        "same.mp4",
        "same.mp4",
        "../same.mp4",
        "../../etc/passwd",
        "..",
        ".",
        ".hidden",
        "a/b/c.mp4",
        "nul\0byte.mp4",
        "line\nbreak.mp4",
        "evil\u{202e}4pm.exe",
        "taken.mp4",
        "same.mp4.json",
    ];
    let long = format!("{}.mp4", "語".repeat(200));
    let mut by_id: HashMap<i64, String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (i as i64 + 1, n.to_string()))
        .collect();
    by_id.insert(by_id.len() as i64 + 1, long);
    let n = by_id.len() as i64;
    let sim = sim_with_names(&by_id).await;
    let world = World::new().with_sim(&sim);
    config(
        &world,
        "path_template = \"{purpose}/{created:%Y/%m}/{task_id}/{filename}\"\nsidecar = true\n",
    );
    let dir = world.out.join("video_generation/2023/11/notask");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("taken.mp4"), b"a user's own file").unwrap();

    enqueue(&world, &ids(1..=n)).await;
    run_idle(&world).await;

    let mut paths = HashSet::new();
    for id in 1..=n {
        let job = world.job(id).await;
        assert_verified(&world, &sim, &job);
        let path = PathBuf::from(job["path"].as_str().unwrap());
        assert_eq!(path.parent(), Some(dir.as_path()), "{id}: {path:?}");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(!name.starts_with('.') && name.len() + 5 <= 255, "{name:?}");
        assert!(!name.chars().any(char::is_control), "{name:?}");
        assert!(paths.insert(path.clone()), "{path:?} given twice");
        let sidecar = sidecar_of(&path);
        assert_eq!(sidecar["file_id"], id);
        assert_eq!(sidecar["sha256"], job["sha256"]);
        assert_eq!(
            sidecar["file"]["filename"].as_str(),
            Some(by_id[&id].as_str())
        );
        assert!(sidecar["file"].get("download_url").is_none(), "{sidecar}");
    }
    // The colliding names ("../same.mp4" is sanitised to one of them): at
    // most one has the plain name, the others their own id added.
    let mut plain = 0;
    for id in 1..=4 {
        let name = world.job(id).await["path"].as_str().unwrap().to_string();
        plain += usize::from(name.ends_with("/same.mp4"));
        assert!(
            name.ends_with("/same.mp4") || name.ends_with(&format!("/same-{id}.mp4")),
            "{name}"
        );
    }
    assert!(plain <= 1);
    // The user's file is untouched; its namesake moved aside.
    assert_eq!(
        std::fs::read(dir.join("taken.mp4")).unwrap(),
        b"a user's own file"
    );
    assert!(paths.contains(&dir.join("taken-13.mp4")), "{paths:?}");
    // Nothing else in the archive: no reservation marker, no stray file.
    for file in files_under(&world.out) {
        let text = file.to_string_lossy().into_owned();
        let owner = PathBuf::from(text.strip_suffix(".json").unwrap_or(&text));
        assert!(
            paths.contains(&file) || paths.contains(&owner) || file == dir.join("taken.mp4"),
            "unexpected {file:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_names_are_kept_and_sidecars_say_where_the_size_came_from() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    config(&world, "sidecar = true\n");
    enqueue(&world, &ids(1..=2)).await;
    run_idle(&world).await;
    for id in 1..=2 {
        let job = world.job(id).await;
        let path = world.out.join(format!("{id}-output_aigc.mp4"));
        assert_eq!(job["path"].as_str(), Some(path.to_str().unwrap()));
        let sidecar = sidecar_of(&path);
        assert_eq!(sidecar["size"], 64 * 1024);
        assert_eq!(sidecar["size_source"], "cdn");
        assert_eq!(sidecar["task_id"], Value::Null);
        assert_eq!(sidecar["file"]["purpose"], "video_generation");
        assert_eq!(sidecar["minimax_dl_version"], env!("CARGO_PKG_VERSION"));
        assert!(sidecar["downloaded_at"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_template_is_a_config_error_naming_the_key() {
    let world = World::new();
    config(&world, "path_template = \"{filename}/../x\"\n");
    let out = world.run(&["status"]).await;
    assert_exit(&out, 2);
    let err = support::stderr(&out);
    assert!(err.contains("path_template") && err.contains(".."), "{err}");
}

/// A crash at each step of placing leaves what the next run finishes: the
/// file at the path first chosen, its sidecar beside it, a user's file of
/// the same name untouched, no marker left behind, nothing downloaded twice
/// once the digest is recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_while_placing_is_finished_by_the_next_run() {
    for point in ["after-reserve", "after-verified", "after-rename"] {
        let sim = support::sim(support::small_files()).await;
        let world = World::new().with_sim(&sim);
        config(&world, "path_template = \"{filename}\"\nsidecar = true\n");
        std::fs::create_dir_all(&world.out).unwrap();
        let user_file = world.out.join("output_aigc.mp4");
        std::fs::write(&user_file, b"mine").unwrap();
        let crashed = world
            .command()
            .env("MINIMAX_DL_CRASH_AT", point)
            .args(["fetch", "42"])
            .output()
            .await
            .unwrap();
        assert!(!crashed.status.success(), "{point}: the hook aborts");
        let expected = world.out.join("output_aigc-42.mp4");
        assert!(expected.exists(), "{point}: the name is held");

        run_idle(&world).await;
        let job = world.job(42).await;
        assert_verified(&world, &sim, &job);
        assert_eq!(
            job["path"].as_str(),
            Some(expected.to_str().unwrap()),
            "{point}"
        );
        assert_eq!(sidecar_of(&expected)["sha256"], job["sha256"], "{point}");
        assert_eq!(std::fs::read(&user_file).unwrap(), b"mine");
        let left: HashSet<PathBuf> = files_under(&world.out).into_iter().collect();
        let sidecar = PathBuf::from(format!("{}.json", expected.display()));
        let wanted = HashSet::from([user_file.clone(), expected.clone(), sidecar]);
        assert_eq!(left, wanted, "{point}");
        if point != "after-reserve" {
            assert_eq!(
                sim.stats().cdn_bytes_sent,
                64 * 1024,
                "{point}: downloaded once"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// export
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn export_streams_every_job_as_jsonl_or_csv() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=3)).await;
    run_idle(&world).await;
    let list = world.path("ids.txt");
    let more: String = (4..=100_003).map(|i| format!("{i}\n")).collect();
    std::fs::write(&list, more).unwrap();
    assert_success(
        &world
            .run(&["enqueue", "--from", list.to_str().unwrap()])
            .await,
    );

    let out = world.run(&["export"]).await;
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 100_003);
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    let job = world.job(1).await;
    assert_eq!(first["file_id"], 1);
    assert_eq!(first["state"], "done");
    assert_eq!(first["path"], job["path"]);
    assert_eq!(first["sha256"], job["sha256"]);
    assert_eq!(first["size"], 64 * 1024);
    assert!(first["done_at"].is_string() && first["enqueued_at"].is_string());
    let last: Value = serde_json::from_str(lines[100_002]).unwrap();
    assert_eq!(
        (last["file_id"].as_i64(), last["state"].as_str()),
        (Some(100_003), Some("queued"))
    );
    assert_eq!(last["path"], Value::Null);

    let out = world
        .run(&["export", "--format", "csv", "--state", "done"])
        .await;
    assert_success(&out);
    let text = stdout(&out);
    let rows: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert_eq!(
        rows[0],
        "file_id,task_id,state,path,size,size_source,sha256,enqueued_at,done_at"
    );
    let cells: Vec<&str> = rows[1].split(',').collect();
    assert_eq!(cells[0], "1");
    assert_eq!(cells[3], job["path"].as_str().unwrap());
    assert_eq!(cells[6], job["sha256"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn export_into_a_closed_pipe_ends_quietly() {
    let world = World::new();
    let list = world.path("ids.txt");
    std::fs::write(
        &list,
        (1..=50_000).map(|i| format!("{i}\n")).collect::<String>(),
    )
    .unwrap();
    assert_success(
        &world
            .run(&["enqueue", "--from", list.to_str().unwrap()])
            .await,
    );
    let mut child = spawn(&world, &["export"]);
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    tokio::io::AsyncReadExt::read_exact(&mut out, &mut first)
        .await
        .unwrap();
    drop(out);
    let done = finish(child, Duration::from_secs(60)).await;
    assert_success(&done);
    assert!(
        support::stderr(&done).is_empty(),
        "{}",
        support::stderr(&done)
    );
}

// ---------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------

fn verify_lines(out: &std::process::Output) -> HashMap<i64, String> {
    stdout(out)
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let label = words.next().unwrap().to_string();
            let id = words.next().unwrap().parse().unwrap();
            (id, label)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_truncated_and_missing_files_and_requeue_repairs_them() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    enqueue(&world, &ids(1..=4)).await;
    run_idle(&world).await;

    let out = world.run(&["verify", "--all"]).await;
    assert_success(&out);
    assert_eq!(
        verify_lines(&out).values().filter(|l| *l == "ok").count(),
        4
    );

    let path = |id: i64| world.out.join(format!("{id}-output_aigc.mp4"));
    let truncated = std::fs::OpenOptions::new()
        .write(true)
        .open(path(2))
        .unwrap();
    truncated.set_len(1000).unwrap();
    drop(truncated);
    std::fs::remove_file(path(3)).unwrap();
    let mut flipped = std::fs::read(path(4)).unwrap();
    flipped[7] ^= 1;
    std::fs::write(path(4), &flipped).unwrap();

    let out = world.run(&["verify", "--all"]).await;
    assert_exit(&out, 1);
    let found = verify_lines(&out);
    assert_eq!(found[&1], "ok");
    assert_eq!(found[&2], "changed");
    assert_eq!(found[&3], "missing");
    assert_eq!(found[&4], "changed");
    assert!(support::stderr(&out).contains("4 files: 1 ok, 1 missing, 2 changed"));
    // Looking changed nothing.
    assert_eq!(std::fs::metadata(path(2)).unwrap().len(), 1000);
    assert_eq!(std::fs::read(path(4)).unwrap(), flipped);
    assert_eq!(world.status().await["done"], 4);

    // By id; an id that is not done is a usage error, the others are checked.
    enqueue(&world, &ids(9..=9)).await;
    let out = world.run(&["verify", "1", "3", "9", "77"]).await;
    assert_exit(&out, 2);
    assert_eq!(verify_lines(&out).len(), 2);

    let out = world.run(&["verify", "--all", "--requeue"]).await;
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("[requeued]"), "{}", stdout(&out));
    let status = world.status().await;
    assert_eq!(
        (status["done"].as_u64(), status["queued"].as_u64()),
        (Some(1), Some(4))
    );
    let job = world.job(3).await;
    assert!(
        job["last_error"].as_str().unwrap().contains("missing"),
        "{job}"
    );

    run_idle(&world).await;
    let out = world.run(&["verify", "--all"]).await;
    assert_success(&out);
    for id in 1..=4 {
        let job = world.job(id).await;
        assert_verified(&world, &sim, &job);
        assert_eq!(
            job["path"].as_str(),
            Some(path(id).to_str().unwrap()),
            "same place"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_file_is_replaced_where_it_is_with_a_template_that_may_collide() {
    let names: HashMap<i64, String> = [(1, "a.mp4"), (2, "a.mp4")]
        .into_iter()
        .map(|(i, n)| (i, n.to_string()))
        .collect();
    let sim = sim_with_names(&names).await;
    let world = World::new().with_sim(&sim);
    config(&world, "path_template = \"{filename}\"\nsidecar = true\n");
    enqueue(&world, &ids(1..=2)).await;
    run_idle(&world).await;
    let path_of = async |id: i64| PathBuf::from(world.job(id).await["path"].as_str().unwrap());
    let (one, two) = (path_of(1).await, path_of(2).await);
    assert_ne!(one, two);
    std::fs::write(&one, b"damaged").unwrap();
    std::fs::remove_file(&two).unwrap();
    let out = world.run(&["verify", "--all", "--requeue"]).await;
    assert_exit(&out, 1);
    run_idle(&world).await;
    assert_eq!(
        path_of(1).await,
        one,
        "the changed file was replaced in place"
    );
    assert_eq!(sha256_of(&one), sim.expected_sha256(1));
    assert_verified(&world, &sim, &world.job(2).await);
    assert_eq!(sidecar_of(&path_of(2).await)["file_id"], 2);
    assert_success(&world.run(&["verify", "--all"]).await);
}

// ---------------------------------------------------------------------------
// prune
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn prune_removes_done_rows_and_history_in_batches_while_run_works() {
    const OLD: i64 = 2_500;
    let sim = support::throttled_sim(1 << 20, 256 * 1024).await;
    let world = World::new().with_sim(&sim);
    let list = world.path("ids.txt");
    std::fs::write(
        &list,
        (1..=OLD).map(|i| format!("{i}\n")).collect::<String>(),
    )
    .unwrap();
    assert_success(
        &world
            .run(&["enqueue", "--from", list.to_str().unwrap()])
            .await,
    );
    // Done long ago, as far as the queue knows: staged, no download.
    let queue = Queue::open_for_workers(&DbLocation(world.location()))
        .await
        .unwrap();
    for id in 1..=OLD {
        let patch = JobPatch {
            state: Some(JobState::Done),
            placed: Some((format!("/elsewhere/{id}"), "00".repeat(32))),
            ..JobPatch::default()
        };
        assert!(patch_job(&queue, id, &patch).await.unwrap());
    }
    enqueue(&world, &ids(10_001..=10_006)).await;
    let run = spawn(&world, &["run", "--exit-when-idle", "--concurrency", "2"]);
    support::wait_for_checkpoint(&queue, 10_001, Duration::from_secs(30)).await;

    let out = world.run(&["prune", "--done-older-than", "0s"]).await;
    assert_success(&out);
    let said = stdout(&out);
    let pruned: u64 = said
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(pruned >= OLD as u64, "{said}");

    assert_success(&finish(run, Duration::from_secs(120)).await);
    for id in [1, OLD / 2, OLD] {
        assert!(queue.get(id).await.unwrap().is_none(), "{id} still there");
        assert!(queue.events(id).await.unwrap().is_empty());
    }
    // Every downloaded file is in the archive; those not pruned are done.
    for id in 10_001..=10_006 {
        let path = world.out.join(format!("{id}-output_aigc.mp4"));
        assert_eq!(sha256_of(&path), sim.expected_sha256(id));
        if let Some(job) = queue.get(id).await.unwrap() {
            assert_eq!(job.state, JobState::Done);
        }
    }
    let counts = queue.status().await.unwrap();
    assert_eq!(counts, queue.status_by_scan().await.unwrap());
    assert_eq!(counts.done + pruned, OLD as u64 + 6);
}
