//! The operator's routes: `/metrics` for Prometheus, `/healthz` and
//! `/readyz` for watchdogs and load balancers, and the dashboard (`/`, its
//! assets, the JSON it polls, and the retry and cancel actions, which
//! exist only when a `listen_token` is configured).
//!
//! - `health.rs`: `/metrics`, `/healthz`, `/readyz`.
//! - `dashboard.rs`: the page, its assets (in the binary), `/api/state`,
//!   `/api/jobs/{id}`.
//! - `actions.rs`: `POST /api/jobs/{id}/retry` and `.../cancel`.

mod actions;
mod dashboard;
mod health;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use secrecy::SecretString;

use super::problem;
use crate::metrics::Metrics;
use crate::queue::{Queue, QueueError};

/// How long a route waits for the queue before saying it is unreachable.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the routes read and act on.
#[derive(Clone)]
pub(crate) struct Ops {
    /// The daemon's queue, for reads.
    pub queue: Queue,
    pub metrics: Metrics,
    /// Retry and cancel, when a token is configured.
    pub actions: Option<Actions>,
}

/// What the dashboard's actions need.
#[derive(Clone)]
pub(crate) struct Actions {
    /// A queue opened like the `retry` and `cancel` verbs open it (every
    /// commit on disk before the answer), not the pool's.
    pub queue: Queue,
    pub token: Arc<SecretString>,
}

/// The routes, ready to be merged with other route sets and served.
pub(crate) fn router(ops: Ops) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/", get(dashboard::page))
        .route("/assets/{name}", get(dashboard::asset))
        .route("/api/state", get(dashboard::state))
        .route("/api/jobs/{id}", get(dashboard::job))
        .route("/api/jobs/{id}/{action}", post(actions::act))
        .with_state(ops)
}

/// What `run` says while it waits for its queue database to answer (a
/// daemon started before its PostgreSQL server): the last reason it could
/// not open it.
#[derive(Clone, Default)]
pub(crate) struct Opening {
    why: Arc<std::sync::Mutex<String>>,
}

impl Opening {
    pub(crate) fn set(&self, why: String) {
        *self.why.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    fn why(&self) -> String {
        self.why.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The routes served until the queue opens: the process is alive
/// (`/healthz` 200) but not ready (`/readyz` 503, reason `queue`, as when
/// a running daemon loses its database), `/metrics` Prometheus text saying
/// the queue is down; anything else is 503 too.
pub(crate) fn opening_router(opening: Opening) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz_while_opening))
        .route("/readyz", get(health::not_ready_while_opening))
        .route("/metrics", get(health::metrics_while_opening))
        .fallback(health::not_ready_while_opening)
        .with_state(opening)
}

/// The queue's answer, or why there is none (a timeout included).
async fn within<T>(read: impl Future<Output = Result<T, QueueError>>) -> Result<T, String> {
    match tokio::time::timeout(QUEUE_TIMEOUT, read).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the queue did not answer within {}s",
            QUEUE_TIMEOUT.as_secs()
        )),
    }
}

/// A file id from a path: the same rule as the command line's; an
/// answer of 400 saying why not.
fn file_id(raw: &str) -> Result<i64, Box<Response>> {
    crate::ids::parse_file_id(raw).map_err(|why| {
        let message = format!(
            "{} is not a file id: {why}",
            crate::ids::quoted(&truncate(raw))
        );
        Box::new(problem(StatusCode::BAD_REQUEST, &message))
    })
}

/// At most 64 characters of what a client sent, for an error message.
fn truncate(raw: &str) -> String {
    raw.chars().take(64).collect()
}
