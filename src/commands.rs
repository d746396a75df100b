//! The binary's edge: each CLI verb wired to the library, printing for
//! people or scripts, and mapping outcomes to the documented exit codes.
//! `anyhow` lives here (and in `demo`).

use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::ApiClient;
use crate::cli::{Cli, Command};
use crate::config::{Overrides, Settings};
use crate::daemon::{self, Reload, RunEnd, RunOptions};
use crate::ids;
use crate::progress::{Bars, LogLines};
use crate::queue::{Job, JobEvent, JobState, Millis, Queue, VerbOutcome, state};
use crate::runtime::{
    self, Interrupt, OnHangup, OnStop, engine, exit, host_problem_exit, spawn_signal_handler,
    spawn_systemd_notifier,
};
use crate::say;
use crate::worker::{Observer, Outcome};

/// Writes a line to stdout; a closed pipe (`| head`) ends output quietly.
macro_rules! out {
    ($($arg:tt)*) => {
        if let Err(e) = writeln!(io::stdout().lock(), $($arg)*) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(exit::OK);
            }
            return Err(e.into());
        }
    };
}

pub fn overrides(cli: &Cli) -> Overrides {
    let (concurrency, segments) = match &cli.command {
        Command::Run {
            concurrency,
            segments,
            ..
        } => (*concurrency, *segments),
        _ => (None, None),
    };
    Overrides {
        config: cli.config.clone(),
        database: cli.db.clone(),
        output_dir: cli.out.clone(),
        concurrency,
        segments,
        log_format: cli.log_format,
    }
}

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Runs one verb. `settings` is `None` only when loading them failed for
/// `demo` or `sim`, which bring their own.
pub async fn dispatch(cli: Cli, settings: Option<Settings>) -> Result<u8> {
    let overrides = overrides(&cli);
    let command = match cli.command {
        Command::Demo { files, dir } => return crate::demo::run(files, dir).await,
        Command::Sim(args) => {
            let shutdown = CancellationToken::new();
            spawn_signal_handler(shutdown.clone(), None, OnStop::Finish);
            crate::sim::run_cli(args, shutdown)
                .await
                .context("simulator")?;
            return Ok(exit::OK);
        }
        other => other,
    };
    let settings = settings.context("no configuration could be loaded")?;
    match command {
        Command::Enqueue { ids, from } => enqueue(&settings, &ids, from.as_deref()).await,
        Command::Run { exit_when_idle, .. } => run(settings, overrides, exit_when_idle).await,
        Command::Status { json } => status(&settings, json).await,
        Command::List { state, limit, json } => list(&settings, state, limit, json).await,
        Command::Show { id, json } => show(&settings, &id, json).await,
        Command::Retry { ids, all_failed } => retry(&settings, &ids, all_failed).await,
        Command::Cancel { ids } => cancel(&settings, &ids).await,
        Command::Fetch { id } => fetch(&settings, &id).await,
        Command::Demo { .. } | Command::Sim(_) => Ok(exit::OK),
    }
}

/// The queue for a user verb: every commit is on disk before we report it.
async fn open_queue(settings: &Settings) -> Result<Queue> {
    Ok(Queue::open(&settings.database).await?)
}

/// The queue for a verb that only reads (`status`, `list`, `show`): never
/// created, never written, so a mistyped `--db` or a read-only queue gets a
/// plain answer.
async fn open_queue_to_read(settings: &Settings) -> Result<Queue> {
    Ok(Queue::open_read_only(&settings.database).await?)
}

/// The queue for a worker pool (`run`, `fetch`): see `CommitSync::Normal`.
pub async fn open_queue_for_workers(settings: &Settings) -> Result<Queue> {
    Ok(Queue::open_for_workers(&settings.database).await?)
}

fn file_ids(values: &[String]) -> Result<Vec<i64>> {
    Ok(ids::parse_args(values)?)
}

