//! `doctor` through the binary against the simulator: a healthy host, then
//! each way a new host can be wrong. Every case runs both `doctor` and
//! `doctor --json` and asserts the same verdicts in each, the exit code (1
//! exactly when a check fails), and that no key or password is printed.
//!
//! Not through the binary: a key from the other region. MiniMax answers it
//! as it answers any key it does not know (1004), so the case here is the
//! refused key; which host the hint names for `api.minimax.io` and
//! `api.minimaxi.com` is a unit test in `commands::doctor` (the tests never
//! leave 127.0.0.1).

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use minimax_sim::{ApiFault, ApiFaultRule, Faults, SimApi, SimConfig, SimTask, Simulator};
use serde_json::Value;

use crate::support::{self, PgTestDb, TEST_KEY, World, run_bounded, stderr, stdout};

const WRONG_KEY: &str = "wrong-key-from-elsewhere-9876543210";

/// The two runs of one case.
struct Report {
    text: Output,
    json: Vec<Value>,
}

impl Report {
    /// The text line of `check`: its level word and message.
    fn line(&self, check: &str) -> Option<(String, String)> {
        stdout(&self.text).lines().find_map(|l| {
            let mut words = l.split_whitespace();
            let word = words.next()?;
            (words.next()? == check).then(|| {
                let message = l[word.len()..].trim_start()[check.len()..].trim_start();
                (word.to_string(), message.to_string())
            })
        })
    }

    fn checks(&self) -> Vec<String> {
        self.json
            .iter()
            .map(|c| c["check"].as_str().expect("a check name").to_string())
            .collect()
    }

    /// Asserts `check` says `level` (ok, warn, fail) in both outputs, and
    /// `says` in its message.
    #[track_caller]
    fn says(&self, check: &str, level: &str, says: &str) {
        let shown = stdout(&self.text);
        let (word, message) = self
            .line(check)
            .unwrap_or_else(|| panic!("no {check} line in:\n{shown}"));
        let word = word.to_lowercase();
        assert_eq!(word, level, "{check} in:\n{shown}");
        assert!(
            message.contains(says),
            "{check} should say {says:?}:\n{shown}"
        );
        let json = self
            .json
            .iter()
            .find(|c| c["check"] == check)
            .unwrap_or_else(|| panic!("no {check} in --json: {:?}", self.json));
        assert_eq!(json["level"], level, "{check} in --json: {json}");
        let message = json["message"].as_str().expect("a message");
        assert!(
            message.contains(says),
            "{check} in --json should say {says:?}: {json}"
        );
    }

    fn lacks(&self, check: &str) {
        assert!(
            self.line(check).is_none() && !self.checks().iter().any(|c| c == check),
            "no {check} check expected:\n{}",
            stdout(&self.text)
        );
    }
}

/// `doctor` and `doctor --json` on `world`: same exit code, 1 exactly when
/// a check fails, and no secret in anything printed.
async fn doctor(world: &World) -> Report {
    doctor_as(world, |_| {}).await
}

async fn doctor_as(world: &World, how: impl Fn(&mut tokio::process::Command)) -> Report {
    let limit = Duration::from_secs(120);
    let mut text = world.command();
    how(&mut text);
    let text = run_bounded(text.arg("doctor"), limit).await;
    let mut json = world.command();
    how(&mut json);
    let json_out = run_bounded(json.args(["doctor", "--json"]), limit).await;
    let json: Vec<Value> = serde_json::from_slice(&json_out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json is one JSON array ({e}):\n{}\n{}",
            stdout(&json_out),
            stderr(&json_out)
        )
    });
    let failed = json.iter().any(|c| c["level"] == "fail");
    let code = Some(if failed { 1 } else { 0 });
    assert_eq!(
        text.status.code(),
        code,
        "{}\n{}",
        stdout(&text),
        stderr(&text)
    );
    assert_eq!(json_out.status.code(), code, "{json:?}");
    let mut secrets = vec![TEST_KEY.to_string(), WRONG_KEY.to_string()];
    secrets.extend(world.api.iter().map(|(_, key)| key.clone()));
    for out in [&text, &json_out] {
        let printed = format!("{}{}", stdout(out), stderr(out));
        for secret in &secrets {
            assert!(
                !printed.contains(secret.as_str()),
                "a secret printed:\n{printed}"
            );
        }
    }
    Report { text, json }
}

