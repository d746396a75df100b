//! The fake object store / CDN host: `GET`/`HEAD /{file_id}/output_aigc.mp4`
//! with OSS-style signed query parameters.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use bytes::BytesMut;
use futures_util::Stream;

use super::config::CdnFault;
use super::conn::{ConnCtl, ConnInfo};
use super::content::{etag, fill_content, url_signature};
use super::{CdnRequest, Shared};

/// Body chunk size: big enough to be cheap, small enough to throttle and to
/// keep memory flat whatever the file size.
const CHUNK: usize = 64 * 1024;

/// The access key id every simulator URL carries.
pub(crate) const ACCESS_KEY_ID: &str = "minimax-sim";

/// The object name every simulator URL carries.
pub(crate) const OBJECT_NAME: &str = "output_aigc.mp4";

/// How long a `DropAfter` body waits for its bytes to be flushed before it
/// aborts anyway (a client that stopped reading).
const DROP_FLUSH_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// The result of looking at a `Range` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeReq {
    /// Serve bytes `start..=end`.
    Satisfiable(u64, u64),
    /// 416.
    Unsatisfiable,
    /// Serve the whole object (no header, bad syntax, several ranges).
    Ignore,
}

/// Parses a single `bytes=` range against an object of `size` bytes.
///
/// Syntax errors and multi-range requests are ignored (whole object), as the
/// RFC allows and as OSS does.
pub(crate) fn parse_range(value: &str, size: u64) -> RangeReq {
    let value = value.trim();
    let Some((unit, spec)) = value.split_once('=') else {
        return RangeReq::Ignore;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeReq::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeReq::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if first.is_empty() {
        if !digits(last) {
            return RangeReq::Ignore;
        }
        // A suffix too long for u64 still means "everything".
        let n = last.parse::<u64>().unwrap_or(u64::MAX);
        if n == 0 || size == 0 {
            return RangeReq::Unsatisfiable;
        }
        return RangeReq::Satisfiable(size.saturating_sub(n), size - 1);
    }
    if !digits(first) || !(last.is_empty() || digits(last)) {
        return RangeReq::Ignore;
    }
    let Ok(start) = first.parse::<u64>() else {
        // Larger than any object.
        return RangeReq::Unsatisfiable;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        last.parse::<u64>().unwrap_or(u64::MAX)
    };
    if end < start {
        return RangeReq::Ignore;
    }
    if start >= size {
        return RangeReq::Unsatisfiable;
    }
    RangeReq::Satisfiable(start, end.min(size - 1))
}

/// Does an `If-Range` value allow the range to be honoured?
fn if_range_matches(value: &HeaderValue, etag: &str, last_modified: SystemTime) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        // Strong comparison: weak tags never match.
        return value == etag;
    }
    httpdate::parse_http_date(value).is_ok_and(|d| d == last_modified)
}

/// Does an `If-Match` / `If-None-Match` list contain our tag?
fn etag_list_matches(value: &HeaderValue, etag: &str, weak: bool) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    value
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag || (weak && t.strip_prefix("W/").is_some_and(|t| t == etag)))
}

