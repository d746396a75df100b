//! The client against MiniMax's documented answers: every fixture of
//! `tests/fixtures/minimax/` (each naming the page it was copied from) is
//! read through the client's parsers, and the meaning it must have is
//! written here, from the documentation, not derived from the parser. A
//! fixture without a stated meaning fails, so the corpus and this table
//! grow together.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use minimax_dl::ids::TaskApi;
use minimax_dl::policy::{ApiError, ErrorClass, TaskStatus, parse_retrieve};
use minimax_dl::policy::{
    Callback, parse_callback, parse_v1_query, parse_v2_list, parse_v2_query, v2_http_error,
};
use serde_json::Value;

/// One fixture, as stored: its provenance and the answer or delivery.
pub struct Fixture {
    pub name: String,
    pub json: Value,
}

impl Fixture {
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.json["body"]).expect("serialise")
    }

    pub fn http_status(&self) -> u16 {
        self.json["http_status"].as_u64().unwrap_or(200) as u16
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.json["headers"][name].as_str()
    }
}

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minimax")
}

/// Every fixture, by name (the file name without `.json`).
pub fn fixtures() -> BTreeMap<String, Fixture> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(fixture_dir()).expect("the fixture directory") {
        let path = entry.expect("an entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).expect("a fixture");
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        all.insert(name.clone(), Fixture { name, json });
    }
    all
}

