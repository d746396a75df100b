//! Generation tasks: `POST /v1|v2/video_generation` creates one (after the
//! `callback_url`'s challenge, when one is given), the v1 and v2 queries
//! say where it is, the v2 list pages through them, and a task created with
//! a `callback_url` POSTs its updates there. A task generates for a set
//! time, then ends as its [`TaskEnd`] says; v1 answers in `base_resp`
//! codes, v2 in HTTP statuses with OpenAI-style bodies, as MiniMax does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::api::{fault_response, json_response, key_problem, shutting_down};
use super::config::ApiFault;
use super::{Shared, lock};

/// Which of MiniMax's two video APIs a simulated task belongs to. The
/// simulator's own word: it shares no types with the client it tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimApi {
    /// `/v1/video_generation`, `/v1/query/video_generation?task_id=`.
    V1,
    /// `/v2/video_generation`, `/v2/query/video_generation/{id}`.
    V2,
}

/// How long MiniMax keeps a v2 task queryable: an older one answers HTTP
/// 400 `invalid task_id` and leaves the list.
pub const TASK_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The case of the status words in v1 callbacks: MiniMax's callback pages
/// list `processing`/`success`/`failed`, other pages' examples `Success`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CallbackCase {
    /// `processing`, `success`, `failed` (the callback pages' list).
    #[default]
    Lower,
    /// `Processing`, `Success`, `Failed`.
    Capitalised,
}

/// How a simulated task ends once its generation time is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskEnd {
    /// Succeeds with its file.
    Succeed,
    /// Fails with this code and message (v1 `Fail`, v2 `failed`).
    Fail(i64, String),
    /// v2 `cancelled` (v1 `Fail`).
    Cancel,
    /// Gone, as a task past MiniMax's 7 days is (v2 has no `expired`
    /// status): v2 answers HTTP 400 `invalid task_id`, v1 a non-zero
    /// `base_resp`, and the list leaves it out.
    Expire,
    /// Never finishes.
    Never,
}

/// A generation task the simulator knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimTask {
    pub api: SimApi,
    /// How long it generates, from its creation.
    pub generation: Duration,
    pub end: TaskEnd,
    /// The file it produces: v1 retrieves it by this id, v2's URL names
    /// this CDN object.
    pub file_id: i64,
    /// Where its updates are POSTed.
    pub callback_url: Option<String>,
    /// Reported instead of MiniMax's words while generating: a status a
    /// client must not take for an end.
    pub odd_status: Option<String>,
    /// Created this long before it was declared: past
    /// [`TASK_RETENTION`] it is gone.
    pub age: Duration,
}

impl SimTask {
    /// A task that succeeds at once with `file_id`.
    pub fn new(api: SimApi, file_id: i64) -> SimTask {
        SimTask {
            api,
            generation: Duration::ZERO,
            end: TaskEnd::Succeed,
            file_id,
            callback_url: None,
            odd_status: None,
            age: Duration::ZERO,
        }
    }

    /// Created `age` ago (a task older than 7 days is gone).
    pub fn created_ago(mut self, age: Duration) -> SimTask {
        self.age = age;
        self
    }

    pub fn generating(mut self, time: Duration) -> SimTask {
        self.generation = time;
        self
    }

    pub fn ending(mut self, end: TaskEnd) -> SimTask {
        self.end = end;
        self
    }
}

struct Entry {
    task: SimTask,
    created: Instant,
    created_unix: u64,
}

/// Every task, and the next id a creation gets.
pub(crate) struct TaskBook {
    next_id: i64,
    created: u64,
    entries: BTreeMap<i64, Entry>,
}

impl Default for TaskBook {
    fn default() -> Self {
        TaskBook {
            // Ids shaped like MiniMax's (15 digits), far from file ids tests use.
            next_id: 880_000_000_000_001,
            created: 0,
            entries: BTreeMap::new(),
        }
    }
}

impl TaskBook {
    pub(crate) fn insert(&mut self, id: i64, task: SimTask) {
        let entry = Entry {
            created: Instant::now(),
            created_unix: super::now_unix().saturating_sub(task.age.as_secs()),
            task,
        };
        self.entries.insert(id, entry);
    }

