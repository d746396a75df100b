//! The MiniMax API client: `GET /v1/files/retrieve` turns a file id into
//! a short-lived download URL; the generation-task queries (v1 and v2) and
//! the v2 task list say where a task is ([`task`]). The only code that
//! holds the API key, and it sends it to the API host alone: redirects are
//! not followed.

pub(crate) mod classify;
pub(crate) mod clock;
pub(crate) mod task;
#[cfg(test)]
mod task_sim_tests;

use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, DATE, HeaderValue, RETRY_AFTER};
use reqwest::{Url, redirect};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::{USER_AGENT, describe_reqwest, parse_retry_after};

pub use classify::ErrorClass;
pub use task::TaskStatus;
pub(crate) use task::{Callback, CallbackError, ListedTask, TaskPage};

/// A file as retrieve describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub file_id: i64,
    /// `None` when the API reported 0 (as it does for videos): the size is
    /// then learned from the CDN.
    pub bytes: Option<u64>,
    pub filename: Option<String>,
    pub download_url: Url,
    pub trace_id: Option<String>,
    /// The API's `purpose` (`video_generation`, ...).
    pub purpose: Option<String>,
    /// The API's `created_at`, Unix seconds.
    pub created_at: Option<i64>,
    /// The file object as retrieve returned it, without `download_url` (a
    /// credential): what a sidecar records.
    pub object: serde_json::Map<String, serde_json::Value>,
    /// The API's clock minus the host's, in seconds, from the answer's
    /// `Date` header: `Expires` in the URL is on the API's clock.
    pub clock_offset: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no API key: set MINIMAX_API_KEY or api_key_file in the config")]
    NoKey,
    #[error("MiniMax answered status_code {code} ({message}){}", trace(.trace_id))]
    Status {
        code: i64,
        message: String,
        trace_id: Option<String>,
    },
    #[error(
        "{endpoint} answered HTTP {status}{}{}{}",
        retry(.retry_after),
        trace(.trace_id),
        hint(*.status)
    )]
    Http {
        status: u16,
        /// The URL called, without its query.
        endpoint: String,
        retry_after: Option<Duration>,
        trace_id: Option<String>,
    },
    #[error("unreadable answer from the MiniMax API: {detail}{}", trace(.trace_id))]
    Malformed {
        detail: String,
        trace_id: Option<String>,
    },
    #[error("cannot reach the MiniMax API: {0}")]
    Transport(String),
    /// No connection to the API host at all (refused, no route, DNS): this
    /// host's network or `api_base`, not the file.
    #[error(
        "cannot connect to the MiniMax API at {base}: {detail}; check api_base (MINIMAX_API_BASE) and this host's network"
    )]
    Unreachable { base: String, detail: String },
    /// A v2 task whose video was being downloaded answers that it ended
    /// without one (expired after its 7 days, say): permanent.
    #[error("generation task {task_id} has no video any more: {reason}")]
    TaskEnded { task_id: i64, reason: String },
    /// A `download_url` the download client would refuse: permanent, as
    /// the next answer would carry one like it. Names the scheme only: the
    /// URL's query is its signature.
    #[error(
        "retrieve answered a download_url with scheme {scheme:?}: only http and https URLs are \
         fetched{}",
        trace(.trace_id)
    )]
    DownloadScheme {
        scheme: String,
        trace_id: Option<String>,
    },
}

fn hint(status: u16) -> &'static str {
    match status {
        300..=399 | 400 | 404 | 405 => {
            "; check api_base (MINIMAX_API_BASE): it does not look like the MiniMax API"
        }
        401 | 403 => "; check the API key and that it belongs to this api_base's region",
        _ => "",
    }
}

fn trace(id: &Option<String>) -> String {
    id.as_ref()
        .map(|t| format!(" [Trace-Id {t}]"))
        .unwrap_or_default()
}

fn retry(after: &Option<Duration>) -> String {
    after
        .map(|d| format!(", Retry-After {}s", d.as_secs()))
        .unwrap_or_default()
}

