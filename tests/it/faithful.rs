//! The flows MiniMax's documentation implies, through the binary, against
//! the simulator in its default (documented-shape) mode: a task list served
//! 20 a page, v1 callbacks in both cases and failed, URLs that live 2 s,
//! and a host clock an hour off MiniMax's.

use std::collections::HashMap;
use std::time::Duration;

use minimax_sim::{CallbackCase, Faults, SimApi, SimConfig, SimTask, Simulator};
use serde_json::{Value, json};

use crate::support::{self, World, assert_success, assert_verified, stderr, stdout};

const V2_QUERY: &str = "GET /v2/query/video_generation/{task_id}";
const CALLBACK_TOKEN: &str = "cb-token-faithful-0123456789";

#[tokio::test]
async fn sync_over_476_tasks_served_20_a_page_archives_every_video_once() {
    let sim = support::sim(SimConfig {
        default_file_size: 4 * 1024,
        ..SimConfig::default()
    })
    .await;
    let first_id = 424_010_985_000_001;
    for n in 0..476 {
        sim.add_task(first_id + n, SimTask::new(SimApi::V2, first_id + n));
    }
    let world = World::new()
        .with_sim(&sim)
        .env("MINIMAX_DL_CONCURRENCY", "8");
    let first = world.run(&["sync"]).await;
    assert_success(&first);
    let said = stdout(&first);
    assert!(
        said.contains("listed 476 tasks in 24 pages: 476 new (476 already finished"),
        "asked for 100 a page, served 20: {said}"
    );
    assert_eq!(sim.stats().task_list_requests, 24);

    let out = world.run(&["run", "--exit-when-idle"]).await;
    assert_success(&out);
    let jobs = world.jobs().await;
    assert_eq!(jobs.len(), 476);
    for job in &jobs {
        assert_verified(&world, &sim, job);
    }

    let second = world.run(&["sync"]).await;
    assert_success(&second);
    assert!(
        stdout(&second).contains("listed 476 tasks in 24 pages: 0 new"),
        "{}",
        stdout(&second)
    );
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    assert_eq!(
        world.jobs().await.len(),
        476,
        "the second sync added nothing"
    );
    assert_eq!(world.status().await["done"], 476);
}

fn callback_world(sim: &Simulator) -> World {
    let world = World::new()
        .with_sim(sim)
        .env("MINIMAX_DL_TEST_TASK_POLL_MS", "100");
    std::fs::write(
        &world.config,
        format!("callback_token = \"{CALLBACK_TOKEN}\"\n"),
    )
    .unwrap();
    world
}

