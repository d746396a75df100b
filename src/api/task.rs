//! Generation tasks as MiniMax reports them: the v1 query
//! (`/v1/query/video_generation`), the v2 query
//! (`/v2/query/video_generation/{id}`), the v2 task list and the callbacks
//! MiniMax POSTs. Pure parsers: any bytes give a typed value or a typed
//! error (property-tested and fuzzed), and fields they do not know are
//! ignored.

use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, BaseResp, FileInfo, FlexibleId};
use crate::ids::TaskApi;

/// Where a generation task is, as one answer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    /// Still generating; MiniMax's own word for where (`Queueing`,
    /// `running`, ...).
    Generating(String),
    /// v1 success: the generated file, to retrieve.
    File(i64),
    /// v2 success: the video's time-limited URL (query again for a fresh one).
    Video(Url),
    /// Ended without a file: MiniMax's reason.
    Failed(String),
    /// A status MiniMax does not document: not an end, polled again.
    Unrecognised(String),
}

impl TaskStatus {
    /// Has the task ended, one way or the other?
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TaskStatus::File(_) | TaskStatus::Video(_) | TaskStatus::Failed(_)
        )
    }
}

/// One task of a v2 list page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedTask {
    pub id: i64,
    pub status: TaskStatus,
    /// Unix seconds, when the list says.
    pub created_at: Option<i64>,
    /// Not a video task (an H3-Context-IR prompt, say): nothing to archive.
    pub not_video: bool,
}

/// One page of `GET /v2/query/video_generation?page_num=&page_size=`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskPage {
    pub items: Vec<ListedTask>,
    /// Tasks matching the list (the last 7 days), when the answer says.
    pub total: Option<u64>,
    /// Items without a usable numeric id: skipped, counted.
    pub unreadable: u64,
    /// The API's clock minus the host's (seconds), from the answer's
    /// `Date` header, when it had one.
    pub clock_offset: Option<i64>,
}

fn malformed(detail: impl Into<String>, trace_id: &Option<String>) -> ApiError {
    ApiError::Malformed {
        detail: detail.into(),
        trace_id: trace_id.clone(),
    }
}

/// Parses JSON, naming the start of a body that is not.
fn json(body: &[u8], trace_id: &Option<String>) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let start = String::from_utf8_lossy(&body[..body.len().min(80)]).replace('\n', " ");
        malformed(
            format!("not the expected JSON ({e}); body starts {start:?}"),
            trace_id,
        )
    })
}

/// A non-zero `base_resp.status_code`, checked on every answer that has one.
fn check_base_resp(value: &Value, trace_id: &Option<String>) -> Result<(), ApiError> {
    let Some(raw) = value.get("base_resp").filter(|b| !b.is_null()) else {
        return Ok(());
    };
    let base = BaseResp::deserialize(raw)
        .map_err(|e| malformed(format!("unreadable base_resp ({e})"), trace_id))?;
    if base.status_code == 0 {
        return Ok(());
    }
    Err(ApiError::Status {
        code: base.status_code,
        message: base.status_msg,
        trace_id: trace_id.clone(),
    })
}

