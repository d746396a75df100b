//! The binary's edge: each CLI verb wired to the library, printing for
//! people or scripts, and mapping outcomes to the documented exit codes.
//! One file per verb or family of verbs; `dispatch` has one arm each.
//! `anyhow` lives here (and in `demo`).

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, DbCommand};
use crate::config::{ConfigError, Overrides, Settings};
use crate::ids;
use crate::queue::{Job, JobState, Millis, Queue, QueueError, Task, TaskState};
use crate::runtime::{OnStop, exit, spawn_signal_handler};

/// Writes a line to stdout; a closed pipe (`| head`) ends output quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok($crate::runtime::exit::OK);
            }
            return Err(e.into());
        }
    }};
}

mod db;
mod doctor;
mod enqueue;
mod export;
mod fetch;
mod list;
mod prune;
mod reference;
mod run;
mod show;
pub(crate) mod sim;
mod status;
mod sync;
mod verbs;
mod verify;
mod watch;

pub fn overrides(cli: &Cli) -> Overrides {
    let (concurrency, segments, requests_per_minute, listen) = match &cli.command {
        Command::Run {
            concurrency,
            segments,
            requests_per_minute,
            listen,
            ..
        } => (
            *concurrency,
            *segments,
            *requests_per_minute,
            listen.clone(),
        ),
        _ => (None, None, None, None),
    };
    Overrides {
        config: cli.config.clone(),
        database: cli.db.clone(),
        database_url_file: cli.database_url_file.clone(),
        output_dir: cli.out.clone(),
        concurrency,
        segments,
        requests_per_minute,
        log_format: cli.log_format,
        listen,
    }
}

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The exit code of a verb that failed with `error`: 5 when the queue
/// database server did not answer (worth trying again later), else 2
/// (usage, configuration or a database that is wrong as it is).
pub fn error_exit(error: &anyhow::Error) -> u8 {
    let unreachable = error
        .chain()
        .filter_map(|e| e.downcast_ref::<QueueError>())
        // A SQLite file that cannot be opened is a wrong path, not a
        // server that may answer later.
        .any(|e| e.is_unreachable() && !matches!(e, QueueError::Open { .. }));
    if unreachable {
        exit::DB_UNREACHABLE
    } else {
        exit::USAGE
    }
}

/// Runs one verb. `settings` is an error only for the verbs that do without
/// (`demo` and `sim` bring their own) or report it (`doctor`).
pub async fn dispatch(cli: Cli, settings: Result<Settings, ConfigError>) -> Result<u8> {
    let overrides = overrides(&cli);
    let command = match cli.command {
        Command::Demo { files, dir } => return crate::demo::run(files, dir).await,
        Command::Sim(args) => {
            let shutdown = CancellationToken::new();
            spawn_signal_handler(shutdown.clone(), None, OnStop::Finish);
            sim::run_cli(args, shutdown).await.context("simulator")?;
            return Ok(exit::OK);
        }
        Command::Completions { shell } => return reference::completions(shell),
        Command::Man { dir } => return reference::man(dir.as_deref()),
        other => other,
    };
    let settings = match (settings, &command) {
        (Err(e), Command::Doctor { json }) => return doctor::unconfigured(&e, *json),
        (settings, _) => settings.context("no configuration could be loaded")?,
    };
    if matches!(command, Command::Run { .. } | Command::Fetch { .. }) {
        settings.check_output_dir()?;
    }
    crate::queue::set_database_deadline(settings.db_timeout);
    run_configured(command, settings, overrides).await
}