/// The ids of an `--from` list: a file, or stdin for `-`.
fn ids_from(path: &Path) -> Result<Vec<i64>> {
    let stdin = path == Path::new("-");
    let name = if stdin {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    let text = if stdin {
        let mut text = String::new();
        io::stdin()
            .lock()
            .read_to_string(&mut text)
            .context("cannot read ids from stdin")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read ids from {name}"))?
    };
    let ids = ids::parse_lines(&text).with_context(|| format!("in {name}"))?;
    if ids.is_empty() {
        bail!(
            "{name} holds no file ids (one decimal id per line; blank lines and # comments are skipped)"
        );
    }
    Ok(ids)
}

async fn enqueue(settings: &Settings, args: &[String], from: Option<&Path>) -> Result<u8> {
    let mut all = file_ids(args)?;
    if let Some(path) = from {
        all.extend(ids_from(path)?);
    }
    if all.is_empty() {
        bail!("no file ids given: pass ids as arguments or with --from FILE");
    }
    let queue = open_queue(settings).await?;
    let report = queue.enqueue(&all).await?;
    out!(
        "enqueued {} new, skipped {} already queued",
        report.added,
        report.skipped
    );
    Ok(exit::OK)
}

async fn status(settings: &Settings, as_json: bool) -> Result<u8> {
    let queue = open_queue_to_read(settings).await?;
    let counts = queue.status().await?;
    if as_json {
        out!("{}", serde_json::to_string(&counts)?);
    } else {
        for state in JobState::ALL {
            out!("{:<10} {}", state.as_str(), counts.get(state));
        }
        out!("{:<10} {}", "bytes", counts.bytes_done);
    }
    Ok(exit::OK)
}

fn rfc3339(millis: Millis) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn job_json(job: &Job) -> serde_json::Value {
    json!({
        "file_id": job.file_id,
        "state": job.state,
        "attempts": job.attempts,
        "bytes_expected": job.bytes_expected,
        "bytes_done": job.bytes_done,
        "path": if job.state == JobState::Done { job.final_path.clone() } else { None },
        "sha256": if job.state == JobState::Done { job.sha256.clone() } else { None },
        "last_error": job.last_error,
        "filename": job.filename,
        "created_at": rfc3339(job.created_at),
        "updated_at": rfc3339(job.updated_at),
    })
}

async fn list(
    settings: &Settings,
    state: Option<JobState>,
    limit: Option<u64>,
    as_json: bool,
) -> Result<u8> {
    use futures_util::StreamExt;
    let queue = open_queue_to_read(settings).await?;
    let mut jobs = queue.list_stream(state, limit);
    if as_json {
        while let Some(job) = jobs.next().await {
            out!("{}", job_json(&job?));
        }
        return Ok(exit::OK);
    }
    out!(
        "{:>20}  {:<9}  {:>3}  {:>23}  PATH / LAST ERROR",
        "FILE_ID",
        "STATE",
        "TRY",
        "BYTES"
    );
    while let Some(job) = jobs.next().await {
        let job = job?;
        let bytes = match job.bytes_expected {
            Some(total) => format!("{}/{}", job.bytes_done, total),
            None => job.bytes_done.to_string(),
        };
        let detail = match job.state {
            JobState::Done => job.final_path.clone().unwrap_or_default(),
            _ => job.last_error.clone().unwrap_or_default(),
        };
        out!(
            "{:>20}  {:<9}  {:>3}  {:>23}  {}",
            job.file_id,
            job.state.as_str(),
            job.attempts,
            bytes,
            detail
        );
    }
    Ok(exit::OK)
}

fn event_json(event: &JobEvent) -> serde_json::Value {
    json!({
        "at": rfc3339(event.at),
        "kind": event.kind,
        "attempt": state::shown_attempt(&event.kind, event.attempt),
        "message": event.message,
    })
}

async fn show(settings: &Settings, raw_id: &str, as_json: bool) -> Result<u8> {
    let id = file_ids(&[raw_id.to_string()])?[0];
    let queue = open_queue_to_read(settings).await?;
    let Some(job) = queue.get(id).await? else {
        bail!("file {id} is not in the queue at {}", queue.location());
    };
    let events = queue.events(id).await?;
    if as_json {
        let mut value = job_json(&job);
        value["size_source"] = json!(job.size_source);
        value["next_attempt_at"] = json!(rfc3339(job.next_attempt_at));
        value["lease_owner"] = json!(job.lease_owner);
        value["events"] = events.iter().map(event_json).collect();
        out!("{value}");
        return Ok(exit::OK);
    }
    out!("file_id        {}", job.file_id);
    out!("state          {}", job.state);
    out!(
        "attempts       {} failed (counted against max_attempts)",
        job.attempts
    );
    let expected = job
        .bytes_expected
        .map_or("unknown".to_string(), |b| b.to_string());
    let source = job
        .size_source
        .as_deref()
        .map_or(String::new(), |s| format!(" (size from {s})"));
    out!("bytes          {} of {expected}{source}", job.bytes_done);
    if let Some(name) = &job.filename {
        out!("filename       {name}");
    }
    if let Some(path) = &job.final_path {
        out!("path           {path}");
    }
    if let Some(sha) = &job.sha256 {
        out!("sha256         {sha}");
    }
    if job.state == JobState::Queued && job.next_attempt_at > crate::queue::now_millis() {
        out!("next attempt   {}", rfc3339(job.next_attempt_at));
    }
    if let Some(owner) = &job.lease_owner {
        out!("worker         {owner}");
    }
    if let Some(err) = &job.last_error {
        out!("last error     {err}");
    }
    out!("created        {}", rfc3339(job.created_at));
    out!("history:");
    out!("  {}  enqueued", rfc3339(job.created_at));
    for e in &events {
        let attempt = state::shown_attempt(&e.kind, e.attempt)
            .map_or(String::new(), |a| format!(" (failed attempt {a})"));
        out!(
            "  {}  {}{}: {}",
            rfc3339(e.at),
            e.kind,
            attempt,
            e.message.as_deref().unwrap_or("")
        );
    }
    Ok(exit::OK)
}

/// Prints one line per id for retry/cancel; unknown ids make the exit 2.
fn report_verb(verb: &str, outcomes: &[(i64, VerbOutcome)]) -> Result<u8> {
    let mut code = exit::OK;
    for (id, outcome) in outcomes {
        match outcome {
            VerbOutcome::Applied => out!("{id}: {verb}"),
            VerbOutcome::Requested => out!("{id}: running; its worker was asked to stop"),
            VerbOutcome::Refused(why) => {
                say!("minimax-dl: {id}: not {verb}: {why}");
                code = exit::USAGE;
            }
            VerbOutcome::Unknown => {
                say!("minimax-dl: {id}: not in the queue");
                code = exit::USAGE;
            }
        }
    }
    Ok(code)
}

async fn retry(settings: &Settings, raw: &[String], all_failed: bool) -> Result<u8> {
    let queue = open_queue(settings).await?;
    if all_failed {
        let n = queue.retry_all_failed().await?;
        out!("requeued {n} failed jobs");
        return Ok(exit::OK);
    }
    let ids = file_ids(raw)?;
    let outcomes = queue.retry(&ids).await?;
    report_verb("requeued", &outcomes)
}

async fn cancel(settings: &Settings, raw: &[String]) -> Result<u8> {
    let ids = file_ids(raw)?;
    let queue = open_queue(settings).await?;
    let outcomes = queue.cancel(&ids).await?;
    // Wait for live workers to confirm (they check every second).
    let asked: Vec<i64> = outcomes
        .iter()
        .filter(|(_, o)| *o == VerbOutcome::Requested)
        .map(|(id, _)| *id)
        .collect();
    let mut code = report_verb("cancelled", &outcomes)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut pending = asked;
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut still = Vec::new();
        for id in pending {
            match queue.get(id).await? {
                Some(job) if job.state == JobState::Running => still.push(id),
                Some(job) => out!("{id}: {}", job.state),
                None => {}
            }
        }
        pending = still;
    }
    for id in pending {
        say!(
            "minimax-dl: {id}: its worker has not confirmed yet; it will stop at its next heartbeat"
        );
        code = code.max(exit::JOB_FAILURES);
    }
    Ok(code)
}

