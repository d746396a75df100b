//! The CDN client: how it is set up (no key, no cookies, every redirect
//! asked of the [`UrlPolicy`]), the GET and HEAD requests a download makes,
//! and the stall watch on a body ([`STALL_FLOOR`]).

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Url;
use reqwest::header::{CONTENT_LENGTH, HeaderMap, HeaderValue, IF_RANGE, RANGE};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::FetchError;
use super::range;
use super::url_policy::UrlPolicy;
use crate::http::USER_AGENT;

/// A body must bring at least this many bytes in every read timeout: a
/// server that drips a byte now and then, just often enough to beat a
/// plain idle timeout, is cut like one that sends nothing. 1 KiB a minute
/// (the default timeout) is far below any working connection.
pub(crate) const STALL_FLOOR: u64 = 1024;

/// Did a transfer move from `before` to `after` bytes far enough to count
/// as progress? Less than [`STALL_FLOOR`] is what a dripping server gives
/// each time: counting it would let such a server keep a job forever.
pub(crate) fn made_progress(before: u64, after: u64) -> bool {
    after >= before.saturating_add(STALL_FLOOR)
}

/// Must a signed URL be refreshed before the next request, on this host's
/// clock now (see [`range::refresh_before_request`])? `in_use`: it was
/// used already.
pub(super) fn url_expired(url: &Url, in_use: bool, clock_offset: i64) -> bool {
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    range::refresh_before_request(url, in_use, host_now, clock_offset)
}

/// The bytes a GET asks for: `from` to the end, or `from..=last`.
#[derive(Clone, Copy, Debug)]
pub(super) struct ByteRange {
    pub from: u64,
    pub last: Option<u64>,
}

/// The HTTP client of every download, with the read timeout its bodies
/// are watched by.
#[derive(Clone)]
pub(super) struct Client {
    http: reqwest::Client,
    read_timeout: Duration,
}

impl Client {
    /// A client that fetches what `policy` allows, following the redirects
    /// it allows.
    pub(crate) fn new(
        connect_timeout: Duration,
        read_timeout: Duration,
        policy: UrlPolicy,
    ) -> Result<Client, reqwest::Error> {
        // No default headers, no cookies: nothing but the signed URL reaches
        // the CDN. reqwest drops Authorization on cross-host redirects too,
        // but this client never has one to drop.
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .redirect(redirect_policy(policy))
            .build()?;
        Ok(Client { http, read_timeout })
    }

    /// GET `url`, for `range` when given (with `If-Range: validator` when
    /// one is pinned); [`FetchError::Cancelled`] as soon as `cancel` fires.
    pub(crate) async fn get(
        &self,
        url: &Url,
        range: Option<ByteRange>,
        validator: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<reqwest::Response, FetchError> {
        let mut request = self.http.get(url.clone());
        if let Some(ByteRange { from, last }) = range {
            let last = last.map(|l| l.to_string()).unwrap_or_default();
            request = request.header(RANGE, format!("bytes={from}-{last}"));
            if let Some(v) = validator {
                request = request.header(IF_RANGE, v);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => Err(FetchError::Cancelled),
            r = request.send() => r.map_err(|e| FetchError::request(&e)),
        }
    }

    /// The length a HEAD request announces, if it succeeds and says.
    pub(crate) async fn head_length(&self, url: &Url) -> Option<u64> {
        let response = self.http.head(url.clone()).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        header(response.headers(), CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
    }

    /// The stall watch for a body starting now.
    pub(crate) fn watch(&self) -> IdleWatch {
        IdleWatch::start(self.read_timeout)
    }
}

/// A response header's value, when it is text.
pub(super) fn header(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<&str> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
}

/// Asks the policy about every redirect, so that each hop is checked as
/// the first URL was.
fn redirect_policy(policy: UrlPolicy) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        match policy.redirect(attempt.previous(), attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    })
}

/// The idle-read rule for one body: its deadline moves on only when at
/// least [`STALL_FLOOR`] bytes arrived since it last moved.
pub(super) struct IdleWatch {
    read_timeout: Duration,
    deadline: Instant,
    received: u64,
}

impl IdleWatch {
    fn start(read_timeout: Duration) -> IdleWatch {
        IdleWatch {
            read_timeout,
            deadline: Instant::now() + read_timeout,
            received: 0,
        }
    }

    pub(crate) fn received(&mut self, bytes: u64) {
        self.received += bytes;
        if self.received >= STALL_FLOOR {
            self.received = 0;
            self.deadline = Instant::now() + self.read_timeout;
        }
    }

    /// Waits for the next item of `body`, or `None` past the deadline.
    pub(crate) async fn next<S: futures_util::Stream + Unpin>(
        &self,
        body: &mut S,
    ) -> Option<Option<S::Item>> {
        tokio::time::timeout_at(self.deadline, body.next())
            .await
            .ok()
    }

    /// Why the body was cut.
    pub(crate) fn stalled(&self) -> String {
        match self.received {
            0 => format!("no data for {:?} (read_timeout_secs)", self.read_timeout),
            n => format!(
                "only {n} bytes in {:?}, under the {STALL_FLOOR} bytes every read timeout \
                 (read_timeout_secs) must bring",
                self.read_timeout
            ),
        }
    }
}
