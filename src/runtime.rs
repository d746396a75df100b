//! What every long-running verb (`run`, `fetch`, `demo`, `sim`) stands on:
//! logging, the engine built from settings, signals, systemd notification
//! and the exit codes of the CLI contract. Used by `commands` and `demo`;
//! imports neither.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::level_filters::LevelFilter;
use tracing::{error, info};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::api::ApiClient;
use crate::archive::PathTemplate;
use crate::archive::bucket::{Bucket, BucketOptions};
use crate::cli::{Cli, Command};
use crate::config::{ConfigError, LogFormat, Overrides, Settings};
use crate::fetch::Fetcher;
use crate::fetch::url_policy::UrlPolicy;
use crate::gate::RateGate;
use crate::queue::Queue;
use crate::test_hooks::TestHooks;
use crate::worker::{Engine, HostProblem, Observer};
use crate::{say, stderr};

/// Exit codes of the CLI contract (see `--help`).
pub mod exit {
    pub const OK: u8 = 0;
    pub const JOB_FAILURES: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const ACCOUNT: u8 = 3;
    pub const DISK_FULL: u8 = 4;
    /// The queue database did not answer: any verb, or `run
    /// --exit-when-idle` after its grace (a daemon keeps trying instead).
    pub const DB_UNREACHABLE: u8 = 5;
    /// `run --exit-when-idle` met nothing but connection failures from the
    /// API for `api_unreachable_secs`; jobs stay queued, attempts untouched.
    pub const API_UNREACHABLE: u8 = 5;
    /// `fetch`, or `run --exit-when-idle` with jobs left, stopped by SIGINT
    /// (128 + 2, the shell's convention) ...
    pub const INTERRUPTED: u8 = 130;
    /// ... or by SIGTERM (128 + 15). The jobs stay queued and resumable.
    pub const TERMINATED: u8 = 143;
}

/// The exit code of a verb stopped by a host-level problem.
pub(crate) fn host_problem_exit(problem: &HostProblem) -> u8 {
    match problem {
        HostProblem::Account { .. } => exit::ACCOUNT,
        HostProblem::DiskFull { .. } | HostProblem::Archive { .. } => exit::DISK_FULL,
        HostProblem::ApiUnreachable { .. } => exit::API_UNREACHABLE,
    }
}

/// Logs to stderr through [`stderr::sink`]: `info` for the verbs that work
/// for a while, `warn` for the quick ones, more with each `-v`;
/// `MINIMAX_DL_LOG` overrides.
pub fn init_logging(cli: &Cli, format: LogFormat) {
    let busy = matches!(
        cli.command,
        Command::Run { .. } | Command::Fetch { .. } | Command::Demo { .. } | Command::Sim(_)
    );
    let default = match (cli.verbose, busy) {
        (0, true) => "minimax_dl=info",
        (0, false) => "minimax_dl=warn",
        (1, _) => "minimax_dl=debug",
        _ => "minimax_dl=trace",
    };
    // Whatever MINIMAX_DL_LOG says, sqlx's PostgreSQL option parsing stays
    // below WARN: it logs a malformed ~/.pgpass line, password included, and
    // an unknown URL parameter with its value.
    let filter = log_filter(std::env::var("MINIMAX_DL_LOG").ok().as_deref(), default);
    // The builder's own level (INFO unless told) would cut below the
    // filter: let everything through to it, and the filter decide.
    let builder = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(stderr::sink().clone());
    match format {
        LogFormat::Json => builder.json().finish().with(filter).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            .with(filter)
            .init(),
    }
}

