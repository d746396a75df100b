//! `POST /callback/{token}`: where MiniMax delivers generation-task
//! updates (the task's `callback_url`). Served only when a
//! `callback_token` is configured. An unknown token gets 404 and nothing
//! is read into the queue; a challenge is echoed at once; an update is
//! answered 200 only once the queue committed it (see `intake::callback`),
//! 503 when it could not (MiniMax delivers it again). Bodies larger than
//! the listener's limit (64 KiB) are refused before the route sees them.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tracing::{info, warn};

use super::{guard, problem};
use crate::intake::{CallbackReply, ReceiveError, receive};
use crate::queue::Queue;

/// Longest wait for the queue's commit: MiniMax times its deliveries out.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the callback route needs.
#[derive(Clone)]
pub(crate) struct Callbacks {
    /// A queue opened like the user verbs open it: the commit is on disk
    /// before the 200.
    pub queue: Queue,
    pub token: Arc<SecretString>,
    /// The deadline of a task a callback makes known.
    pub deadline: Duration,
}

pub(crate) fn router(callbacks: Callbacks) -> Router {
    Router::new()
        .route("/callback/{token}", post(deliver))
        .with_state(callbacks)
}

async fn deliver(
    State(callbacks): State<Callbacks>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    if !guard::token_matches(&token, callbacks.token.expose_secret()) {
        return problem(StatusCode::NOT_FOUND, "not found");
    }
    let received = tokio::time::timeout(
        COMMIT_TIMEOUT,
        receive(&callbacks.queue, &body, callbacks.deadline),
    )
    .await;
    match received {
        Ok(Ok(CallbackReply::Challenge(challenge))) => {
            axum::Json(json!({ "challenge": challenge })).into_response()
        }
        Ok(Ok(CallbackReply::Taken {
            task_id,
            handed_over,
        })) => {
            info!(task_id, handed_over, "callback taken");
            axum::Json(json!({ "task_id": task_id.to_string(), "taken": true })).into_response()
        }
        Ok(Err(ReceiveError::Body(why))) => problem(StatusCode::BAD_REQUEST, &why.to_string()),
        Ok(Err(ReceiveError::Queue(e))) => {
            warn!("a callback could not be recorded: {e}");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the queue could not record it; deliver it again",
            )
        }
        Err(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the queue did not answer in time; deliver it again",
        ),
    }
}