    pub(crate) fn get(&self, id: i64) -> Option<SimTask> {
        self.entries.get(&id).map(|e| e.task.clone())
    }

    pub(crate) fn ids(&self) -> Vec<i64> {
        self.entries.keys().copied().collect()
    }
}

/// Where a task is now.
#[derive(Clone, Debug, PartialEq)]
enum Phase {
    /// Generating: the share of its time gone (0 to 1).
    Generating(f64),
    Ended(TaskEnd),
}

fn phase(entry: &Entry) -> Phase {
    let elapsed = entry.created.elapsed() + entry.task.age;
    if entry.task.end == TaskEnd::Never || elapsed < entry.task.generation {
        let share = elapsed.as_secs_f64() / entry.task.generation.as_secs_f64().max(1e-9);
        return Phase::Generating(share.min(1.0));
    }
    Phase::Ended(entry.task.end.clone())
}

/// The route a task call took, as [`super::SimStats::requests_by_endpoint`]
/// names it.
fn endpoint_of(path: &str) -> &'static str {
    match path.trim_end_matches('/') {
        "/v1/video_generation" => "POST /v1/video_generation",
        "/v2/video_generation" => "POST /v2/video_generation",
        "/v1/query/video_generation" => "GET /v1/query/video_generation",
        "/v2/query/video_generation" => "GET /v2/query/video_generation",
        p if p.starts_with("/v2/query/video_generation/") => {
            "GET /v2/query/video_generation/{task_id}"
        }
        _ => "other",
    }
}

/// Is the task gone from MiniMax (past its 7 days, or ended so)?
fn is_gone(entry: &Entry) -> bool {
    entry.task.end == TaskEnd::Expire || entry.created.elapsed() + entry.task.age >= TASK_RETENTION
}

pub(crate) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router
        .route("/v1/video_generation", post(create_v1))
        .route("/v2/video_generation", post(create_v2))
        .route("/v1/query/video_generation", get(query_v1))
        .route("/v2/query/video_generation", get(list_v2))
        .route("/v2/query/video_generation/{id}", get(query_v2))
}

/// The key check and the fault rules every task endpoint applies, as
/// retrieve does: `Err` is the answer to send instead.
async fn gatekeep(
    shared: &Shared,
    headers: &HeaderMap,
    id: Option<i64>,
    api: SimApi,
    uri: &Uri,
) -> Result<(), Response> {
    let expected = lock(&shared.api_key).clone();
    let bad_key = key_problem(headers, expected.as_deref()).is_some();
    shared.record_task_request(id, bad_key);
    shared.count_endpoint(endpoint_of(uri.path()));
    let (latency, fault) = {
        let mut faults = lock(&shared.faults);
        (faults.faults.api_latency, faults.pick_api(id))
    };
    if let Some(latency) = latency {
        tokio::select! {
            _ = tokio::time::sleep(latency) => {}
            _ = shared.cancel.cancelled() => return Err(shutting_down()),
        }
    }
    if let Some(fault) = fault {
        shared.record_fault();
        return Err(match (fault, api) {
            (ApiFault::Code(code, msg), SimApi::V1) => v1_error(shared, code, &msg),
            (ApiFault::Code(code, msg), SimApi::V2) => v2_error(shared, code, &msg),
            (other, _) => fault_response(shared, other, id, uri).await,
        });
    }
    if bad_key && expected.is_some() {
        return Err(match api {
            SimApi::V1 => v1_error(shared, 1004, "login fail: invalid api key"),
            SimApi::V2 => v2_error(shared, 1004, "login fail: invalid api key"),
        });
    }
    Ok(())
}

fn v1_error(shared: &Shared, code: i64, msg: &str) -> Response {
    let body =
        json!({"task_id": "", "status": "", "base_resp": {"status_code": code, "status_msg": msg}});
    json_response(shared, StatusCode::OK, body.to_string())
}

