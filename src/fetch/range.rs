//! Reading a CDN's answer to a (possibly ranged) GET and deciding what the
//! bytes mean, and how many bytes a body may bring. Pure: the table of
//! cases is unit-tested without a server.

use crate::partial::ExpectedSize;

/// `Content-Range: bytes a-b/total` (or `bytes */total` on a 416).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub total: Option<u64>,
}

pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let (first, last) = match span.trim() {
        "*" => (None, None),
        s => {
            let (a, b) = s.split_once('-')?;
            let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            if b < a {
                return None;
            }
            (Some(a), Some(b))
        }
    };
    if let (Some(last), Some(total)) = (last, total)
        && last >= total
    {
        return None;
    }
    Some(ContentRange { first, last, total })
}

/// When a signed URL stops working: the OSS-style `Expires=<unix seconds>`
/// query parameter MiniMax's download URLs carry. `None` when it has none.
pub(crate) fn url_expires_at(url: &reqwest::Url) -> Option<u64> {
    url.query_pairs()
        .find(|(k, _)| k.eq_ignore_ascii_case("expires"))
        .and_then(|(_, v)| v.parse().ok())
}

/// Seconds before its `Expires` at which a signed URL already in use is
/// no longer used: `Expires` has one-second granularity and a request takes
/// time to arrive.
pub(crate) const URL_EXPIRY_MARGIN_SECS: u64 = 5;

/// Should a URL be asked for again before it is used at `api_now` (Unix
/// seconds on the API's clock, where `Expires` was written)? Yes once it
/// expires within [`URL_EXPIRY_MARGIN_SECS`]: better one more retrieve call
/// than a request the CDN refuses.
pub(crate) fn url_needs_refresh(url: &reqwest::Url, api_now: u64) -> bool {
    url_expires_at(url).is_some_and(|at| at <= api_now.saturating_add(URL_EXPIRY_MARGIN_SECS))
}

/// The API's clock, from the host's and the offset estimated from the
/// API's `Date` header (API minus host, seconds).
pub(crate) fn api_now(host_now: u64, clock_offset: i64) -> u64 {
    host_now.saturating_add_signed(clock_offset)
}

/// Is a URL given up before a request, at `host_now`? Never before its
/// first request: a URL the API has just handed over is always tried,
/// whatever its `Expires` says by a host clock that may be wrong (the
/// CDN's 403 is the truth). One already in use is refreshed a margin
/// before its `Expires`, judged on the API's clock.
pub(crate) fn refresh_before_request(
    url: &reqwest::Url,
    in_use: bool,
    host_now: u64,
    clock_offset: i64,
) -> bool {
    in_use && url_needs_refresh(url, api_now(host_now, clock_offset))
}

/// Does this CDN status refuse the signed URL itself (expired, revoked, or
/// the object gone for this signature)? Then only a fresh URL from the API
/// can help; every other error status is the CDN's own trouble, retried.
pub(crate) fn url_refused(status: u16) -> bool {
    matches!(status, 403 | 404 | 410)
}

/// A strong validator for `If-Range`: an ETag unless weak, else Last-Modified.
pub(crate) fn choose_validator(etag: Option<&str>, last_modified: Option<&str>) -> Option<String> {
    match etag {
        Some(tag) if !tag.starts_with("W/") && !tag.is_empty() => Some(tag.to_string()),
        _ => last_modified.filter(|v| !v.is_empty()).map(str::to_string),
    }
}

/// The facts of one CDN response that matter for resuming.
#[derive(Clone, Debug, Default)]
pub struct ResponseHead<'a> {
    pub status: u16,
    pub content_length: Option<u64>,
    pub content_range: Option<&'a str>,
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
}