/// Creates a v1 task at the simulator with the daemon as its callback.
async fn create_v1_task(sim: &Simulator, callback_url: &str) -> i64 {
    let created: Value = support::http()
        .post(format!("{}/v1/video_generation", sim.api_base()))
        .bearer_auth(support::TEST_KEY)
        .body(json!({"model": "MiniMax-Hailuo-02", "prompt": "a lighthouse", "callback_url": callback_url}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["task_id"]
        .as_str()
        .expect("a task id")
        .parse()
        .unwrap()
}

async fn show(world: &World, id: i64) -> Option<Value> {
    let out = world.run(&["show", &id.to_string(), "--json"]).await;
    serde_json::from_slice(&out.stdout).ok()
}

fn endpoint_calls(sim: &Simulator) -> HashMap<String, u64> {
    sim.stats().requests_by_endpoint
}

#[tokio::test]
async fn a_failed_v1_callback_fails_the_task_with_minimax_s_reason_and_never_asks_v2() {
    let sim = support::sim(SimConfig {
        task_generation: Duration::from_millis(500),
        task_fail_every: Some(1),
        ..support::small_files()
    })
    .await;
    let world = callback_world(&sim);
    let daemon = support::run_listening(&world, &[]).await;
    let id = create_v1_task(&sim, &daemon.url(&format!("/callback/{CALLBACK_TOKEN}"))).await;
    let task = support::wait_for(
        Duration::from_secs(60),
        "the task to end failed",
        || async {
            let shown = show(&world, id).await?;
            let task = if shown.get("task_id").is_some() {
                shown
            } else {
                shown["task"].clone()
            };
            (task["state"] == "failed").then_some(task)
        },
    )
    .await;
    let reason = task["last_error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("output video contains sensitive content") && reason.contains("1027"),
        "{task}"
    );
    daemon.stop().await;
    let calls = endpoint_calls(&sim);
    assert_eq!(
        calls.get(V2_QUERY),
        None,
        "v2 was asked about a v1 task: {calls:?}"
    );
    assert!(
        calls.contains_key("GET /v1/query/video_generation"),
        "{calls:?}"
    );
    assert!(world.jobs().await.is_empty());
}

#[tokio::test]
async fn success_and_capitalised_success_v1_callbacks_each_archive_their_video_once() {
    for case in [CallbackCase::Lower, CallbackCase::Capitalised] {
        let sim = support::sim(SimConfig {
            task_generation: Duration::from_millis(300),
            callback_repeats: 2,
            v1_callback_case: case,
            ..support::small_files()
        })
        .await;
        let world = callback_world(&sim);
        let daemon = support::run_listening(&world, &[]).await;
        let id = create_v1_task(&sim, &daemon.url(&format!("/callback/{CALLBACK_TOKEN}"))).await;
        // The simulator's v1 tasks produce the file id after theirs.
        let file_id = id + 1;
        let job = support::wait_for(Duration::from_secs(60), "the video archived", || async {
            // Not in the queue until the task's callback or poll hands it over.
            let job = show(&world, file_id).await?;
            (job["state"] == "done").then_some(job)
        })
        .await;
        assert_verified(&world, &sim, &job);
        support::wait_for(Duration::from_secs(10), "every delivery", || async {
            (sim.stats().callbacks_delivered >= 3).then_some(())
        })
        .await;
        daemon.stop().await;
        assert_eq!(world.jobs().await.len(), 1, "{case:?}: archived once");
        assert_eq!(endpoint_calls(&sim).get(V2_QUERY), None, "{case:?}");
    }
}

#[tokio::test]
async fn with_two_second_urls_60_files_of_up_to_4_mb_at_600_kb_s_download_and_verify() {
    let max = 4 * 1024 * 1024;
    let sizes: HashMap<i64, u64> = (1..=60).map(|id| (id, max * id as u64 / 60)).collect();
    let sim = support::sim(SimConfig {
        url_ttl: Duration::from_secs(2),
        sizes,
        faults: Faults {
            bandwidth_bytes_per_sec: Some(600 * 1024),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = World::new()
        .with_sim(&sim)
        .env("MINIMAX_DL_CONCURRENCY", "12");
    support::enqueue(&world, &support::ids(1..=60)).await;
    let mut run = world.command();
    run.args(["run", "--exit-when-idle"]);
    let out = support::run_bounded(&mut run, Duration::from_secs(400)).await;
    assert_success(&out);
    let jobs = world.jobs().await;
    assert_eq!(jobs.len(), 60);
    for job in &jobs {
        assert_eq!(job["state"], "done", "{job}");
        assert_verified(&world, &sim, job);
    }
}

#[tokio::test]
async fn with_minimax_s_clock_an_hour_ahead_or_behind_a_batch_completes() {
    for offset in [3600, -3600] {
        let sim = support::sim(SimConfig {
            clock_offset_secs: offset,
            ..support::small_files()
        })
        .await;
        let world = World::new().with_sim(&sim);
        support::enqueue(&world, &support::ids(1..=20)).await;
        let mut run = world.command();
        run.args(["run", "--exit-when-idle"]);
        let out = support::run_bounded(&mut run, Duration::from_secs(120)).await;
        assert_success(&out);
        for job in &world.jobs().await {
            assert_verified(&world, &sim, job);
        }
        let warned = stderr(&out).matches("this host's clock differs").count();
        assert_eq!(warned, 1, "offset {offset}: warned once\n{}", stderr(&out));
    }
}
