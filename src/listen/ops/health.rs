//! `/metrics`, `/healthz`, `/readyz`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Opening, Ops, within};
use crate::metrics::{CONTENT_TYPE, QueueReading};

/// The heartbeat turns every second; this long without a turn is a stall.
pub(crate) const STALLED_AFTER: Duration = Duration::from_secs(10);

pub(crate) async fn metrics(State(ops): State<Ops>) -> Response {
    let reading = within(QueueReading::read(&ops.queue)).await.ok();
    let text = ops.metrics.render(reading.as_ref());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// Alive: the pool's heartbeat has turned within [`STALLED_AFTER`].
pub(crate) async fn healthz(State(ops): State<Ops>) -> Response {
    let age = ops.metrics.heartbeat_age();
    let body = json!({
        "status": if age < STALLED_AFTER { "ok" } else { "stalled" },
        "heartbeat_age_secs": age.as_secs_f64(),
    });
    let status = if age < STALLED_AFTER {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Ready: the queue answers and the pool is not paused. Otherwise 503,
/// with the reason (and a pause's message and next probe) as JSON.
pub(crate) async fn readyz(State(ops): State<Ops>) -> Response {
    if let Err(message) = within(ops.queue.status()).await {
        let body = json!({ "ready": false, "reason": "queue", "message": message });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    match ops.metrics.pause() {
        Some(pause) => {
            let body = json!({ "ready": false, "reason": "paused", "pause": pause });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        None => Json(json!({ "ready": true })).into_response(),
    }
}

/// `/metrics` while `run` waits for its database: Prometheus text with
/// `minimax_dl_queue_up 0`, so the outage is a value a rule can alert on.
pub(crate) async fn metrics_while_opening() -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        crate::metrics::Metrics::render_unopened(),
    )
        .into_response()
}

/// Alive while `run` waits for its database: the wait is the loop turning.
pub(crate) async fn healthz_while_opening(State(opening): State<Opening>) -> Response {
    let body = json!({
        "status": "starting",
        "message": format!("waiting for the queue database: {}", opening.why()),
    });
    Json(body).into_response()
}

/// Not ready while `run` waits for its database, with the reason.
pub(crate) async fn not_ready_while_opening(State(opening): State<Opening>) -> Response {
    let body = json!({ "ready": false, "reason": "queue", "message": opening.why() });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
