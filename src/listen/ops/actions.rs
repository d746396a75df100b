//! `POST /api/jobs/{id}/retry` and `/cancel`: the dashboard's two actions.
//! They exist only with a `listen_token`, and only for a request that
//! carries it in the `X-Minimax-Dl-Token` header. A custom header cannot
//! be sent across sites without a CORS preflight, which this server never
//! grants; a browser's `Origin` or `Sec-Fetch-Site` saying another site
//! is refused as well. No action is reachable by GET.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::json;
use tracing::info;

use super::{Ops, file_id, problem, truncate, within};
use crate::listen::guard;
use crate::queue::VerbOutcome;

/// The header the token travels in.
pub(crate) const TOKEN_HEADER: &str = "x-minimax-dl-token";

pub(crate) async fn act(
    State(ops): State<Ops>,
    Path((raw_id, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(actions) = &ops.actions else {
        return problem(
            StatusCode::FORBIDDEN,
            "actions are off: set listen_token in the config to enable retry and cancel",
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if guard::cross_site(header("origin"), header("sec-fetch-site"), header("host")) {
        return problem(StatusCode::FORBIDDEN, "cross-site requests cannot act");
    }
    let presented = header(TOKEN_HEADER).unwrap_or_default();
    if !guard::token_matches(presented, actions.token.expose_secret()) {
        return problem(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (X-Minimax-Dl-Token)",
        );
    }
    let id = match file_id(&raw_id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let done = match action.as_str() {
        "retry" => within(actions.queue.retry(&[id])).await,
        "cancel" => within(actions.queue.cancel(&[id])).await,
        other => {
            let message = format!(
                "no action {}: retry or cancel",
                crate::ids::quoted(&truncate(other))
            );
            return problem(StatusCode::NOT_FOUND, &message);
        }
    };
    let outcome = match done {
        Ok(mut outcomes) => outcomes.pop().map(|(_, o)| o),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    info!(
        file_id = id,
        action,
        "dashboard action: {}",
        said(outcome.as_ref(), &action)
    );
    match outcome {
        Some(VerbOutcome::Applied) => {
            Json(json!({ "file_id": id.to_string(), "result": action })).into_response()
        }
        Some(VerbOutcome::Requested) => (
            StatusCode::ACCEPTED,
            Json(json!({ "file_id": id.to_string(), "result": "cancel requested" })),
        )
            .into_response(),
        Some(VerbOutcome::Refused(why)) => problem(StatusCode::CONFLICT, &why),
        Some(VerbOutcome::Unknown) | None => {
            problem(StatusCode::NOT_FOUND, &format!("no job {id} in the queue"))
        }
    }
}

/// What an action did, in the words of the log line.
fn said(outcome: Option<&VerbOutcome>, action: &str) -> String {
    match outcome {
        Some(VerbOutcome::Applied) => format!("{action} done"),
        Some(VerbOutcome::Requested) => "cancel requested from the job's worker".to_string(),
        Some(VerbOutcome::Refused(why)) => format!("{action} refused: {why}"),
        Some(VerbOutcome::Unknown) | None => "no such job".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_is_logged_in_words() {
        for (outcome, want) in [
            (Some(VerbOutcome::Applied), "retry done"),
            (
                Some(VerbOutcome::Requested),
                "cancel requested from the job's worker",
            ),
            (
                Some(VerbOutcome::Refused("it is done".into())),
                "retry refused: it is done",
            ),
            (Some(VerbOutcome::Unknown), "no such job"),
            (None, "no such job"),
        ] {
            assert_eq!(said(outcome.as_ref(), "retry"), want);
        }
    }
}
