//! `run`: the pool as a daemon (or a batch, with `--exit-when-idle`), with
//! SIGHUP reloads and systemd notification.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{open_queue, process_env};
use crate::api::ApiClient;
use crate::config::{Overrides, Settings};
use crate::daemon::{self, Reload, RunEnd, RunOptions};
use crate::listen::callback::Callbacks;
use crate::listen::{self, ops, ops::Actions, ops::Ops};
use crate::metrics::Metrics;
use crate::progress::LogLines;
use crate::queue::{Queue, StatusCounts};
use crate::runtime::{
    self, Interrupt, OnHangup, OnStop, engine, exit, host_problem_exit, spawn_signal_handler,
    spawn_systemd_notifier,
};
use crate::say;
use crate::worker::{Engine, Observer, Observers};

pub(crate) async fn run(
    settings: Settings,
    overrides: Overrides,
    exit_when_idle: bool,
) -> Result<u8> {
    // Bound first: an address that is taken or not allowed stops `run`
    // before any work starts.
    let listener = match &settings.listen {
        Some(l) => Some(listen::bind(&l.addr, l.public).await?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    // A daemon's stop is its normal end; a batch stopped early is not done.
    let on_stop = if exit_when_idle {
        OnStop::Interrupt
    } else {
        OnStop::Finish
    };
    // Signals are handled from here on, while the queue opens too; a
    // reload has something to reload once the engine exists.
    let reloads: Arc<std::sync::Mutex<Option<OnHangup>>> = Arc::default();
    let interrupt = spawn_signal_handler(shutdown.clone(), Some(late_reload(&reloads)), on_stop);
    let opened =
        open_answering_health_checks(&settings, listener.as_ref(), exit_when_idle, &shutdown)
            .await?;
    let queue = match opened {
        Opened::Queue(queue) => queue,
        Opened::Unreachable => return Ok(exit::DB_UNREACHABLE),
        Opened::Stopped => {
            info!("stopped before the queue database answered; nothing was claimed");
            return Ok(match on_stop {
                OnStop::Finish => exit::OK,
                OnStop::Interrupt => interrupt.code().unwrap_or(exit::INTERRUPTED),
            });
        }
    };
    if listener.is_none() && matches!(settings.callback_token, Ok(Some(_))) {
        warn!(
            "a callback_token is set but run has no --listen (or `listen`): callbacks are not served"
        );
    }
    let (metrics, observer) = observers(listener.is_some());
    let engine = engine(&settings, queue.clone(), observer)?;
    let (reload_tx, reload_rx) = watch::channel::<Option<Reload>>(None);
    *reloads.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(reloader(&engine, overrides, reload_tx));
    let notifier = spawn_systemd_notifier(queue.clone(), shutdown.clone());
    // Served once a stop signal is handled: from "listening" on, SIGTERM is
    // a clean stop.
    let server = match (listener, metrics) {
        (Some(bound), Some(metrics)) => {
            Some(serve_ops(bound, &engine, &settings, &queue, metrics, &shutdown).await?)
        }
        _ => None,
    };
    info!(
        database = queue.location(),
        archive = %archive_description(&settings),
        concurrency = settings.concurrency,
        requests_per_minute = %settings.rate.requests,
        "minimax-dl running"
    );
    let options = RunOptions {
        concurrency: settings.concurrency,
        exit_when_idle,
        probe_interval: settings.probe_interval,
        api_unreachable: settings.api_unreachable,
        tasks: settings.tasks,
    };
    let end = daemon::run(engine, options, shutdown.clone(), Some(reload_rx)).await?;
    runtime::notify_stopping();
    shutdown.cancel();
    let _ = notifier.await;
    if let Some(server) = server {
        let _ = server.await;
    }
    exit_after(end, &queue, &interrupt, exit_when_idle).await
}

/// Where verified files end up, for the start-up line: with a bucket
/// archive, `output_dir` is only where files wait to go up.
fn archive_description(settings: &Settings) -> String {
    match &settings.bucket {
        Some(bucket) => format!("{bucket} (staging in {})", settings.output_dir.display()),
        None => settings.output_dir.display().to_string(),
    }
}

/// What hears this run: log lines, and the metrics when it serves them.
fn observers(serving: bool) -> (Option<Metrics>, Arc<dyn Observer>) {
    let metrics = serving.then(Metrics::new);
    let log_lines: Arc<dyn Observer> = Arc::new(LogLines::new(Duration::from_secs(10)));
    let observer: Arc<dyn Observer> = match &metrics {
        Some(m) => Arc::new(Observers(vec![log_lines, Arc::new(m.clone())])),
        None => log_lines,
    };
    (metrics, observer)
}

/// The exit code once the pool has stopped: the database's when it stopped
/// answering, else from the queue's counts (a batch's failed tasks count
/// as failures).
async fn exit_after(
    end: RunEnd,
    queue: &Queue,
    interrupt: &Interrupt,
    exit_when_idle: bool,
) -> Result<u8> {
    if let RunEnd::Unreachable(why) = end {
        error!(
            "stopping: the queue database {} does not answer: {why}; jobs stay as they are and resume on the next run",
            queue.location()
        );
        return Ok(exit::DB_UNREACHABLE);
    }
    let mut counts = queue.status().await?;
    if end == RunEnd::Idle {
        // A task that failed is a video that will not be archived: for a
        // batch's exit code, a failure like a job's.
        counts.failed += queue.task_counts().await?.failed;
    }
    queue.close().await;
    Ok(exit_code(end, &counts, interrupt, exit_when_idle))
}

/// Starts serving `/metrics`, the health checks and the dashboard on
/// `bound` until `shutdown`.
async fn serve_ops(
    bound: listen::Bound,
    engine: &Engine,
    settings: &Settings,
    queue: &Queue,
    metrics: Metrics,
    shutdown: &CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    metrics.watch_gate(engine.gate.clone());
    if let Some(bucket) = &engine.bucket {
        metrics.watch_bucket(bucket.clone());
    }
    let listen = settings.listen.as_ref().context("listen settings")?;
    let actions = match &listen.token {
        Some(token) => Some(Actions {
            queue: open_queue(settings).await?,
            token: Arc::new(token.clone()),
        }),
        None => None,
    };
    if listen.public && actions.is_none() {
        warn!(
            "listening beyond loopback: anyone who can reach the port sees the dashboard and metrics"
        );
    }
    let addr = bound
        .local_addr()
        .map_or_else(|| listen.addr.clone(), |a| a.to_string());
    info!(
        actions = actions.is_some(),
        "listening on http://{addr}/ (metrics at /metrics)"
    );
    let mut routes = ops::router(Ops {
        queue: queue.clone(),
        metrics,
        actions,
    });
    if let Some(token) = settings
        .callback_token
        .clone()
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        info!("taking MiniMax task callbacks at http://{addr}/callback/<callback_token>");
        routes = routes.merge(listen::callback::router(Callbacks {
            queue: open_queue(settings).await?,
            token: Arc::new(token),
            deadline: settings.tasks.deadline,
        }));
    }
    let limits = listen::Limits::default();
    Ok(tokio::spawn(bound.serve(routes, limits, shutdown.clone())))
}

/// [`open_when_reachable`], with the listener (when there is one)
/// answering health checks once the database has failed to answer:
/// alive, not ready, and why.
async fn open_answering_health_checks(
    settings: &Settings,
    listener: Option<&listen::Bound>,
    batch: bool,
    shutdown: &CancellationToken,
) -> Result<Opened> {
    let mut waiting = WaitingAnswers {
        bound: listener,
        serving: None,
    };
    let opened = open_when_reachable(settings, batch, &mut waiting, shutdown).await;
    waiting.stop().await;
    opened
}

/// The health answers served while `run` waits for its database, started
/// at its first failure (a database that answers at once never sees them).
struct WaitingAnswers<'a> {
    bound: Option<&'a listen::Bound>,
    serving: Option<(ops::Opening, CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl WaitingAnswers<'_> {
    /// The database did not answer, for this reason.
    fn failed(&mut self, why: String) {
        let Some(bound) = self.bound else { return };
        let (opening, _, _) = self.serving.get_or_insert_with(|| {
            let opening = ops::Opening::default();
            let stop = CancellationToken::new();
            let routes = ops::opening_router(opening.clone());
            let limits = listen::Limits::default();
            let server = tokio::spawn(bound.clone().serve(routes, limits, stop.clone()));
            if let Some(addr) = bound.local_addr() {
                info!(
                    "listening on http://{addr}/ (health checks only, until the queue database answers)"
                );
            }
            (opening, stop, server)
        });
        opening.set(why);
    }

    /// Hands the socket back for the full routes.
    async fn stop(self) {
        if let Some((_, stop, server)) = self.serving {
            stop.cancel();
            let _ = server.await;
        }
    }
}

/// How long an open of the queue may take before `run` serves its health
/// answers while it waits: a database that answers is much faster.
const SLOW_OPEN: Duration = Duration::from_secs(1);

/// How opening the queue ended.
enum Opened {
    Queue(Queue),
    /// A batch gave up on a database that did not answer.
    Unreachable,
    /// A stop signal came first.
    Stopped,
}

/// Opens the queue, waiting with backoff while the database does not
/// answer: a daemon started before its PostgreSQL server keeps trying (a
/// line a minute) until it is stopped; a batch gives up after
/// `BATCH_GRACE`. Any other error (a wrong path, a foreign database, a bad
/// password) ends at once.
async fn open_when_reachable(
    settings: &Settings,
    batch: bool,
    waiting: &mut WaitingAnswers<'_>,
    shutdown: &CancellationToken,
) -> Result<Opened> {
    let mut outage: Option<daemon::Outage> = None;
    loop {
        let opening = Queue::open_for_workers(&settings.database);
        tokio::pin!(opening);
        // An open of a PostgreSQL queue that neither succeeds nor fails at
        // once (a server that accepts and does not answer, up to
        // `db_timeout_secs`) already gets the health answers, and a stop
        // signal ends the wait. A SQLite file answers or fails by itself.
        let slow = async {
            match settings.database.is_postgres() {
                true => tokio::time::sleep(SLOW_OPEN).await,
                false => std::future::pending().await,
            }
        };
        let attempt = tokio::select! {
            attempt = &mut opening => attempt,
            _ = shutdown.cancelled() => return Ok(Opened::Stopped),
            _ = slow => {
                waiting.failed("the queue database has not answered yet".into());
                tokio::select! {
                    attempt = &mut opening => attempt,
                    _ = shutdown.cancelled() => return Ok(Opened::Stopped),
                }
            }
        };
        let error = match attempt {
            Ok(queue) => {
                if let Some(outage) = outage {
                    outage.ended(tokio::time::Instant::now());
                }
                return Ok(Opened::Queue(queue));
            }
            Err(e) if e.is_unreachable() => e,
            Err(e) => return Err(e.into()),
        };
        waiting.failed(error.to_string());
        let now = tokio::time::Instant::now();
        let down = outage.get_or_insert_with(|| daemon::Outage::new(now));
        let wait = down.failed(now, "cannot open the queue database", &error);
        if batch && down.lasted(now) >= daemon::BATCH_GRACE {
            error!("stopping: {error}");
            return Ok(Opened::Unreachable);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return Ok(Opened::Stopped),
        }
    }
}

/// The SIGHUP handler installed before the engine exists: it runs the
/// reloader put in `slot` once there is one.
fn late_reload(slot: &Arc<std::sync::Mutex<Option<OnHangup>>>) -> OnHangup {
    let slot = slot.clone();
    Box::new(
        move || match &*slot.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(reload) => reload(),
            None => Err("the queue database is not open yet: nothing to reload".into()),
        },
    )
}

