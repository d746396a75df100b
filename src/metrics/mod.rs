//! The numbers of a running pool, for `/metrics` (Prometheus text format,
//! through `prometheus-client`) and the dashboard. [`Metrics`] is a cheap
//! handle that hears the pool as an [`Observer`](crate::worker::Observer)
//! (see `observe.rs`): workers and the daemon report events, never names
//! of metrics. Counts that the queue keeps (jobs by state) and the rate
//! gate's state are read when scraped, not tracked.
//!
//! - `live.rs`: downloads in flight with their rate, the pause, recent
//!   errors (what the dashboard shows).
//! - `process.rs`: `process_*` metrics from /proc/self.

mod live;
mod observe;
mod process;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

use live::Live;
pub(crate) use live::{FlightView, PauseView, RecentError};

use crate::archive::bucket::Bucket;
use crate::gate::{RateGate, WINDOW};
use crate::queue::{JobState, Queue, QueueError, StatusCounts, TaskCounts, TaskState};

/// `Content-Type` of what [`Metrics::render`] returns.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The reasons a pool pauses for, as the `reason` label says them.
pub(crate) const PAUSE_REASONS: [&str; 2] = ["account", "disk"];

/// The metrics of one pool, and the live state of its dashboard. Cheap to
/// clone; the pool hears of it only as an observer.
#[derive(Clone)]
pub(crate) struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    f: Families,
    live: Mutex<Live>,
    /// The pause being timed, and up to when it is counted already.
    pause_clock: Mutex<Option<(&'static str, Instant)>>,
    heartbeat: Mutex<Instant>,
    gate: OnceLock<Arc<RateGate>>,
    /// When the queue's counts were last read (None: never).
    last_read: Mutex<Option<Instant>>,
    bucket: OnceLock<Arc<Bucket>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    outcome: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
    backends: String,
}

type Seconds = Counter<f64, AtomicU64>;
type GaugeF = Gauge<f64, AtomicU64>;

struct Families {
    jobs: Family<StateLabel, Gauge>,
    tasks: Family<StateLabel, Gauge>,
    queue_task_polls: Gauge,
    task_polls: Counter,
    queue_up: Gauge,
    queue_read_age: GaugeF,
    queue_bytes_done: Gauge,
    downloaded_bytes: Counter,
    outcomes: Family<OutcomeLabel, Counter>,
    api_calls: Family<ApiLabels, Counter>,
    cooldowns: Counter,
    archive_retries: Counter,
    rate_per_minute: Gauge,
    rate_ceiling: Gauge,
    rate_decreases: Counter,
    rate_window_calls: Gauge,
    rate_cooldown: GaugeF,
    paused: Family<ReasonLabel, Gauge>,
    paused_seconds: Family<ReasonLabel, Seconds>,
    resumes: Counter,
    restarts: Counter,
    in_flight: Gauge,
    duration: Histogram,
    throughput: Histogram,
    checkpoint: Histogram,
    fsync: Histogram,
    heartbeat_age: GaugeF,
    build_info: Family<BuildLabels, Gauge>,
}

impl Families {
    fn new() -> Families {
        Families {
            jobs: Family::default(),
            tasks: Family::default(),
            queue_task_polls: Gauge::default(),
            task_polls: Counter::default(),
            queue_up: Gauge::default(),
            queue_read_age: GaugeF::default(),
            queue_bytes_done: Gauge::default(),
            downloaded_bytes: Counter::default(),
            outcomes: Family::default(),
            api_calls: Family::default(),
            cooldowns: Counter::default(),
            archive_retries: Counter::default(),
            rate_per_minute: Gauge::default(),
            rate_ceiling: Gauge::default(),
            rate_decreases: Counter::default(),
            rate_window_calls: Gauge::default(),
            rate_cooldown: GaugeF::default(),
            paused: Family::default(),
            paused_seconds: Family::default(),
            resumes: Counter::default(),
            restarts: Counter::default(),
            in_flight: Gauge::default(),
            // 0.1 s to 3.6 h.
            duration: Histogram::new(exponential_buckets(0.1, 2.0, 18)),
            // 64 KiB/s to 2 GiB/s.
            throughput: Histogram::new(exponential_buckets(65536.0, 2.0, 16)),
            // 0.5 ms to 8 s.
            checkpoint: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            fsync: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            heartbeat_age: GaugeF::default(),
            build_info: Family::default(),
        }
    }