/// A v2 error: the HTTP status its code stands for and an OpenAI-style
/// body whose message ends with the code.
fn v2_error(shared: &Shared, code: i64, msg: &str) -> Response {
    // The statuses v2 documents: 400, 401, 402, 422, 429, 529.
    let overloaded = StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let (status, kind) = match code {
        1002 | 1039 | 1041 | 2045 => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
        1004 | 2049 => (StatusCode::UNAUTHORIZED, "authorized_error"),
        1008 | 1028 | 1030 | 2061 | 2056 | 2038 => {
            (StatusCode::PAYMENT_REQUIRED, "insufficient_balance_error")
        }
        1000 | 1001 | 1013 | 1024 | 1033 => (overloaded, "overloaded_error"),
        1026 | 1027 | 1042 => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity_error",
        ),
        _ => (StatusCode::BAD_REQUEST, "bad_request_error"),
    };
    let body = json!({
        "type": "error",
        "error": {"type": kind, "message": format!("{msg} ({code})"), "http_code": status.as_u16().to_string()},
        "request_id": shared.new_request_id(),
    });
    json_response(shared, status, body.to_string())
}

async fn create_v1(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    if let Err(answer) = gatekeep(&shared, &headers, None, SimApi::V1, &uri).await {
        return answer;
    }
    match create(&shared, SimApi::V1, &body).await {
        Ok(id) => {
            let body = json!({"task_id": id.to_string(), "base_resp": {"status_code": 0, "status_msg": "success"}});
            json_response(&shared, StatusCode::OK, body.to_string())
        }
        Err(why) => v1_error(&shared, 2013, &why),
    }
}

async fn create_v2(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    if let Err(answer) = gatekeep(&shared, &headers, None, SimApi::V2, &uri).await {
        return answer;
    }
    match create(&shared, SimApi::V2, &body).await {
        Ok(id) => json_response(
            &shared,
            StatusCode::OK,
            json!({"task_id": id.to_string()}).to_string(),
        ),
        Err(why) => v2_error(&shared, 2013, &why),
    }
}

/// Creates a task from a creation request: its `callback_url` must echo
/// the challenge first. Returns its id, or why it was refused.
async fn create(shared: &Arc<Shared>, api: SimApi, body: &[u8]) -> Result<i64, String> {
    let request: Value =
        serde_json::from_slice(body).map_err(|_| "invalid params: the body is not JSON")?;
    let callback_url = request
        .get("callback_url")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(url) = &callback_url {
        challenge(shared, url).await?;
    }
    let id = {
        let mut book = lock(&shared.tasks);
        let id = book.next_id;
        book.next_id += 2;
        book.created += 1;
        let fails = shared
            .task_fail_every
            .is_some_and(|n| n > 0 && book.created.is_multiple_of(u64::from(n)));
        let mut task = SimTask::new(api, if api == SimApi::V1 { id + 1 } else { id })
            .generating(shared.task_generation);
        if fails {
            task.end = TaskEnd::Fail(1027, "output video contains sensitive content".into());
        }
        task.callback_url = callback_url.clone();
        book.insert(id, task);
        id
    };
    if callback_url.is_some() {
        tokio::spawn(deliver_updates(shared.clone(), id));
    }
    Ok(id)
}

/// POSTs `{"challenge": ...}` and wants the same value back within 3 s.
async fn challenge(shared: &Shared, url: &str) -> Result<(), String> {
    let token = shared.new_request_id();
    let refused = |why: String| format!("callback_url verification failed: {why}");
    let answer = callback_client(Duration::from_secs(3))
        .post(url)
        .header("content-type", "application/json")
        .body(json!({"challenge": token}).to_string())
        .send()
        .await
        .map_err(|e| refused(describe_send_error(&e)))?;
    let status = answer.status();
    let echoed: Value = answer
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| refused(format!("HTTP {status}, no JSON")))?;
    lock(&shared.stats).callback_challenges += 1;
    if status.is_success() && echoed.get("challenge").and_then(Value::as_str) == Some(&token) {
        Ok(())
    } else {
        Err(refused(format!("HTTP {status} without the challenge")))
    }
}

/// What went wrong with a callback POST, in a few words (no URL).
fn describe_send_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