fn text(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn id_of(value: &Value, key: &str) -> Option<i64> {
    FlexibleId::deserialize(value.get(key)?)
        .ok()
        .and_then(|id| id.value())
        .filter(|id| *id > 0)
}

/// A task id in an answer must be the one asked about, when it is there.
fn check_id(
    requested: i64,
    found: Option<&Value>,
    trace_id: &Option<String>,
) -> Result<(), ApiError> {
    let Some(found) = found.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let id = FlexibleId::deserialize(found)
        .ok()
        .and_then(|id| id.value());
    if id == Some(requested) {
        return Ok(());
    }
    Err(malformed(
        format!("asked about task {requested}, the answer is about {found}"),
        trace_id,
    ))
}

/// Parses a v1 query answer (`task_id`, `status`, `file_id` as a string,
/// `base_resp`). `base_resp` is required, as in retrieve.
pub fn parse_v1_query(
    requested: i64,
    body: &[u8],
    trace_id: Option<String>,
) -> Result<TaskStatus, ApiError> {
    let value = json(body, &trace_id)?;
    if value.get("base_resp").is_none_or(Value::is_null) {
        return Err(malformed("no base_resp in the answer", &trace_id));
    }
    check_base_resp(&value, &trace_id)?;
    check_id(requested, value.get("task_id"), &trace_id)?;
    v1_status(&value, &trace_id)
}

/// The status of a v1 task object (a query answer or a callback).
fn v1_status(value: &Value, trace_id: &Option<String>) -> Result<TaskStatus, ApiError> {
    let status = text(value, "status").unwrap_or_default();
    Ok(match status.trim().to_ascii_lowercase().as_str() {
        "preparing" | "queueing" | "processing" => TaskStatus::Generating(status),
        "success" => match id_of(value, "file_id") {
            Some(file_id) => TaskStatus::File(file_id),
            None => return Err(malformed("status Success but no usable file_id", trace_id)),
        },
        "fail" | "failed" => TaskStatus::Failed(v1_reason(value, &status)),
        _ => TaskStatus::Unrecognised(status),
    })
}

/// MiniMax's reason for a failed v1 task: its message when it gives one.
fn v1_reason(value: &Value, status: &str) -> String {
    let message = value
        .get("base_resp")
        .and_then(|b| text(b, "status_msg"))
        .or_else(|| text(value, "error_message"))
        .filter(|m| !m.trim().is_empty() && !m.eq_ignore_ascii_case("success"));
    match message {
        Some(m) => format!("MiniMax reported the task as {status}: {m}"),
        None => format!("MiniMax reported the task as {status} (no reason given)"),
    }
}

/// Parses a v2 query answer (`{"task": {...}}`).
pub fn parse_v2_query(
    requested: i64,
    body: &[u8],
    trace_id: Option<String>,
) -> Result<TaskStatus, ApiError> {
    let value = json(body, &trace_id)?;
    check_base_resp(&value, &trace_id)?;
    if let Some(error) = v2_error_in(&value, &trace_id) {
        return Err(error);
    }
    let task = value
        .get("task")
        .filter(|t| t.is_object())
        .ok_or_else(|| malformed("no task object in the answer", &trace_id))?;
    check_id(requested, task.get("id"), &trace_id)?;
    v2_status(task, &trace_id)
}

/// A finished v2 task's video as a file to download (`file_id` is the
/// task id: v2 has no file ids). The task object, without its URL (a
/// credential), is what a sidecar records; a task that ended without a
/// video is [`ApiError::TaskEnded`].
pub(crate) fn parse_v2_video(
    requested: i64,
    body: &[u8],
    trace_id: Option<String>,
) -> Result<FileInfo, ApiError> {
    let url = match parse_v2_query(requested, body, trace_id.clone())? {
        TaskStatus::Video(url) => url,
        TaskStatus::Failed(reason) => {
            return Err(ApiError::TaskEnded {
                task_id: requested,
                reason,
            });
        }
        _ => {
            return Err(malformed(
                format!("task {requested} finished, but its query shows no video now"),
                &trace_id,
            ));
        }
    };
    let mut object = match json(body, &trace_id)?.get_mut("task").map(Value::take) {
        Some(Value::Object(object)) => object,
        _ => serde_json::Map::new(),
    };
    if let Some(Value::Object(content)) = object.get_mut("content") {
        content.remove("url");
    }
    Ok(FileInfo {
        file_id: requested,
        bytes: None,
        filename: url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .filter(|name| !name.is_empty())
            .map(str::to_string),
        purpose: Some("video_generation".into()),
        created_at: object.get("created_at").and_then(Value::as_i64),
        object,
        download_url: url,
        trace_id,
        clock_offset: None,
    })
}

/// The status of a v2 task object (a query answer, a list item, a callback).
fn v2_status(task: &Value, trace_id: &Option<String>) -> Result<TaskStatus, ApiError> {
    let status = text(task, "status").unwrap_or_default();
    Ok(match status.trim().to_ascii_lowercase().as_str() {
        "queued" | "running" => TaskStatus::Generating(status),
        "succeeded" => v2_video(task, trace_id)?,
        "failed" => TaskStatus::Failed(v2_reason(task)),
        "cancelled" => TaskStatus::Failed("the task was cancelled at MiniMax".into()),
        "expired" => TaskStatus::Failed("the task expired at MiniMax".into()),
        _ => TaskStatus::Unrecognised(status),
    })
}

/// A succeeded v2 task's video URL; a task whose output is not a video
/// ends without a file.
fn v2_video(task: &Value, trace_id: &Option<String>) -> Result<TaskStatus, ApiError> {
    let url = task
        .get("content")
        .and_then(|c| text(c, "url"))
        .filter(|u| !u.trim().is_empty());
    let Some(raw) = url else {
        if is_not_video(task) {
            let kind = text(task, "task_type").unwrap_or_else(|| "text".into());
            return Ok(TaskStatus::Failed(format!(
                "the task produced no video (task_type {kind}): nothing to archive"
            )));
        }
        return Err(malformed("status succeeded but no content.url", trace_id));
    };
    let url = Url::parse(raw.trim())
        .map_err(|_| malformed("content.url is not an http(s) URL", trace_id))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::DownloadScheme {
            scheme: url.scheme().to_string(),
            trace_id: trace_id.clone(),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(malformed("content.url has no host", trace_id));
    }
    Ok(TaskStatus::Video(url))
}

/// Is this task's output something other than a video? Documented list
/// items carry `task_type` (`generation`, `regeneration`, or
/// `h3_context_ir` for a text-only result) and no `modality`; other
/// answers carry `modality`; a succeeded text task has `content.prompt`.
fn is_not_video(task: &Value) -> bool {
    text(task, "modality").is_some_and(|m| !m.eq_ignore_ascii_case("video"))
        || text(task, "task_type").is_some_and(|t| is_text_task_type(&t))
        || task.get("content").and_then(|c| c.get("prompt")).is_some()
}

/// Task types whose result is text, not a video (`h3_context_ir`: an
/// H3 context "intermediate representation", a prompt).
pub(crate) fn is_text_task_type(task_type: &str) -> bool {
    let t = task_type.trim().to_ascii_lowercase();
    t == "h3_context_ir" || t.ends_with("_ir")
}

fn v2_reason(task: &Value) -> String {
    let error = task.get("error");
    let message = error.and_then(|e| text(e, "message")).unwrap_or_default();
    let code = error.and_then(|e| text(e, "code"));
    match (message.trim(), code) {
        ("", None) => "MiniMax reported the task as failed (no reason given)".into(),
        ("", Some(code)) => format!("MiniMax reported the task as failed (code {code})"),
        (m, None) => format!("MiniMax reported the task as failed: {m}"),
        (m, Some(code)) => format!("MiniMax reported the task as failed: {m} (code {code})"),
    }
}

/// The MiniMax code an OpenAI-style error stands for: the one in the
/// message's trailing parenthesis (`... (1004)`), else the code its type
/// means (documented pairs: 401 authorized_error is 1004, 429
/// rate_limit_error 1002, 400 bad_request_error 2013, ...).
fn oai_code(kind: &str, message: &str) -> Option<i64> {
    let trailing = message
        .trim_end()
        .strip_suffix(')')
        .and_then(|m| m.rsplit_once('('))
        .and_then(|(_, code)| code.trim().parse::<i64>().ok());
    trailing.or(match kind {
        "authorized_error" => Some(1004),
        "insufficient_balance_error" => Some(1008),
        "rate_limit_error" => Some(1002),
        "bad_request_error" | "unprocessable_entity_error" => Some(2013),
        "server_error" | "overloaded_error" => Some(1000),
        _ => None,
    })
}

/// The error a v2 answer carries in its body (`{"type":"error","error":
/// {"type","message"}}`), if it is one.
fn v2_error_in(value: &Value, trace_id: &Option<String>) -> Option<ApiError> {
    let error = value.get("error").filter(|e| e.is_object())?;
    let kind = text(error, "type").unwrap_or_default();
    let message = text(error, "message").unwrap_or_default();
    let code = oai_code(&kind, &message)?;
    let trace_id = trace_id.clone().or_else(|| text(value, "request_id"));
    Some(ApiError::Status {
        code,
        message: if message.is_empty() { kind } else { message },
        trace_id,
    })
}

/// What a v2 answer with an HTTP error status means: v2 reports its errors
/// with the real status and an OpenAI-style body whose code classifies as
/// every MiniMax code does; a body without one (a gateway's page) leaves
/// the HTTP status to speak. A 429 always stays a rate limit, with its
/// `Retry-After`.
pub fn v2_http_error(status: u16, body: &[u8], fallback: ApiError) -> ApiError {
    if status == 429 {
        return fallback;
    }
    let trace_id = fallback.trace_id().map(str::to_string);
    let error = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| v2_error_in(&value, &trace_id))
        .unwrap_or(fallback);
    match error {
        ApiError::Status {
            code,
            message,
            trace_id,
        } if status == 400 && is_gone_message(&message) => ApiError::Status {
            code,
            message: format!(
                "{message}: MiniMax no longer knows this task (v2 tasks can be queried for 7 days); \
                 nothing is left to archive"
            ),
            trace_id,
        },
        other => other,
    }
}