    /// Registers every family under `minimax_dl_`, in the order `/metrics`
    /// shows them. Help texts are what Grafana shows on hover: they say
    /// what is counted, in what unit.
    fn register(&self, r: &mut Registry) {
        self.register_queue(r);
        self.register_work(r);
        self.register_rate(r);
        self.register_pool(r);
        self.register_timings(r);
        self.register_process(r);
    }

    /// The queue's numbers, read at each scrape, and whether it answered.
    fn register_queue(&self, r: &mut Registry) {
        let f = self;
        r.register("jobs", "Jobs in the queue by state", f.jobs.clone());
        r.register(
            "tasks",
            "Generation tasks in the queue by state (generating, done, failed, cancelled)",
            f.tasks.clone(),
        );
        r.register(
            "queue_task_polls",
            "Polls recorded of the generation tasks in the queue, by every process sharing it",
            f.queue_task_polls.clone(),
        );
        r.register(
            "task_polls",
            "Generation task polls this process made and recorded",
            f.task_polls.clone(),
        );
        r.register(
            "queue_up",
            "1 when the queue answered this scrape; 0 when it did not, and the queue's numbers \
             (jobs, tasks, bytes, rate window) are the last known ones",
            f.queue_up.clone(),
        );
        r.register(
            "queue_read_age_seconds",
            "Seconds since the queue's numbers were read (0 when they are fresh; -1 before the first read)",
            f.queue_read_age.clone(),
        );
        r.register(
            "queue_bytes_done",
            "Bytes downloaded of every job in the queue (status's bytes)",
            f.queue_bytes_done.clone(),
        );
    }

    /// What this process's downloads and calls came to.
    fn register_work(&self, r: &mut Registry) {
        let f = self;
        r.register(
            "downloaded_bytes",
            "Bytes received from the CDN by this process",
            f.downloaded_bytes.clone(),
        );
        r.register(
            "job_outcomes",
            "Ends of a job's turn: done, retry, failed, requeued, cancelled, stopped, paused_account, paused_disk, lease_lost",
            f.outcomes.clone(),
        );
        r.register(
            "api_calls",
            "Retrieve calls by answer (ok, code_N, http_N, malformed, transport, no_key, download_scheme) and class",
            f.api_calls.clone(),
        );
        r.register(
            "rate_limit_cooldowns",
            "Rate-limit answers that made the whole pool cool down",
            f.cooldowns.clone(),
        );
        r.register(
            "archive_retries",
            "Calls to the archive bucket tried again after the store failed them (5xx, dropped connections)",
            f.archive_retries.clone(),
        );
    }

    /// The rate gate: its cap, the adaptive rate, the window, the cooldown.
    fn register_rate(&self, r: &mut Registry) {
        let f = self;
        r.register(
            "rate_limit_per_minute",
            "The rate gate's cap of API calls in any 60 s in force now (with requests_per_minute = \"auto\": the fleet's rate found so far)",
            f.rate_per_minute.clone(),
        );
        r.register(
            "rate_limit_ceiling_per_minute",
            "The adaptive rate's ceiling (max_requests_per_minute); 0 with a fixed requests_per_minute",
            f.rate_ceiling.clone(),
        );
        r.register(
            "rate_limit_decreases",
            "Rate-limit answers that made this process lower the fleet's adaptive rate",
            f.rate_decreases.clone(),
        );
        r.register(
            "rate_window_calls",
            "API calls in the rate gate's window (61 s) by every process sharing the queue",
            f.rate_window_calls.clone(),
        );
        r.register(
            "rate_cooldown_seconds",
            "Seconds left of the pool's rate-limit cooldown",
            f.rate_cooldown.clone(),
        );
    }