/// SIGHUP: load the settings again and hand the pool what may change
/// while it runs (the key, the concurrency, the request rate).
fn reloader(
    engine: &Engine,
    overrides: Overrides,
    reloads: watch::Sender<Option<Reload>>,
) -> OnHangup {
    let api_template = engine.api();
    let load = move || -> Result<Reload> {
        let fresh = runtime::load_settings(&overrides, &process_env)?;
        // A reload that loses the key keeps the one in use.
        let key = fresh.api_key?.context(
            "no API key any more (MINIMAX_API_KEY or api_key_file); keeping the one in use",
        )?;
        Ok(Reload {
            api: ApiClient::new(
                fresh.api_base,
                Some(key),
                fresh.connect_timeout,
                fresh.read_timeout,
            )
            .unwrap_or(api_template.clone()),
            concurrency: fresh.concurrency,
            rate: fresh.rate,
        })
    };
    Box::new(move || {
        let reload = load().map_err(|e| format!("{e:#}"))?;
        let _ = reloads.send(Some(reload));
        Ok(())
    })
}

/// Says how the pool ended and gives the exit code it stands for.
fn exit_code(end: RunEnd, counts: &StatusCounts, interrupt: &Interrupt, batch: bool) -> u8 {
    match end {
        RunEnd::Idle => {
            info!(
                done = counts.done,
                failed = counts.failed,
                "queue is empty; exiting"
            );
            if counts.failed > 0 {
                exit::JOB_FAILURES
            } else {
                exit::OK
            }
        }
        RunEnd::Stopped => {
            let left = counts.queued + counts.running;
            match interrupt.code() {
                Some(code) if batch && left > 0 => {
                    say!(
                        "minimax-dl: interrupted; {left} jobs stay queued and resume from their last checkpoint on the next run"
                    );
                    code
                }
                _ => {
                    info!("stopped; in-flight jobs were checkpointed and re-queued");
                    exit::OK
                }
            }
        }
        RunEnd::Unreachable(_) => exit::DB_UNREACHABLE,
        RunEnd::Blocked(problem) => {
            error!(
                "stopping: {}; jobs stay queued with their attempts",
                problem.message()
            );
            host_problem_exit(&problem)
        }
    }
}
