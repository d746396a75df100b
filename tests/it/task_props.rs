//! Property tests of the generation-task parsers (v1 query, v2 query, v2
//! list, callback bodies), the poll schedule and task refs: whatever the
//! input, a typed error or a value that keeps its promises, never a panic.

use std::time::Duration;

use minimax_dl::ids;
use minimax_dl::policy::{ApiError, TaskStatus};
use minimax_dl::policy::{
    Callback, MAX_CHALLENGE_CHARS, parse_callback, parse_v1_query, parse_v2_list, parse_v2_query,
    v2_http_error,
};
use minimax_dl::policy::{MAX_POLL_INTERVAL, poll_interval};
use proptest::prelude::*;
use serde_json::{Value, json};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field: plausible most of the time, anything sometimes, absent
/// sometimes.
fn field(plausible: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        3 => plausible.prop_map(Some),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn object(pairs: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect(),
    )
}

fn id_value(id: i64) -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!(id.to_string())),
        Just(json!(id)),
        any::<i64>().prop_map(|n| json!(n.to_string())),
        ".{0,20}".prop_map(Value::from),
    ]
    .boxed()
}

fn word(words: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::sample::select(words).prop_map(Value::from),
        1 => ".{0,12}".prop_map(Value::from),
    ]
    .boxed()
}

fn url_value() -> BoxedStrategy<Value> {
    prop_oneof![
        "(https?|ftp|file|data)://[a-z0-9.:@\\[\\]-]{0,20}(/[^ ]{0,30})?",
        ".{0,40}",
    ]
    .prop_map(Value::from)
    .boxed()
}

/// A v2 task object near the documented shape.
fn v2_task(id: i64) -> BoxedStrategy<Value> {
    let statuses = &[
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "expired",
    ];
    (
        field(id_value(id)),
        field(word(statuses)),
        field(url_value().prop_map(|u| json!({ "url": u })).boxed()),
        field(word(&["video", "text"])),
        field(
            ".{0,30}"
                .prop_map(|m| json!({"code": "1026", "message": m}))
                .boxed(),
        ),
    )
        .prop_map(|(id, status, content, modality, error)| {
            object(vec![
                ("id", id),
                ("status", status),
                ("content", content),
                ("modality", modality),
                ("error", error),
            ])
        })
        .boxed()
}

/// A v1 answer near the documented shape.
fn v1_body(id: i64) -> BoxedStrategy<Vec<u8>> {
    let statuses = &[
        "Preparing",
        "Queueing",
        "Processing",
        "Success",
        "Fail",
        "Failed",
        "Unknown",
        "",
    ];
    (
        field(id_value(id)),
        field(word(statuses)),
        field(id_value(id.wrapping_add(1))),
        field(
            prop_oneof![Just(0i64), any::<i64>()]
                .prop_map(|c| json!({"status_code": c, "status_msg": "m"}))
                .boxed(),
        ),
    )
        .prop_map(|(task_id, status, file_id, base)| {
            serde_json::to_vec(&object(vec![
                ("task_id", task_id),
                ("status", status),
                ("file_id", file_id),
                ("base_resp", base),
            ]))
            .expect("serialise")
        })
        .boxed()
}

fn check_status(result: Result<TaskStatus, ApiError>) {
    match result {
        Ok(TaskStatus::File(id)) => assert!(id > 0),
        Ok(TaskStatus::Video(url)) => {
            assert!(matches!(url.scheme(), "http" | "https"));
            assert!(url.host_str().is_some_and(|h| !h.is_empty()));
        }
        Ok(TaskStatus::Failed(reason)) => assert!(!reason.is_empty()),
        Ok(TaskStatus::Generating(_) | TaskStatus::Unrecognised(_)) => {}
        Err(e) => {
            assert!(
                matches!(
                    e,
                    ApiError::Malformed { .. }
                        | ApiError::Status { .. }
                        | ApiError::DownloadScheme { .. }
                ),
                "{e:?}"
            );
            let _ = e.to_string();
        }
    }
}