/// `/{file_id}/output_aigc.mp4` → file_id.
fn parse_path(path: &str) -> Option<i64> {
    let rest = path.strip_prefix('/')?;
    let (id, name) = rest.split_once('/')?;
    if name != OBJECT_NAME || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// `Last-Modified` of an object version: deterministic, and later for each
/// new version.
pub(crate) fn last_modified(version: u64) -> SystemTime {
    let secs = super::api::CREATED_AT
        .saturating_add(30)
        .saturating_add(version.saturating_mul(60));
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Answers one request and logs it with its status.
async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let mut request = CdnRequest {
        file_id: parse_path(uri.path()),
        method: method.to_string(),
        range: text(header::RANGE),
        if_range: headers.contains_key(header::IF_RANGE),
        expires: Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .ok()
            .and_then(|Query(p)| p.into_iter().find(|(k, _)| k == "Expires"))
            .and_then(|(_, v)| v.parse().ok()),
        status: 0,
    };
    let response = respond(shared.clone(), conn, method, uri, headers);
    request.status = response.status().as_u16();
    shared.log_cdn_request(request);
    response
}

/// What a signed request names: the object and the URL's expiry, with the
/// time it was checked against.
struct Signed {
    file_id: i64,
    expires: u64,
    now: u64,
}

/// One version of one object.
struct Object {
    file_id: i64,
    size: u64,
    version: u64,
    tag: String,
    modified: SystemTime,
}

impl Object {
    fn current(shared: &Shared, file_id: i64) -> Object {
        let size = shared.file_size(file_id);
        let version = shared.version(file_id);
        Object {
            file_id,
            size,
            version,
            tag: etag(shared.seed, file_id, version, size),
            modified: last_modified(version),
        }
    }
}

/// Answers a request as the object store would: method, signature,
/// preconditions, range, then the configured fault, then the bytes.
fn respond(
    shared: Arc<Shared>,
    conn: ConnInfo,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let has_range = headers.contains_key(header::RANGE);
    let has_auth = headers.contains_key(header::AUTHORIZATION);
    shared.record_cdn_request(has_range, has_auth);

    let is_get = method == Method::GET;
    if let Some(refused) = refuse_request(&shared, &method, has_auth) {
        return refused;
    }
    let signed = match check_signature(&shared, &uri) {
        Ok(signed) => signed,
        Err(refused) => return *refused,
    };
    let (file_id, object) = (signed.file_id, Object::current(&shared, signed.file_id));
    let size = object.size;
    if let Some(answer) = preconditions(&shared, &headers, &object) {
        return answer;
    }
    let mut outcome = requested_range(&headers, &object);
    let fault = super::lock(&shared.faults).pick_cdn(
        file_id,
        is_get,
        outcome != RangeReq::Ignore,
        outcome != RangeReq::Unsatisfiable,
    );
    if fault.is_some() {
        shared.record_fault();
    }
    if let Some(answer) = fault_answer(&shared, fault.as_ref(), &signed, &mut outcome) {
        return answer;
    }
    debug_assert!(fault.as_ref().is_none_or(|f| !f.is_status_like()));

    let (status, start, len) = match outcome {
        RangeReq::Satisfiable(s, e) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        RangeReq::Ignore => (StatusCode::OK, 0, size),
        RangeReq::Unsatisfiable => return unsatisfiable(&shared, size),
    };
    // What the body does: send `to_send` bytes, then `after`.
    let (to_send, after, chunked) = match fault {
        Some(CdnFault::DropAfter(n)) if n < len => (n, After::Drop, false),
        Some(CdnFault::StallAfter(n)) if n < len => (n, After::Stall, false),
        Some(CdnFault::TruncateChunked(n)) => (n.min(len), After::End, true),
        _ => (len, After::End, false),
    };
    let body = if is_get {
        object_body(&shared, conn, &object, start, to_send, after)
    } else {
        Body::empty()
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    object_headers(&shared, h, &object.tag, object.modified);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    if !chunked {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + len - 1;
        h.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {start}-{end}/{size}")),
        );
    }
    resp
}

/// A method other than GET and HEAD, or a second authentication on a
/// signed URL: refused before anything else is looked at.
fn refuse_request(shared: &Shared, method: &Method, has_auth: bool) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        let mut resp = oss_error(
            shared,
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
            &[("Method", method.as_str().to_string())],
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(resp);
    }
    if has_auth {
        // The object store refuses a second authentication on a signed URL.
        return Some(oss_error(
            shared,
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Unsupported Authorization Type",
            &[
                ("ArgumentName", "Authorization".to_string()),
                ("ArgumentValue", "[redacted]".to_string()),
            ],
        ));
    }
    None
}

