//! The fake API host: `GET /v1/files/retrieve` (and, through `tasks.rs`,
//! the generation-task endpoints).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::Shared;
use super::config::ApiFault;

/// `created_at` of every file: the value from the API's own example.
pub(crate) const CREATED_AT: u64 = 1_700_469_398;

/// The filename real video answers carry.
pub(crate) const DEFAULT_FILENAME: &str = "output_aigc.mp4";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    super::tasks::routes(Router::new().route("/v1/files/retrieve", get(retrieve)))
        .fallback(not_found)
        .with_state(shared)
}

async fn not_found(State(shared): State<Arc<Shared>>) -> Response {
    let body = json!({"base_resp": {"status_code": 404, "status_msg": "not found"}});
    json_response(&shared, StatusCode::NOT_FOUND, body.to_string())
}

/// Why a retrieve call's key is not acceptable, if it is not.
pub(super) fn key_problem(headers: &HeaderMap, expected: Option<&str>) -> Option<()> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty());
    match (token, expected) {
        (None, _) => Some(()),
        (Some(t), Some(k)) if t != k => Some(()),
        _ => None,
    }
}

async fn retrieve(State(shared): State<Arc<Shared>>, headers: HeaderMap, uri: Uri) -> Response {
    let raw_id: Option<String> = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .ok()
        .and_then(|Query(pairs)| {
            pairs
                .into_iter()
                .find(|(k, _)| k == "file_id")
                .map(|(_, v)| v)
        });
    let file_id: Option<i64> = raw_id.as_deref().and_then(|s| s.trim().parse().ok());

    let expected_key = super::lock(&shared.api_key).clone();
    let bad_key = key_problem(&headers, expected_key.as_deref()).is_some();
    shared.record_api_request(file_id, bad_key);
    shared.count_endpoint("GET /v1/files/retrieve");
    if shared.over_hidden_limit() {
        return error_json(&shared, 1002, "rate limit exceeded(RPM)");
    }

    let (latency, fault) = {
        let mut faults = super::lock(&shared.faults);
        let latency = faults.faults.api_latency;
        (latency, faults.pick_api(file_id))
    };
    if let Some(latency) = latency {
        tokio::select! {
            _ = tokio::time::sleep(latency) => {}
            _ = shared.cancel.cancelled() => return shutting_down(),
        }
    }
    if let Some(fault) = fault {
        shared.record_fault();
        return fault_response(&shared, fault, file_id, &uri).await;
    }

    if bad_key && expected_key.is_some() {
        // Real auth failures carry no `file` member at all.
        let body = json!({"base_resp": {"status_code": 1004, "status_msg": "invalid api key"}});
        return json_response(&shared, StatusCode::OK, body.to_string());
    }
    let Some(file_id) = file_id else {
        return error_json(&shared, 2013, "invalid params");
    };
    if file_id < 1 || shared.is_missing(file_id) {
        return error_json(&shared, 2013, "file not found");
    }
    json_response(&shared, StatusCode::OK, success_body(&shared, file_id))
}

/// The success answer for an existing file.
fn success_body(shared: &Shared, file_id: i64) -> String {
    let size = shared.file_size(file_id);
    let (filename, wrong_bytes) = {
        let faults = super::lock(&shared.faults);
        (
            faults.faults.filenames.get(&file_id).cloned(),
            faults.faults.wrong_bytes.get(&file_id).copied(),
        )
    };
    let bytes = wrong_bytes.unwrap_or(if shared.report_bytes { size } else { 0 });
    let expires = shared.now().saturating_add(shared.url_ttl.as_secs());
    json!({
        "file": {
            "file_id": file_id,
            "bytes": bytes,
            "created_at": CREATED_AT,
            "filename": filename.unwrap_or_else(|| DEFAULT_FILENAME.to_string()),
            "purpose": "video_generation",
            "download_url": shared.download_url(file_id, expires),
        },
        "base_resp": {"status_code": 0, "status_msg": "success"}
    })
    .to_string()
}

/// A v1 error: HTTP 200 and a non-zero `base_resp`, nothing else (as the
/// official CLI's fixtures show it).
fn error_json(shared: &Shared, code: i64, msg: &str) -> Response {
    let body = json!({"base_resp": {"status_code": code, "status_msg": msg}});
    json_response(shared, StatusCode::OK, body.to_string())
}

pub(super) fn json_response(shared: &Shared, status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    insert_trace_id(shared, h);
    insert_date(shared, h);
    resp
}

/// `Date` on MiniMax's clock (hyper would write the host's): what a
/// client estimates the API's clock from.
fn insert_date(shared: &Shared, headers: &mut HeaderMap) {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(shared.now());
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
        headers.insert(header::DATE, v);
    }
}

fn insert_trace_id(shared: &Shared, headers: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(&shared.new_request_id()) {
        headers.insert("trace-id", v);
    }
}

fn html_response(status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::SERVER, HeaderValue::from_static("nginx"));
    // Gateway pages come from in front of the API: no Trace-Id.
    resp
}

/// An nginx-style error page, as gateways in front of the API serve.
fn gateway_page(status: StatusCode) -> String {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
}

pub(super) fn shutting_down() -> Response {
    let mut resp = Response::new(Body::from("simulator shutting down"));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp
}

pub(super) async fn fault_response(
    shared: &Shared,
    fault: ApiFault,
    file_id: Option<i64>,
    uri: &Uri,
) -> Response {
    match fault {
        ApiFault::Code(code, msg) => error_json(shared, code, &msg),
        ApiFault::Http(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = html_response(status, gateway_page(status));
            if status == StatusCode::TOO_MANY_REQUESTS {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            resp
        }
        ApiFault::HttpRetryAfter(status, secs) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = html_response(status, gateway_page(status));
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            resp
        }
        ApiFault::Html => html_response(
            StatusCode::OK,
            "<!DOCTYPE html>\n<html><head><title>Access verification</title></head>\
             <body><h1>Please verify you are human</h1>\
             <p>Your request has been blocked by the web application firewall.</p>\
             </body></html>\n"
                .to_string(),
        ),
        ApiFault::TruncatedJson => {
            let full = match file_id {
                Some(id) if id >= 1 => success_body(shared, id),
                _ => json!({"base_resp": {"status_code": 2013, "status_msg": "invalid params"}})
                    .to_string(),
            };
            // Cut at a char boundary near the middle (the body is ASCII
            // unless a hostile filename is configured).
            let mut cut = full.len() / 2;
            while cut > 0 && !full.is_char_boundary(cut) {
                cut -= 1;
            }
            json_response(shared, StatusCode::OK, full[..cut].to_string())
        }
        ApiFault::Hang => {
            shared.cancel.cancelled().await;
            shutting_down()
        }
        ApiFault::Redirect(status, base) => redirect(status, &base, uri),
    }
}

/// A redirect to the same path and query on `base`, as a moved host sends.
fn redirect(status: u16, base: &str, uri: &Uri) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
    let target = format!(
        "{}{}",
        base.trim_end_matches('/'),
        uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    let mut resp = html_response(status, gateway_page(status));
    if let Ok(location) = HeaderValue::from_str(&target) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    resp
}
