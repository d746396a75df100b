//! The accept loop and the checks every request passes, whatever route
//! set it is for.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::{Limits, guard, problem};

/// Largest request head hyper buffers (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// How long requests in progress get to finish after the shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Browsers get no chance to run anything but the page's own script, to
/// frame it, or to guess content types.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];

/// `routes` behind the checks every request passes.
pub(super) fn harden(routes: Router, limits: Limits, public: bool) -> Router {
    routes.layer(axum::middleware::from_fn_with_state(
        (limits, public),
        check_request,
    ))
}

async fn check_request(
    State((limits, public)): State<(Limits, bool)>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if !guard::host_allowed(host, public) {
        return problem(
            StatusCode::MISDIRECTED_REQUEST,
            "this listener answers only requests for localhost or a loopback address",
        );
    }
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limits.body_max) {
        // Answered before a byte of the body is read; the connection is
        // closed rather than drained.
        return closing(problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request bodies are limited to {} bytes", limits.body_max),
        ));
    }
    let body_max = usize::try_from(limits.body_max).unwrap_or(usize::MAX);
    let request = request.map(|body| Body::new(http_body_util::Limited::new(body, body_max)));
    let mut response = match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => closing(problem(
            StatusCode::REQUEST_TIMEOUT,
            "the request took too long",
        )),
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// `response`, with the connection closed after it.
fn closing(response: Response) -> Response {
    let mut response = response.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Accepts connections (at most `limits.connections` at once) until
/// `shutdown`, then waits a little for those in progress.
pub(super) async fn accept_loop(
    listener: Arc<TcpListener>,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.connections.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    warn!("listener: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (app, shutdown) = (app.clone(), shutdown.clone());
        tracker.spawn(async move {
            connection(stream, app, limits, shutdown).await;
            drop(permit);
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(DRAIN, tracker.wait()).await;
}

/// Serves one connection: HTTP/1.1 with a deadline for each request's
/// headers, closed gracefully at the shutdown or when it is too old.
async fn connection(stream: TcpStream, app: Router, limits: Limits, shutdown: CancellationToken) {
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(limits.connection_max_age) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(DRAIN, conn).await;
}
