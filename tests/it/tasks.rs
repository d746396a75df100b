//! Task intake through the binary against the simulator: tasks polled
//! until their videos exist (v1 and v2), tasks that fail or never finish,
//! a rate limit and an account error while polling, `sync` of the v2 task
//! list, and callbacks on `run --listen`.

use std::time::Duration;

use minimax_sim::SimApi;
use minimax_sim::{ApiFault, ApiFaultRule, Faults, SimTask, Simulator, TaskEnd};
use serde_json::Value;

use crate::support::{self, World, assert_exit, assert_success, assert_verified, stdout};

/// Polls every 100 ms (the test hook) instead of every 10 s.
fn polling_world(sim: &Simulator) -> World {
    World::new()
        .with_sim(sim)
        .env("MINIMAX_DL_TEST_TASK_POLL_MS", "100")
}

/// Longer than any test: the task generates until the test replaces it
/// with [`finish_generation_after_polls`], so no start-up on a loaded
/// machine can outlast a generation clock.
const GENERATING_UNTIL_TOLD: Duration = Duration::from_secs(3600);

/// Waits until the daemon has asked about task `id` `polls` times, then
/// declares it again as `done` (no generation time left).
async fn finish_generation_after_polls(sim: &Simulator, id: i64, polls: u64, done: SimTask) {
    support::wait_for(Duration::from_secs(60), "the task's polls", || async {
        let asked = sim.stats().task_requests_by_task.get(&id).copied();
        (asked.unwrap_or(0) >= polls).then_some(())
    })
    .await;
    sim.add_task(id, done);
}

async fn task(world: &World, id: i64) -> Value {
    let out = world.run(&["show", &id.to_string(), "--json"]).await;
    assert_success(&out);
    let value: Value = serde_json::from_slice(&out.stdout).expect("show --json");
    if value.get("task_id").is_some() {
        value
    } else {
        value["task"].clone()
    }
}