async fn sim_with_tasks(config: SimConfig, tasks: i64) -> Simulator {
    let sim = support::sim(config).await;
    let first = 424_010_986_000_001;
    for n in 0..tasks {
        sim.add_task(first + n, SimTask::new(SimApi::V2, first + n));
    }
    sim
}

/// A loopback port nothing listens on now (another test may take it later:
/// for "is free", not for "refuses", which [`support::RefusedPort`] holds).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

#[tokio::test]
async fn a_healthy_host_passes_every_check() {
    let sim = sim_with_tasks(SimConfig::default(), 3).await;
    let world = World::new().with_sim(&sim);
    let fresh = doctor(&world).await;
    assert_eq!(
        fresh.checks(),
        ["config", "api", "clock", "list", "queue", "archive"],
        "no listen line without a listen address"
    );
    fresh.says("config", "ok", &world.config.display().to_string());
    fresh.says("api", "ok", "the key is accepted");
    fresh.says("clock", "ok", "within");
    fresh.says("list", "ok", "served 3 of 3");
    // A new host: the first enqueue creates the queue and the archive.
    fresh.says("queue", "warn", "the first enqueue or run creates it");
    fresh.says("archive", "ok", "created by the first download");
    assert!(!world.db.exists(), "doctor created the queue");
    assert!(!world.out.exists(), "doctor created the archive");
    assert_eq!(sim.stats().task_list_requests, 2, "one call a run");

    support::enqueue(&world, &["1".to_string()]).await;
    std::fs::create_dir(&world.out).unwrap();
    let set_up = doctor(&world).await;
    for c in &set_up.json {
        assert_eq!(c["level"], "ok", "{c}");
    }
    set_up.says("queue", "ok", "opens");
    set_up.says("archive", "ok", "writable");
}

#[tokio::test]
async fn a_key_the_api_refuses_fails_with_the_region_hint() {
    let sim = support::sim(SimConfig::default()).await;
    let mut world = World::new();
    world.api = Some((sim.api_base(), WRONG_KEY.to_string()));
    let report = doctor(&world).await;
    report.says("key", "fail", "1004");
    // Keys work only on their own region's host: the hint names both.
    report.says("key", "fail", "api.minimax.io");
    report.says("key", "fail", "api.minimaxi.com");
    report.lacks("clock");
    report.lacks("list");
    assert_eq!(sim.stats().api_requests_without_valid_key, 2);
}

#[tokio::test]
async fn no_key_fails_and_says_where_to_set_one() {
    let sim = support::sim(SimConfig::default()).await;
    let world = World::new().env("MINIMAX_API_BASE", &sim.api_base());
    let report = doctor(&world).await;
    report.says("key", "fail", "MINIMAX_API_KEY");
    report.lacks("api");
    assert_eq!(sim.stats().task_list_requests, 0);
}

#[tokio::test]
async fn an_api_base_that_does_not_answer_fails_the_api_check() {
    let (base, _refused) = support::closed_api_base();
    let mut world = World::new();
    world.api = Some((base.clone(), TEST_KEY.to_string()));
    let report = doctor(&world).await;
    report.says("api", "fail", "cannot connect");
    report.says("api", "fail", "check api_base");
    report.lacks("clock");
    // The rest of the host is still checked.
    report.says("queue", "warn", "creates it");
    report.says("archive", "ok", "writable");
}