/// The object path and its OSS signature (`Expires`, `OSSAccessKeyId`,
/// `Signature`): a signed, unexpired URL for an object that exists, or the
/// answer OSS gives.
fn check_signature(shared: &Shared, uri: &Uri) -> Result<Signed, Box<Response>> {
    let Some(file_id) = parse_path(uri.path()) else {
        return Err(Box::new(no_such_key(shared)));
    };
    let params = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(p)| p)
        .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(expires), Some(key_id), Some(signature)) = (
        param("Expires"),
        param("OSSAccessKeyId"),
        param("Signature"),
    ) else {
        return Err(Box::new(oss_error(
            shared,
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "You have no right to access this object because of bucket acl.",
            &[],
        )));
    };
    if key_id != ACCESS_KEY_ID {
        return Err(Box::new(oss_error(
            shared,
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The OSS Access Key Id you provided does not exist in our records.",
            &[("OSSAccessKeyId", key_id.to_string())],
        )));
    }
    let Ok(expires) = expires.parse::<u64>() else {
        return Err(Box::new(oss_error(
            shared,
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Invalid expires.",
            &[],
        )));
    };
    if !signature.eq_ignore_ascii_case(&url_signature(shared.seed, file_id, expires)) {
        return Err(Box::new(oss_error(
            shared,
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your key and signing method.",
            &[("OSSAccessKeyId", ACCESS_KEY_ID.to_string())],
        )));
    }
    // The CDN's clock is MiniMax's (the signer's), not the host's.
    let now = shared.now();
    if now >= expires {
        return Err(Box::new(expired(shared, expires, now)));
    }
    if file_id < 1 || shared.is_missing(file_id) {
        return Err(Box::new(no_such_key(shared)));
    }
    Ok(Signed {
        file_id,
        expires,
        now,
    })
}

/// `If-Match` that does not hold (412) or `If-None-Match` that does (304).
fn preconditions(shared: &Shared, headers: &HeaderMap, object: &Object) -> Option<Response> {
    if let Some(v) = headers.get(header::IF_MATCH)
        && !etag_list_matches(v, &object.tag, false)
    {
        return Some(oss_error(
            shared,
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold.",
            &[("Condition", "If-Match".to_string())],
        ));
    }
    if let Some(v) = headers.get(header::IF_NONE_MATCH)
        && etag_list_matches(v, &object.tag, true)
    {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        object_headers(shared, resp.headers_mut(), &object.tag, object.modified);
        return Some(resp);
    }
    None
}

/// The range asked for, when `If-Range` (if any) still names this object.
fn requested_range(headers: &HeaderMap, object: &Object) -> RangeReq {
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| if_range_matches(v, &object.tag, object.modified));
    match headers.get(header::RANGE).map(|v| v.to_str()) {
        Some(Ok(v)) if if_range_ok => parse_range(v, object.size),
        _ => RangeReq::Ignore,
    }
}

/// The answer a status-like fault gives instead of the object; a fault that
/// ignores the range changes `outcome` and lets the object through.
fn fault_answer(
    shared: &Shared,
    fault: Option<&CdnFault>,
    signed: &Signed,
    outcome: &mut RangeReq,
) -> Option<Response> {
    match fault {
        Some(CdnFault::Status(code)) => Some(status_fault(shared, *code)),
        Some(CdnFault::StatusRetryAfter(code, secs)) => {
            let mut response = status_fault(shared, *code);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            Some(response)
        }
        Some(CdnFault::Expired) => Some(expired(shared, signed.expires, signed.now)),
        Some(CdnFault::NotFound) => Some(no_such_key(shared)),
        Some(CdnFault::IgnoreRange) => {
            *outcome = RangeReq::Ignore;
            None
        }
        _ => None,
    }
}

/// 416, with the object's length in `Content-Range`.
fn unsatisfiable(shared: &Shared, size: u64) -> Response {
    let mut resp = oss_error(
        shared,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "InvalidRange",
        "The requested range cannot be satisfied",
        &[],
    );
    resp.headers_mut().insert(
        header::CONTENT_RANGE,
        header_value(&format!("bytes */{size}")),
    );
    resp
}