/// Is this v2 error message the answer for a task past its 7 days (or
/// never known)? v2 has no `expired` status: such a task answers HTTP 400
/// `invalid task_id`.
fn is_gone_message(message: &str) -> bool {
    message.to_ascii_lowercase().contains("invalid task_id")
}

/// Parses one page of the v2 task list (`{"items": [...], "total": N}`).
pub fn parse_v2_list(body: &[u8], trace_id: Option<String>) -> Result<TaskPage, ApiError> {
    let value = json(body, &trace_id)?;
    check_base_resp(&value, &trace_id)?;
    if let Some(error) = v2_error_in(&value, &trace_id) {
        return Err(error);
    }
    let items = match value.get("items") {
        Some(Value::Array(items)) => items.as_slice(),
        Some(Value::Null) | None if value.get("total").is_some() => &[],
        _ => return Err(malformed("no items array in the task list", &trace_id)),
    };
    let mut page = TaskPage {
        total: value.get("total").and_then(Value::as_u64),
        ..TaskPage::default()
    };
    for item in items {
        match listed_task(item, &trace_id) {
            Some(task) => page.items.push(task),
            None => page.unreadable += 1,
        }
    }
    Ok(page)
}

/// One list item; `None` when it has no usable id. An item whose status
/// cannot be read is still listed, as not final: its query will say.
fn listed_task(item: &Value, trace_id: &Option<String>) -> Option<ListedTask> {
    let id = id_of(item, "id").or_else(|| id_of(item, "task_id"))?;
    let status = v2_status(item, trace_id)
        .unwrap_or_else(|_| TaskStatus::Unrecognised(text(item, "status").unwrap_or_default()));
    Some(ListedTask {
        id,
        status,
        created_at: item.get("created_at").and_then(Value::as_i64),
        not_video: is_not_video(item),
    })
}

