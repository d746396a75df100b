//! Any bytes as a generation-task answer (v1 query, v2 query, a v2 error
//! body, a v2 list page) or a callback body: a value that keeps its
//! promises, or a typed error; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimax_dl::policy::{
    Callback, MAX_CHALLENGE_CHARS, parse_callback, parse_v1_query, parse_v2_list,
    parse_v2_query, v2_http_error,
};
use minimax_dl::policy::{ApiError, TaskStatus};

fn check(result: Result<TaskStatus, ApiError>) {
    match result {
        Ok(TaskStatus::File(id)) => assert!(id > 0),
        Ok(TaskStatus::Video(url)) => {
            assert!(matches!(url.scheme(), "http" | "https"));
            assert!(url.host_str().is_some_and(|h| !h.is_empty()));
        }
        Ok(_) => {}
        Err(e) => {
            assert!(matches!(
                e,
                ApiError::Malformed { .. } | ApiError::Status { .. } | ApiError::DownloadScheme { .. }
            ));
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose the task id asked about (and an HTTP
    // status); the rest is the body.
    let (requested, body) = match data.split_first_chunk::<8>() {
        Some((id, body)) => (i64::from_le_bytes(*id), body),
        None => (1, data),
    };
    check(parse_v1_query(requested, body, None));
    check(parse_v2_query(requested, body, None));
    let status = 400 + (requested.rem_euclid(200)) as u16;
    let fallback = ApiError::Http {
        status,
        endpoint: "e".into(),
        retry_after: None,
        trace_id: None,
    };
    let _ = v2_http_error(status, body, fallback).to_string();
    if let Ok(page) = parse_v2_list(body, None) {
        for task in page.items {
            assert!(task.id > 0);
            check(Ok(task.status));
        }
    }
    match parse_callback(body) {
        Ok(Callback::Challenge(c)) => assert!(c.chars().count() <= MAX_CHALLENGE_CHARS),
        Ok(Callback::Task { id, status, .. }) => {
            assert!(id > 0);
            check(Ok(status));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