fn callback_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// A task's updates to its `callback_url`: one while it generates, then
/// its end, `callback_repeats` times (deliveries may repeat).
async fn deliver_updates(shared: Arc<Shared>, id: i64) {
    let Some((url, generation)) = ({
        let book = lock(&shared.tasks);
        book.entries
            .get(&id)
            .and_then(|e| Some((e.task.callback_url.clone()?, e.task.generation)))
    }) else {
        return;
    };
    post_update(&shared, &url, id).await;
    tokio::select! {
        _ = tokio::time::sleep(generation) => {}
        _ = shared.cancel.cancelled() => return,
    }
    if lock(&shared.tasks)
        .entries
        .get(&id)
        .is_none_or(|e| e.task.end == TaskEnd::Never)
    {
        return;
    }
    for _ in 0..shared.callback_repeats.max(1) {
        post_update(&shared, &url, id).await;
    }
}

async fn post_update(shared: &Shared, url: &str, id: i64) {
    let Some(body) = task_body_for_callback(shared, id) else {
        return;
    };
    let sent = callback_client(Duration::from_secs(10))
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let mut stats = lock(&shared.stats);
    match sent {
        Ok(answer) if answer.status().is_success() => stats.callbacks_delivered += 1,
        _ => stats.callback_failures += 1,
    }
}

fn task_body_for_callback(shared: &Shared, id: i64) -> Option<String> {
    let book = lock(&shared.tasks);
    let entry = book.entries.get(&id)?;
    Some(match entry.task.api {
        SimApi::V1 => v1_body(id, entry, shared.v1_callback_case, true).to_string(),
        SimApi::V2 => json!({"task": v2_task(shared, id, entry, Item::Query)}).to_string(),
    })
}

fn query_id(uri: &Uri, name: &str) -> Option<i64> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .ok()
        .and_then(|axum::extract::Query(pairs)| {
            pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
        })
        .and_then(|v| v.trim().parse().ok())
}

async fn query_v1(State(shared): State<Arc<Shared>>, headers: HeaderMap, uri: Uri) -> Response {
    let id = query_id(&uri, "task_id");
    if let Err(answer) = gatekeep(&shared, &headers, id, SimApi::V1, &uri).await {
        return answer;
    }
    let body = {
        let book = lock(&shared.tasks);
        id.and_then(|id| Some((id, book.entries.get(&id)?)))
            .filter(|(_, e)| e.task.api == SimApi::V1 && !is_gone(e))
            .map(|(id, entry)| v1_body(id, entry, CallbackCase::Lower, false))
    };
    match body {
        Some(body) => json_response(&shared, StatusCode::OK, body.to_string()),
        None => v1_error(&shared, 2013, "invalid params, task_id not found"),
    }
}

/// A v1 query answer, or (`callback`) the v1 callback body: the same
/// shape (`task_id`, `status`, `file_id`, `base_resp`), the callback's
/// status words in `case` (`processing`/`success`/`failed`, as the
/// callback pages list them, or capitalised).
fn v1_body(id: i64, entry: &Entry, case: CallbackCase, callback: bool) -> Value {
    let ok = json!({"status_code": 0, "status_msg": "success"});
    let (status, file_id, base) = match phase(entry) {
        Phase::Generating(share) => {
            let word = entry.task.odd_status.clone().unwrap_or_else(|| {
                match share {
                    _ if callback => "Processing",
                    s if s < 0.25 => "Preparing",
                    s if s < 0.5 => "Queueing",
                    _ => "Processing",
                }
                .to_string()
            });
            (word, None, ok)
        }
        Phase::Ended(TaskEnd::Succeed) => ("Success".into(), Some(entry.task.file_id), ok),
        Phase::Ended(TaskEnd::Fail(code, msg)) => (
            v1_fail_word(callback),
            None,
            json!({"status_code": code, "status_msg": msg}),
        ),
        Phase::Ended(_) => (v1_fail_word(callback), None, ok),
    };
    let status = match (callback, case) {
        (true, CallbackCase::Lower) => status.to_ascii_lowercase(),
        _ => status,
    };
    let mut body = json!({"task_id": id.to_string(), "status": status, "base_resp": base});
    if let Some(file_id) = file_id {
        body["file_id"] = json!(file_id.to_string());
        body["video_width"] = json!(1920);
        body["video_height"] = json!(1080);
    }
    body
}