/// What a fixture means, as MiniMax documents it.
#[derive(Clone, Debug, PartialEq)]
enum Meaning {
    /// retrieve: this file, size unknown (`bytes: 0`), a signed URL.
    File { file_id: i64, size: Option<u64> },
    /// Any call: an error of this class, carrying this MiniMax code.
    Error { class: Class, code: Option<i64> },
    /// A task query: still generating.
    Generating,
    /// v1 success: this file to retrieve.
    TaskFile(i64),
    /// v2 success: a video URL on this host.
    Video(&'static str),
    /// Ended without a file; the reason mentions this.
    Failed(&'static str),
    /// A list page: this many items, this total, this many not videos.
    Page {
        items: usize,
        total: u64,
        not_video: usize,
    },
    /// A callback: this challenge echoed.
    Challenge(&'static str),
    /// A callback: this task of this API, meaning this.
    Update {
        id: i64,
        api: TaskApi,
        status: Box<Meaning>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Class {
    Transient,
    RateLimited { retry_after: Option<u64> },
    Account,
    Permanent,
}

fn class_of(class: ErrorClass) -> Option<Class> {
    Some(match class {
        ErrorClass::Transient => Class::Transient,
        ErrorClass::RateLimited { retry_after } => Class::RateLimited {
            retry_after: retry_after.map(|d| d.as_secs()),
        },
        ErrorClass::Account { .. } => Class::Account,
        ErrorClass::Permanent => Class::Permanent,
        ErrorClass::Unknown | ErrorClass::Unreachable => return None,
    })
}

const V2_TASK: i64 = 424_010_985_738_629;
const V1_TASK: i64 = 106_916_112_212_032;

/// The documented meaning of every fixture.
fn expected() -> BTreeMap<&'static str, Meaning> {
    use Meaning::*;
    let err = |class, code| Error {
        class,
        code: Some(code),
    };
    let update = |id, api, status| Update {
        id,
        api,
        status: Box::new(status),
    };
    BTreeMap::from([
        (
            "retrieve_ok_bytes_0",
            File {
                file_id: 205_258_526_306_433,
                size: None,
            },
        ),
        ("retrieve_error_1000", err(Class::Transient, 1000)),
        (
            "retrieve_error_1002",
            err(Class::RateLimited { retry_after: None }, 1002),
        ),
        ("retrieve_error_1004", err(Class::Account, 1004)),
        ("retrieve_error_2013", err(Class::Permanent, 2013)),
        ("v1_error_1028_quota", err(Class::Account, 1028)),
        ("v1_query_success", TaskFile(176_844_028_768_320)),
        ("v1_query_processing", Generating),
        ("v1_query_preparing", Generating),
        ("v1_query_queueing", Generating),
        ("v1_query_fail", Failed("Fail")),
        ("v1_query_failed", Failed("Failed")),
        (
            "v1_query_expired_or_unauthorised",
            err(Class::Account, 1004),
        ),
        (
            "v2_query_succeeded",
            Video("example-bucket.oss-cn-wulanchabu.aliyuncs.com"),
        ),
        ("v2_query_queued", Generating),
        ("v2_query_running", Generating),
        (
            "v2_query_failed",
            Failed("video description contains sensitive content (code 1026)"),
        ),
        ("v2_query_cancelled", Failed("cancelled")),
        ("v2_query_h3_context_ir", Failed("h3_context_ir")),
        ("v2_error_400_invalid_task_id", err(Class::Permanent, 2013)),
        (
            "v2_error_400_bad_request_error",
            err(Class::Permanent, 2013),
        ),
        ("v2_error_401_authorized_error", err(Class::Account, 1004)),
        (
            "v2_error_402_insufficient_balance_error",
            err(Class::Account, 1008),
        ),
        (
            "v2_error_422_unprocessable_entity_error",
            err(Class::Permanent, 1026),
        ),
        (
            "v2_error_429_rate_limit_error",
            Error {
                class: Class::RateLimited { retry_after: None },
                code: None,
            },
        ),
        (
            "v2_error_429_rate_limit_error_retry_after",
            Error {
                class: Class::RateLimited {
                    retry_after: Some(7),
                },
                code: None,
            },
        ),
        ("v2_error_529_overloaded_error", err(Class::Transient, 1000)),
        (
            "v2_error_529_overloaded_error_retry_after",
            err(Class::Transient, 1000),
        ),
        (
            "v2_list_page_1_of_476",
            Page {
                items: 20,
                total: 476,
                not_video: 3,
            },
        ),
        (
            "v2_list_past_the_end",
            Page {
                items: 0,
                total: 476,
                not_video: 0,
            },
        ),
        (
            "callback_challenge",
            Challenge("1b6f1e5e-7c3a-4c2e-9a51-3d0b7e2f8c41"),
        ),
        (
            "callback_v1_success_lowercase",
            update(
                115_334_141_465_231_360,
                TaskApi::V1,
                TaskFile(205_258_526_306_433),
            ),
        ),
        (
            "callback_v1_success_lowercase_cn",
            update(
                115_334_141_465_231_360,
                TaskApi::V1,
                TaskFile(205_258_526_306_433),
            ),
        ),
        (
            "callback_v1_success_capitalised",
            update(
                115_334_141_465_231_360,
                TaskApi::V1,
                TaskFile(205_258_526_306_433),
            ),
        ),
        (
            "callback_v1_processing",
            update(115_334_141_465_231_360, TaskApi::V1, Generating),
        ),
        (
            "callback_v1_failed",
            update(
                115_334_141_465_231_360,
                TaskApi::V1,
                Failed("output video contains sensitive content"),
            ),
        ),
        (
            "callback_v2_succeeded",
            update(
                V2_TASK,
                TaskApi::V2,
                Video("example-bucket.oss-cn-wulanchabu.aliyuncs.com"),
            ),
        ),
        (
            "callback_v2_failed",
            update(
                V2_TASK,
                TaskApi::V2,
                Failed("video description contains sensitive content"),
            ),
        ),
    ])
}

/// The error a fixture's HTTP answer makes, as the client builds it.
fn error_meaning(error: &ApiError) -> Meaning {
    let code = match error {
        ApiError::Status { code, .. } => Some(*code),
        _ => None,
    };
    Meaning::Error {
        class: class_of(error.class()).unwrap_or_else(|| panic!("unclassified: {error}")),
        code,
    }
}

fn status_meaning(status: TaskStatus, expected: &Meaning) -> Meaning {
    match status {
        TaskStatus::Generating(_) => Meaning::Generating,
        TaskStatus::File(id) => Meaning::TaskFile(id),
        TaskStatus::Video(url) => match expected {
            Meaning::Video(host) if url.host_str() == Some(host) => Meaning::Video(host),
            _ => panic!("a video at {:?}", url.host_str()),
        },
        TaskStatus::Failed(reason) => match expected {
            Meaning::Failed(words) if reason.contains(words) => Meaning::Failed(words),
            _ => panic!("failed: {reason}"),
        },
        TaskStatus::Unrecognised(word) => panic!("a documented status read as unknown: {word:?}"),
    }
}

/// Reads one fixture through the parser its endpoint calls for.
fn read(fixture: &Fixture, expected: &Meaning) -> Meaning {
    let body = fixture.body();
    let endpoint = fixture.json["endpoint"].as_str().unwrap_or_default();
    if fixture.json["kind"] == "callback" {
        return match parse_callback(&body).expect("a callback") {
            Callback::Challenge(c) => match expected {
                Meaning::Challenge(e) if *e == c => Meaning::Challenge(e),
                _ => panic!("challenge {c:?}"),
            },
            Callback::Task { id, api, status } => {
                let Meaning::Update { status: inner, .. } = expected else {
                    panic!("an update of task {id}");
                };
                Meaning::Update {
                    id,
                    api,
                    status: Box::new(status_meaning(status, inner)),
                }
            }
        };
    }
    let status = fixture.http_status();
    if status != 200 {
        let retry_after = fixture
            .header("retry-after")
            .and_then(|v| minimax_dl::policy::parse_retry_after(v, SystemTime::now()));
        let fallback = ApiError::Http {
            status,
            endpoint: endpoint.into(),
            retry_after,
            trace_id: None,
        };
        return error_meaning(&v2_http_error(status, &body, fallback));
    }
    let answer = if endpoint.contains("files/retrieve") {
        return match parse_retrieve(205_258_526_306_433, &body, None) {
            Ok(info) => {
                assert!(
                    info.download_url
                        .query()
                        .is_some_and(|q| q.contains("Expires="))
                );
                Meaning::File {
                    file_id: info.file_id,
                    size: info.bytes,
                }
            }
            Err(e) => error_meaning(&e),
        };
    } else if endpoint.starts_with("GET /v2/query/video_generation?") {
        return match parse_v2_list(&body, None) {
            Ok(page) => Meaning::Page {
                items: page.items.len(),
                total: page.total.expect("a total"),
                not_video: page.items.iter().filter(|t| t.not_video).count(),
            },
            Err(e) => error_meaning(&e),
        };
    } else if endpoint.starts_with("GET /v2/") {
        let asked = fixture.json["body"]["task"]["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or(V2_TASK);
        parse_v2_query(asked, &body, None)
    } else {
        parse_v1_query(V1_TASK, &body, None)
    };
    match answer {
        Ok(status) => status_meaning(status, expected),
        Err(e) => error_meaning(&e),
    }
}

#[test]
fn the_corpus_has_at_least_25_fixtures_each_naming_its_source_and_date() {
    let all = fixtures();
    assert!(all.len() >= 25, "only {} fixtures", all.len());
    for fixture in all.values() {
        let source = fixture.json["source"].as_str().unwrap_or_default();
        assert!(
            source.starts_with("https://platform.minimax.io/")
                || source.starts_with("https://platform.minimaxi.com/")
                || source.starts_with("https://github.com/MiniMax-AI/"),
            "{}: source {source:?} is not a MiniMax page or official client",
            fixture.name
        );
        let read = fixture.json["read"].as_str().unwrap_or_default();
        assert_eq!(read.len(), 10, "{}: read date {read:?}", fixture.name);
        assert!(
            matches!(fixture.json["kind"].as_str(), Some("response" | "callback")),
            "{}",
            fixture.name
        );
        assert!(fixture.json["body"].is_object(), "{}", fixture.name);
    }
}

#[test]
fn every_fixture_reads_to_its_documented_meaning() {
    let all = fixtures();
    let expected = expected();
    let unexplained: Vec<&String> = all
        .keys()
        .filter(|name| !expected.contains_key(name.as_str()))
        .collect();
    assert!(
        unexplained.is_empty(),
        "fixtures without a stated meaning: {unexplained:?}"
    );
    for (name, meaning) in &expected {
        let fixture = all
            .get(*name)
            .unwrap_or_else(|| panic!("no fixture {name}"));
        assert_eq!(&read(fixture, meaning), meaning, "{name}");
    }
}

#[test]
fn a_failed_v1_callback_keeps_minimax_s_reason_and_code() {
    let all = fixtures();
    let Ok(Callback::Task {
        status: TaskStatus::Failed(reason),
        ..
    }) = parse_callback(&all["callback_v1_failed"].body())
    else {
        panic!("a failed v1 task");
    };
    assert!(reason.contains("1027"), "{reason}");
}

#[test]
fn the_seven_day_answer_says_the_task_is_gone() {
    let all = fixtures();
    let fixture = &all["v2_error_400_invalid_task_id"];
    let fallback = ApiError::Http {
        status: 400,
        endpoint: "GET /v2/query/video_generation/{task_id}".into(),
        retry_after: None,
        trace_id: None,
    };
    let text = v2_http_error(400, &fixture.body(), fallback).to_string();
    assert!(
        text.contains("invalid task_id") && text.contains("7 days"),
        "{text}"
    );
}
