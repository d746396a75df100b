//! The simulator against MiniMax's documented answers: every answer it
//! gives, in every mode that is not a deliberate fault of the wire (an HTML
//! page, a cut body, an undocumented status word), must have the shape of
//! the fixtures of `tests/fixtures/minimax/`: the same field names, the
//! same JSON types, a status word the documentation uses, an HTTP status
//! it documents. The schema is walked out of the fixtures here; the
//! client's parsers are never called, so a misunderstanding shared by the
//! client and the simulator shows up as a failure of one suite or the
//! other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use minimax_sim::{
    ApiFault, ApiFaultRule, CallbackCase, Faults, SimApi, SimConfig, SimTask, Simulator,
    TASK_RETENTION, TaskEnd,
};
use serde_json::{Value, json};

use super::conformance::{Fixture, fixtures};
use super::support::{self, TEST_KEY};

/// A JSON type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ty {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

fn ty(value: &Value) -> Ty {
    match value {
        Value::Null => Ty::Null,
        Value::Bool(_) => Ty::Bool,
        Value::Number(_) => Ty::Number,
        Value::String(_) => Ty::String,
        Value::Array(_) => Ty::Array,
        Value::Object(_) => Ty::Object,
    }
}

/// Every path of a JSON value (`task.content.url`, `items[].id`) with its
/// type.
fn walk(value: &Value, path: &str, out: &mut BTreeMap<String, BTreeSet<Ty>>) {
    out.entry(path.to_string()).or_default().insert(ty(value));
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let next = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(inner, &next, out);
            }
        }
        Value::Array(items) => {
            for inner in items {
                walk(inner, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// What a family of documented answers allows.
#[derive(Debug, Default)]
struct Schema {
    /// Every path any fixture of the family has, with its types.
    paths: BTreeMap<String, BTreeSet<Ty>>,
    /// The paths every fixture of the family has.
    required: BTreeSet<String>,
    /// The status words the family uses.
    statuses: BTreeSet<String>,
    /// The HTTP statuses it answers with.
    http: BTreeSet<u16>,
}

fn statuses_of(value: &Value) -> Vec<String> {
    let mut words = Vec::new();
    if let Some(s) = value.get("status").and_then(Value::as_str) {
        words.push(s.to_string());
    }
    if let Some(s) = value.pointer("/task/status").and_then(Value::as_str) {
        words.push(s.to_string());
    }
    if let Some(items) = value.get("items").and_then(Value::as_array) {
        words.extend(
            items
                .iter()
                .filter_map(|i| i.get("status").and_then(Value::as_str))
                .map(str::to_string),
        );
    }
    words
}

/// The schema of the fixtures named with one of `shape_from`'s prefixes;
/// status words only from `words_from`'s.
fn schema(all: &BTreeMap<String, Fixture>, shape_from: &[&str], words_from: &[&str]) -> Schema {
    let pick = |prefixes: &[&str]| -> Vec<&Fixture> {
        all.values()
            .filter(|f| prefixes.iter().any(|p| f.name.starts_with(p)))
            .collect()
    };
    let family = pick(shape_from);
    assert!(!family.is_empty(), "no fixtures for {shape_from:?}");
    let mut schema = Schema::default();
    let mut required: Option<BTreeSet<String>> = None;
    for fixture in &family {
        let mut paths = BTreeMap::new();
        walk(&fixture.json["body"], "", &mut paths);
        let names: BTreeSet<String> = paths.keys().cloned().collect();
        required = Some(match required {
            None => names,
            Some(r) => r.intersection(&names).cloned().collect(),
        });
        for (path, tys) in paths {
            schema.paths.entry(path).or_default().extend(tys);
        }
        schema.http.insert(fixture.http_status());
    }
    schema.required = required.unwrap_or_default();
    for fixture in pick(words_from) {
        schema.statuses.extend(statuses_of(&fixture.json["body"]));
    }
    schema
}

/// How an answer differs from the documented shape (empty: it does not).
fn differences(schema: &Schema, status: u16, body: &Value) -> Vec<String> {
    let mut found = Vec::new();
    if !schema.http.contains(&status) {
        found.push(format!("HTTP {status} (documented: {:?})", schema.http));
    }
    let mut paths = BTreeMap::new();
    walk(body, "", &mut paths);
    for (path, tys) in &paths {
        match schema.paths.get(path) {
            None => found.push(format!("undocumented field {path:?}")),
            Some(allowed) if !tys.is_subset(allowed) => {
                found.push(format!("{path:?} is {tys:?}, documented {allowed:?}"))
            }
            Some(_) => {}
        }
    }
    for path in &schema.required {
        if !paths.contains_key(path) {
            found.push(format!("missing field {path:?}"));
        }
    }
    for word in statuses_of(body) {
        if !schema.statuses.contains(&word) {
            found.push(format!(
                "status {word:?} (documented: {:?})",
                schema.statuses
            ));
        }
    }
    found
}

/// One raw answer of the simulator.
async fn get(sim: &Simulator, path: &str, key: &str) -> (u16, Value) {
    let response = support::http()
        .get(format!("{}{path}", sim.api_base()))
        .bearer_auth(key)
        .send()
        .await
        .expect("the simulator answers");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("a body");
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, value)
}

/// Collects the problems of every answer checked, to report them all.
#[derive(Default)]
struct Report(Vec<String>);

impl Report {
    fn check(&mut self, what: &str, schema: &Schema, status: u16, body: &Value) {
        for problem in differences(schema, status, body) {
            self.0
                .push(format!("{what}: {problem}\n    answer: {body}"));
        }
    }

    fn assert_clean(self) {
        assert!(
            self.0.is_empty(),
            "the simulator answers unlike MiniMax's documentation:\n{}",
            self.0.join("\n")
        );
    }
}

#[test]
fn the_schema_is_walked_from_the_fixtures() {
    let all = fixtures();
    let v2 = schema(&all, &["v2_query_"], &["v2_query_"]);
    assert!(v2.paths.contains_key("task.content.url"));
    assert!(v2.required.contains("task.id") && v2.required.contains("task.status"));
    let words: Vec<&str> = v2.statuses.iter().map(String::as_str).collect();
    assert_eq!(
        words,
        ["cancelled", "failed", "queued", "running", "succeeded"]
    );
    let list = schema(&all, &["v2_list_"], &["v2_list_"]);
    assert!(
        !list.paths.contains_key("items[].modality"),
        "documented list items carry no modality"
    );
    // A made-up answer is told apart.
    let odd = json!({"task": {"id": 5, "status": "expired", "ratio": "16:9"}});
    let problems = differences(&v2, 200, &odd).join("\n");
    for wrong in [
        "\"task.id\" is",
        "undocumented field \"task.ratio\"",
        "status \"expired\"",
        "missing field \"task.model\"",
    ] {
        assert!(
            problems.contains(wrong),
            "{wrong} not found in:\n{problems}"
        );
    }
    assert!(!differences(&v2, 500, &all["v2_query_running"].json["body"]).is_empty());
    assert!(differences(&v2, 200, &all["v2_query_running"].json["body"]).is_empty());
}

#[tokio::test]
async fn retrieve_answers_have_the_documented_shape() {
    let all = fixtures();
    let ok = schema(&all, &["retrieve_ok_"], &[]);
    let error = schema(&all, &["retrieve_error_", "v1_error_"], &[]);
    let mut report = Report::default();
    for report_bytes in [false, true] {
        let sim = support::sim(SimConfig {
            report_bytes,
            faults: Faults {
                missing: [9].into(),
                ..Faults::default()
            },
            ..support::small_files()
        })
        .await;
        let (s, b) = get(&sim, "/v1/files/retrieve?file_id=205258526306433", TEST_KEY).await;
        report.check("retrieve", &ok, s, &b);
        let (s, b) = get(&sim, "/v1/files/retrieve?file_id=9", TEST_KEY).await;
        report.check("retrieve of a missing file", &error, s, &b);
        let (s, b) = get(&sim, "/v1/files/retrieve?file_id=1", "wrong-key").await;
        report.check("retrieve with a wrong key", &error, s, &b);
        for code in [1002, 1000, 1008] {
            sim.set_faults(Faults {
                api: vec![ApiFaultRule::new(ApiFault::Code(code, "fault".into())).limit(1)],
                ..Faults::default()
            });
            let (s, b) = get(&sim, "/v1/files/retrieve?file_id=1", TEST_KEY).await;
            report.check(&format!("retrieve answering {code}"), &error, s, &b);
        }
    }
    report.assert_clean();
}

/// Tasks in every phase the simulator has: generating early, half way and
/// late (age moves them on), and each end.
fn task_zoo(sim: &Simulator, api: SimApi, base: i64) -> Vec<i64> {
    let long = Duration::from_secs(1000);
    let tasks = [
        SimTask::new(api, base).generating(long),
        SimTask::new(api, base)
            .generating(long)
            .created_ago(Duration::from_secs(300)),
        SimTask::new(api, base)
            .generating(long)
            .created_ago(Duration::from_secs(800)),
        SimTask::new(api, base),
        SimTask::new(api, base).ending(TaskEnd::Fail(
            1027,
            "output video contains sensitive content".into(),
        )),
        SimTask::new(api, base).ending(TaskEnd::Cancel),
    ];
    let mut ids = Vec::new();
    for (n, task) in tasks.into_iter().enumerate() {
        let id = base + n as i64;
        sim.add_task(id, task);
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn task_queries_and_the_list_have_the_documented_shape() {
    let all = fixtures();
    let v1 = schema(&all, &["v1_query_"], &["v1_query_"]);
    let v2 = schema(&all, &["v2_query_"], &["v2_query_"]);
    let v2_error = schema(&all, &["v2_error_"], &[]);
    let list = schema(&all, &["v2_list_"], &["v2_list_"]);
    let sim = support::sim(support::small_files()).await;
    let mut report = Report::default();
    for id in task_zoo(&sim, SimApi::V1, 610_000) {
        let (s, b) = get(
            &sim,
            &format!("/v1/query/video_generation?task_id={id}"),
            TEST_KEY,
        )
        .await;
        report.check(&format!("v1 query of {id}"), &v1, s, &b);
    }
    let (s, b) = get(&sim, "/v1/query/video_generation?task_id=1", TEST_KEY).await;
    report.check("v1 query of an unknown task", &v1, s, &b);
    let (s, b) = get(&sim, "/v1/query/video_generation?task_id=610000", "wrong").await;
    report.check("v1 query with a wrong key", &v1, s, &b);

    let ids = task_zoo(&sim, SimApi::V2, 620_000);
    for id in &ids {
        let (s, b) = get(&sim, &format!("/v2/query/video_generation/{id}"), TEST_KEY).await;
        report.check(&format!("v2 query of {id}"), &v2, s, &b);
    }
    sim.add_task(
        629_001,
        SimTask::new(SimApi::V2, 629_001).ending(TaskEnd::Expire),
    );
    let old = TASK_RETENTION + Duration::from_secs(60);
    sim.add_task(629_002, SimTask::new(SimApi::V2, 629_002).created_ago(old));
    for id in [629_001, 629_002, 1] {
        let (s, b) = get(&sim, &format!("/v2/query/video_generation/{id}"), TEST_KEY).await;
        report.check(&format!("v2 query of gone task {id}"), &v2_error, s, &b);
        assert_eq!(
            (s, b["error"]["message"].as_str()),
            (400, Some("invalid task_id"))
        );
    }
    let (s, b) = get(
        &sim,
        &format!("/v2/query/video_generation/{}", ids[0]),
        "wrong",
    )
    .await;
    report.check("v2 query with a wrong key", &v2_error, s, &b);
    for code in [1002, 1000, 1008, 1026, 2013] {
        sim.set_faults(Faults {
            api: vec![ApiFaultRule::new(ApiFault::Code(code, "fault".into())).limit(1)],
            ..Faults::default()
        });
        let (s, b) = get(
            &sim,
            &format!("/v2/query/video_generation/{}", ids[0]),
            TEST_KEY,
        )
        .await;
        report.check(&format!("v2 query answering {code}"), &v2_error, s, &b);
    }
    for page in 1..=2 {
        let (s, b) = get(
            &sim,
            &format!("/v2/query/video_generation?page_num={page}&page_size=100"),
            TEST_KEY,
        )
        .await;
        report.check(&format!("list page {page}"), &list, s, &b);
        if page == 2 {
            assert_eq!(b["items"].as_array().map(Vec::len), Some(0), "{b}");
        }
    }
    report.assert_clean();
}

#[tokio::test]
async fn the_list_serves_at_most_20_a_page_whatever_is_asked() {
    let sim = support::sim(support::small_files()).await;
    for n in 0..45 {
        sim.add_task(700_000 + n, SimTask::new(SimApi::V2, 700_000 + n));
    }
    let mut seen = BTreeSet::new();
    for page in 1..=4 {
        let (_, b) = get(
            &sim,
            &format!("/v2/query/video_generation?page_num={page}&page_size=100"),
            TEST_KEY,
        )
        .await;
        assert_eq!(b["total"], 45, "{b}");
        let items = b["items"].as_array().expect("items");
        assert_eq!(items.len(), [20, 20, 5, 0][page - 1], "page {page}");
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_string()));
    }
    assert_eq!(seen.len(), 45, "every task once");
}

/// Deliveries a test callback receiver took: challenges are echoed.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = bodies.clone();
    let app = axum::Router::new().route(
        "/cb",
        post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen.lock().unwrap().push(value.clone());
                match value.get("challenge") {
                    Some(c) => json!({"challenge": c}).to_string(),
                    None => "{}".to_string(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/cb"), bodies)
}

#[tokio::test]
async fn callbacks_have_the_documented_shape_in_either_case() {
    let all = fixtures();
    // "Response structure matches the Query": the query's fields and words
    // are the callback's too.
    let v1 = schema(
        &all,
        &["callback_v1_", "v1_query_"],
        &["callback_v1_", "v1_query_"],
    );
    let v2 = schema(
        &all,
        &["callback_v2_", "v2_query_"],
        &["callback_v2_", "v2_query_"],
    );
    let challenge = schema(&all, &["callback_challenge"], &[]);
    let mut report = Report::default();
    let mut words = BTreeSet::new();
    for case in [CallbackCase::Lower, CallbackCase::Capitalised] {
        let sim = support::sim(SimConfig {
            task_generation: Duration::from_millis(300),
            task_fail_every: Some(2),
            v1_callback_case: case,
            ..support::small_files()
        })
        .await;
        let (url, bodies) = receiver().await;
        // Every second creation fails: one v1 task and one v2 task.
        for api in ["v1", "v1", "v2", "v2"] {
            let created = support::http()
                .post(format!("{}/{api}/video_generation", sim.api_base()))
                .bearer_auth(TEST_KEY)
                .body(json!({"model": "MiniMax-Hailuo-02", "prompt": "a lighthouse", "callback_url": url}).to_string())
                .send()
                .await
                .unwrap();
            assert!(created.status().is_success());
        }
        support::wait_for(Duration::from_secs(30), "every update", || async {
            (sim.stats().callbacks_delivered >= 8).then_some(())
        })
        .await;
        for body in bodies.lock().unwrap().iter() {
            if body.get("challenge").is_some() {
                report.check("challenge", &challenge, 200, body);
            } else if body.get("task").is_some() {
                report.check("v2 callback", &v2, 200, body);
            } else {
                report.check(&format!("v1 callback ({case:?})"), &v1, 200, body);
                words.extend(statuses_of(body));
            }
        }
    }
    report.assert_clean();
    for word in [
        "processing",
        "success",
        "failed",
        "Processing",
        "Success",
        "Failed",
    ] {
        assert!(
            words.contains(word),
            "no v1 callback said {word}: {words:?}"
        );
    }
}