/// The streamed bytes of `object` from `start`: `to_send` of them, then
/// `after`, at the configured bandwidth.
fn object_body(
    shared: &Arc<Shared>,
    conn: ConnInfo,
    object: &Object,
    start: u64,
    to_send: u64,
    after: After,
) -> Body {
    let rate = super::lock(&shared.faults)
        .faults
        .bandwidth_bytes_per_sec
        .filter(|r| *r > 0);
    Body::from_stream(body_stream(BodyState {
        shared: shared.clone(),
        ctl: conn.ctl,
        file_id: object.file_id,
        version: object.version,
        pos: start,
        to_send,
        after,
        rate,
        started: Instant::now(),
        sent: 0,
        buf: BytesMut::new(),
        flush_mark: 0,
        done: false,
    }))
}

/// Headers every object answer carries.
fn object_headers(shared: &Shared, h: &mut HeaderMap, tag: &str, modified: SystemTime) {
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, header_value(tag));
    h.insert(
        header::LAST_MODIFIED,
        header_value(&httpdate::fmt_http_date(modified)),
    );
    h.insert(header::SERVER, HeaderValue::from_static("AliyunOSS"));
    h.insert("x-oss-object-type", HeaderValue::from_static("Normal"));
    h.insert("x-oss-request-id", header_value(&shared.new_request_id()));
}

/// A header value from text we produced ourselves (always visible ASCII).
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn no_such_key(shared: &Shared) -> Response {
    oss_error(
        shared,
        StatusCode::NOT_FOUND,
        "NoSuchKey",
        "The specified key does not exist.",
        &[],
    )
}

fn expired(shared: &Shared, expires: u64, now: u64) -> Response {
    oss_error(
        shared,
        StatusCode::FORBIDDEN,
        "AccessDenied",
        "Request has expired.",
        &[("Expires", iso8601(expires)), ("ServerTime", iso8601(now))],
    )
}