impl ApiError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::NoKey => ErrorClass::Account { pause: None },
            ApiError::Status { code, .. } => classify::classify_status_code(*code),
            ApiError::Http {
                status,
                retry_after,
                ..
            } => classify::classify_api_http(*status, *retry_after),
            ApiError::Malformed { .. } | ApiError::Transport(_) => ErrorClass::Transient,
            ApiError::Unreachable { .. } => ErrorClass::Unreachable,
            ApiError::DownloadScheme { .. } | ApiError::TaskEnded { .. } => ErrorClass::Permanent,
        }
    }

    pub fn trace_id(&self) -> Option<&str> {
        match self {
            ApiError::Status { trace_id, .. }
            | ApiError::Http { trace_id, .. }
            | ApiError::Malformed { trace_id, .. }
            | ApiError::DownloadScheme { trace_id, .. } => trace_id.as_deref(),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct RetrieveBody {
    file: Option<serde_json::Value>,
    base_resp: Option<BaseResp>,
}

#[derive(Deserialize)]
pub(crate) struct BaseResp {
    pub(crate) status_code: i64,
    #[serde(default)]
    pub(crate) status_msg: String,
}

#[derive(Deserialize)]
struct FileBody {
    file_id: Option<FlexibleId>,
    bytes: Option<i64>,
    filename: Option<String>,
    download_url: Option<String>,
}

/// `file_id` is a JSON number in retrieve and a string in the query API.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum FlexibleId {
    Number(i64),
    Text(String),
}

impl FlexibleId {
    pub(crate) fn value(&self) -> Option<i64> {
        match self {
            FlexibleId::Number(n) => Some(*n),
            FlexibleId::Text(s) => s.trim().parse().ok(),
        }
    }
}

/// Parses a retrieve answer body. Pure, so every malformed shape is tested
/// without a server.
pub fn parse_retrieve(
    requested: i64,
    body: &[u8],
    trace_id: Option<String>,
) -> Result<FileInfo, ApiError> {
    let malformed = |detail: String| ApiError::Malformed {
        detail,
        trace_id: trace_id.clone(),
    };
    let parsed: RetrieveBody = serde_json::from_slice(body).map_err(|e| {
        let start = String::from_utf8_lossy(&body[..body.len().min(80)]).replace('\n', " ");
        malformed(format!(
            "not the expected JSON ({e}); body starts {start:?}"
        ))
    })?;
    let base = parsed
        .base_resp
        .ok_or_else(|| malformed("no base_resp in the answer".into()))?;
    if base.status_code != 0 {
        return Err(ApiError::Status {
            code: base.status_code,
            message: base.status_msg,
            trace_id,
        });
    }
    let Some(serde_json::Value::Object(mut object)) = parsed.file else {
        return Err(malformed("status 0 but no file object".into()));
    };
    let file: FileBody = serde_json::from_value(serde_json::Value::Object(object.clone()))
        .map_err(|e| malformed(format!("not the expected JSON in file ({e})")))?;
    object.remove("download_url");
    let file_id = file
        .file_id
        .as_ref()
        .and_then(FlexibleId::value)
        .ok_or_else(|| malformed("file.file_id missing or not an integer".into()))?;
    if file_id != requested {
        return Err(malformed(format!(
            "asked for file {requested}, got file {file_id}"
        )));
    }
    let raw_url = file
        .download_url
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| malformed("file.download_url missing".into()))?;
    let download_url = Url::parse(raw_url.trim())
        .map_err(|_| malformed("file.download_url is not an http(s) URL".into()))?;
    if !matches!(download_url.scheme(), "http" | "https") {
        return Err(ApiError::DownloadScheme {
            scheme: download_url.scheme().to_string(),
            trace_id,
        });
    }
    if download_url.host_str().is_none_or(str::is_empty) {
        return Err(malformed("file.download_url has no host".into()));
    }
    Ok(FileInfo {
        file_id,
        bytes: file.bytes.filter(|&b| b > 0).map(|b| b as u64),
        filename: file.filename,
        download_url,
        trace_id,
        purpose: object
            .get("purpose")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        created_at: object.get("created_at").and_then(|v| v.as_i64()),
        object,
        clock_offset: None,
    })
}

