//! The MiniMax file API client: `GET /v1/files/retrieve` turns a file id into
//! a short-lived download URL. The only code that holds the API key, and it
//! sends it to the API host alone: redirects are not followed.

pub mod classify;

use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Url, redirect};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::{USER_AGENT, describe_reqwest, parse_retry_after};

pub use classify::ErrorClass;

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
            ApiError::DownloadScheme { .. } => ErrorClass::Permanent,
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
struct BaseResp {
    status_code: i64,
    #[serde(default)]
    status_msg: String,
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
enum FlexibleId {
    Number(i64),
    Text(String),
}

impl FlexibleId {
    fn value(&self) -> Option<i64> {
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
    })
}

/// Talks to the MiniMax API host. Cheap to clone.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    key: Option<SecretString>,
}

impl ApiClient {
    pub fn new(
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

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Replaces the key (SIGHUP after the operator fixed it).
    pub fn with_key(&self, key: Option<SecretString>) -> ApiClient {
        ApiClient {
            key,
            ..self.clone()
        }
    }

    /// `GET /v1/files/retrieve?file_id=ID`.
    pub async fn retrieve(&self, file_id: i64) -> Result<FileInfo, ApiError> {
        let key = self.key.as_ref().ok_or(ApiError::NoKey)?;
        let mut url = self
            .base
            .join("v1/files/retrieve")
            .map_err(|e| ApiError::Transport(format!("bad API base {}: {e}", self.base)))?;
        let endpoint = url.as_str().to_string();
        url.query_pairs_mut()
            .append_pair("file_id", &file_id.to_string());
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
            .map_err(|e| ApiError::Transport(describe_reqwest(&e)))?;
        let status = response.status();
        let headers = response.headers();
        let trace_id = headers
            .get("trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !status.is_success() {
            let retry_after = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            return Err(ApiError::Http {
                status: status.as_u16(),
                endpoint,
                retry_after,
                trace_id,
            });
        }
        let body = read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|detail| ApiError::Malformed {
                detail,
                trace_id: trace_id.clone(),
            })?;
        parse_retrieve(file_id, &body, trace_id)
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