    /// The pool: pauses, resumes and restarts, downloads in flight.
    fn register_pool(&self, r: &mut Registry) {
        let f = self;
        r.register(
            "paused",
            "1 while the pool is paused for this reason (account, disk)",
            f.paused.clone(),
        );
        r.register(
            "paused_seconds",
            "Seconds the pool spent paused, by reason",
            f.paused_seconds.clone(),
        );
        r.register(
            "resumes",
            "Downloads continued from bytes kept from an earlier turn",
            f.resumes.clone(),
        );
        r.register(
            "restarts_from_zero",
            "Downloads that threw their partial bytes away (file changed, Range ignored)",
            f.restarts.clone(),
        );
        r.register(
            "downloads_in_flight",
            "Jobs being worked by this process",
            f.in_flight.clone(),
        );
    }

    /// How long downloads, checkpoints and fsyncs take.
    fn register_timings(&self, r: &mut Registry) {
        let f = self;
        r.register(
            "download_duration_seconds",
            "Length of the turns that ended with a verified file",
            f.duration.clone(),
        );
        r.register(
            "download_throughput_bytes_per_second",
            "Bytes received per second over a turn that ended with a verified file",
            f.throughput.clone(),
        );
        r.register(
            "checkpoint_seconds",
            "Time to record a checkpoint in the queue",
            f.checkpoint.clone(),
        );
        r.register(
            "fsync_seconds",
            "Time to fsync a partial file at a checkpoint",
            f.fsync.clone(),
        );
    }

    /// The pool's heartbeat and this binary.
    fn register_process(&self, r: &mut Registry) {
        let f = self;
        r.register(
            "heartbeat_age_seconds",
            "Seconds since the pool's heartbeat last turned (every second while healthy)",
            f.heartbeat_age.clone(),
        );
        r.register(
            "build_info",
            "Version, commit and queue backends of this binary (always 1)",
            f.build_info.clone(),
        );
    }

    /// Series that exist from the start at 0, so rates and alerts see them
    /// before the first event.
    fn preset(&self) {
        for state in JobState::ALL {
            let _ = self.jobs.get_or_create(&state_label(state));
        }
        for state in TaskState::ALL {
            let _ = self.tasks.get_or_create(&task_label(state));
        }
        for reason in PAUSE_REASONS {
            let label = reason_label(reason);
            let _ = self.paused.get_or_create(&label);
            let _ = self.paused_seconds.get_or_create(&label);
        }
        for outcome in ["done", "failed", "retry"] {
            let _ = self.outcomes.get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            });
        }
        let build = BuildLabels {
            version: crate::build_info::VERSION.into(),
            commit: crate::build_info::COMMIT.into(),
            backends: crate::build_info::BACKENDS.join(","),
        };
        self.build_info.get_or_create(&build).set(1);
    }
}

fn state_label(state: JobState) -> StateLabel {
    StateLabel {
        state: state.as_str().into(),
    }
}

fn task_label(state: TaskState) -> StateLabel {
    StateLabel {
        state: state.as_str().into(),
    }
}

fn reason_label(reason: &str) -> ReasonLabel {
    ReasonLabel {
        reason: reason.into(),
    }
}

/// What the queue says at a scrape: its counts, and the API calls every
/// process sharing it made in the rate gate's window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueReading {
    pub counts: StatusCounts,
    pub tasks: TaskCounts,
    pub api_calls: u64,
}

impl QueueReading {
    pub(crate) async fn read(queue: &Queue) -> Result<QueueReading, QueueError> {
        Ok(QueueReading {
            counts: queue.status().await?,
            tasks: queue.task_counts().await?,
            api_calls: queue.api_calls_in_window(WINDOW).await?,
        })
    }
}

/// The rate gate as the dashboard shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct GateView {
    /// The cap in force: fixed, or the adaptive rate found so far.
    pub per_minute: Option<u32>,
    /// "auto" or "fixed".
    pub mode: Option<&'static str>,
    /// The adaptive rate's ceiling (auto only).
    pub ceiling: Option<u32>,
    /// Decreases of the adaptive rate by every process sharing the queue,
    /// as last read from it.
    pub decreases: u64,
    /// In the gate's window, by every process sharing the queue.
    pub calls_in_window: Option<u64>,
    pub window_secs: u64,
    pub cooldown_secs: f64,
    /// The account-level answer holding every worker back, if any.
    pub held: Option<String>,
}