/// The filter from `MINIMAX_DL_LOG` (a `target=level` list, or a bare level),
/// or `default` when it is unset or does not parse. The most specific target
/// wins, so the cap on sqlx's PostgreSQL option parsing holds whatever the
/// variable says.
fn log_filter(setting: Option<&str>, default: &str) -> Targets {
    let parsed = setting
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| s.parse::<Targets>().ok());
    let targets = parsed.unwrap_or_else(|| default.parse().expect("a valid default filter"));
    targets.with_target("sqlx_postgres::options", LevelFilter::ERROR)
}

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error(transparent)]
    Key(#[from] Arc<ConfigError>),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot set up the HTTP client")]
    Http(#[source] reqwest::Error),
    #[error("cannot create the output directory {}", .0.display())]
    OutputDir(PathBuf, #[source] io::Error),
    #[error(transparent)]
    Bucket(#[from] crate::archive::bucket::BucketError),
}

/// The settings, with what config hands over unparsed checked by its owner
/// now: a bad `path_template` is a config error for every verb, naming the
/// key, as if config had parsed it (config sits below `archive`).
pub fn load_settings(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let mut settings = Settings::load(overrides, env)?;
    path_template(&settings)?;
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect();
    settings.warnings.extend(crate::cli::unknown_variables(
        names.iter().map(String::as_str),
    ));
    let hooks = TestHooks::installed();
    if let Some(window) = hooks.rate_window() {
        settings.rate.window = window;
    }
    if let Some(floor) = hooks.task_poll() {
        settings.tasks.poll_floor = floor;
    }
    Ok(settings)
}

/// `path_template` parsed by the archive (the default when none is set),
/// or a config error naming the key and the problem.
pub(crate) fn path_template(settings: &Settings) -> Result<PathTemplate, ConfigError> {
    let Some(text) = &settings.path_template else {
        return Ok(PathTemplate::default());
    };
    PathTemplate::parse(text).map_err(|e| ConfigError::Invalid {
        origin: settings.file_origin("path_template"),
        message: format!("{}: {e}", crate::ids::quoted(text)),
    })
}

/// The download client's URL rules from `cdn_allow` (already checked at
/// load: an error here names the key all the same).
fn url_policy(settings: &Settings) -> Result<UrlPolicy, ConfigError> {
    UrlPolicy::new(&settings.cdn_allow).map_err(|message| ConfigError::Invalid {
        origin: settings.file_origin("cdn_allow"),
        message,
    })
}

/// Builds the engine every downloading verb shares.
pub(crate) fn engine(
    settings: &Settings,
    queue: Queue,
    observer: Arc<dyn Observer>,
) -> Result<Engine, SetupError> {
    let api = ApiClient::new(
        settings.api_base.clone(),
        settings.api_key.clone()?,
        settings.connect_timeout,
        settings.read_timeout,
    )
    .map_err(SetupError::Http)?;
    let gate = Arc::new(RateGate::configured(settings.rate, Some(queue.clone())));
    let hooks = TestHooks::installed();
    let fetcher = Fetcher::new(
        settings.connect_timeout,
        settings.read_timeout,
        url_policy(settings)?,
    )
    .map_err(SetupError::Http)?
    .with_segments(settings.segments)
    .with_max_file_bytes(settings.max_file_bytes)
    .with_verified_sync(settings.bucket.is_none())
    .with_hooks(&hooks);
    std::fs::create_dir_all(&settings.output_dir)
        .map_err(|e| SetupError::OutputDir(settings.output_dir.clone(), e))?;
    Ok(Engine::new(
        queue,
        api,
        gate,
        fetcher,
        settings.output_dir.clone(),
        settings.retry,
        observer,
    )
    .with_naming(path_template(settings)?, settings.sidecar)
    .with_bucket(bucket(settings)?, settings.concurrency)
    .with_hooks(hooks))
}

/// Multipart parts are 8 MiB buffers allocated and freed on many threads.
/// glibc raises its mmap threshold each time such a buffer is freed, after
/// which they come from per-thread heaps that keep their pages: a 300 MB
/// upload then held 55 MiB instead of its 32 MiB of parts. A fixed
/// threshold keeps every buffer over 1 MiB an mmap, given back when freed.
fn return_large_buffers_at_once() {
    // SAFETY: mallopt only sets an allocator parameter; called before the
    // parts are allocated, and any value is safe for allocations made since.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The archive's bucket client, when `output_dir` names one: credentials
/// and endpoint from the standard AWS chain (see
/// `archive::bucket::credentials`). Nothing is called yet: a bucket that
/// refuses us is found by the first upload, and pauses the pool.
pub(crate) fn bucket(settings: &Settings) -> Result<Option<Arc<Bucket>>, SetupError> {
    let Some(location) = &settings.bucket else {
        return Ok(None);
    };
    return_large_buffers_at_once();
    let options = BucketOptions {
        allow_http: settings.archive_allow_http,
    };
    let env = |name: &str| std::env::var(name).ok();
    Ok(Some(Arc::new(Bucket::connect(
        location.clone(),
        &env,
        &options,
    )?)))
}

/// What SIGHUP does: reload the settings and hand them over, or say why not.
pub(crate) type OnHangup = Box<dyn Fn() -> Result<(), String> + Send>;

/// What a stop signal means to the verb.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum OnStop {
    /// The normal end of a daemon (`run`, `sim`): exit 0.
    Finish,
    /// Work cut short (`fetch`, `run --exit-when-idle`): exit 130 or 143.
    Interrupt,
}

/// The first stop signal received, as the exit code it stands for.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interrupt(Arc<AtomicU8>);

impl Interrupt {
    pub(crate) fn code(&self) -> Option<u8> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            code => Some(code),
        }
    }

    /// Keeps the first signal's code.
    fn record(&self, code: u8) -> u8 {
        match self
            .0
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => code,
            Err(first) => first,
        }
    }
}

/// SIGTERM/SIGINT: cancel `shutdown` (a second one exits at once: progress up
/// to the last checkpoint is durable and leases expire on their own).
/// SIGHUP: run `on_hangup` (reload the config and hand it to the pool). The
/// returned handle tells which stop signal came first.
pub(crate) fn spawn_signal_handler(
    shutdown: CancellationToken,
    on_hangup: Option<OnHangup>,
    on_stop: OnStop,
) -> Interrupt {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = Interrupt::default();
    let first = interrupt.clone();
    // Installed before this returns: a signal that comes right after
    // (say, once `run` has said it is listening) finds them in place.
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = handlers else {
            error!("cannot install signal handlers");
            return;
        };
        loop {
            let code = tokio::select! {
                _ = term.recv() => exit::TERMINATED,
                _ = int.recv() => exit::INTERRUPTED,
                _ = hup.recv() => {
                    if let Some(reload) = &on_hangup {
                        hang_up(reload);
                    }
                    continue;
                }
            };
            stop(&shutdown, first.record(code), on_stop);
        }
    });
    interrupt
}