async fn tasks(world: &World) -> Vec<Value> {
    let out = world.run(&["list", "--tasks", "--json"]).await;
    assert_success(&out);
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[tokio::test]
async fn a_v1_task_is_polled_until_its_file_exists_then_downloaded() {
    let sim = support::sim(support::small_files()).await;
    let declared = || SimTask::new(SimApi::V1, 7_100);
    sim.add_task(7001, declared().generating(GENERATING_UNTIL_TOLD));
    let world = polling_world(&sim);
    assert_success(&world.run(&["enqueue", "--task", "7001"]).await);
    let status = world.status().await;
    assert_eq!(status["tasks"]["generating"], 1, "{status}");
    let out = world.run(&["list", "--state", "generating"]).await;
    assert!(stdout(&out).contains("7001"), "{}", stdout(&out));

    let run = support::spawn(&world, &["run", "--exit-when-idle"]);
    finish_generation_after_polls(&sim, 7001, 3, declared()).await;
    assert_success(&support::finish(run, Duration::from_secs(120)).await);
    let t = task(&world, 7001).await;
    assert_eq!(
        (t["state"].as_str(), t["file_id"].as_i64()),
        (Some("done"), Some(7_100)),
        "{t}"
    );
    let polls = t["polls"].as_u64().unwrap();
    let queried = sim.stats().task_requests_by_task[&7001];
    assert!(polls >= 3, "several polls: {t}");
    assert_eq!(queried, polls, "one query per recorded poll");
    let job = world.job(7_100).await;
    assert_verified(&world, &sim, &job);
    assert_eq!(support::event_kinds(&job)[0], "from_task", "{job}");
}

#[tokio::test]
async fn a_v2_task_becomes_a_job_keyed_by_its_task_and_is_downloaded_from_a_fresh_url() {
    let sim = support::sim(support::small_files()).await;
    let declared = || SimTask::new(SimApi::V2, 7201);
    sim.add_task(7201, declared().generating(GENERATING_UNTIL_TOLD));
    let world = polling_world(&sim);
    let list = world.path("tasks.txt");
    std::fs::write(&list, "# today's renders\nv2:7201\n").unwrap();
    assert_success(
        &world
            .run(&["enqueue", "--tasks-from", list.to_str().unwrap()])
            .await,
    );
    let again = world.run(&["enqueue", "--task", "v2:7201"]).await;
    assert!(
        stdout(&again).contains("0 new tasks, skipped 1"),
        "{}",
        stdout(&again)
    );

    let run = support::spawn(&world, &["run", "--exit-when-idle"]);
    finish_generation_after_polls(&sim, 7201, 2, declared()).await;
    assert_success(&support::finish(run, Duration::from_secs(120)).await);
    let t = task(&world, 7201).await;
    assert_eq!(
        (t["state"].as_str(), t["api"].as_str()),
        (Some("done"), Some("v2")),
        "{t}"
    );
    assert!(t["polls"].as_u64().unwrap() >= 2, "{t}");
    let job = world.job(7201).await;
    assert_verified(&world, &sim, &job);
    assert_eq!(job["task"]["task_id"], 7201, "{job}");
}

#[tokio::test]
async fn failed_tasks_end_failed_with_minimax_reason_and_a_batch_exits_1() {
    let sim = support::sim(support::small_files()).await;
    let sensitive = "video description contains sensitive content";
    sim.add_task(
        7301,
        SimTask::new(SimApi::V2, 7301).ending(TaskEnd::Fail(1026, sensitive.into())),
    );
    sim.add_task(
        7302,
        SimTask::new(SimApi::V1, 7_390).ending(TaskEnd::Fail(1027, "output rejected".into())),
    );
    sim.add_task(7303, SimTask::new(SimApi::V2, 7303).ending(TaskEnd::Expire));
    let world = polling_world(&sim);
    let enqueue = world
        .run(&["enqueue", "--task", "v2:7301", "7302", "v2:7303"])
        .await;
    assert_success(&enqueue);
    assert_exit(&world.run(&["run", "--exit-when-idle"]).await, 1);
    let failed: Vec<(i64, String)> = tasks(&world)
        .await
        .iter()
        .map(|t| {
            assert_eq!(t["state"], "failed", "{t}");
            (
                t["task_id"].as_i64().unwrap(),
                t["last_error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        failed[0].1.contains(sensitive) && failed[0].1.contains("1026"),
        "{failed:?}"
    );
    assert!(
        failed[1].1.contains("1027") || failed[1].1.contains("output rejected"),
        "{failed:?}"
    );
    assert!(
        failed[2].1.contains("invalid task_id") && failed[2].1.contains("7 days"),
        "v2 has no expired status: a task past its 7 days is gone: {failed:?}"
    );
    assert!(world.jobs().await.is_empty(), "nothing to download");
    assert_eq!(world.status().await["tasks"]["failed"], 3);
}

#[tokio::test]
async fn a_task_past_its_deadline_fails_with_a_clear_message() {
    let sim = support::sim(support::small_files()).await;
    let mut forever = SimTask::new(SimApi::V1, 7_400).ending(TaskEnd::Never);
    forever.odd_status = Some("Unknown".into());
    sim.add_task(7401, forever);
    let world = polling_world(&sim);
    std::fs::write(&world.config, "task_deadline_secs = 1\n").unwrap();
    assert_success(&world.run(&["enqueue", "--task", "7401"]).await);
    assert_exit(&world.run(&["run", "--exit-when-idle"]).await, 1);
    let t = task(&world, 7401).await;
    assert_eq!(t["state"], "failed", "{t}");
    let error = t["last_error"].as_str().unwrap();
    assert!(
        error.contains("task_deadline") && error.contains("1s"),
        "{error}"
    );
    assert!(
        t["polls"].as_u64().unwrap() >= 2,
        "an unknown status is polled on: {t}"
    );
    assert_eq!(t["minimax_status"], "Unknown", "{t}");
}

#[tokio::test]
async fn a_rate_limit_while_polling_cools_every_caller_down_and_the_task_goes_on() {
    let sim = support::sim(support::small_files()).await;
    sim.add_task(7501, SimTask::new(SimApi::V2, 7501));
    sim.set_faults(Faults {
        api: vec![
            ApiFaultRule::new(ApiFault::Code(1002, "rate limit exceeded(RPM)".into()))
                .for_files([7501])
                .limit(1),
        ],
        ..Faults::default()
    });
    let world = polling_world(&sim);
    assert_success(&world.run(&["enqueue", "--task", "v2:7501"]).await);
    let out = world.run(&["run", "--exit-when-idle"]).await;
    assert_success(&out);
    assert!(
        support::stderr(&out).contains("rate limit"),
        "{}",
        support::stderr(&out)
    );
    assert_eq!(sim.fault_counts().api, [1], "the rate limit was met");
    let t = task(&world, 7501).await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(t["polls"], 2, "the limited poll counts, and one more: {t}");
    assert_verified(&world, &sim, &world.job(7501).await);
}

#[tokio::test]
async fn an_account_error_while_polling_stops_a_batch_and_keeps_the_task() {
    let sim = support::sim(support::small_files()).await;
    sim.add_task(7601, SimTask::new(SimApi::V1, 7_690));
    sim.set_api_key(Some("another-key-0123456789".into()));
    let world = polling_world(&sim);
    assert_success(&world.run(&["enqueue", "--task", "7601"]).await);
    let out = world.run(&["run", "--exit-when-idle"]).await;
    assert_exit(&out, 3);
    let t = task(&world, 7601).await;
    assert_eq!(
        (t["state"].as_str(), t["polls"].as_u64()),
        (Some("generating"), Some(0)),
        "{t}"
    );
    sim.set_api_key(Some(support::TEST_KEY.into()));
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    assert_eq!(task(&world, 7601).await["state"], "done");
}

#[tokio::test]
async fn cancel_stops_polling_a_task_and_retry_polls_it_again() {
    let sim = support::sim(support::small_files()).await;
    sim.add_task(7701, SimTask::new(SimApi::V1, 7_790));
    let world = polling_world(&sim);
    assert_success(&world.run(&["enqueue", "--task", "7701"]).await);
    let out = world.run(&["cancel", "7701"]).await;
    assert_success(&out);
    assert!(stdout(&out).contains("7701: cancelled"), "{}", stdout(&out));
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    assert_eq!(task(&world, 7701).await["state"], "cancelled");
    assert!(sim.stats().task_requests_by_task.is_empty(), "never polled");
    assert_success(&world.run(&["retry", "7701"]).await);
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    assert_verified(&world, &sim, &world.job(7_790).await);
}

#[tokio::test]
async fn sync_enqueues_every_video_task_once_however_often_it_runs() {
    let sim = support::sim(support::small_files()).await;
    for id in [7801, 7802, 7803] {
        sim.add_task(id, SimTask::new(SimApi::V2, id));
    }
    let generating = || SimTask::new(SimApi::V2, 7804);
    sim.add_task(7804, generating().generating(GENERATING_UNTIL_TOLD));
    sim.add_task(
        7805,
        SimTask::new(SimApi::V2, 7805).ending(TaskEnd::Fail(1026, "sensitive".into())),
    );
    sim.add_task(7806, SimTask::new(SimApi::V1, 7_890));
    let world = polling_world(&sim);
    let first = world.run(&["sync", "--page-size", "2"]).await;
    assert_success(&first);
    let said = stdout(&first);
    assert!(
        said.contains("listed 5 tasks in 3 pages: 4 new (3 already finished"),
        "{said}"
    );
    assert!(said.contains("1 failed"), "{said}");
    let status = world.status().await;
    assert_eq!(
        (
            status["queued"].as_u64(),
            status["tasks"]["generating"].as_u64()
        ),
        (Some(3), Some(1)),
        "{status}"
    );

    let second = world.run(&["sync"]).await;
    assert_success(&second);
    assert!(
        stdout(&second)
            .contains("0 new (0 already finished: their videos are queued), 4 already known"),
        "{}",
        stdout(&second)
    );
    let again = world.status().await;
    assert_eq!(
        (&again["queued"], &again["tasks"]),
        (&status["queued"], &status["tasks"]),
        "nothing doubled"
    );

    let run = support::spawn(&world, &["run", "--exit-when-idle"]);
    finish_generation_after_polls(&sim, 7804, 1, generating()).await;
    assert_success(&support::finish(run, Duration::from_secs(120)).await);
    let jobs = world.jobs().await;
    assert_eq!(jobs.len(), 4);
    for job in &jobs {
        assert_verified(&world, &sim, job);
    }
}

const CALLBACK_TOKEN: &str = "cb-token-0123456789abcdef";

fn callback_world(sim: &Simulator) -> World {
    let world = World::new().with_sim(sim);
    std::fs::write(
        &world.config,
        format!("callback_token = \"{CALLBACK_TOKEN}\"\n"),
    )
    .unwrap();
    world
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response = support::http()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn callbacks_echo_the_challenge_and_enqueue_a_finished_task_once() {
    let sim = support::sim(support::small_files()).await;
    let world = callback_world(&sim);
    let daemon = support::run_listening(&world, &[]).await;
    let url = daemon.url(&format!("/callback/{CALLBACK_TOKEN}"));

    let (code, body) = post(&url, r#"{"challenge":"c-42"}"#).await;
    assert_eq!((code, body.as_str()), (200, r#"{"challenge":"c-42"}"#));

    let (code, _) = post(
        &daemon.url("/callback/not-the-token-0123456789"),
        r#"{"task_id":"1","status":"Success","file_id":"2"}"#,
    )
    .await;
    assert_eq!(code, 404);
    let big = format!(
        r#"{{"task_id":"1","status":"Success","file_id":"2","pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let (code, _) = post(&url, big).await;
    assert_eq!(code, 413);
    let (code, _) = post(&url, "not json").await;
    assert_eq!(code, 400);
    assert_eq!(
        world.status().await["tasks"]["generating"],
        0,
        "nothing enqueued"
    );

    let update = r#"{"task_id":"7901","status":"Success","file_id":"7990","base_resp":{"status_code":0,"status_msg":"success"}}"#;
    for _ in 0..3 {
        let (code, body) = post(&url, update).await;
        assert_eq!(code, 200, "{body}");
    }
    let job = support::wait_for(
        Duration::from_secs(60),
        "the file to be downloaded",
        || async {
            let job = world.job(7990).await;
            (job["state"] == "done").then_some(job)
        },
    )
    .await;
    assert_verified(&world, &sim, &job);
    assert_eq!(
        world.jobs().await.len(),
        1,
        "repeated deliveries enqueue once"
    );
    assert_eq!(task(&world, 7901).await["state"], "done");
    daemon.stop().await;
}

#[tokio::test]
async fn a_task_created_with_the_daemon_as_its_callback_url_is_archived() {
    let sim = support::sim(minimax_sim::SimConfig {
        task_generation: Duration::from_millis(500),
        callback_repeats: 2,
        ..support::small_files()
    })
    .await;
    let world = callback_world(&sim);
    let daemon = support::run_listening(&world, &[]).await;
    let callback_url = daemon.url(&format!("/callback/{CALLBACK_TOKEN}"));
    let created: Value = support::http()
        .post(format!("{}/v2/video_generation", sim.api_base()))
        .bearer_auth(support::TEST_KEY)
        .body(serde_json::json!({"model": "MiniMax-H3", "prompt": "a lighthouse", "callback_url": callback_url}).to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let id: i64 = created["task_id"]
        .as_str()
        .expect("created")
        .parse()
        .unwrap();
    assert_eq!(
        sim.stats().callback_challenges,
        1,
        "the daemon answered the challenge"
    );
    let job = support::wait_for(
        Duration::from_secs(60),
        "the video to be archived",
        || async {
            let out = world.run(&["show", &id.to_string(), "--json"]).await;
            let job: Value = serde_json::from_slice(&out.stdout).ok()?;
            (job["state"] == "done").then_some(job)
        },
    )
    .await;
    assert_verified(&world, &sim, &job);
    support::wait_for(
        Duration::from_secs(10),
        "every update delivered",
        || async { (sim.stats().callbacks_delivered >= 3).then_some(()) },
    )
    .await;
    assert_eq!(sim.stats().callback_failures, 0);
    daemon.stop().await;
}

#[tokio::test]
async fn a_task_s_file_is_named_recorded_and_exported_with_its_task() {
    let sim = support::sim(support::small_files()).await;
    sim.add_task(8001, SimTask::new(SimApi::V1, 8_100));
    sim.add_task(8002, SimTask::new(SimApi::V2, 8002));
    let world = polling_world(&sim);
    std::fs::write(
        &world.config,
        "path_template = \"{task_id}/{file_id}-{filename}\"\nsidecar = true\n",
    )
    .unwrap();
    assert_success(
        &world
            .run(&["enqueue", "--task", "8001", "v2:8002", "--", "8200"])
            .await,
    );
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    for (file, task) in [(8_100, Some("8001")), (8002, Some("8002")), (8200, None)] {
        let job = world.job(file).await;
        assert_verified(&world, &sim, &job);
        let path = std::path::PathBuf::from(job["path"].as_str().unwrap());
        let folder = task.unwrap_or("notask");
        assert!(path.starts_with(world.out.join(folder)), "{path:?}");
        let sidecar: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{}.json", path.display())).unwrap(),
        )
        .unwrap();
        assert_eq!(sidecar["task_id"].as_str(), task, "{sidecar}");
        let text = sidecar.to_string();
        assert!(
            !text.contains("Signature") && !text.contains("Expires"),
            "no URL: {text}"
        );
    }
    let v2_sidecar =
        std::fs::read_to_string(world.out.join("8002/8002-output_aigc.mp4.json")).unwrap();
    assert!(
        v2_sidecar.contains("MiniMax-H3"),
        "the v2 task object: {v2_sidecar}"
    );
    let export = world.run(&["export", "--format", "jsonl"]).await;
    assert_success(&export);
    let tasks: Vec<Value> = stdout(&export)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["task_id"].clone())
        .collect();
    assert_eq!(
        tasks,
        [Value::from("8002"), Value::from("8001"), Value::Null]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_poll_sync_and_download_on_a_postgresql_queue() {
    let Some(db) = support::PgTestDb::create().await else {
        return;
    };
    let sim = support::sim(support::small_files()).await;
    let v1 = || SimTask::new(SimApi::V1, 8_190);
    let v2 = || SimTask::new(SimApi::V2, 8102);
    sim.add_task(8101, v1().generating(GENERATING_UNTIL_TOLD));
    sim.add_task(8102, v2().generating(GENERATING_UNTIL_TOLD));
    sim.add_task(8103, SimTask::new(SimApi::V2, 8103));
    let world = polling_world(&sim).on_database(&db.url);
    assert_success(&world.run(&["enqueue", "--task", "8101"]).await);
    let first = world.run(&["sync"]).await;
    assert_success(&first);
    assert!(
        stdout(&first).contains("2 new (1 already finished"),
        "{}",
        stdout(&first)
    );
    let second = world.run(&["sync"]).await;
    assert!(
        stdout(&second)
            .contains("0 new (0 already finished: their videos are queued), 2 already known"),
        "{}",
        stdout(&second)
    );
    assert_eq!(world.status().await["tasks"]["generating"], 2);
    let run = support::spawn(&world, &["run", "--exit-when-idle"]);
    finish_generation_after_polls(&sim, 8101, 1, v1()).await;
    finish_generation_after_polls(&sim, 8102, 1, v2()).await;
    assert_success(&support::finish(run, Duration::from_secs(120)).await);
    for id in [8_190, 8102, 8103] {
        assert_verified(&world, &sim, &world.job(id).await);
    }
    let all = tasks(&world).await;
    assert!(all.iter().all(|t| t["state"] == "done"), "{all:?}");
}