/// Talks to the MiniMax API host. Cheap to clone.
#[derive(Clone)]
pub(crate) struct ApiClient {
    http: reqwest::Client,
    base: Url,
    key: Option<SecretString>,
}

impl ApiClient {
    pub(crate) fn new(
        base: Url,
        key: Option<SecretString>,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<ApiClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .timeout(read_timeout + connect_timeout)
            // The key must never follow a redirect to another host.
            .redirect(redirect::Policy::none())
            .build()?;
        Ok(ApiClient { http, base, key })
    }

    /// Which MiniMax account this client calls for, as a name that may be
    /// stored in a shared queue: the first 16 hex digits (64 bits) of the
    /// key's SHA-256, never the key (a hash does not give it back, and an
    /// API key is a long random string, not something to guess); `""`
    /// without a key. Two keys get the same name once in 2^64. A pause learned
    /// from an answer to this key is recorded under it (see
    /// `Queue::set_account`).
    pub(crate) fn account(&self) -> String {
        use sha2::Digest;
        let Some(key) = &self.key else {
            return String::new();
        };
        let digest = sha2::Sha256::digest(key.expose_secret().as_bytes());
        hex::encode(&digest[..8])
    }

    /// `GET /v1/files/retrieve?file_id=ID`.
    pub(crate) async fn retrieve(&self, file_id: i64) -> Result<FileInfo, ApiError> {
        let answer = self
            .get("v1/files/retrieve", &[("file_id", file_id.to_string())])
            .await?;
        if !answer.success {
            return Err(answer.http_error());
        }
        let mut info = parse_retrieve(file_id, &answer.body, answer.trace_id)?;
        info.clock_offset = answer.clock_offset;
        Ok(info)
    }

    /// `GET /v1/query/video_generation?task_id=ID`: where a v1 task is, and
    /// on success the file id to retrieve.
    pub(crate) async fn query_task_v1(&self, task_id: i64) -> Result<TaskStatus, ApiError> {
        let answer = self
            .get(
                "v1/query/video_generation",
                &[("task_id", task_id.to_string())],
            )
            .await?;
        if !answer.success {
            return Err(answer.http_error());
        }
        task::parse_v1_query(task_id, &answer.body, answer.trace_id)
    }

    /// `GET /v2/query/video_generation/{ID}`: where a v2 task is, and on
    /// success the video's (time-limited) URL.
    pub(crate) async fn query_task_v2(&self, task_id: i64) -> Result<TaskStatus, ApiError> {
        let answer = self
            .get(&format!("v2/query/video_generation/{task_id}"), &[])
            .await?;
        if !answer.success {
            return Err(answer.v2_error());
        }
        task::parse_v2_query(task_id, &answer.body, answer.trace_id)
    }

    /// The video of a finished v2 task, as a file to download: the task is
    /// queried again for a fresh URL (they are time-limited), and the job
    /// it is for is keyed by the task id. The size is learned from the CDN.
    pub(crate) async fn task_video(&self, task_id: i64) -> Result<FileInfo, ApiError> {
        let answer = self
            .get(&format!("v2/query/video_generation/{task_id}"), &[])
            .await?;
        if !answer.success {
            return Err(answer.v2_error());
        }
        let mut info = task::parse_v2_video(task_id, &answer.body, answer.trace_id)?;
        info.clock_offset = answer.clock_offset;
        Ok(info)
    }