fn hang_up(reload: &OnHangup) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
    if let Err(e) = reload() {
        error!("SIGHUP: config not reloaded: {e}");
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

/// A stop signal whose first one stood for `code`: the first cancels
/// `shutdown`, a second exits at once.
fn stop(shutdown: &CancellationToken, code: u8, on_stop: OnStop) {
    if shutdown.is_cancelled() {
        say!(
            "minimax-dl: second signal, exiting now (downloads resume from their last checkpoint)"
        );
        stderr::sink().flush(Duration::from_millis(200));
        let code = match on_stop {
            OnStop::Finish => exit::OK,
            OnStop::Interrupt => code,
        };
        std::process::exit(code.into());
    }
    info!("signal received: finishing checkpoints and stopping (send again to exit at once)");
    notify_stopping();
    shutdown.cancel();
}

/// READY=1 once the queue is open, then STATUS= and WATCHDOG=1 while running.
pub(crate) fn spawn_systemd_notifier(
    queue: Queue,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled();
    let every = watchdog.map_or(Duration::from_secs(5), |w| {
        (w / 2).min(Duration::from_secs(5))
    });
    tokio::spawn(async move {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Ok(c) = queue.status().await {
                let line = format!(
                    "{} queued, {} running, {} done, {} failed",
                    c.queued, c.running, c.done, c.failed
                );
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
            }
            if watchdog.is_some() {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    })
}

/// Tells systemd the process is stopping.
pub(crate) fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;
    use crate::config::FileConfig;

    #[test]
    fn a_bad_path_template_is_a_config_error_naming_the_key_and_the_problem() {
        let env = |name: &str| (name == "HOME").then(|| "/h".to_string());
        let settings = |text: &str, path: Option<&str>| {
            let file = FileConfig::parse(text, std::path::Path::new("c.toml")).unwrap();
            Settings::resolve(&Overrides::default(), &env, path.map(PathBuf::from), file).unwrap()
        };
        let bad = settings(
            "path_template = \"{purpose}/../{filename}\"",
            Some("/c.toml"),
        );
        let err = path_template(&bad).unwrap_err().to_string();
        assert!(
            err.contains("/c.toml") && err.contains("path_template") && err.contains("`..`"),
            "{err}"
        );
        let good = settings(
            "path_template = \"{created:%Y/%m}/{filename}\"\nsidecar = true",
            None,
        );
        let template = path_template(&good).unwrap();
        assert_eq!(template.as_str(), "{created:%Y/%m}/{filename}");
        assert!(good.sidecar);
        assert_eq!(
            path_template(&settings("", None)).unwrap(),
            PathTemplate::default()
        );
    }

    #[test]
    fn the_default_holds_when_the_setting_is_unset_empty_or_malformed() {
        for setting in [None, Some(""), Some("  "), Some("minimax_dl=loud")] {
            let filter = log_filter(setting, "minimax_dl=info");
            assert!(
                filter.would_enable("minimax_dl::worker", &Level::INFO),
                "{setting:?}"
            );
            assert!(
                !filter.would_enable("minimax_dl::worker", &Level::DEBUG),
                "{setting:?}"
            );
            assert!(!filter.would_enable("hyper", &Level::ERROR), "{setting:?}");
        }
    }

    #[test]
    fn a_bare_level_or_a_target_list_is_taken() {
        let everything = log_filter(Some("trace"), "minimax_dl=warn");
        assert!(everything.would_enable("sqlx::query", &Level::TRACE));
        assert!(everything.would_enable("minimax_dl", &Level::TRACE));
        let ours = log_filter(Some("warn,minimax_dl::fetch=debug"), "minimax_dl=warn");
        assert!(ours.would_enable("minimax_dl::fetch::segmented", &Level::DEBUG));
        assert!(!ours.would_enable("minimax_dl::worker", &Level::INFO));
        assert!(ours.would_enable("hyper", &Level::WARN));
    }

    #[test]
    fn postgres_option_parsing_stays_below_warn_whatever_the_setting() {
        for setting in [None, Some("trace"), Some("sqlx_postgres=trace")] {
            let filter = log_filter(setting, "minimax_dl=info");
            assert!(
                !filter.would_enable("sqlx_postgres::options::pgpass", &Level::WARN),
                "{setting:?}"
            );
        }
        let filter = log_filter(Some("trace"), "minimax_dl=info");
        assert!(filter.would_enable("sqlx_postgres::connection", &Level::TRACE));
        assert!(filter.would_enable("sqlx_postgres::options", &Level::ERROR));
    }
}