fn check_list(body: &[u8]) {
    match parse_v2_list(body, None) {
        Ok(page) => {
            let shown = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("items")?.as_array().map(Vec::len))
                .unwrap_or(0);
            assert_eq!(page.items.len() as u64 + page.unreadable, shown as u64);
            for task in page.items {
                assert!(task.id > 0);
                check_status(Ok(task.status));
            }
        }
        Err(e) => check_status(Err(e)),
    }
}

fn check_callback(body: &[u8]) {
    match parse_callback(body) {
        Ok(Callback::Challenge(c)) => assert!(c.chars().count() <= MAX_CHALLENGE_CHARS),
        Ok(Callback::Task { id, status, .. }) => {
            assert!(id > 0);
            check_status(Ok(status));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn task_parsers_take_any_bytes(
        requested in any::<i64>(),
        body in prop::collection::vec(any::<u8>(), 0..2048),
        status in 100u16..600,
    ) {
        check_status(parse_v1_query(requested, &body, None));
        check_status(parse_v2_query(requested, &body, None));
        check_list(&body);
        check_callback(&body);
        let fallback = ApiError::Http { status, endpoint: "e".into(), retry_after: None, trace_id: None };
        let error = v2_http_error(status, &body, fallback);
        prop_assert!(
            matches!(error, ApiError::Http { status: s, .. } if s == status)
                || (status != 429 && matches!(error, ApiError::Status { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn task_parsers_take_any_json(requested in any::<i64>(), value in json_value()) {
        let body = serde_json::to_vec(&value).expect("serialise");
        check_status(parse_v1_query(requested, &body, None));
        check_status(parse_v2_query(requested, &body, None));
        check_list(&body);
        check_callback(&body);
    }

    #[test]
    fn near_miss_v1_answers(
        (requested, body) in (1..=i64::MAX).prop_flat_map(|id| (Just(id), v1_body(id))),
    ) {
        check_status(parse_v1_query(requested, &body, None));
        check_callback(&body);
    }

    #[test]
    fn near_miss_v2_answers_lists_and_callbacks(
        (requested, task, more) in (1..=i64::MAX).prop_flat_map(|id| {
            (Just(id), v2_task(id), prop::collection::vec(v2_task(id), 0..5))
        }),
    ) {
        let wrapped = serde_json::to_vec(&json!({ "task": task })).expect("serialise");
        check_status(parse_v2_query(requested, &wrapped, None));
        check_callback(&wrapped);
        check_callback(&serde_json::to_vec(&task).expect("serialise"));
        let list = serde_json::to_vec(&json!({ "items": more, "total": more.len() })).expect("serialise");
        check_list(&list);
    }

    #[test]
    fn polls_never_come_faster_than_the_floor_nor_slower_than_the_cap(
        age_ms in any::<u32>(),
        later_ms in any::<u32>(),
        floor_ms in 1u64..60_000,
    ) {
        let floor = Duration::from_millis(floor_ms);
        let age = Duration::from_millis(u64::from(age_ms));
        let wait = poll_interval(age, floor);
        prop_assert!(wait >= floor);
        prop_assert!(wait <= MAX_POLL_INTERVAL.max(floor));
        let older = age + Duration::from_millis(u64::from(later_ms));
        prop_assert!(poll_interval(older, floor) >= wait, "monotonic in the age");
    }

    #[test]
    fn task_refs_are_ids_with_an_optional_api(raw in ".{0,40}") {
        match ids::parse_task_ref(&raw) {
            Ok(task) => {
                prop_assert!(task.id >= 1);
                let bare = raw.trim();
                let prefixed = bare.starts_with("v1:") || bare.starts_with("v2:");
                prop_assert_eq!(task.api.is_some(), prefixed);
            }
            Err(reason) => prop_assert!(!reason.is_empty()),
        }
    }
}
