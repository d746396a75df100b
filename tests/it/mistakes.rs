//! A mistake on one host never stalls the fleet, loses work or hangs
//! (issue 21, first table): a host without a key or with the wrong one, a
//! mistyped `--db`, an unknown scheme, a database that accepts and never
//! answers, an age without a unit, the demo given the same `--dir` twice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{
    self, PgTestDb, TEST_KEY, World, assert_exit, assert_success, finish, http, queue, signal,
    spawn, stderr, wait_for,
};

/// Every entry under `dir`, recursively, sorted: what a refused verb must
/// leave as it found it.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found.sort();
    found
}

async fn state_of(world: &World, id: i64) -> String {
    world.job(id).await["state"].as_str().unwrap().to_string()
}

/// A keyless `run` or `fetch` is this host's configuration error (exit 2,
/// the queue untouched), and a host with a wrong key pauses only its own
/// account: a good daemon on the same queue never stalls.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_without_a_key_or_with_a_wrong_one_never_stalls_a_good_daemon() {
    // One file a second, so the good daemon is still at work when the
    // others come.
    let sim = support::throttled_sim(64 * 1024, 64 * 1024).await;
    let world = World::new().with_sim(&sim);
    // A pause the good daemon obeyed would last an hour: the test would
    // time out instead of passing.
    std::fs::write(&world.config, "probe_interval_secs = 3600\n").unwrap();
    let ids: Vec<String> = (1..=6).map(|i| i.to_string()).collect();
    support::enqueue(&world, &ids).await;
    let good = spawn(&world, &["run", "--concurrency", "1"]);
    let q = queue(&world).await;
    wait_for(
        Duration::from_secs(60),
        "the good daemon's first file",
        || async { (q.status().await.unwrap().done >= 1).then_some(()) },
    )
    .await;

    let keyless = World {
        api: None,
        ..clone_world(&world)
    }
    .env("MINIMAX_API_BASE", &sim.api_base());
    for args in [&["run", "--exit-when-idle"][..], &["fetch", "9"]] {
        let out = keyless.run(args).await;
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("no API key"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(
        q.get(9).await.unwrap().is_none(),
        "a keyless fetch enqueued 9"
    );
    assert_eq!(q.fleet_state().await.unwrap().pause, None);
    // Before the queue is opened: a keyless run on a new path creates nothing.
    let mut fresh = clone_world(&keyless);
    fresh.db = world.path("fresh/queue.db");
    assert_exit(&fresh.run(&["run", "--exit-when-idle"]).await, 2);
    assert!(!world.path("fresh").exists());

    let wrong = World {
        api: Some((sim.api_base(), "not-the-key".to_string())),
        ..clone_world(&world)
    };
    let out = wrong.run(&["run", "--exit-when-idle"]).await;
    assert_exit(&out, 3);
    let pause = q.fleet_state().await.unwrap().pause;
    assert!(pause.is_some(), "the wrong key's account is paused");
    support::enqueue(&world, &["7".to_string(), "8".to_string()]).await;
    wait_for(
        Duration::from_secs(90),
        "the good daemon to finish every job",
        || async { (q.status().await.unwrap().done == 8).then_some(()) },
    )
    .await;
    for id in 1..=8 {
        assert_eq!(state_of(&world, id).await, "done", "job {id}");
    }
    signal(good.id().unwrap(), "-TERM");
    let out = finish(good, Duration::from_secs(60)).await;
    assert_success(&out);
    assert!(
        !stderr(&out).contains("the queue is paused"),
        "the good daemon obeyed another account's pause:\n{}",
        stderr(&out)
    );
}

/// Another `World` on the same database, archive and config.
fn clone_world(world: &World) -> World {
    World {
        dir: tempfile::tempdir().unwrap(),
        db: world.db.clone(),
        db_flag: world.db_flag,
        out: world.out.clone(),
        config: world.config.clone(),
        api: world.api.clone(),
        extra_env: world.extra_env.clone(),
        database: world.database.clone(),
    }
}

const NO_WORK_ADDED: &[&[&str]] = &[
    &["prune", "--done-older-than", "30d"],
    &["retry", "1"],
    &["retry", "--all-failed"],
    &["cancel", "1"],
    &["verify", "--all", "--requeue"],
];

#[tokio::test(flavor = "multi_thread")]
async fn verbs_that_add_no_work_never_create_a_queue() {
    let mut world = World::new();
    world.db = world.path("typo/qeue.db");
    for args in NO_WORK_ADDED {
        let out = world.run(args).await;
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("no queue at {}", world.db.display())),
            "{args:?}: {err}"
        );
        assert!(!world.path("typo").exists(), "{args:?} created a directory");
    }
    // An empty file is no queue either, and stays empty.
    world.db = world.path("empty.db");
    std::fs::write(&world.db, "").unwrap();
    for args in NO_WORK_ADDED {
        assert_exit(&world.run(args).await, 2);
        assert_eq!(std::fs::metadata(&world.db).unwrap().len(), 0, "{args:?}");
    }
    // The verbs that add work still create one.
    support::enqueue(&world, &["1".to_string()]).await;
    assert_success(&world.run(&["cancel", "1"]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn verbs_that_add_no_work_never_create_a_postgres_queue() {
    let Some(db) = PgTestDb::create().await else {
        return;
    };
    let world = World::new().on_database(&db.url);
    for args in NO_WORK_ADDED {
        let out = world.run(args).await;
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("no queue at"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(db.tables().await.is_empty(), "{args:?} created tables");
    }
    support::enqueue(&world, &["1".to_string()]).await;
    assert_success(&world.run(&["cancel", "1"]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_schemes_are_refused_and_nothing_is_created() {
    for location in [
        "postgress://u:sekrit@h/db",
        "mysql://u:sekrit@h/db",
        "https://example.com/q.db",
    ] {
        let world = World::new().on_database(location);
        let before = tree(world.dir.path());
        for args in [
            &["enqueue", "5"][..],
            &["status"],
            &["db", "copy", "--from", location, "--to", "x.db"],
        ] {
            let mut cmd = world.command();
            cmd.current_dir(world.dir.path()).args(args);
            let out = support::run_bounded(&mut cmd, Duration::from_secs(60)).await;
            assert_exit(&out, 2);
            let err = stderr(&out);
            assert!(
                err.contains("postgres://") && err.contains("sqlite:"),
                "{location} {args:?}: {err}"
            );
            assert!(
                !err.contains("sekrit"),
                "{location}: the password shown: {err}"
            );
            assert_eq!(
                tree(world.dir.path()),
                before,
                "{location} {args:?} created something"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_url_short_of_a_slash_is_refused_with_the_url_meant() {
    let world = World::new();
    let before = tree(world.dir.path());
    let mut cmd = world.command_archiving_to(Path::new("s3:/videos/minimax"));
    cmd.current_dir(world.dir.path()).args(["enqueue", "5"]);
    let out = support::run_bounded(&mut cmd, Duration::from_secs(60)).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("s3://videos/minimax"), "{err}");
    assert_eq!(tree(world.dir.path()), before, "something was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_age_needs_a_unit() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    support::enqueue(&world, &["1".to_string()]).await;
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    for bare in ["0", "30", "7 "] {
        let out = world.run(&["prune", "--done-older-than", bare]).await;
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("no unit"),
            "{bare:?}: {}",
            stderr(&out)
        );
        assert_eq!(state_of(&world, 1).await, "done", "{bare:?} pruned the job");
    }
    assert_success(&world.run(&["prune", "--done-older-than", "0s"]).await);
    assert_eq!(world.status().await["done"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_given_the_same_dir_twice_starts_afresh_and_spares_other_files() {
    let world = World::new();
    let dir = world.path("demo");
    for run in 1..=2 {
        let out = world
            .run(&["demo", "--files", "4", "--dir", dir.to_str().unwrap()])
            .await;
        assert_success(&out);
        if run == 2 {
            assert!(
                stderr(&out).contains("replacing the earlier demo"),
                "{}",
                stderr(&out)
            );
        }
    }
    // A directory with something of the user's in it is refused untouched.
    let mine = world.path("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    let out = world
        .run(&["demo", "--files", "4", "--dir", mine.to_str().unwrap()])
        .await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(tree(&mine), vec![mine.join("notes.txt")]);
}

/// A TCP server on 127.0.0.1 that accepts connections and never answers:
/// a PostgreSQL host that hung. Its URL, with a password.
fn silent_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            match conn {
                Ok(conn) => held.push(conn),
                Err(_) => return,
            }
        }
    });
    format!("postgres://mdl:pw@127.0.0.1:{port}/queue")
}

#[tokio::test(flavor = "multi_thread")]
async fn verbs_on_a_database_that_never_answers_exit_5_with_the_reason() {
    let world = World::new().on_database(&silent_server());
    std::fs::write(&world.config, "db_timeout_secs = 2\n").unwrap();
    for args in [&["status"][..], &["enqueue", "1"]] {
        let out = support::run_bounded(world.command().args(args), Duration::from_secs(60)).await;
        assert_exit(&out, 5);
        assert!(
            stderr(&out).contains("no answer within 2s"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_on_a_database_that_never_answers_serves_health_and_obeys_sigterm() {
    let world = World::new()
        .on_database(&silent_server())
        .env("MINIMAX_API_KEY", TEST_KEY);
    std::fs::write(&world.config, "db_timeout_secs = 2\n").unwrap();
    let daemon = support::run_listening(&world, &[]).await;
    let client = http();
    let health = client.get(daemon.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = wait_for(Duration::from_secs(30), "a reason in /readyz", || async {
        let answer = client.get(daemon.url("/readyz")).send().await.ok()?;
        let status = answer.status();
        let body = answer.text().await.ok()?;
        body.contains("no answer").then_some((status, body))
    })
    .await;
    assert_eq!(ready.0, 503, "{}", ready.1);
    let status = daemon.stop().await;
    assert_eq!(status.code(), Some(0));

    let mut batch = world.command();
    batch.args(["run", "--exit-when-idle"]);
    let out = support::run_bounded(&mut batch, Duration::from_secs(120)).await;
    assert_exit(&out, 5);
}

/// `status --json`'s hosts that cannot connect to the API.
async fn unreachable_in_status(world: &World) -> Vec<serde_json::Value> {
    world.status().await["api_unreachable"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_gives_up_on_an_api_it_cannot_connect_to_and_a_daemon_says_so() {
    let (api_base, _refused) = support::closed_api_base();
    let world = World::new()
        .env("MINIMAX_API_BASE", &api_base)
        .env("MINIMAX_API_KEY", TEST_KEY);
    std::fs::write(&world.config, "api_unreachable_secs = 3\n").unwrap();
    support::enqueue(&world, &["1".to_string(), "2".to_string()]).await;
    let out = support::run_bounded(
        world.command().args(["run", "--exit-when-idle"]),
        Duration::from_secs(90),
    )
    .await;
    assert_exit(&out, 5);
    assert!(
        stderr(&out).contains("cannot connect to the MiniMax API"),
        "{}",
        stderr(&out)
    );
    for id in [1, 2] {
        let job = world.job(id).await;
        assert_eq!(job["state"], "queued", "{job}");
        assert_eq!(job["attempts"], 0, "{job}");
    }
    assert_eq!(
        unreachable_in_status(&world).await,
        Vec::<serde_json::Value>::new()
    );

    let daemon = support::run_listening(&world, &[]).await;
    let client = http();
    let body = wait_for(Duration::from_secs(60), "/readyz to say why", || async {
        let answer = client.get(daemon.url("/readyz")).send().await.ok()?;
        let body = answer.text().await.ok()?;
        body.contains("cannot connect").then_some(body)
    })
    .await;
    assert!(body.contains("\"ready\":false"), "{body}");
    let state = daemon.text("/api/state").await;
    assert!(state.contains("cannot connect"), "dashboard state: {state}");

    // `status`, which any host sharing the queue may run, says so too.
    let shown = wait_for(Duration::from_secs(60), "status to say so", || async {
        unreachable_in_status(&world).await.pop()
    })
    .await;
    let host = minimax_dl::parts::host_name();
    assert_eq!(shown["host"], host.as_str(), "{shown}");
    let message = shown["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot connect to the MiniMax API"),
        "{shown}"
    );
    assert!(shown["lasted_s"].as_f64().is_some(), "{shown}");
    let text = support::stdout(&world.run(&["status"]).await);
    let line = text
        .lines()
        .find(|l| l.starts_with("no api"))
        .unwrap_or_else(|| panic!("no 'no api' line:\n{text}"));
    assert!(
        line.contains(&format!("host {host} for ")) && line.contains("cannot connect"),
        "{line}"
    );
    assert!(line.contains("resumes by itself"), "{line}");

    assert_eq!(daemon.stop().await.code(), Some(0));
    assert_eq!(world.job(1).await["state"], "queued");
    assert_eq!(
        unreachable_in_status(&world).await,
        Vec::<serde_json::Value>::new(),
        "a daemon that stopped takes its pause with it"
    );
}

/// A misspelt variable (`MINIMAX_DL_DB` for `MINIMAX_DL_DATABASE`) is
/// named with the one meant, instead of leaving the default in force
/// without a word; the verb still runs, on the queue it was given.
#[tokio::test]
async fn a_misspelt_variable_is_named_with_the_one_meant() {
    let world = World::new();
    let elsewhere = world.dir.path().join("elsewhere.db");
    let world = world.env("MINIMAX_DL_DB", elsewhere.to_str().unwrap());
    let out = world.run(&["enqueue", "7"]).await;
    assert_success(&out);
    let err = stderr(&out);
    assert!(
        err.contains(
            "MINIMAX_DL_DB is set but minimax-dl does not read it: did you mean MINIMAX_DL_DATABASE?"
        ),
        "{err}"
    );
    assert!(!elsewhere.exists(), "the misspelt variable was obeyed");
    assert_eq!(state_of(&world, 7).await, "queued");
}
