//! A fake MiniMax API and object-store CDN on 127.0.0.1.
//!
//! It exists so that the downloader can be demonstrated, tested and tried out
//! without spending credits or touching the network. By default it behaves as
//! the real service is known to behave (see the project's API notes): the
//! retrieve endpoint answers HTTP 200 with `base_resp` codes, says
//! `"bytes": 0` and names every file `output_aigc.mp4`; download URLs are
//! OSS-style signed URLs on a *different origin* that expire, support single
//! ranges and strong ETags, and reject requests that carry an
//! `Authorization` header. Faults ([`Faults`]) can be switched on and off at
//! run time, and everything the servers saw is counted ([`SimStats`]) so
//! tests can assert on client behaviour (retries, resumes, key leaks, rate).
//!
//! Content is generated on the fly ([`fill_content`]) and streamed in 64 KiB
//! chunks, so multi-gigabyte files cost no memory.

mod api;
mod cdn;
mod config;
mod conn;
mod content;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{
    ApiFault, ApiFaultRule, CdnFault, CdnFaultRule, FaultCounts, Faults, HiddenLimit, SimConfig,
};
pub use content::{content_sha256, fill_content};
pub use tasks::{CallbackCase, SimApi, SimTask, TASK_RETENTION, TaskEnd};

use config::FaultState;
use conn::{ConnInfo, SimListener};

/// Most retrieve-call timestamps kept in [`SimStats::api_request_times`].
pub const MAX_RECORDED_API_TIMES: usize = 1_000_000;

/// Most CDN requests kept in [`SimStats::cdn_log`].
pub const MAX_RECORDED_CDN_REQUESTS: usize = 100_000;

/// One request the CDN answered: what the client asked, with which URL, and
/// the status it got. Lets tests see where each resume started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdnRequest {
    /// The object's file id, when the path named one.
    pub file_id: Option<i64>,
    pub method: String,
    /// The `Range` header as sent.
    pub range: Option<String>,
    /// Whether an `If-Range` header came with it.
    pub if_range: bool,
    /// The URL's `Expires` parameter.
    pub expires: Option<u64>,
    pub status: u16,
}

impl CdnRequest {
    /// First byte asked for by a `bytes=N-…` range; `None` without one.
    pub fn range_start(&self) -> Option<u64> {
        let spec = self.range.as_deref()?.trim().strip_prefix("bytes=")?;
        spec.split_once('-')?.0.trim().parse().ok()
    }
}

/// What the simulator has seen since it started (or since
/// [`Simulator::reset_stats`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimStats {
    /// Retrieve calls, whatever their outcome.
    pub api_requests: u64,
    /// Retrieve calls the hidden rate limit answered with 1002.
    pub hidden_limit_refusals: u64,
    /// Retrieve calls per numeric `file_id`.
    pub api_requests_by_file: HashMap<i64, u64>,
    /// Arrival time of every retrieve call (first [`MAX_RECORDED_API_TIMES`]),
    /// for rate-limit tests.
    pub api_request_times: Vec<SystemTime>,
    /// Requests to the CDN listener, whatever their outcome.
    pub cdn_requests: u64,
    /// The first [`MAX_RECORDED_CDN_REQUESTS`] CDN requests, in order.
    pub cdn_log: Vec<CdnRequest>,
    /// CDN requests that carried a `Range` header.
    pub cdn_range_requests: u64,
    /// Object body bytes handed to the connection.
    pub cdn_bytes_sent: u64,
    /// Object body bytes per file.
    pub cdn_bytes_by_file: HashMap<i64, u64>,
    /// CDN requests that carried an `Authorization` header (a leaked API key).
    pub cdn_requests_with_authorization: u64,
    /// Retrieve calls without a `Bearer` token, or (when a key is configured)
    /// with a different one.
    pub api_requests_without_valid_key: u64,
    /// Faults injected by API and CDN rules.
    pub faults_injected: u64,
    /// Generation-task calls (create, query v1/v2, list), also counted in
    /// `api_requests` and `api_request_times`.
    pub task_requests: u64,
    /// Task calls per task id (queries).
    pub task_requests_by_task: HashMap<i64, u64>,
    /// Pages of the v2 task list served.
    pub task_list_requests: u64,
    /// Challenges POSTed to a `callback_url` and answered.
    pub callback_challenges: u64,
    /// Task updates POSTed to a `callback_url` and answered with 2xx.
    pub callbacks_delivered: u64,
    /// Task updates whose POST failed or was refused.
    pub callback_failures: u64,
    /// Calls per route (`"GET /v2/query/video_generation/{task_id}"`,
    /// `"GET /v1/files/retrieve"`, ...), whatever their outcome: lets a
    /// test say an endpoint was never asked.
    pub requests_by_endpoint: HashMap<String, u64>,
}

