//! The dashboard: one static page and its script and style, compiled into
//! the binary (no build step, nothing fetched at run time), and the JSON
//! it polls.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::health::STALLED_AFTER;
use super::{Ops, file_id, problem, within};
use crate::metrics::QueueReading;
use crate::queue::{Job, JobState};

const PAGE: &str = include_str!("../assets/index.html");
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
];

/// Failed jobs the dashboard lists, the most recently failed first.
const FAILED_SHOWN: usize = 20;
/// Failed jobs looked through to find them: a queue with more shows the
/// most recent among the first this many (by file id).
const FAILED_SCANNED: u64 = 10_000;

pub(crate) async fn page() -> Response {
    with_type(PAGE, "text/html; charset=utf-8")
}

pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => with_type(body, content_type),
        None => problem(StatusCode::NOT_FOUND, "no such asset"),
    }
}

fn with_type(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Everything the page shows, in one answer.
pub(crate) async fn state(State(ops): State<Ops>) -> Response {
    let reading = within(QueueReading::read(&ops.queue)).await;
    let failed = within(recent_failed(&ops.queue)).await.unwrap_or_default();
    let live = ops
        .metrics
        .snapshot(reading.as_ref().ok().map(|r| r.api_calls));
    let healthy = ops.metrics.heartbeat_age() < STALLED_AFTER;
    Json(json!({
        "version": crate::build_info::version_line(),
        "counts": reading.as_ref().ok().map(|r| r.counts),
        "tasks": reading.as_ref().ok().map(|r| r.tasks),
        "queue_error": reading.as_ref().err(),
        "healthy": healthy,
        "actions": ops.actions.is_some(),
        "in_flight": live.in_flight,
        "pause": live.pause,
        "gate": live.gate,
        "recent_errors": live.recent_errors,
        "failed": failed.iter().map(job_view).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// One job and its history: the page's search.
pub(crate) async fn job(State(ops): State<Ops>, Path(raw): Path<String>) -> Response {
    let id = match file_id(&raw) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let job = match within(ops.queue.get(id)).await {
        Ok(Some(job)) => job,
        Ok(None) => return problem(StatusCode::NOT_FOUND, &format!("no job {id} in the queue")),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let events = within(ops.queue.events(id)).await.unwrap_or_default();
    let mut view = job_view(&job);
    view["events"] = json!(events);
    Json(view).into_response()
}

/// The most recently failed jobs (see [`FAILED_SCANNED`]).
async fn recent_failed(queue: &crate::queue::Queue) -> Result<Vec<Job>, crate::queue::QueueError> {
    use futures_util::TryStreamExt;
    let mut jobs = queue.list_stream(Some(JobState::Failed), Some(FAILED_SCANNED));
    let mut kept: Vec<Job> = Vec::new();
    while let Some(job) = jobs.try_next().await? {
        kept.push(job);
        if kept.len() >= 2 * FAILED_SHOWN {
            newest_first(&mut kept);
        }
    }
    newest_first(&mut kept);
    Ok(kept)
}

fn newest_first(jobs: &mut Vec<Job>) {
    jobs.sort_by_key(|j| std::cmp::Reverse((j.updated_at, j.file_id)));
    jobs.truncate(FAILED_SHOWN);
}

/// A job as the page shows it. Ids are strings: JavaScript numbers lose
/// digits past 2^53.
fn job_view(job: &Job) -> Value {
    json!({
        "file_id": job.file_id.to_string(),
        "state": job.state,
        "attempts": job.attempts,
        "bytes_done": job.bytes_done,
        "bytes_expected": job.bytes_expected,
        "filename": job.filename,
        "path": if job.state == JobState::Done { job.final_path.clone() } else { None },
        "last_error": job.last_error,
        "next_attempt_ms": job.next_attempt_at,
        "updated_ms": job.updated_at,
    })
}