#[tokio::test]
async fn an_api_that_never_answers_fails_after_the_read_timeout() {
    let sim = support::sim(SimConfig {
        faults: Faults {
            api: vec![ApiFaultRule::new(ApiFault::Hang)],
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    std::fs::write(&world.config, "read_timeout_secs = 1\n").unwrap();
    let report = doctor(&world).await;
    report.says("api", "fail", "cannot reach");
}

#[tokio::test]
async fn an_account_that_cannot_work_a_rate_limit_and_a_wrong_api_base_each_have_their_words() {
    let sim = support::sim(SimConfig::default()).await;
    let world = World::new().with_sim(&sim);
    let fault = |fault| Faults {
        api: vec![ApiFaultRule::new(fault)],
        ..Faults::default()
    };

    sim.set_faults(fault(ApiFault::Code(1008, "insufficient balance".into())));
    let broke = doctor(&world).await;
    broke.says("account", "fail", "balance");
    broke.lacks("key");

    sim.set_faults(fault(ApiFault::Code(
        1002,
        "rate limit exceeded(RPM)".into(),
    )));
    let limited = doctor(&world).await;
    limited.says("api", "warn", "rate-limits this key now");

    let (elsewhere, _refused) = support::closed_api_base();
    sim.set_faults(fault(ApiFault::Redirect(302, elsewhere)));
    let moved = doctor(&world).await;
    moved.says("api", "fail", "check api_base");
    moved.lacks("key");
}

#[tokio::test]
async fn a_host_clock_far_off_the_apis_is_a_warning_saying_which_way() {
    for (offset, way) in [(7200, "7200 s behind"), (-7200, "7200 s ahead of")] {
        let sim = support::sim(SimConfig {
            clock_offset_secs: offset,
            ..SimConfig::default()
        })
        .await;
        let world = World::new().with_sim(&sim);
        let report = doctor(&world).await;
        report.says("clock", "warn", way);
        report.says("clock", "warn", "NTP");
    }
}

#[tokio::test]
async fn a_list_served_20_a_page_is_reported_with_its_total() {
    let sim = sim_with_tasks(SimConfig::default(), 50).await;
    let world = World::new().with_sim(&sim);
    let report = doctor(&world).await;
    report.says("list", "ok", "serves 20 a page (asked 100); 50 tasks");
}

/// Runs the binary as another user who may not write where root may:
/// `nobody` when the tests run as root (root writes whatever the mode),
/// else this user (the mode bits then hold). The world must be readable.
fn as_nobody(world: &World) -> impl Fn(&mut tokio::process::Command) + use<> {
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        std::fs::set_permissions(world.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&world.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    move |cmd: &mut tokio::process::Command| {
        if root {
            cmd.uid(65534).gid(65534);
        }
    }
}

/// A directory `nobody` (or this user) may write.
fn ours(world: &World, name: &str) -> std::path::PathBuf {
    let dir = world.path(name);
    std::fs::create_dir(&dir).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    }
    dir
}

fn read_only_dir(world: &World) -> std::path::PathBuf {
    let dir = world.path("read-only");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    dir
}

#[tokio::test]
async fn a_queue_or_archive_in_a_directory_this_user_may_not_write_fails() {
    let sim = support::sim(SimConfig::default()).await;
    let mut world = World::new().with_sim(&sim);
    let read_only = read_only_dir(&world);
    let mine = ours(&world, "mine");
    let user = as_nobody(&world);

    world.db = read_only.join("queue.db");
    world.out = mine.join("archive");
    let queue = doctor_as(&world, &user).await;
    queue.says("queue", "fail", "read-only is not writable");
    queue.says("queue", "fail", "choose another database path");
    queue.says("archive", "ok", "writable");

    world.db = mine.join("queue.db");
    world.out = read_only.join("archive");
    let archive = doctor_as(&world, &user).await;
    archive.says("queue", "warn", "creates it");
    archive.says("archive", "fail", "read-only is not writable");
    archive.says("archive", "fail", "choose another --out");
}

#[tokio::test]
async fn an_existing_queue_this_user_may_not_write_fails() {
    let sim = support::sim(SimConfig::default()).await;
    let world = World::new().with_sim(&sim);
    support::enqueue(&world, &["1".to_string()]).await;
    std::fs::set_permissions(&world.db, std::fs::Permissions::from_mode(0o444)).unwrap();
    let user = as_nobody(&world);
    let report = doctor_as(&world, &user).await;
    report.says(
        "queue",
        "fail",
        "is not writable by this user: fix its owner or mode",
    );
}

#[tokio::test]
async fn a_queue_or_archive_where_a_file_stands_fails() {
    let sim = support::sim(SimConfig::default()).await;
    let mut world = World::new().with_sim(&sim);
    let file = world.path("a-file");
    std::fs::write(&file, "not a directory").unwrap();

    world.db = file.join("queue.db");
    world.out = file.join("archive");
    let under = doctor(&world).await;
    under.says("queue", "fail", "a-file is a file, not a directory");
    under.says("archive", "fail", "a-file is a file, not a directory");

    world.db = world.path("queue.db");
    world.out = file.clone();
    let instead = doctor(&world).await;
    instead.says("queue", "warn", "creates it");
    instead.says(
        "archive",
        "fail",
        "is a file, not a directory: name a directory",
    );

    // A directory where the database should be is the configuration's
    // own check.
    world.db = world.path("queue-dir");
    std::fs::create_dir(&world.db).unwrap();
    let config = doctor(&world).await;
    config.says("config", "fail", "queue-dir is a directory: name a file");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");
}

#[tokio::test]
async fn a_postgresql_queue_that_does_not_answer_fails_without_its_password() {
    let sim = support::sim(SimConfig::default()).await;
    let password = "pg-secret-doctor-4321";
    let (url, refused) = support::unreachable_pg_url(password);
    let world = World::new().with_sim(&sim).on_database(&url);
    let report = doctor(&world).await;
    report.says("queue", "fail", &format!("127.0.0.1:{}", refused.port()));
    report.says("queue", "fail", "Check the host, port");
    for out in [
        stdout(&report.text),
        report.json.iter().map(|c| c.to_string()).collect(),
    ] {
        assert!(!out.contains(password), "{out}");
    }
}

#[tokio::test]
async fn a_postgresql_queue_is_checked_without_being_created() {
    let Some(db) = PgTestDb::create().await else {
        return;
    };
    let sim = support::sim(SimConfig::default()).await;
    let world = World::new().with_sim(&sim).on_database(&db.url);
    let empty = doctor(&world).await;
    empty.says("queue", "warn", "the first enqueue or run creates it");
    assert!(db.tables().await.is_empty(), "doctor created the queue");
    for out in [stdout(&empty.text), stderr(&empty.text)] {
        assert!(!out.contains(&db.password()), "{out}");
    }

    support::enqueue(&world, &["1".to_string()]).await;
    let made = doctor(&world).await;
    made.says("queue", "ok", "opens");
}

#[tokio::test]
async fn a_listen_address_in_use_fails_and_a_free_one_passes() {
    let sim = support::sim(SimConfig::default()).await;
    let world = World::new().with_sim(&sim);
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    std::fs::write(&world.config, format!("listen = \"{addr}\"\n")).unwrap();
    let taken = doctor(&world).await;
    taken.says("listen", "fail", &format!("cannot listen on {addr}"));
    taken.says(
        "listen",
        "fail",
        "Stop what holds it or choose another address",
    );

    drop(held);
    let free = free_port();
    std::fs::write(&world.config, format!("listen = \"127.0.0.1:{free}\"\n")).unwrap();
    let report = doctor(&world).await;
    report.says("listen", "ok", "is free");
}

#[tokio::test]
async fn a_config_that_does_not_load_is_the_failed_check() {
    let sim = support::sim(SimConfig::default()).await;
    let world = World::new().with_sim(&sim);
    let path = world.config.display().to_string();
    for (config, says) in [
        ("concurrency = [\n", "line 1, key `concurrency`"),
        ("no_such_setting = 1\n", "unknown field `no_such_setting`"),
    ] {
        std::fs::write(&world.config, config).unwrap();
        let report = doctor(&world).await;
        assert_eq!(report.checks(), ["config"], "nothing else can be checked");
        report.says("config", "fail", &path);
        report.says("config", "fail", says);
        report.says("config", "fail", "Fix it, then run doctor again");
    }
    assert_eq!(sim.stats().task_list_requests, 0);

    // A bad value in the environment is the same.
    std::fs::write(&world.config, "").unwrap();
    let world = world.env("MINIMAX_DL_CONCURRENCY", "many");
    let report = doctor(&world).await;
    report.says("config", "fail", "MINIMAX_DL_CONCURRENCY");
    // Every other verb still stops at a bad configuration, exit 2.
    let status = world.run(&["status"]).await;
    support::assert_exit(&status, 2);
}