/// State shared by the handlers and the [`Simulator`] handle.
pub(crate) struct Shared {
    seed: u64,
    default_file_size: u64,
    sizes: HashMap<i64, u64>,
    report_bytes: bool,
    url_ttl: Duration,
    cdn_base: String,
    external_cdn: Option<String>,
    url_token: Option<String>,
    api_key: Mutex<Option<String>>,
    faults: Mutex<FaultState>,
    versions: Mutex<HashMap<i64, u64>>,
    stats: Mutex<SimStats>,
    cancel: CancellationToken,
    request_ids: AtomicU64,
    tasks: Mutex<tasks::TaskBook>,
    task_generation: Duration,
    task_fail_every: Option<u32>,
    callback_repeats: u32,
    list_page_max: u32,
    v1_callback_case: tasks::CallbackCase,
    clock_offset_secs: i64,
    /// The hidden rate limit and the times of the calls it let through.
    hidden_limit: Option<(
        HiddenLimit,
        Mutex<std::collections::VecDeque<std::time::Instant>>,
    )>,
}

/// Locks a mutex, ignoring poisoning: the data is counters and
/// configuration, always consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Shared {
    /// MiniMax's clock (the API's and the CDN's), Unix seconds: the host's
    /// moved by the configured offset.
    fn now(&self) -> u64 {
        self.clock(now_unix())
    }

    /// A host time on MiniMax's clock.
    fn clock(&self, host_secs: u64) -> u64 {
        host_secs.saturating_add_signed(self.clock_offset_secs)
    }

    fn count_endpoint(&self, endpoint: &str) {
        *lock(&self.stats)
            .requests_by_endpoint
            .entry(endpoint.to_string())
            .or_default() += 1;
    }

    fn file_size(&self, file_id: i64) -> u64 {
        self.sizes
            .get(&file_id)
            .copied()
            .unwrap_or(self.default_file_size)
    }

    fn version(&self, file_id: i64) -> u64 {
        lock(&self.versions).get(&file_id).copied().unwrap_or(0)
    }

    fn is_missing(&self, file_id: i64) -> bool {
        lock(&self.faults).faults.missing.contains(&file_id)
    }

    fn download_url(&self, file_id: i64, expires: u64) -> String {
        let token = self
            .url_token
            .as_ref()
            .map(|t| format!("&security-token={t}"))
            .unwrap_or_default();
        if let Some(external) = &self.external_cdn {
            return format!(
                "{}/{file_id}.bin?Expires={expires}{token}",
                external.trim_end_matches('/')
            );
        }
        format!(
            "{}/{file_id}/{}?Expires={expires}&OSSAccessKeyId={}&Signature={}{token}",
            self.cdn_base,
            cdn::OBJECT_NAME,
            cdn::ACCESS_KEY_ID,
            content::url_signature(self.seed, file_id, expires)
        )
    }

    /// A fresh 32-hex-digit id for `Trace-Id` / `x-oss-request-id`.
    fn new_request_id(&self) -> String {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        format!(
            "{:016x}{:016x}",
            content::splitmix64(nanos ^ self.seed),
            content::splitmix64(n ^ 0x7472_6163_6500_0000)
        )
    }

    fn record_api_request(&self, file_id: Option<i64>, bad_key: bool) {
        let mut s = lock(&self.stats);
        s.api_requests += 1;
        if let Some(id) = file_id {
            *s.api_requests_by_file.entry(id).or_default() += 1;
        }
        if s.api_request_times.len() < MAX_RECORDED_API_TIMES {
            s.api_request_times.push(SystemTime::now());
        }
        if bad_key {
            s.api_requests_without_valid_key += 1;
        }
    }

    fn record_task_request(&self, task_id: Option<i64>, bad_key: bool) {
        self.record_api_request(None, bad_key);
        let mut s = lock(&self.stats);
        s.task_requests += 1;
        if let Some(id) = task_id {
            *s.task_requests_by_task.entry(id).or_default() += 1;
        }
    }

    fn record_cdn_request(&self, has_range: bool, has_auth: bool) {
        let mut s = lock(&self.stats);
        s.cdn_requests += 1;
        s.cdn_range_requests += u64::from(has_range);
        s.cdn_requests_with_authorization += u64::from(has_auth);
    }

    fn log_cdn_request(&self, request: CdnRequest) {
        let mut s = lock(&self.stats);
        if s.cdn_log.len() < MAX_RECORDED_CDN_REQUESTS {
            s.cdn_log.push(request);
        }
    }

    fn record_cdn_bytes(&self, file_id: i64, n: u64) {
        let mut s = lock(&self.stats);
        s.cdn_bytes_sent += n;
        *s.cdn_bytes_by_file.entry(file_id).or_default() += n;
    }

    /// Whether the hidden rate limit refuses a retrieve call now (and
    /// counts it when it does not).
    fn over_hidden_limit(&self) -> bool {
        let Some((limit, times)) = &self.hidden_limit else {
            return false;
        };
        let now = std::time::Instant::now();
        let mut times = lock(times);
        while times.front().is_some_and(|t| now - *t >= limit.window) {
            times.pop_front();
        }
        if times.len() >= limit.calls as usize {
            lock(&self.stats).hidden_limit_refusals += 1;
            return true;
        }
        times.push_back(now);
        false
    }

    fn record_fault(&self) {
        lock(&self.stats).faults_injected += 1;
    }
}