/// What the dashboard shows besides the queue's own counts.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Snapshot {
    pub in_flight: Vec<FlightView>,
    pub pause: Option<PauseView>,
    pub recent_errors: Vec<RecentError>,
    pub gate: GateView,
    pub heartbeat_age_secs: f64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let f = Families::new();
        f.preset();
        let mut registry = Registry::default();
        f.register(registry.sub_registry_with_prefix("minimax_dl"));
        registry.register_collector(Box::new(process::ProcessCollector));
        Metrics(Arc::new(Inner {
            registry,
            f,
            live: Mutex::default(),
            pause_clock: Mutex::default(),
            heartbeat: Mutex::new(Instant::now()),
            gate: OnceLock::new(),
            last_read: Mutex::default(),
            bucket: OnceLock::new(),
        }))
    }

    /// The gate whose cap and cooldown are shown (set once the engine,
    /// which makes it, exists).
    pub(crate) fn watch_gate(&self, gate: Arc<RateGate>) {
        let _ = self.0.gate.set(gate);
    }

    /// The archive bucket whose retries are counted (a bucket archive only).
    pub(crate) fn watch_bucket(&self, bucket: Arc<Bucket>) {
        let _ = self.0.bucket.set(bucket);
    }

    /// The scrape: what the queue said (None when it could not be read:
    /// the last values stay, `queue_up` says 0 and `queue_read_age_seconds`
    /// how old they are) and everything else as of now. Always Prometheus
    /// text: a scraper must see the outage as a value, not a missing target.
    pub(crate) fn render(&self, queue: Option<&QueueReading>) -> String {
        let f = &self.0.f;
        let now = Instant::now();
        match queue {
            Some(reading) => {
                self.record_reading(reading);
                *lock(&self.0.last_read) = Some(now);
            }
            None => {
                f.queue_up.set(0);
            }
        }
        let age = lock(&self.0.last_read).map_or(-1.0, |at| match queue {
            Some(_) => 0.0,
            None => now.saturating_duration_since(at).as_secs_f64(),
        });
        f.queue_read_age.set(age);
        self.settle_pause(now);
        let gate = self.gate_view(None);
        f.rate_per_minute.set(gate.per_minute.map_or(0, i64::from));
        f.rate_ceiling.set(gate.ceiling.map_or(0, i64::from));
        if let Some(g) = self.0.gate.get() {
            let counted = f.rate_decreases.get();
            f.rate_decreases
                .inc_by(g.decreases().saturating_sub(counted));
        }
        f.rate_cooldown.set(gate.cooldown_secs);
        if let Some(bucket) = self.0.bucket.get() {
            let counted = f.archive_retries.get();
            f.archive_retries
                .inc_by(bucket.retries().saturating_sub(counted));
        }
        f.in_flight.set(lock(&self.0.live).flights.len() as i64);
        f.heartbeat_age.set(self.heartbeat_age().as_secs_f64());
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.0.registry);
        text
    }

    /// The queue's numbers into their gauges.
    fn record_reading(&self, reading: &QueueReading) {
        let f = &self.0.f;
        let gauge = |n: u64| n.min(i64::MAX as u64) as i64;
        for state in JobState::ALL {
            f.jobs
                .get_or_create(&state_label(state))
                .set(gauge(reading.counts.get(state)));
        }
        for state in TaskState::ALL {
            f.tasks
                .get_or_create(&task_label(state))
                .set(gauge(reading.tasks.get(state)));
        }
        f.queue_task_polls.set(gauge(reading.tasks.polls));
        f.queue_bytes_done.set(gauge(reading.counts.bytes_done));
        f.rate_window_calls.set(gauge(reading.api_calls));
        f.queue_up.set(1);
    }

    /// `/metrics` while `run` waits for its queue database to open: no
    /// numbers of the queue are known yet, so only that it is down, the
    /// build and the process.
    pub(crate) fn render_unopened() -> String {
        let mut registry = Registry::default();
        let up = Gauge::<i64>::default();
        let f = Families::new();
        f.preset();
        let sub = registry.sub_registry_with_prefix("minimax_dl");
        sub.register(
            "queue_up",
            "1 when the queue answered this scrape; 0 while it does not (run waits for it)",
            up,
        );
        sub.register(
            "build_info",
            "Version, commit and queue backends of this binary (always 1)",
            f.build_info.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        let mut text = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }

    /// What the dashboard shows besides the queue's counts (`api_calls`:
    /// the queue's count of calls in the gate's window, when it was read).
    pub(crate) fn snapshot(&self, api_calls: Option<u64>) -> Snapshot {
        let now = Instant::now();
        let live = lock(&self.0.live);
        Snapshot {
            in_flight: live.flights(now),
            pause: live.pause.clone(),
            recent_errors: live.errors.iter().cloned().collect(),
            gate: self.gate_view(api_calls),
            heartbeat_age_secs: self.heartbeat_age().as_secs_f64(),
        }
    }

    /// The pause the pool last reported, if it is paused.
    pub(crate) fn pause(&self) -> Option<PauseView> {
        lock(&self.0.live).pause.clone()
    }

    /// How long ago the pool's heartbeat last turned (since the start
    /// when it has not turned yet).
    pub(crate) fn heartbeat_age(&self) -> Duration {
        lock(&self.0.heartbeat).elapsed()
    }

    fn gate_view(&self, calls_in_window: Option<u64>) -> GateView {
        let window_secs = WINDOW.as_secs();
        let Some(gate) = self.0.gate.get() else {
            return GateView {
                calls_in_window,
                window_secs,
                ..GateView::default()
            };
        };
        GateView {
            per_minute: Some(gate.per_minute()),
            mode: Some(if gate.ceiling().is_some() {
                "auto"
            } else {
                "fixed"
            }),
            ceiling: gate.ceiling(),
            decreases: gate.rate_state().decreases,
            calls_in_window,
            window_secs,
            cooldown_secs: gate.cooldown_remaining().unwrap_or_default().as_secs_f64(),
            held: gate.held().map(|h| h.message),
        }
    }

    /// Adds the time paused since it was last counted to its reason.
    fn settle_pause(&self, now: Instant) {
        let mut clock = lock(&self.0.pause_clock);
        if let Some((reason, counted)) = clock.as_mut() {
            let secs = now.saturating_duration_since(*counted).as_secs_f64();
            self.0
                .f
                .paused_seconds
                .get_or_create(&reason_label(reason))
                .inc_by(secs);
            *counted = now;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(series))
    }

    #[test]
    fn tasks_are_scraped_and_an_outage_keeps_the_last_values_marked_stale() {
        let metrics = Metrics::new();
        let reading = QueueReading {
            counts: StatusCounts {
                queued: 4,
                ..StatusCounts::default()
            },
            tasks: TaskCounts {
                generating: 2,
                failed: 1,
                polls: 9,
                ..TaskCounts::default()
            },
            api_calls: 3,
        };
        let fresh = metrics.render(Some(&reading));
        for (series, want) in [
            ("minimax_dl_tasks{state=\"generating\"}", "2"),
            ("minimax_dl_tasks{state=\"failed\"}", "1"),
            ("minimax_dl_tasks{state=\"done\"}", "0"),
            ("minimax_dl_queue_task_polls ", "9"),
            ("minimax_dl_queue_up ", "1"),
            ("minimax_dl_queue_read_age_seconds ", "0.0"),
        ] {
            assert_eq!(
                line(&fresh, series).and_then(|l| l.rsplit(' ').next()),
                Some(want),
                "{series}\n{fresh}"
            );
        }
        let stale = metrics.render(None);
        assert!(line(&stale, "minimax_dl_queue_up 0").is_some(), "{stale}");
        assert!(
            line(&stale, "minimax_dl_tasks{state=\"generating\"} 2").is_some(),
            "the last known value stays: {stale}"
        );
        let age = line(&stale, "minimax_dl_queue_read_age_seconds ").unwrap();
        let age: f64 = age.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(age >= 0.0, "{stale}");
        let never = Metrics::new().render(None);
        assert!(
            line(&never, "minimax_dl_queue_read_age_seconds -1").is_some(),
            "{never}"
        );
        let unopened = Metrics::render_unopened();
        assert!(
            line(&unopened, "minimax_dl_queue_up 0").is_some(),
            "{unopened}"
        );
        assert!(
            line(&unopened, "minimax_dl_build_info{").is_some(),
            "{unopened}"
        );
    }
}