/// Most characters of a challenge echoed back.
pub const MAX_CHALLENGE_CHARS: usize = 1024;

/// What MiniMax POSTs to a task's `callback_url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callback {
    /// The verification request: the value must be echoed within 3 s.
    Challenge(String),
    /// A task's status update.
    Task {
        id: i64,
        /// Which API the body's shape is from.
        api: TaskApi,
        status: TaskStatus,
    },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("the body is not JSON")]
    NotJson,
    #[error("the challenge is not a string of at most {MAX_CHALLENGE_CHARS} characters")]
    BadChallenge,
    #[error("the body is neither a challenge nor a task update with a numeric task id")]
    NoTask,
}

/// Parses a callback body: a challenge, a v1-shaped update (`task_id`
/// with `status`, `file_id`, `base_resp`: MiniMax's callback pages show
/// `success` as well as `Success`) or a v2-shaped one (`{"task": {...}}`,
/// or the task object itself with its `id`). Which API a body is from is
/// read from its shape, never from its status word: `failed` is a v1 word
/// too. A non-zero `base_resp` is a failure, with MiniMax's message.
pub fn parse_callback(body: &[u8]) -> Result<Callback, CallbackError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| CallbackError::NotJson)?;
    if let Some(challenge) = value.get("challenge") {
        return match challenge.as_str() {
            Some(c) if c.chars().count() <= MAX_CHALLENGE_CHARS => {
                Ok(Callback::Challenge(c.to_string()))
            }
            _ => Err(CallbackError::BadChallenge),
        };
    }
    let (task, api, id) = match callback_shape(&value) {
        Some(shape) => shape,
        None => return Err(CallbackError::NoTask),
    };
    let status = match api {
        TaskApi::V1 => match check_base_resp(task, &None) {
            Err(ApiError::Status { code, message, .. }) => TaskStatus::Failed(format!(
                "MiniMax reported the task as failed: {message} (status_code {code})"
            )),
            _ => v1_status(task, &None).unwrap_or_else(|_| {
                TaskStatus::Unrecognised(text(task, "status").unwrap_or_default())
            }),
        },
        TaskApi::V2 => v2_status(task, &None)
            .unwrap_or_else(|_| TaskStatus::Unrecognised(text(task, "status").unwrap_or_default())),
    };
    Ok(Callback::Task { id, api, status })
}