/// What we knew before sending the request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Asked<'a> {
    /// Bytes already on disk; a Range from here was asked when > 0.
    pub offset: u64,
    pub validator: Option<&'a str>,
    /// The object's length pinned from the first response.
    pub pinned_total: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Append this body at `offset`. `total` is the object's full length when
    /// the server said it; `validator` the one to pin.
    Append {
        offset: u64,
        total: Option<u64>,
        validator: Option<String>,
    },
    /// The body is the whole object from byte 0 (the range was ignored or
    /// the object changed): discard the partial bytes and write this body.
    RestartWithBody {
        total: Option<u64>,
        validator: Option<String>,
        reason: String,
    },
    /// Do not use this body: discard the partial bytes and ask again from 0.
    RestartFresh { reason: String },
    /// 416 confirming the partial file already holds the whole object.
    AlreadyComplete { total: u64 },
    /// The signed URL is expired or refused: get a fresh one from the API.
    UrlRejected { status: u16 },
    /// Try again later (5xx, 429, odd statuses).
    Retry { status: u16 },
}

pub fn plan_response(asked: Asked<'_>, head: &ResponseHead<'_>) -> Plan {
    let validator = choose_validator(head.etag, head.last_modified);
    match head.status {
        200 => {
            let total = head.content_length;
            if asked.offset > 0 {
                return Plan::RestartWithBody {
                    total,
                    validator,
                    reason: format!(
                        "asked to resume at byte {} but the CDN sent the whole file (HTTP 200)",
                        asked.offset
                    ),
                };
            }
            Plan::Append {
                offset: 0,
                total,
                validator,
            }
        }
        206 => {
            let Some(range) = head.content_range.and_then(parse_content_range) else {
                return Plan::RestartFresh {
                    reason: "HTTP 206 without a valid Content-Range".into(),
                };
            };
            if range.first != Some(asked.offset) {
                return Plan::RestartFresh {
                    reason: format!(
                        "asked for bytes from {} but the CDN sent a range starting at {:?}",
                        asked.offset, range.first
                    ),
                };
            }
            if let (Some(pinned), Some(total)) = (asked.pinned_total, range.total)
                && pinned != total
            {
                return Plan::RestartFresh {
                    reason: format!("the file's length changed from {pinned} to {total} bytes"),
                };
            }
            if let (Some(had), Some(now)) = (asked.validator, validator.as_deref())
                && had != now
            {
                return Plan::RestartFresh {
                    reason: format!("the file changed on the CDN (validator {had} became {now})"),
                };
            }
            Plan::Append {
                offset: asked.offset,
                total: range.total.or(asked.pinned_total),
                validator: validator.or_else(|| asked.validator.map(str::to_string)),
            }
        }
        416 => {
            let total = head
                .content_range
                .and_then(parse_content_range)
                .and_then(|r| r.total);
            match total {
                Some(total)
                    if total == asked.offset && asked.pinned_total.is_none_or(|p| p == total) =>
                {
                    Plan::AlreadyComplete { total }
                }
                _ => Plan::RestartFresh {
                    reason: format!(
                        "range from byte {} not satisfiable (file length {})",
                        asked.offset,
                        total.map_or("unknown".to_string(), |t| t.to_string())
                    ),
                },
            }
        }
        status if url_refused(status) => Plan::UrlRejected { status },
        status => Plan::Retry { status },
    }
}

/// Default `max_file_bytes` (64 GiB), the setting's own default.
pub(crate) use crate::config::DEFAULT_MAX_FILE_BYTES;

/// What bounds a download's bytes: the size it is verified against when one
/// is known (not one byte more is written: more is a failed verification),
/// else `max_file_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SizeLimit {
    Expected(ExpectedSize),
    Cap(u64),
}

impl SizeLimit {
    pub(crate) fn of(expected: Option<ExpectedSize>, max_file_bytes: u64) -> SizeLimit {
        expected.map_or(SizeLimit::Cap(max_file_bytes), SizeLimit::Expected)
    }

    pub(crate) fn bytes(self) -> u64 {
        match self {
            SizeLimit::Expected(e) => e.bytes,
            SizeLimit::Cap(max) => max,
        }
    }