fn status_fault(shared: &Shared, code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (code, message) = match status.as_u16() {
        500 => (
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        503 => ("ServiceUnavailable", "Please reduce your request rate."),
        429 => ("TooManyRequests", "Please reduce your request rate."),
        _ => (
            "SimulatedError",
            status.canonical_reason().unwrap_or("Simulated error"),
        ),
    };
    oss_error(shared, status, code, message, &[])
}

/// An OSS-style XML error answer.
fn oss_error(
    shared: &Shared,
    status: StatusCode,
    code: &str,
    message: &str,
    extra: &[(&str, String)],
) -> Response {
    let request_id = shared.new_request_id();
    let mut body = String::with_capacity(400);
    body.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n");
    let mut field = |name: &str, value: &str| {
        body.push_str(&format!("  <{name}>{}</{name}>\n", xml_escape(value)));
    };
    field("Code", code);
    field("Message", message);
    field("RequestId", &request_id);
    field("HostId", "minimax-sim.oss.localhost");
    for (name, value) in extra {
        field(name, value);
    }
    body.push_str("</Error>\n");

    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    h.insert(header::SERVER, HeaderValue::from_static("AliyunOSS"));
    h.insert("x-oss-request-id", header_value(&request_id));
    resp
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `2023-11-20T08:36:38.000Z` for a Unix time, as OSS writes times.
fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`). The simulator's own copy: it borrows nothing of
/// the program it tests.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// What a body does once it has sent its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    /// End normally.
    End,
    /// Abort the connection (once the bytes are flushed).
    Drop,
    /// Never send anything more.
    Stall,
}

struct BodyState {
    shared: Arc<Shared>,
    ctl: Arc<ConnCtl>,
    file_id: i64,
    version: u64,
    /// Next absolute object offset.
    pos: u64,
    /// Body bytes left to send before `after`.
    to_send: u64,
    after: After,
    rate: Option<u64>,
    started: Instant,
    sent: u64,
    /// Reused generation buffer (reclaimed once hyper drops a chunk).
    buf: BytesMut,
    /// Flush count when the last chunk was handed over.
    flush_mark: u64,
    done: bool,
}

fn aborted(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, msg)
}

/// The object body: generated chunk by chunk, optionally throttled, ending
/// as the fault plan says.
fn body_stream(st: BodyState) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        if st.to_send > 0 {
            let max_chunk = match st.rate {
                Some(rate) => (rate / 16).clamp(1, CHUNK as u64),
                None => CHUNK as u64,
            };
            let n = st.to_send.min(max_chunk);
            if let Some(rate) = st.rate {
                // Pace so that this chunk is complete when the average rate
                // says it may be.
                let secs = (st.sent + n) as f64 / rate as f64;
                let due = Duration::try_from_secs_f64(secs)
                    .ok()
                    .and_then(|d| st.started.checked_add(d));
                let sleep = async {
                    match due {
                        Some(due) => tokio::time::sleep_until(due.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = sleep => {}
                    _ = st.shared.cancel.cancelled() => {
                        st.done = true;
                        return Some((Err(aborted("simulator shutting down")), st));
                    }
                }
            }
            let n_usize = n as usize;
            st.buf.clear();
            st.buf.resize(n_usize, 0);
            fill_content(st.shared.seed, st.file_id, st.version, st.pos, &mut st.buf);
            let chunk = st.buf.split().freeze();
            st.pos = st.pos.saturating_add(n);
            st.sent += n;
            st.to_send -= n;
            st.shared.record_cdn_bytes(st.file_id, n);
            if st.to_send == 0 {
                st.flush_mark = st.ctl.flush_count();
            }
            return Some((Ok(chunk), st));
        }
        st.done = true;
        match st.after {
            After::End => None,
            After::Drop => {
                // Make sure the bytes sent so far left hyper's buffer (hyper
                // discards it when a body fails), then fail.
                let flushed = st.ctl.flushed_since(st.flush_mark);
                tokio::select! {
                    _ = flushed => {}
                    _ = tokio::time::sleep(DROP_FLUSH_WAIT) => {}
                    _ = st.shared.cancel.cancelled() => {}
                }
                Some((Err(aborted("simulated connection drop")), st))
            }
            After::Stall => {
                st.shared.cancel.cancelled().await;
                Some((Err(aborted("simulator shutting down")), st))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeReq::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Satisfiable(0, 99));
        assert_eq!(parse_range("bytes=10-", 1000), Satisfiable(10, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Satisfiable(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), Satisfiable(0, 999));
        assert_eq!(parse_range("bytes=990-5000", 1000), Satisfiable(990, 999));
        assert_eq!(parse_range("Bytes = 1-2", 1000), Satisfiable(1, 2));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 10),
            Unsatisfiable
        );
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 10),
            Satisfiable(0, 9)
        );
        assert_eq!(parse_range("bytes=5-1", 1000), Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Ignore);
        assert_eq!(parse_range("items=0-1", 1000), Ignore);
        assert_eq!(parse_range("bytes=a-b", 1000), Ignore);
        assert_eq!(parse_range("bytes=-", 1000), Ignore);
        assert_eq!(parse_range("bytes=+1-2", 1000), Ignore);
        assert_eq!(parse_range("", 1000), Ignore);
    }

    #[test]
    fn paths() {
        assert_eq!(parse_path("/12/output_aigc.mp4"), Some(12));
        assert_eq!(parse_path("/12/other.mp4"), None);
        assert_eq!(parse_path("/-12/output_aigc.mp4"), None);
        assert_eq!(parse_path("/x/output_aigc.mp4"), None);
        assert_eq!(parse_path("/99999999999999999999/output_aigc.mp4"), None);
        assert_eq!(parse_path("/"), None);
        assert_eq!(parse_path(""), None);
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_700_469_398), "2023-11-20T08:36:38.000Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn escaping() {
        assert_eq!(xml_escape("a<b>&\"'\u{1}"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}