/// Runs one of the verbs that work on a loaded configuration.
async fn run_configured(command: Command, settings: Settings, overrides: Overrides) -> Result<u8> {
    match command {
        Command::Enqueue {
            ids,
            from,
            tasks,
            tasks_from,
        } => {
            let inputs = enqueue::Inputs {
                ids: &ids,
                from: from.as_deref(),
                tasks: &tasks,
                tasks_from: tasks_from.as_deref(),
            };
            enqueue::enqueue(&settings, inputs).await
        }
        Command::Doctor { json } => doctor::doctor(&settings, json).await,
        Command::Sync { since, page_size } => {
            require_key(&settings)?;
            sync::sync(&settings, since.as_deref(), page_size).await
        }
        Command::Run { exit_when_idle, .. } => {
            require_key(&settings)?;
            run::run(settings, overrides, exit_when_idle).await
        }
        Command::Status {
            json,
            watch,
            interval,
        } => match watch {
            false => status::status(&settings, json).await,
            true => watch::watch(&settings, json, interval).await,
        },
        Command::List {
            state,
            tasks,
            limit,
            json,
        } => {
            let listing = list::Listing {
                state: state.as_deref(),
                tasks,
                limit,
                json,
            };
            list::list(&settings, listing).await
        }
        Command::Show { id, json } => show::show(&settings, &id, json).await,
        Command::Retry { ids, all_failed } => verbs::retry(&settings, &ids, all_failed).await,
        Command::Cancel { ids } => verbs::cancel(&settings, &ids).await,
        Command::Fetch { id } => {
            require_key(&settings)?;
            fetch::fetch(&settings, &id).await
        }
        Command::Db(DbCommand::Copy { from, to, merge }) => db::copy(&from, &to, merge).await,
        Command::Export { format, state } => export::export(&settings, format, state).await,
        Command::Verify {
            ids,
            all,
            requeue,
            quick,
        } => verify::verify(&settings, &ids, all, requeue, quick).await,
        Command::Prune { done_older_than } => prune::prune(&settings, done_older_than).await,
        Command::Demo { .. }
        | Command::Sim(_)
        | Command::Completions { .. }
        | Command::Man { .. } => Ok(exit::OK),
    }
}

/// Verbs that call the API (`run`, `fetch`, `sync`) check the key before
/// the queue is opened: a missing or unreadable key is this host's
/// configuration, never a reason to write anything (a pause, an enqueue, a
/// call counted in the rate window) into a queue other hosts share.
fn require_key(settings: &Settings) -> Result<()> {
    match &settings.api_key {
        Ok(Some(_)) => Ok(()),
        Ok(None) => anyhow::bail!(
            "no API key: set MINIMAX_API_KEY or api_key_file in the config file (`minimax-dl demo` needs none)"
        ),
        Err(e) => anyhow::bail!("{e}"),
    }
}

/// The queue for a user verb: every commit is on disk before we report it.
async fn open_queue(settings: &Settings) -> Result<Queue> {
    Ok(Queue::open(&settings.database).await?)
}

/// The queue for a verb that changes jobs but adds none (`retry`,
/// `cancel`, `prune`, `verify --requeue`): never created, so a mistyped
/// `--db` says "no queue" instead of leaving an empty queue behind.
async fn open_existing_queue(settings: &Settings) -> Result<Queue> {
    Ok(Queue::open_existing(&settings.database).await?)
}

/// The queue for a verb that only reads (`status`, `list`, `show`): never
/// created, never written, so a mistyped `--db` or a read-only queue gets a
/// plain answer.
async fn open_queue_to_read(settings: &Settings) -> Result<Queue> {
    Ok(Queue::open_read_only(&settings.database).await?)
}

/// The queue for a worker pool (`run`, `fetch`): see `CommitSync::Normal`.
pub(crate) async fn open_queue_for_workers(settings: &Settings) -> Result<Queue> {
    Ok(Queue::open_for_workers(&settings.database).await?)
}

fn file_ids(values: &[String]) -> Result<Vec<i64>> {
    Ok(ids::parse_args(values)?)
}

fn rfc3339(millis: Millis) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn task_json(task: &Task) -> serde_json::Value {
    json!({
        "task_id": task.task_id,
        "api": task.api,
        "state": task.state,
        "polls": task.polls,
        "minimax_status": task.minimax_status,
        "file_id": task.file_id,
        "last_error": task.last_error,
        "next_poll_at": (task.state == TaskState::Generating).then(|| rfc3339(task.next_poll_at)),
        "deadline_at": rfc3339(task.deadline_at),
        "created_at": rfc3339(task.created_at),
        "updated_at": rfc3339(task.updated_at),
    })
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