    /// Would `more` bytes written at `position` pass the limit?
    pub(crate) fn passed_by(self, position: u64, more: u64) -> bool {
        position.saturating_add(more) > self.bytes()
    }
}

/// Is a file announced at `size` bytes (by the API or the CDN) too large to
/// be fetched at all?
pub(crate) fn over_cap(size: Option<u64>, max_file_bytes: u64) -> bool {
    size.is_some_and(|size| size > max_file_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some(ContentRange {
                first: Some(100),
                last: Some(199),
                total: Some(1000)
            })
        );
        assert_eq!(
            parse_content_range("bytes */1000"),
            Some(ContentRange {
                first: None,
                last: None,
                total: Some(1000)
            })
        );
        assert_eq!(parse_content_range("bytes 0-9/*").unwrap().total, None);
        for bad in [
            "",
            "bytes",
            "bytes 5-1/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes a-b/c",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_fresh_url_is_always_tried_and_one_in_use_is_judged_on_the_api_clock() {
        let url = reqwest::Url::parse("https://cdn.example/o.mp4?Expires=1000000").unwrap();
        let hour: i64 = 3600;
        let h = hour as u64;
        // (in use, host now, API minus host, refresh first?)
        let cases: [(bool, u64, i64, bool); 8] = [
            (false, 999_998, 0, false),       // 2 s left: a fresh URL is tried
            (false, 1_000_000 + h, 0, false), // host clock an hour ahead: still tried
            (false, 2_000_000, -hour, false),
            (true, 999_900, 0, false),           // in use, 100 s left
            (true, 999_996, 0, true),            // in use, within the margin
            (true, 999_900 + h, -hour, false),   // host an hour ahead, offset known
            (true, 999_900 - h, hour, false),    // host an hour behind, offset known
            (true, 999_000 - h, 2 * hour, true), // the API's clock says it expired
        ];
        for (in_use, now, offset, refresh) in cases {
            assert_eq!(
                refresh_before_request(&url, in_use, now, offset),
                refresh,
                "in use {in_use}, host now {now}, offset {offset}"
            );
        }
        let plain = reqwest::Url::parse("https://cdn.example/o.mp4").unwrap();
        assert!(!refresh_before_request(&plain, true, u64::MAX, 0));
    }

    #[test]
    fn signed_urls_are_refreshed_a_margin_before_their_expires_parameter() {
        let url = reqwest::Url::parse(
            "https://b.oss.example/x/output_aigc.mp4?Expires=1700000000&Signature=s",
        )
        .unwrap();
        assert_eq!(url_expires_at(&url), Some(1_700_000_000));
        let margin_starts = 1_700_000_000 - URL_EXPIRY_MARGIN_SECS;
        assert!(!url_needs_refresh(&url, margin_starts - 1));
        assert!(
            url_needs_refresh(&url, margin_starts),
            "expires within the margin"
        );
        assert!(url_needs_refresh(&url, 1_700_000_000));
        assert!(url_needs_refresh(&url, 1_800_000_000));
        let plain = reqwest::Url::parse("https://cdn.example/x.mp4").unwrap();
        assert!(!url_needs_refresh(&plain, u64::MAX));
        let garbage = reqwest::Url::parse("https://cdn.example/x.mp4?Expires=soon").unwrap();
        assert!(!url_needs_refresh(&garbage, 0));
    }

    #[test]
    fn weak_etags_are_not_validators() {
        assert_eq!(
            choose_validator(Some("\"abc\""), None).as_deref(),
            Some("\"abc\"")
        );
        assert_eq!(
            choose_validator(Some("W/\"abc\""), Some("Tue, 1 Jan")).as_deref(),
            Some("Tue, 1 Jan")
        );
        assert_eq!(choose_validator(None, None), None);
    }

    fn head(
        status: u16,
        range: Option<&'static str>,
        etag: Option<&'static str>,
    ) -> ResponseHead<'static> {
        ResponseHead {
            status,
            content_length: Some(1000),
            content_range: range,
            etag,
            last_modified: None,
        }
    }

    #[test]
    fn a_fresh_200_pins_length_and_validator() {
        let plan = plan_response(Asked::default(), &head(200, None, Some("\"v1\"")));
        assert_eq!(
            plan,
            Plan::Append {
                offset: 0,
                total: Some(1000),
                validator: Some("\"v1\"".into())
            }
        );
    }

    #[test]
    fn a_good_206_appends() {
        let asked = Asked {
            offset: 400,
            validator: Some("\"v1\""),
            pinned_total: Some(1000),
        };
        let plan = plan_response(
            asked,
            &head(206, Some("bytes 400-999/1000"), Some("\"v1\"")),
        );
        assert_eq!(
            plan,
            Plan::Append {
                offset: 400,
                total: Some(1000),
                validator: Some("\"v1\"".into())
            }
        );
    }

    #[test]
    fn a_200_to_a_range_restarts_with_that_body() {
        let asked = Asked {
            offset: 400,
            validator: Some("\"v1\""),
            pinned_total: Some(1000),
        };
        assert!(matches!(
            plan_response(asked, &head(200, None, Some("\"v2\""))),
            Plan::RestartWithBody {
                total: Some(1000),
                ..
            }
        ));
    }

    #[test]
    fn inconsistent_206_answers_restart_fresh() {
        let asked = Asked {
            offset: 400,
            validator: Some("\"v1\""),
            pinned_total: Some(1000),
        };
        for (range, etag) in [
            ("bytes 0-999/1000", "\"v1\""),
            ("bytes 400-1199/1200", "\"v1\""),
            ("bytes 400-999/1000", "\"v2\""),
            ("nonsense", "\"v1\""),
        ] {
            let plan = plan_response(asked, &head(206, Some(range), Some(etag)));
            assert!(
                matches!(plan, Plan::RestartFresh { .. }),
                "{range} {etag}: {plan:?}"
            );
        }
    }

    #[test]
    fn a_416_at_the_exact_end_means_complete() {
        let asked = Asked {
            offset: 1000,
            validator: None,
            pinned_total: Some(1000),
        };
        assert_eq!(
            plan_response(asked, &head(416, Some("bytes */1000"), None)),
            Plan::AlreadyComplete { total: 1000 }
        );
        let asked = Asked {
            offset: 1200,
            validator: None,
            pinned_total: Some(1200),
        };
        assert!(matches!(
            plan_response(asked, &head(416, Some("bytes */1000"), None)),
            Plan::RestartFresh { .. }
        ));
    }

    #[test]
    fn refused_urls_and_server_errors() {
        for status in [403, 404, 410] {
            assert_eq!(
                plan_response(Asked::default(), &head(status, None, None)),
                Plan::UrlRejected { status }
            );
        }
        for status in [429, 500, 502, 503, 400] {
            assert_eq!(
                plan_response(Asked::default(), &head(status, None, None)),
                Plan::Retry { status }
            );
        }
    }

    #[test]
    fn a_body_is_bounded_by_the_size_it_is_verified_against_else_the_cap() {
        let expected = ExpectedSize {
            bytes: 1000,
            source: crate::partial::SizeSource::Api,
        };
        let limit = SizeLimit::of(Some(expected), 10_000);
        assert_eq!(limit, SizeLimit::Expected(expected));
        assert!(!limit.passed_by(900, 100));
        assert!(limit.passed_by(900, 101));
        assert!(limit.passed_by(u64::MAX, 1), "no overflow");
        let cap = SizeLimit::of(None, 10_000);
        assert_eq!(cap.bytes(), 10_000);
        assert!(cap.passed_by(10_000, 1));
        assert!(over_cap(Some(10_001), 10_000));
        assert!(!over_cap(Some(10_000), 10_000));
        assert!(!over_cap(None, 10_000));
    }
}