    /// `GET /v2/query/video_generation?page_num=N&page_size=M`: one page
    /// of the account's tasks of the last 7 days.
    pub(crate) async fn list_tasks_v2(
        &self,
        page_num: u32,
        page_size: u32,
    ) -> Result<TaskPage, ApiError> {
        let query = [
            ("page_num", page_num.to_string()),
            ("page_size", page_size.to_string()),
        ];
        let answer = self.get("v2/query/video_generation", &query).await?;
        if !answer.success {
            return Err(answer.v2_error());
        }
        let mut page = task::parse_v2_list(&answer.body, answer.trace_id)?;
        page.clock_offset = answer.clock_offset;
        Ok(page)
    }

    /// One authenticated GET of `path` under the API base; the body read
    /// up to [`MAX_ANSWER_BYTES`] (an error's body only as far as it reads).
    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Answer, ApiError> {
        let key = self.key.as_ref().ok_or(ApiError::NoKey)?;
        let mut url = self
            .base
            .join(path)
            .map_err(|e| ApiError::Transport(format!("bad API base {}: {e}", self.base)))?;
        let endpoint = url.as_str().to_string();
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).map_err(|_| {
                ApiError::Transport(
                    "the API key contains characters not allowed in a header".into(),
                )
            })?;
        auth.set_sensitive(true);
        let response = self
            .http
            .get(url)
            .header(AUTHORIZATION, auth)
            .send()
            .await
            .map_err(|e| match e.is_connect() {
                true => ApiError::Unreachable {
                    base: self.base.to_string(),
                    detail: describe_reqwest(&e),
                },
                false => ApiError::Transport(describe_reqwest(&e)),
            })?;
        let status = response.status();
        let headers = response.headers();
        let trace_id = headers
            .get("trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let clock_offset = headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| clock::offset_from_date(v, SystemTime::now()));
        if let Some(offset) = clock_offset {
            clock::observed(offset);
        }
        let body = match read_capped(response, MAX_ANSWER_BYTES).await {
            Ok(body) => body,
            Err(_) if !status.is_success() => Vec::new(),
            Err(detail) => {
                return Err(ApiError::Malformed {
                    detail,
                    trace_id: trace_id.clone(),
                });
            }
        };
        Ok(Answer {
            success: status.is_success(),
            status: status.as_u16(),
            endpoint,
            retry_after,
            trace_id,
            body,
            clock_offset,
        })
    }
}

/// An answer of the API host, read.
struct Answer {
    success: bool,
    status: u16,
    /// The URL called, without its query.
    endpoint: String,
    retry_after: Option<Duration>,
    trace_id: Option<String>,
    body: Vec<u8>,
    /// The API's clock minus ours (seconds), from its `Date` header.
    clock_offset: Option<i64>,
}

impl Answer {
    /// An HTTP error status, as the gateway in front of v1 sends them.
    fn http_error(&self) -> ApiError {
        ApiError::Http {
            status: self.status,
            endpoint: self.endpoint.clone(),
            retry_after: self.retry_after,
            trace_id: self.trace_id.clone(),
        }
    }

    /// An HTTP error status from a v2 endpoint: its body's code decides
    /// ([`task::v2_http_error`]).
    fn v2_error(&self) -> ApiError {
        task::v2_http_error(self.status, &self.body, self.http_error())
    }
}

