//! The simulator's generation tasks, through the real API client: the
//! client and the simulator (which shares nothing with it) must agree.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use secrecy::SecretString;
use serde_json::{Value, json};

use minimax_sim::{
    ApiFault, ApiFaultRule, Faults, SimApi, SimConfig, SimTask, Simulator, TASK_RETENTION, TaskEnd,
};

use crate::api::task::parse_callback;
use crate::api::{ApiClient, ErrorClass, TaskStatus};

async fn start(config: SimConfig) -> Simulator {
    Simulator::start(config).await.expect("simulator starts")
}

fn client(sim: &Simulator) -> ApiClient {
    let base = reqwest::Url::parse(&format!("{}/", sim.api_base())).unwrap();
    let key = Some(SecretString::from("k".to_string()));
    ApiClient::new(base, key, Duration::from_secs(2), Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn a_v1_task_generates_then_names_its_file() {
    let sim = start(SimConfig::default()).await;
    let task = SimTask::new(SimApi::V1, 4242).generating(Duration::from_millis(400));
    sim.add_task(77, task);
    let api = client(&sim);
    assert!(matches!(
        api.query_task_v1(77).await.unwrap(),
        TaskStatus::Generating(w) if w == "Preparing"
    ));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(api.query_task_v1(77).await.unwrap(), TaskStatus::File(4242));
    assert_eq!(api.retrieve(4242).await.unwrap().file_id, 4242);
    let err = api.query_task_v1(78).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert_eq!(sim.stats().task_requests_by_task.get(&77), Some(&2));
}

#[tokio::test]
async fn a_v2_task_carries_a_url_to_its_video() {
    let sim = start(SimConfig::default()).await;
    sim.add_task(90, SimTask::new(SimApi::V2, 90));
    let api = client(&sim);
    let TaskStatus::Video(url) = api.query_task_v2(90).await.unwrap() else {
        panic!("a finished v2 task has a URL");
    };
    let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert_eq!(body.len() as u64, sim.file_size(90));
    let ended = [
        (
            91,
            TaskEnd::Fail(1026, "sensitive".into()),
            "sensitive (code 1026)",
        ),
        (92, TaskEnd::Cancel, "cancelled"),
    ];
    for (id, end, words) in ended {
        sim.add_task(id, SimTask::new(SimApi::V2, id).ending(end));
        let status = api.query_task_v2(id).await.unwrap();
        assert!(
            matches!(&status, TaskStatus::Failed(r) if r.contains(words)),
            "{status:?}"
        );
    }
    // v2 has no `expired`: a task past its 7 days answers 400 invalid task_id.
    sim.add_task(93, SimTask::new(SimApi::V2, 93).ending(TaskEnd::Expire));
    sim.add_task(
        96,
        SimTask::new(SimApi::V2, 96).created_ago(TASK_RETENTION + Duration::from_secs(60)),
    );
    for id in [93, 96] {
        let gone = api.query_task_v2(id).await.unwrap_err();
        assert_eq!(gone.class(), ErrorClass::Permanent, "{gone}");
        assert!(gone.to_string().contains("invalid task_id"), "{gone}");
    }
    sim.add_task(94, SimTask::new(SimApi::V2, 94).ending(TaskEnd::Never));
    assert!(!api.query_task_v2(94).await.unwrap().is_final());
    let unknown = api.query_task_v2(95).await.unwrap_err();
    assert_eq!(unknown.class(), ErrorClass::Permanent, "{unknown}");
}

#[tokio::test]
async fn v2_errors_come_as_http_statuses_with_codes() {
    let sim = start(SimConfig::default()).await;
    sim.add_task(5, SimTask::new(SimApi::V2, 5));
    sim.set_faults(Faults {
        api: vec![ApiFaultRule::new(ApiFault::Code(1002, "rate limit".into())).limit(1)],
        ..Faults::default()
    });
    let api = client(&sim);
    let err = api.query_task_v2(5).await.unwrap_err();
    assert!(
        matches!(err.class(), ErrorClass::RateLimited { .. }),
        "{err}"
    );
    assert!(api.query_task_v2(5).await.unwrap().is_final());
    sim.set_api_key(Some("other".into()));
    let err = api.query_task_v2(5).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Account { pause: None }, "{err}");
}

#[tokio::test]
async fn the_v2_list_pages_through_every_v2_task_newest_first() {
    let sim = start(SimConfig::default()).await;
    for id in 1..=5 {
        sim.add_task(id, SimTask::new(SimApi::V2, id));
    }
    sim.add_task(6, SimTask::new(SimApi::V1, 60));
    let api = client(&sim);
    let mut seen = Vec::new();
    for page in 1..=3 {
        let listed = api.list_tasks_v2(page, 2).await.unwrap();
        assert_eq!(listed.total, Some(5));
        seen.extend(listed.items.iter().map(|t| t.id));
    }
    assert_eq!(seen, [5, 4, 3, 2, 1]);
    assert!(api.list_tasks_v2(4, 2).await.unwrap().items.is_empty());
    assert_eq!(sim.stats().task_list_requests, 4);
}

/// A callback receiver on loopback: echoes challenges (unless told not
/// to) and keeps every other body.
async fn receiver(echo: bool) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = (seen.clone(), echo);
    let app = axum::Router::new()
        .route(
            "/cb",
            post(
                |State((seen, echo)): State<(Arc<Mutex<Vec<Value>>>, bool)>, body: Bytes| async move {
                    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if let Some(challenge) = value.get("challenge") {
                        let reply = if echo { challenge.clone() } else { json!("nope") };
                        return json!({ "challenge": reply }).to_string();
                    }
                    seen.lock().unwrap().push(value);
                    "{}".to_string()
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn create(sim: &Simulator, version: &str, callback_url: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}/{version}/video_generation", sim.api_base()))
        .bearer_auth("k")
        .body(
            json!({"model": "MiniMax-H3", "prompt": "a cat", "callback_url": callback_url})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap()
}

#[tokio::test]
async fn a_task_with_a_callback_url_is_verified_then_reports_its_end() {
    let sim = start(SimConfig {
        task_generation: Duration::from_millis(200),
        callback_repeats: 2,
        ..SimConfig::default()
    })
    .await;
    let (url, seen) = receiver(true).await;
    let created = create(&sim, "v2", &url).await;
    let id: i64 = created["task_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(sim.task(id).unwrap().file_id, id);
    for _ in 0..100 {
        if seen.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(
        bodies.len(),
        3,
        "one update while generating, the end twice"
    );
    let last = parse_callback(bodies[2].to_string().as_bytes()).unwrap();
    assert!(
        matches!(last, crate::api::Callback::Task { id: i, status: TaskStatus::Video(_), .. } if i == id)
    );
    let stats = sim.stats();
    assert_eq!(
        (stats.callback_challenges, stats.callbacks_delivered),
        (1, 3)
    );

    let v1 = create(&sim, "v1", &url).await;
    assert_eq!(v1["base_resp"]["status_code"], 0, "{v1}");
}

#[tokio::test]
async fn a_callback_url_that_does_not_echo_the_challenge_is_refused() {
    let sim = start(SimConfig::default()).await;
    let (url, seen) = receiver(false).await;
    let v1 = create(&sim, "v1", &url).await;
    assert_eq!(v1["base_resp"]["status_code"], 2013, "{v1}");
    let v2 = create(&sim, "v2", &url).await;
    assert_eq!(v2["error"]["type"], "bad_request_error", "{v2}");
    assert!(sim.task_ids().is_empty());
    assert!(seen.lock().unwrap().is_empty());
}
