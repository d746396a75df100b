//! The HTTP listener of `run --listen`: one port for every route set the
//! daemon serves: [`ops`] (`/metrics`, `/healthz`, `/readyz`, the
//! dashboard and its API) and, with a `callback_token`, [`callback`]
//! (`POST /callback/{token}`), merged with `Router::merge` before
//! [`Bound::serve`].
//!
//! Whatever the routes, the listener enforces (see `serve.rs`, `guard.rs`):
//! loopback only unless the user said `listen_public = true`; a `Host`
//! that names loopback while it is (no DNS rebinding); request headers
//! complete within [`Limits::header_timeout`] (a slow-loris client is cut
//! off); every request answered within [`Limits::request_timeout`]; a body
//! announced larger than [`Limits::body_max`] refused before a byte of it
//! is read, and a longer one cut off as it is read; at most
//! [`Limits::connections`] connections at once.

pub(crate) mod callback;
pub(crate) mod guard;
pub(crate) mod ops;
mod serve;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

/// What a listener accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Longest time to receive a request's headers (also an idle
    /// keep-alive connection's wait for its next request).
    pub header_timeout: Duration,
    /// Longest time to answer one request, body included.
    pub request_timeout: Duration,
    /// Largest request body, in bytes.
    pub body_max: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub connections: usize,
    /// A connection is closed (gracefully, after its current request)
    /// once it is this old.
    pub connection_max_age: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            body_max: 64 * 1024,
            connections: 256,
            connection_max_age: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ListenError {
    #[error("cannot resolve the listen address {addr:?}: {source}")]
    Resolve {
        addr: String,
        source: std::io::Error,
    },
    #[error(
        "refusing to listen on {addr:?} ({resolved}): it is not a loopback address, and the \
         metrics and dashboard would be open to the network. Listen on 127.0.0.1:PORT, or set \
         listen_public = true in the config (and a listen_token) to serve beyond this machine"
    )]
    NotLoopback { addr: String, resolved: SocketAddr },
    #[error("cannot listen on {addr:?}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// A bound socket, not yet serving.
#[derive(Clone)]
pub(crate) struct Bound {
    listener: std::sync::Arc<TcpListener>,
    public: bool,
}

/// Binds `addr` (`host:port`; a name is resolved and every address it
/// gives must be loopback unless `public`).
pub(crate) async fn bind(addr: &str, public: bool) -> Result<Bound, ListenError> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|source| ListenError::Resolve {
            addr: addr.to_string(),
            source,
        })?
        .collect();
    if let Some(outside) = guard::first_not_loopback(&resolved, public) {
        return Err(ListenError::NotLoopback {
            addr: addr.to_string(),
            resolved: outside,
        });
    }
    let listener = TcpListener::bind(resolved.as_slice())
        .await
        .map_err(|source| ListenError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    Ok(Bound {
        listener: std::sync::Arc::new(listener),
        public,
    })
}

impl Bound {
    /// The address actually bound (port 0 becomes the port chosen).
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `routes` until `shutdown`, then lets requests in progress
    /// finish (for a few seconds at most). A clone of this `Bound` serves
    /// the same socket afterwards: connections that arrive in between wait
    /// in the kernel's backlog, so a daemon can answer health checks while
    /// it starts and hand the port over to its full routes.
    pub(crate) async fn serve(
        self,
        routes: axum::Router,
        limits: Limits,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let app = serve::harden(routes, limits, self.public);
        serve::accept_loop(self.listener, app, limits, shutdown).await;
    }
}

/// A JSON error answer: `{"error": message}`.
pub(crate) fn problem(status: axum::http::StatusCode, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}