/// A failed v1 task's word: `Fail` in query answers, `Failed` (or
/// `failed`) in callbacks, as their pages write it.
fn v1_fail_word(callback: bool) -> String {
    if callback { "Failed" } else { "Fail" }.into()
}

async fn query_v2(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let id = raw.trim().parse::<i64>().ok();
    if let Err(answer) = gatekeep(&shared, &headers, id, SimApi::V2, &uri).await {
        return answer;
    }
    let task = {
        let book = lock(&shared.tasks);
        id.and_then(|id| Some((id, book.entries.get(&id)?)))
            .filter(|(_, e)| e.task.api == SimApi::V2 && !is_gone(e))
            .map(|(id, entry)| v2_task(&shared, id, entry, Item::Query))
    };
    match task {
        Some(task) => json_response(&shared, StatusCode::OK, json!({"task": task}).to_string()),
        None => invalid_task_id(&shared),
    }
}

/// Where a v2 task object is shown: list items carry `task_type` and no
/// `modality`, as the list's documented example does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Query,
    List,
}

/// HTTP 400 `invalid task_id`: what v2 answers for a task it does not
/// know, or no longer (past 7 days; v2 has no `expired` status).
fn invalid_task_id(shared: &Shared) -> Response {
    let body = json!({
        "type": "error",
        "error": {"type": "bad_request_error", "message": "invalid task_id", "http_code": "400"},
        "request_id": shared.new_request_id(),
    });
    json_response(shared, StatusCode::BAD_REQUEST, body.to_string())
}

/// A v2 task object, its URL signed now (on MiniMax's clock).
fn v2_task(shared: &Shared, id: i64, entry: &Entry, item: Item) -> Value {
    let mut task = json!({
        "id": id.to_string(),
        "model": "MiniMax-H3",
        "created_at": shared.clock(entry.created_unix),
        "task_type": "generation",
    });
    if item == Item::Query {
        task["resolution"] = json!("2K");
        task["duration"] = json!(5);
        task["modality"] = json!("video");
    }
    let status = match phase(entry) {
        Phase::Generating(share) => entry
            .task
            .odd_status
            .clone()
            .unwrap_or_else(|| if share < 0.3 { "queued" } else { "running" }.to_string()),
        Phase::Ended(TaskEnd::Succeed) => {
            let expires = shared.now().saturating_add(shared.url_ttl.as_secs());
            task["content"] = json!({"url": shared.download_url(entry.task.file_id, expires)});
            if item == Item::Query {
                task["usage"] = json!({"total_seconds": 5});
            }
            "succeeded".into()
        }
        Phase::Ended(TaskEnd::Fail(code, msg)) => {
            task["error"] = json!({"code": code.to_string(), "message": msg});
            "failed".into()
        }
        Phase::Ended(TaskEnd::Cancel) => "cancelled".into(),
        // Gone tasks are not shown; should one be, it is as it ended.
        Phase::Ended(_) => "failed".into(),
    };
    task["status"] = json!(status);
    task
}

async fn list_v2(State(shared): State<Arc<Shared>>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(answer) = gatekeep(&shared, &headers, None, SimApi::V2, &uri).await {
        return answer;
    }
    lock(&shared.stats).task_list_requests += 1;
    let page_num = query_id(&uri, "page_num").unwrap_or(1).max(1) as usize;
    // At most `list_page_max` a page whatever is asked: MiniMax documents
    // no maximum, and its example serves 20.
    let page_size = query_id(&uri, "page_size")
        .unwrap_or(20)
        .clamp(1, i64::from(shared.list_page_max.max(1))) as usize;
    let (items, total) = {
        let book = lock(&shared.tasks);
        // Newest first, as MiniMax lists them.
        let v2: Vec<_> = book
            .entries
            .iter()
            .rev()
            .filter(|(_, e)| e.task.api == SimApi::V2 && !is_gone(e))
            .collect();
        let items: Vec<Value> = v2
            .iter()
            .skip((page_num - 1) * page_size)
            .take(page_size)
            .map(|(id, entry)| v2_task(&shared, **id, entry, Item::List))
            .collect();
        (items, v2.len())
    };
    json_response(
        &shared,
        StatusCode::OK,
        json!({"items": items, "total": total}).to_string(),
    )
}