/// A running simulator: an API listener and a CDN listener on loopback.
///
/// Dropping it (or calling [`Simulator::shutdown`]) stops both servers;
/// requests still in flight (hung or stalled ones included) are aborted.
pub struct Simulator {
    shared: Arc<Shared>,
    api_addr: SocketAddr,
    cdn_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("api", &self.api_addr)
            .field("cdn", &self.cdn_addr)
            .finish_non_exhaustive()
    }
}

fn require_loopback(addr: SocketAddr) -> io::Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the MiniMax simulator only listens on loopback addresses (127.0.0.0/8 or ::1), \
                 not {addr}: it is a test fixture with no real authentication"
            ),
        ))
    }
}

fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

impl Simulator {
    /// Starts both servers on ephemeral ports of 127.0.0.1.
    pub async fn start(config: SimConfig) -> io::Result<Simulator> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Simulator::start_on(config, any, any).await
    }

    /// Starts the API server on `api` and the CDN server on `cdn`.
    ///
    /// Both must be loopback addresses: the simulator is a test fixture and
    /// must not be reachable from other machines.
    pub async fn start_on(
        config: SimConfig,
        api: SocketAddr,
        cdn: SocketAddr,
    ) -> io::Result<Simulator> {
        require_loopback(api)?;
        require_loopback(cdn)?;
        let api_listener = tokio::net::TcpListener::bind(api).await?;
        let cdn_listener = tokio::net::TcpListener::bind(cdn).await?;
        let api_addr = api_listener.local_addr()?;
        let cdn_addr = cdn_listener.local_addr()?;

        let SimConfig {
            seed,
            api_key,
            default_file_size,
            sizes,
            report_bytes,
            url_ttl,
            faults,
            external_cdn,
            url_token,
            task_generation,
            task_fail_every,
            callback_repeats,
            list_page_max,
            v1_callback_case,
            clock_offset_secs,
            hidden_limit,
        } = config;
        let shared = Arc::new(Shared {
            seed,
            default_file_size,
            sizes,
            report_bytes,
            url_ttl,
            cdn_base: base_url(cdn_addr),
            external_cdn,
            url_token,
            api_key: Mutex::new(api_key),
            faults: Mutex::new(FaultState::new(faults)),
            versions: Mutex::new(HashMap::new()),
            stats: Mutex::new(SimStats::default()),
            cancel: CancellationToken::new(),
            request_ids: AtomicU64::new(0),
            tasks: Mutex::default(),
            task_generation,
            task_fail_every,
            callback_repeats,
            list_page_max,
            v1_callback_case,
            clock_offset_secs,
            hidden_limit: hidden_limit.map(|l| (l, Mutex::default())),
        });

        let api_router = api::router(shared.clone());
        let cdn_router = cdn::router(shared.clone());
        let api_task = tokio::spawn(run_server(
            axum::serve(SimListener::new(api_listener), api_router)
                .with_graceful_shutdown(shared.cancel.clone().cancelled_owned()),
        ));
        let cdn_task = tokio::spawn(run_server(
            axum::serve(
                SimListener::new(cdn_listener),
                cdn_router.into_make_service_with_connect_info::<ConnInfo>(),
            )
            .with_graceful_shutdown(shared.cancel.clone().cancelled_owned()),
        ));
        tracing::debug!(%api_addr, %cdn_addr, "MiniMax simulator started");
        Ok(Simulator {
            shared,
            api_addr,
            cdn_addr,
            tasks: vec![api_task, cdn_task],
        })
    }

    /// Base URL of the API host, e.g. `http://127.0.0.1:8380` (no trailing slash).
    pub fn api_base(&self) -> String {
        base_url(self.api_addr)
    }

    /// Base URL of the CDN host (a different origin from the API).
    pub fn cdn_base(&self) -> String {
        base_url(self.cdn_addr)
    }

    /// Address the API server listens on.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Address the CDN server listens on.
    pub fn cdn_addr(&self) -> SocketAddr {
        self.cdn_addr
    }

    /// Replaces the fault configuration for the next requests and resets the
    /// rules' `every`/`limit` counters.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = FaultState::new(faults);
    }

    /// The current fault configuration.
    pub fn faults(&self) -> Faults {
        lock(&self.shared.faults).faults.clone()
    }

    /// How many times each fault rule fired since the rules were set.
    pub fn fault_counts(&self) -> FaultCounts {
        lock(&self.shared.faults).injected()
    }

    /// Changes the accepted API key (`None` accepts any key).
    pub fn set_api_key(&self, key: Option<String>) {
        *lock(&self.shared.api_key) = key;
    }

    /// Replaces the object behind `file_id` with new content (and a new ETag
    /// and Last-Modified), as if it changed between two download attempts.
    pub fn bump_version(&self, file_id: i64) {
        *lock(&self.shared.versions).entry(file_id).or_default() += 1;
    }

    /// Current version of `file_id` (0 until the first [`Self::bump_version`]).
    pub fn version(&self, file_id: i64) -> u64 {
        self.shared.version(file_id)
    }

    /// Size of `file_id` in bytes.
    pub fn file_size(&self, file_id: i64) -> u64 {
        self.shared.file_size(file_id)
    }

    /// Lower-hex SHA-256 of the current version of `file_id`.
    ///
    /// Costs a full generation pass over the file.
    pub fn expected_sha256(&self, file_id: i64) -> String {
        content_sha256(
            self.shared.seed,
            file_id,
            self.version(file_id),
            self.file_size(file_id),
        )
    }

    /// The strong ETag (quoted) the CDN currently sends for `file_id`.
    pub fn etag(&self, file_id: i64) -> String {
        content::etag(
            self.shared.seed,
            file_id,
            self.version(file_id),
            self.file_size(file_id),
        )
    }

    /// A signed download URL as the API would issue it now.
    pub fn download_url(&self, file_id: i64) -> String {
        let expires = self
            .shared
            .now()
            .saturating_add(self.shared.url_ttl.as_secs());
        self.shared.download_url(file_id, expires)
    }

    /// A validly signed download URL with the given `Expires` (Unix
    /// seconds): lets tests build an already-expired URL.
    pub fn download_url_expiring(&self, file_id: i64, expires_unix: u64) -> String {
        self.shared.download_url(file_id, expires_unix)
    }

    /// Declares a generation task `id` (queried as its `api` says),
    /// generating from now.
    pub fn add_task(&self, id: i64, task: SimTask) {
        lock(&self.shared.tasks).insert(id, task);
    }

    /// The task `id` as declared or created.
    pub fn task(&self, id: i64) -> Option<SimTask> {
        lock(&self.shared.tasks).get(id)
    }

    /// Every task id, declared or created, in order.
    pub fn task_ids(&self) -> Vec<i64> {
        lock(&self.shared.tasks).ids()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        lock(&self.shared.stats).clone()
    }

    /// Zeroes the counters (fault rule counters are left alone).
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = SimStats::default();
    }

    /// Stops both servers (without waiting for them to finish).
    pub fn shutdown(self) {
        drop(self);
    }

    /// Stops both servers and waits (at most `timeout`) until they have
    /// closed their listeners and connections.
    pub async fn shutdown_and_wait(mut self, timeout: Duration) {
        self.shared.cancel.cancel();
        let tasks = std::mem::take(&mut self.tasks);
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::debug!("simulator did not stop within {timeout:?}");
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// Runs one server to completion, logging a failure.
async fn run_server<F>(serve: F)
where
    F: std::future::IntoFuture<Output = io::Result<()>>,
{
    if let Err(e) = serve.await {
        tracing::warn!("simulator server stopped: {e}");
    }
}