async fn run(settings: Settings, overrides: Overrides, exit_when_idle: bool) -> Result<u8> {
    let queue = open_queue_for_workers(&settings).await?;
    if matches!(settings.api_key, Ok(None)) {
        warn!(
            "no API key configured (MINIMAX_API_KEY or api_key_file): every retrieve call will pause the pool"
        );
    }
    let observer: Arc<dyn Observer> = Arc::new(LogLines::new(Duration::from_secs(10)));
    let engine = engine(&settings, queue.clone(), observer)?;
    let shutdown = CancellationToken::new();
    let (reload_tx, reload_rx) = watch::channel::<Option<Reload>>(None);
    let reloader = {
        let api_template = engine.api();
        move || -> Result<Reload> {
            let fresh = Settings::load(&overrides, &process_env)?;
            Ok(Reload {
                api: ApiClient::new(
                    fresh.api_base,
                    fresh.api_key?,
                    fresh.connect_timeout,
                    fresh.read_timeout,
                )
                .unwrap_or(api_template.clone()),
                concurrency: fresh.concurrency,
                requests_per_minute: fresh.requests_per_minute,
            })
        }
    };
    let on_hangup: OnHangup = Box::new(move || {
        let reload = reloader().map_err(|e| format!("{e:#}"))?;
        let _ = reload_tx.send(Some(reload));
        Ok(())
    });
    // A daemon's stop is its normal end; a batch stopped early is not done.
    let on_stop = if exit_when_idle {
        OnStop::Interrupt
    } else {
        OnStop::Finish
    };
    let interrupt = spawn_signal_handler(shutdown.clone(), Some(on_hangup), on_stop);
    let notifier = spawn_systemd_notifier(queue.clone(), shutdown.clone());
    info!(
        database = queue.location(),
        output_dir = %settings.output_dir.display(),
        concurrency = settings.concurrency,
        requests_per_minute = settings.requests_per_minute,
        "minimax-dl running"
    );
    let options = RunOptions {
        concurrency: settings.concurrency,
        exit_when_idle,
        probe_interval: settings.probe_interval,
    };
    let end = daemon::run(engine, options, shutdown.clone(), Some(reload_rx)).await?;
    runtime::notify_stopping();
    shutdown.cancel();
    let _ = notifier.await;
    let counts = queue.status().await?;
    queue.close().await;
    match end {
        RunEnd::Idle => {
            info!(
                done = counts.done,
                failed = counts.failed,
                "queue is empty; exiting"
            );
            Ok(if counts.failed > 0 {
                exit::JOB_FAILURES
            } else {
                exit::OK
            })
        }
        RunEnd::Stopped => {
            let left = counts.queued + counts.running;
            match interrupt.code() {
                Some(code) if exit_when_idle && left > 0 => {
                    say!(
                        "minimax-dl: interrupted; {left} jobs stay queued and resume from their last checkpoint on the next run"
                    );
                    Ok(code)
                }
                _ => {
                    info!("stopped; in-flight jobs were checkpointed and re-queued");
                    Ok(exit::OK)
                }
            }
        }
        RunEnd::Blocked(problem) => {
            error!(
                "stopping: {}; jobs stay queued with their attempts",
                problem.message()
            );
            Ok(host_problem_exit(&problem))
        }
    }
}