/// The task object of a callback body, the API its shape is from, and its
/// id: a `task` object is v2 (as its query answers); a top-level `task_id`
/// is v1 (its query's shape: `task_id`, `status`, `file_id`, `base_resp`);
/// a top-level `id` is a bare v2 task object.
fn callback_shape(value: &Value) -> Option<(&Value, TaskApi, i64)> {
    if let Some(task) = value.get("task").filter(|t| t.is_object()) {
        let id = id_of(task, "id").or_else(|| id_of(task, "task_id"))?;
        return Some((task, TaskApi::V2, id));
    }
    if let Some(id) = id_of(value, "task_id") {
        return Some((value, TaskApi::V1, id));
    }
    id_of(value, "id").map(|id| (value, TaskApi::V2, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorClass;

    const V1_OK: &str = r#"{"task_id":"176843862716480","status":"Success","file_id":"176844028768320","video_width":1920,"video_height":1080,"base_resp":{"status_code":0,"status_msg":"success"}}"#;

    #[test]
    fn v1_answers_as_documented() {
        let id = 176_843_862_716_480;
        assert_eq!(
            parse_v1_query(id, V1_OK.as_bytes(), None).ok(),
            Some(TaskStatus::File(176_844_028_768_320))
        );
        for word in ["Preparing", "Queueing", "Processing"] {
            let body = format!(
                r#"{{"task_id":"{id}","status":"{word}","base_resp":{{"status_code":0}}}}"#
            );
            assert_eq!(
                parse_v1_query(id, body.as_bytes(), None).ok(),
                Some(TaskStatus::Generating(word.into()))
            );
        }
        let fail = format!(
            r#"{{"task_id":"{id}","status":"Fail","base_resp":{{"status_code":0,"status_msg":"success"}}}}"#
        );
        let Ok(TaskStatus::Failed(reason)) = parse_v1_query(id, fail.as_bytes(), None) else {
            panic!("Fail is an end");
        };
        assert!(reason.contains("Fail"), "{reason}");
        let unknown =
            format!(r#"{{"task_id":"{id}","status":"Unknown","base_resp":{{"status_code":0}}}}"#);
        assert_eq!(
            parse_v1_query(id, unknown.as_bytes(), None).ok(),
            Some(TaskStatus::Unrecognised("Unknown".into()))
        );
    }

    #[test]
    fn v1_base_resp_is_checked_before_the_status() {
        let body = br#"{"task_id":"","status":"","base_resp":{"status_code":1004,"status_msg":"login fail"}}"#;
        let err = parse_v1_query(5, body, None).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Account { pause: None });
        let body = br#"{"status":"","base_resp":{"status_code":1002,"status_msg":"rate limit"}}"#;
        let err = parse_v1_query(5, body, None).unwrap_err();
        assert!(matches!(err.class(), ErrorClass::RateLimited { .. }));
    }

    #[test]
    fn v1_malformed_answers_are_transient() {
        let cases: &[&[u8]] = &[
            b"<html>502</html>",
            br#"{"status":"Success"}"#,
            br#"{"task_id":"5","status":"Success","base_resp":{"status_code":0}}"#,
            br#"{"task_id":"6","status":"Processing","base_resp":{"status_code":0}}"#,
            br#"{"task_id":"5","status":"Success","file_id":"x","base_resp":{"status_code":0}}"#,
        ];
        for body in cases {
            let err = parse_v1_query(5, body, None).unwrap_err();
            assert_eq!(err.class(), ErrorClass::Transient, "{err}");
        }
    }

    const V2_OK: &str = r#"{"task":{"id":"424010985738629","model":"MiniMax-H3","status":"succeeded","created_at":1785125529,"content":{"url":"https://cdn.example/out.mp4?sig=1"},"resolution":"2K","duration":5,"usage":{"total_seconds":5},"task_type":"generation","modality":"video"}}"#;

    #[test]
    fn v2_answers_as_documented() {
        let id = 424_010_985_738_629;
        let Ok(TaskStatus::Video(url)) = parse_v2_query(id, V2_OK.as_bytes(), None) else {
            panic!("a video");
        };
        assert_eq!(url.host_str(), Some("cdn.example"));
        let failed = r#"{"task":{"id":"7","status":"failed","error":{"code":"1026","message":"video description contains sensitive content"}}}"#;
        assert_eq!(
            parse_v2_query(7, failed.as_bytes(), None).ok(),
            Some(TaskStatus::Failed(
                "MiniMax reported the task as failed: video description contains sensitive content (code 1026)".into()
            ))
        );
        for (word, end) in [
            ("queued", false),
            ("running", false),
            ("cancelled", true),
            ("expired", true),
            ("paused", false),
        ] {
            let body = format!(r#"{{"task":{{"id":"7","status":"{word}"}}}}"#);
            let status = parse_v2_query(7, body.as_bytes(), None).unwrap();
            assert_eq!(status.is_final(), end, "{word}: {status:?}");
        }
        let text = r#"{"task":{"id":"7","status":"succeeded","content":{"prompt":"..."},"task_type":"h3_context_ir","modality":"text"}}"#;
        assert!(matches!(
            parse_v2_query(7, text.as_bytes(), None),
            Ok(TaskStatus::Failed(r)) if r.contains("h3_context_ir")
        ));
    }

    #[test]
    fn a_v2_video_is_a_file_keyed_by_its_task_whose_record_has_no_url() {
        let info = parse_v2_video(424_010_985_738_629, V2_OK.as_bytes(), None).unwrap();
        assert_eq!(info.file_id, 424_010_985_738_629);
        assert_eq!(info.filename.as_deref(), Some("out.mp4"));
        assert_eq!(info.created_at, Some(1_785_125_529));
        assert_eq!(info.object["model"], "MiniMax-H3");
        assert!(
            !serde_json::to_string(&info.object)
                .unwrap()
                .contains("sig=1")
        );
        let ended = r#"{"task":{"id":"7","status":"expired"}}"#;
        let err = parse_v2_video(7, ended.as_bytes(), None).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    }

    #[test]
    fn v2_errors_classify_by_their_code() {
        let cases = [
            (
                401,
                r#"{"type":"error","error":{"type":"authorized_error","message":"login fail (1004)","http_code":"401"},"request_id":"r1"}"#,
                ErrorClass::Account { pause: None },
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"bad_request_error","message":"invalid task_id"}}"#,
                ErrorClass::Permanent,
            ),
            (
                500,
                r#"{"type":"error","error":{"type":"server_error","message":"internal error (1000)"}}"#,
                ErrorClass::Transient,
            ),
            (502, "<html>bad gateway</html>", ErrorClass::Transient),
        ];
        for (status, body, class) in cases {
            let fallback = ApiError::Http {
                status,
                endpoint: "e".into(),
                retry_after: None,
                trace_id: None,
            };
            let err = v2_http_error(status, body.as_bytes(), fallback);
            assert_eq!(err.class(), class, "{status} {body}: {err}");
        }
        let limited = ApiError::Http {
            status: 429,
            endpoint: "e".into(),
            retry_after: Some(std::time::Duration::from_secs(3)),
            trace_id: None,
        };
        let err = v2_http_error(429, br#"{"error":{"type":"rate_limit_error"}}"#, limited);
        assert!(matches!(
            err.class(),
            ErrorClass::RateLimited {
                retry_after: Some(_)
            }
        ));
    }

    #[test]
    fn the_v2_list_is_read_item_by_item() {
        let body = r#"{"items":[
            {"id":"11","status":"succeeded","created_at":1785225940,"content":{"url":"https://c/1.mp4"},"modality":"video"},
            {"id":"12","status":"running"},
            {"id":"bad","status":"queued"},
            {"id":"13","status":"failed","error":{"code":"1026","message":"sensitive"}},
            {"id":"14","status":"succeeded","content":{"prompt":"p"},"task_type":"h3_context_ir","modality":"text"}
        ],"total":476}"#;
        let page = parse_v2_list(body.as_bytes(), None).unwrap();
        assert_eq!(page.total, Some(476));
        assert_eq!(page.unreadable, 1);
        let ids: Vec<i64> = page.items.iter().map(|t| t.id).collect();
        assert_eq!(ids, [11, 12, 13, 14]);
        assert_eq!(page.items[0].created_at, Some(1_785_225_940));
        assert!(matches!(page.items[0].status, TaskStatus::Video(_)));
        assert!(page.items[3].not_video && !page.items[0].not_video);
        assert!(
            parse_v2_list(br#"{"total":0}"#, None)
                .unwrap()
                .items
                .is_empty()
        );
        assert!(parse_v2_list(br#"{"items":5}"#, None).is_err());
    }

    #[test]
    fn v1_callbacks_in_either_case_are_v1() {
        for (word, file) in [("success", true), ("Success", true), ("processing", false)] {
            let body = format!(
                r#"{{"task_id":"115334141465231360","status":"{word}","file_id":"205258526306433","base_resp":{{"status_code":0,"status_msg":"success"}}}}"#
            );
            let Ok(Callback::Task { id, api, status }) = parse_callback(body.as_bytes()) else {
                panic!("{word}: a task update");
            };
            assert_eq!((id, api), (115_334_141_465_231_360, TaskApi::V1), "{word}");
            assert_eq!(
                status == TaskStatus::File(205_258_526_306_433),
                file,
                "{word}"
            );
        }
        for word in ["failed", "Failed", "Fail"] {
            let body = format!(
                r#"{{"task_id":"5","status":"{word}","base_resp":{{"status_code":1027,"status_msg":"output video contains sensitive content"}}}}"#
            );
            assert!(
                matches!(
                    parse_callback(body.as_bytes()),
                    Ok(Callback::Task { id: 5, api: TaskApi::V1, status: TaskStatus::Failed(r) })
                        if r.contains("output video contains sensitive content") && r.contains("1027")
                ),
                "{word}"
            );
        }
    }

    #[test]
    fn an_invalid_task_id_400_means_the_task_is_gone() {
        let fallback = ApiError::Http {
            status: 400,
            endpoint: "e".into(),
            retry_after: None,
            trace_id: None,
        };
        let body =
            br#"{"type":"error","error":{"type":"bad_request_error","message":"invalid task_id"}}"#;
        let err = v2_http_error(400, body, fallback);
        assert_eq!(err.class(), ErrorClass::Permanent);
        let text = err.to_string();
        assert!(
            text.contains("invalid task_id") && text.contains("7 days"),
            "{text}"
        );
    }

    #[test]
    fn task_type_says_a_task_is_not_a_video() {
        let item = r#"{"items":[{"id":"9","status":"queued","task_type":"h3_context_ir"},{"id":"10","status":"queued","task_type":"generation"}],"total":2}"#;
        let page = parse_v2_list(item.as_bytes(), None).unwrap();
        assert!(page.items[0].not_video);
        assert!(!page.items[1].not_video);
    }

    #[test]
    fn callbacks_of_both_shapes() {
        assert_eq!(
            parse_callback(br#"{"challenge":"abc-123"}"#),
            Ok(Callback::Challenge("abc-123".into()))
        );
        assert_eq!(
            parse_callback(br#"{"task_id":"55","status":"Success","file_id":"66","base_resp":{"status_code":0,"status_msg":"success"}}"#),
            Ok(Callback::Task { id: 55, api: TaskApi::V1, status: TaskStatus::File(66) })
        );
        assert!(matches!(
            parse_callback(br#"{"task_id":"55","status":"Fail","base_resp":{"status_code":1027,"status_msg":"output sensitive"}}"#),
            Ok(Callback::Task { id: 55, api: TaskApi::V1, status: TaskStatus::Failed(r) }) if r.contains("1027")
        ));
        assert!(matches!(
            parse_callback(
                br#"{"task":{"id":"77","status":"succeeded","content":{"url":"https://c/v.mp4"}}}"#
            ),
            Ok(Callback::Task {
                id: 77,
                api: TaskApi::V2,
                status: TaskStatus::Video(_)
            })
        ));
        assert!(matches!(
            parse_callback(br#"{"id":"78","status":"running"}"#),
            Ok(Callback::Task {
                id: 78,
                api: TaskApi::V2,
                status: TaskStatus::Generating(_)
            })
        ));
        // Shape, not status word: a top-level task_id is v1 whatever it says.
        assert!(matches!(
            parse_callback(br#"{"task_id":"79","status":"running"}"#),
            Ok(Callback::Task {
                id: 79,
                api: TaskApi::V1,
                status: TaskStatus::Unrecognised(_)
            })
        ));
        assert_eq!(parse_callback(b"challenge"), Err(CallbackError::NotJson));
        assert_eq!(
            parse_callback(br#"{"challenge":5}"#),
            Err(CallbackError::BadChallenge)
        );
        assert_eq!(
            parse_callback(br#"{"status":"Success"}"#),
            Err(CallbackError::NoTask)
        );
        let long = format!(
            r#"{{"challenge":"{}"}}"#,
            "x".repeat(MAX_CHALLENGE_CHARS + 1)
        );
        assert_eq!(
            parse_callback(long.as_bytes()),
            Err(CallbackError::BadChallenge)
        );
    }
}