/// A retrieve answer is a few hundred bytes; anything past this is not one.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Reads a body, refusing to buffer more than `limit` bytes.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("body cut short: {}", describe_reqwest(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("answer larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_is_a_short_digest_of_the_key_never_the_key() {
        let base = Url::parse("http://127.0.0.1:1/").unwrap();
        let client = |key: Option<&str>| {
            let key = key.map(SecretString::from);
            let t = Duration::from_secs(1);
            ApiClient::new(base.clone(), key, t, t).unwrap()
        };
        let a = client(Some("key-a-0123456789")).account();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert!(!a.contains("key-a"), "{a}");
        assert_eq!(client(Some("key-a-0123456789")).account(), a);
        assert_ne!(client(Some("key-b-0123456789")).account(), a);
        assert_eq!(client(None).account(), "");
    }

    fn ok_body(id: &str, bytes: i64) -> String {
        format!(
            r#"{{"file":{{"file_id":{id},"bytes":{bytes},"created_at":1700469398,"filename":"output_aigc.mp4","purpose":"video_generation","download_url":"https://cdn.example/x/output_aigc.mp4?Expires=1"}},"base_resp":{{"status_code":0,"status_msg":"success"}}}}"#
        )
    }

    #[test]
    fn parses_a_real_shaped_answer_with_bytes_zero() {
        let info = parse_retrieve(305, ok_body("305", 0).as_bytes(), Some("t1".into())).unwrap();
        assert_eq!(info.file_id, 305);
        assert_eq!(info.bytes, None);
        assert_eq!(info.filename.as_deref(), Some("output_aigc.mp4"));
        assert_eq!(info.download_url.host_str(), Some("cdn.example"));
        assert_eq!(info.purpose.as_deref(), Some("video_generation"));
        assert_eq!(info.created_at, Some(1_700_469_398));
        // The object is kept for sidecars, without its credential.
        assert_eq!(info.object["filename"], "output_aigc.mp4");
        assert!(!info.object.contains_key("download_url"));
    }

    #[test]
    fn accepts_a_string_file_id_and_keeps_positive_bytes() {
        let info = parse_retrieve(305, ok_body("\"305\"", 1234).as_bytes(), None).unwrap();
        assert_eq!((info.file_id, info.bytes), (305, Some(1234)));
    }

    #[test]
    fn non_zero_status_codes_become_status_errors() {
        let body =
            br#"{"file":null,"base_resp":{"status_code":1004,"status_msg":"invalid api key"}}"#;
        let err = parse_retrieve(1, body, Some("abc".into())).unwrap_err();
        assert!(matches!(err, ApiError::Status { code: 1004, .. }));
        assert_eq!(err.class(), ErrorClass::Account { pause: None });
        assert!(err.to_string().contains("Trace-Id abc"));
    }

    #[test]
    fn a_download_url_of_another_scheme_is_permanent_and_named_by_its_scheme_only() {
        for (url, scheme) in [
            ("ftp://cdn.example/x?Signature=SECRET", "ftp"),
            ("file:///etc/passwd?SECRET", "file"),
            ("data:text/plain,SECRET", "data"),
        ] {
            let body = format!(
                r#"{{"file":{{"file_id":1,"download_url":"{url}"}},"base_resp":{{"status_code":0}}}}"#
            );
            let err = parse_retrieve(1, body.as_bytes(), None).unwrap_err();
            assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
            let text = err.to_string();
            assert!(text.contains(&format!("{scheme:?}")), "{text}");
            assert!(
                !text.contains("SECRET") && !text.contains("cdn.example"),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_answers_are_transient_and_say_what_was_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"<html><body>502 Bad Gateway</body></html>", "not the expected JSON"),
            (br#"{"file":{"file_id":1,"bytes":0,"#, "not the expected JSON"),
            (br#"{"file":{"file_id":1}}"#, "no base_resp"),
            (br#"{"base_resp":{"status_code":0}}"#, "no file object"),
            (br#"{"file":{"bytes":1},"base_resp":{"status_code":0}}"#, "file_id missing"),
            (br#"{"file":{"file_id":2,"download_url":"https://x/y"},"base_resp":{"status_code":0}}"#, "got file 2"),
            (br#"{"file":{"file_id":1},"base_resp":{"status_code":0}}"#, "download_url missing"),
            (br#"{"file":{"file_id":1,"download_url":"www.downloadurl.com"},"base_resp":{"status_code":0}}"#, "not an http(s) URL"),
        ];
        for (body, expected) in cases {
            let err = parse_retrieve(1, body, None).unwrap_err();
            assert_eq!(err.class(), ErrorClass::Transient, "{err}");
            assert!(
                err.to_string().contains(expected),
                "{err} should mention {expected}"
            );
        }
    }
}