async fn fetch(settings: &Settings, raw: &str) -> Result<u8> {
    let id = file_ids(&[raw.to_string()])?[0];
    let queue = open_queue_for_workers(settings).await?;
    let bars = io::stderr()
        .is_terminal()
        .then(|| Arc::new(Bars::new(None)));
    let observer: Arc<dyn Observer> = match &bars {
        Some(b) => b.clone(),
        None => Arc::new(LogLines::new(Duration::from_secs(5))),
    };
    // Everything that can fail before any work (the key, the archive
    // directory) is checked before the id is enqueued: a failed call leaves
    // the queue as it was.
    let engine = engine(settings, queue.clone(), observer)?;
    queue.enqueue(&[id]).await?;
    if let Some(job) = queue.get(id).await? {
        match job.state {
            JobState::Done => {
                out!("{}", job.final_path.unwrap_or_default());
                return Ok(exit::OK);
            }
            JobState::Failed | JobState::Cancelled => {
                queue.retry(&[id]).await?;
            }
            _ => {}
        }
    }
    let shutdown = CancellationToken::new();
    let interrupt = spawn_signal_handler(shutdown.clone(), None, OnStop::Interrupt);
    let code = loop {
        match daemon::fetch_one(&engine, id, &shutdown).await? {
            Some(Outcome::Done { path, .. }) => {
                out!("{}", path.display());
                break exit::OK;
            }
            Some(Outcome::Failed { error }) => {
                say!("minimax-dl: file {id} failed: {error}");
                break exit::JOB_FAILURES;
            }
            Some(Outcome::RetryLater { error, delay }) => {
                say!(
                    "minimax-dl: file {id}: {error}. It stays queued; `minimax-dl run` retries it in {}s",
                    delay.as_secs()
                );
                break exit::JOB_FAILURES;
            }
            Some(Outcome::Requeued { reason }) => {
                info!("{reason}; trying again");
                let due = queue.get(id).await?.map_or(0, |j| j.next_attempt_at);
                let wait = (due - crate::queue::now_millis()).clamp(0, 300_000) as u64;
                tokio::select! {
                    _ = shutdown.cancelled() => break interrupted(id, &interrupt),
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                }
            }
            Some(Outcome::Cancelled) => {
                say!("minimax-dl: file {id} was cancelled");
                break exit::JOB_FAILURES;
            }
            Some(Outcome::Paused(problem)) => {
                say!("minimax-dl: {}", problem.message());
                break host_problem_exit(&problem);
            }
            Some(Outcome::Stopped) => break interrupted(id, &interrupt),
            Some(Outcome::LeaseLost) | None => {
                let state = queue.get(id).await?.map(|j| j.state);
                if state == Some(JobState::Done) {
                    let path = queue
                        .get(id)
                        .await?
                        .and_then(|j| j.final_path)
                        .unwrap_or_default();
                    out!("{path}");
                    break exit::OK;
                }
                say!("minimax-dl: file {id} is being downloaded by another worker");
                break exit::JOB_FAILURES;
            }
        }
    };
    if let Some(b) = bars {
        b.finish();
    }
    queue.close().await;
    Ok(code)
}

/// `fetch` stopped by a signal: say so, and exit with the signal's code.
fn interrupted(id: i64, interrupt: &Interrupt) -> u8 {
    say!("minimax-dl: interrupted; file {id} stays queued and resumes from its last checkpoint");
    interrupt.code().unwrap_or(exit::INTERRUPTED)
}
