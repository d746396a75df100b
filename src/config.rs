//! Layered configuration: flags > environment > config file > defaults.
//! The look-up order is written once, in [`Settings::resolve`], which takes
//! the environment as a function so tests drive it without touching the
//! process environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;

use crate::archive::PathTemplate;
use crate::archive::bucket::{BucketLocation, names_object_store};
use crate::fetch::range::DEFAULT_MAX_FILE_BYTES;
use crate::fetch::url_policy::UrlPolicy;
use crate::ids::TaskApi;
use crate::queue::{DbLocation, RetryPolicy};

pub const MAINLAND_API_BASE: &str = "https://api.minimaxi.com";
pub const INTERNATIONAL_API_BASE: &str = "https://api.minimax.io";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error(
        "cannot read the API key file {path} (from {origin}): {source}. Only run and fetch need the key"
    )]
    KeyFile {
        path: PathBuf,
        origin: String,
        source: std::io::Error,
    },
    #[error(
        "cannot read the callback token file {path} (from {origin}): {source}. Only run --listen needs it"
    )]
    TokenFile {
        path: PathBuf,
        origin: String,
        source: std::io::Error,
    },
    #[error(
        "cannot read the database URL file {path} (from {origin}): {source}. It holds the queue's URL (or path) on one line"
    )]
    UrlFile {
        path: PathBuf,
        origin: String,
        source: std::io::Error,
    },
    #[error("no home directory: set HOME or XDG_DATA_HOME, or give --db and --out")]
    NoHome,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `requests_per_minute` as written: a number or a word (`"auto"`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RateValue {
    Number(i64),
    Word(String),
}

/// The config file as written. Every key optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub api_base: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub database: Option<String>,
    /// A file holding the database URL (a password in it stays out of the
    /// config file and the process's arguments).
    pub database_url_file: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    pub concurrency: Option<u32>,
    /// A number, or `"auto"` (see [`RequestRate`]).
    pub requests_per_minute: Option<RateValue>,
    pub max_requests_per_minute: Option<u32>,
    pub burst: Option<u32>,
    pub max_attempts: Option<u32>,
    pub segments: Option<u32>,
    pub connect_timeout_secs: Option<u64>,
    pub read_timeout_secs: Option<u64>,
    pub probe_interval_secs: Option<u64>,
    pub db_timeout_secs: Option<u64>,
    pub api_unreachable_secs: Option<u64>,
    pub log_format: Option<LogFormat>,
    pub listen: Option<String>,
    pub listen_public: Option<bool>,
    pub listen_token: Option<SecretString>,
    pub cdn_allow: Option<Vec<String>>,
    pub max_file_bytes: Option<u64>,
    pub path_template: Option<String>,
    pub sidecar: Option<bool>,
    pub task_api: Option<String>,
    pub task_deadline_secs: Option<u64>,
    pub callback_token: Option<SecretString>,
    pub callback_token_file: Option<PathBuf>,
    /// With `output_dir = "s3://…"`: where files wait, downloaded and
    /// verified, before they go up (default: the data dir's `staging`).
    pub staging_dir: Option<PathBuf>,
    /// Plain `http://` to a bucket endpoint that is not on loopback.
    pub archive_allow_http: Option<bool>,
}

impl Settings {
    /// The archive directory, when a file is where it should be: said in
    /// words before mkdir answers "File exists". Only the verbs that write
    /// the archive (`run`, `fetch`) ask.
    pub fn check_output_dir(&self) -> Result<(), ConfigError> {
        let out = &self.output_dir;
        if out.exists() && !out.is_dir() {
            return Err(ConfigError::Invalid {
                origin: "the archive directory (--out, MINIMAX_DL_OUTPUT_DIR or output_dir)"
                    .to_string(),
                message: format!(
                    "{} is a file, not a directory: name a directory",
                    out.display()
                ),
            });
        }
        Ok(())
    }
}

impl FileConfig {
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: match e.span() {
                // One line: where, then what (toml's own text draws the
                // line over several, which a log line cannot hold).
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    let key = text
                        .lines()
                        .nth(line - 1)
                        .and_then(|l| l.split_once('='))
                        .map(|(key, _)| format!(", key `{}`", key.trim()))
                        .unwrap_or_default();
                    format!("line {line}{key}: {}", e.message().trim_end())
                }
                None => e.message().trim_end().to_string(),
            },
        })
    }

    /// The keys of this file that hold a secret, for the warning about a
    /// file others may read. A key added later that holds one (a token, a
    /// password) adds a line here.
    pub fn secret_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.database.as_deref().is_some_and(has_password) {
            keys.push("database");
        }
        if self.listen_token.is_some() {
            keys.push("listen_token");
        }
        if self.callback_token.is_some() {
            keys.push("callback_token");
        }
        keys
    }
}

/// Does a database location carry a password (`postgres://user:pw@host`,
/// or `password=` in a key/value connection string)?
fn has_password(location: &str) -> bool {
    Url::parse(location).is_ok_and(|u| u.password().is_some())
        || location.to_ascii_lowercase().contains("password=")
}

/// Is a file with these mode bits readable by users other than its owner?
pub fn readable_by_others(mode: u32) -> bool {
    mode & 0o044 != 0
}

/// The warning for a file holding `what` that others may read, naming the
/// file and the fix; `None` when its mode keeps it private.
pub fn exposure_warning(path: &Path, mode: u32, what: &str) -> Option<String> {
    readable_by_others(mode).then(|| {
        format!(
            "{} holds {what} and is readable by other users (mode {:04o}): run `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        )
    })
}

/// What the command line says; `None` leaves the decision to lower layers.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub database: Option<String>,
    pub database_url_file: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    pub concurrency: Option<u32>,
    pub segments: Option<u32>,
    /// `run --requests-per-minute`.
    pub requests_per_minute: Option<RateChoice>,
    pub log_format: Option<LogFormat>,
    /// `run --listen ADDR`.
    pub listen: Option<String>,
}

/// Everything a command needs to know, resolved and validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config_path: Option<PathBuf>,
    pub api_base: Url,
    /// Never printed: `SecretString`'s Debug shows `[REDACTED]`. An error
    /// when the key file cannot be read or the key is malformed: only the
    /// verbs that call the API (`run`, `fetch`) look, so a broken key file
    /// never stops `status` or `enqueue`.
    pub api_key: Result<Option<SecretString>, Arc<ConfigError>>,
    pub api_key_file: Option<PathBuf>,
    pub database: DbLocation,
    /// The local directory of the archive, or with a bucket archive the
    /// staging directory where files are downloaded and verified before
    /// they go up (partial files live here either way).
    pub output_dir: PathBuf,
    /// `output_dir = "s3://BUCKET/PREFIX"`: the archive is that bucket.
    pub bucket: Option<BucketLocation>,
    /// Plain `http://` to a bucket endpoint beyond loopback is allowed.
    pub archive_allow_http: bool,
    pub concurrency: u32,
    /// The rate gate: `requests_per_minute`, its ceiling, `burst`.
    pub rate: RateSettings,
    pub retry: RetryPolicy,
    pub segments: u32,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub probe_interval: Duration,
    /// The longest a connect or a statement to a PostgreSQL queue may take
    /// before the database counts as not answering.
    pub db_timeout: Duration,
    /// How long a batch (`run --exit-when-idle`) goes on meeting nothing
    /// but connection failures from the API before it gives up.
    pub api_unreachable: Duration,
    pub log_format: LogFormat,
    /// `run --listen`: where to serve metrics, health and the dashboard.
    pub listen: Option<ListenSettings>,
    /// Which download URLs and redirects are fetched (`cdn_allow`).
    pub url_policy: UrlPolicy,
    /// Larger files are refused; a body of unknown length is cut here.
    pub max_file_bytes: u64,
    /// Generation tasks: their default API, deadline and poll floor.
    pub tasks: TaskSettings,
    /// The secret in `POST /callback/{token}` (`run --listen` serves the
    /// callback route only with one). An error when its file cannot be
    /// read or it is too short: only `run` looks. Never printed.
    pub callback_token: Result<Option<SecretString>, Arc<ConfigError>>,
    /// Files holding a secret that others may read, found while loading:
    /// for the caller to log once logging is set up.
    pub warnings: Vec<String>,
    /// Where each file goes inside `output_dir` (see `archive::template`).
    pub path_template: PathTemplate,
    /// Write `NAME.json` beside each file.
    pub sidecar: bool,
}

/// How fast the fleet may call the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestRate {
    /// At most this many calls in any 60 s, whatever the API would allow.
    Fixed(u32),
    /// `"auto"`: the fleet finds the account's limit itself (`crate::rate`),
    /// never going above `ceiling` (`max_requests_per_minute`).
    Auto { ceiling: u32 },
}

impl RequestRate {
    /// The most calls in any 60 s this setting may ever allow.
    pub fn most(&self) -> u32 {
        match *self {
            RequestRate::Fixed(n) => n,
            RequestRate::Auto { ceiling } => ceiling,
        }
    }
}

impl std::fmt::Display for RequestRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestRate::Fixed(n) => write!(f, "{n} a minute"),
            RequestRate::Auto { ceiling } => write!(f, "auto (at most {ceiling} a minute)"),
        }
    }
}

/// The rate gate's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSettings {
    pub requests: RequestRate,
    /// Calls that may go at once, within the cap of the window (`burst`).
    pub burst: u32,
    /// The window a cap is counted over: 60 s. Shorter only through the
    /// test hook `MINIMAX_DL_TEST_RATE_WINDOW_MS`, so a test of the
    /// adaptive rate runs minutes of the real thing in seconds.
    pub window: Duration,
}

/// `requests_per_minute` as a flag or variable says it: `auto` or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateChoice {
    Auto,
    Fixed(u32),
}

/// The largest fixed `requests_per_minute` or ceiling.
pub const MAX_REQUESTS_PER_MINUTE: u32 = 1_000_000;
/// Calls that may go at once (`burst`).
pub const DEFAULT_BURST: u32 = 10;
pub const MAX_BURST: u32 = 1000;
/// The cap's window (`MINIMAX_DL_TEST_RATE_WINDOW_MS` shortens it in tests).
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Parses `auto` or a whole number in 1..=1,000,000 (the flag and the
/// environment variable; the file's number goes through [`rate_number`]).
pub fn parse_rate_choice(raw: &str) -> Result<RateChoice, String> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("auto") {
        return Ok(RateChoice::Auto);
    }
    match raw.parse::<i64>() {
        Ok(n) => rate_number(n),
        Err(_) => Err(format!("{raw:?} is not a whole number or \"auto\"")),
    }
}

fn rate_number(n: i64) -> Result<RateChoice, String> {
    match u32::try_from(n) {
        Ok(v) if (1..=MAX_REQUESTS_PER_MINUTE).contains(&v) => Ok(RateChoice::Fixed(v)),
        _ => Err(format!(
            "{n} is not in 1..={MAX_REQUESTS_PER_MINUTE} (or \"auto\": find the account's limit)"
        )),
    }
}

/// The rate settings: `requests_per_minute` from the flag, the
/// environment, the file or the default (`auto`), its ceiling and burst.
fn resolve_rate(
    flag: Option<RateChoice>,
    env: &dyn Fn(&str) -> Option<String>,
    file: &FileConfig,
    file_origin: &dyn Fn(&str) -> String,
) -> Result<RateSettings, ConfigError> {
    const VAR: &str = "MINIMAX_DL_REQUESTS_PER_MINUTE";
    let invalid = |origin: String, message: String| ConfigError::Invalid { origin, message };
    // The file's value is checked even when a flag or variable wins: a
    // bad config file is an error whatever else is set.
    let origin = || file_origin("requests_per_minute");
    let from_file = match &file.requests_per_minute {
        None => RateChoice::Auto,
        Some(RateValue::Number(n)) => rate_number(*n).map_err(|m| invalid(origin(), m))?,
        Some(RateValue::Word(w)) => parse_rate_choice(w).map_err(|m| invalid(origin(), m))?,
    };
    let choice = if let Some(choice) = flag {
        choice
    } else if let Some(raw) = env(VAR).filter(|v| !v.trim().is_empty()) {
        parse_rate_choice(&raw).map_err(|m| invalid(format!("environment variable {VAR}"), m))?
    } else {
        from_file
    };
    let ceiling = layered_number(
        None,
        None,
        "",
        file.max_requests_per_minute,
        &file_origin("max_requests_per_minute"),
        crate::rate::DEFAULT_CEILING,
        1..=MAX_REQUESTS_PER_MINUTE,
    )?;
    let burst = layered_number(
        None,
        None,
        "",
        file.burst,
        &file_origin("burst"),
        DEFAULT_BURST,
        1..=MAX_BURST,
    )?;
    let window = env("MINIMAX_DL_TEST_RATE_WINDOW_MS")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(RATE_WINDOW, Duration::from_millis);
    let requests = match choice {
        RateChoice::Auto => RequestRate::Auto { ceiling },
        RateChoice::Fixed(n) => RequestRate::Fixed(n),
    };
    Ok(RateSettings {
        requests,
        burst,
        window,
    })
}

/// How generation tasks are taken in and polled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskSettings {
    /// The API of a task named without a `v1:`/`v2:` prefix (`task_api`).
    pub api: TaskApi,
    /// Still unfinished this long after it was enqueued, a task fails
    /// (`task_deadline_secs`, default a day).
    pub deadline: Duration,
    /// The shortest wait between two polls of one task: 10 s. Shorter only
    /// through the test hook `MINIMAX_DL_TEST_TASK_POLL_MS`.
    pub poll_floor: Duration,
}

/// How long a task may generate before it is given up (`task_deadline_secs`).
pub const DEFAULT_TASK_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// Never poll one task more often than this: MiniMax suggests about 10 s.
pub const MIN_TASK_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Longest `task_deadline_secs`: MiniMax keeps tasks queryable for 7 days.
pub const MAX_TASK_DEADLINE_SECS: u64 = 7 * 86_400;

/// The task settings of a config file, and the poll floor's test hook.
fn resolve_tasks(
    env: &dyn Fn(&str) -> Option<String>,
    file: &FileConfig,
    file_origin: &dyn Fn(&str) -> String,
) -> Result<TaskSettings, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        origin: file_origin(key),
        message,
    };
    let api = match file.task_api.as_deref() {
        None => TaskApi::V1,
        Some(raw) => TaskApi::parse(raw).ok_or_else(|| {
            invalid(
                "task_api",
                format!("{} is not \"v1\" or \"v2\"", crate::ids::quoted(raw)),
            )
        })?,
    };
    let deadline = match file.task_deadline_secs {
        None => DEFAULT_TASK_DEADLINE,
        Some(v @ 1..=MAX_TASK_DEADLINE_SECS) => Duration::from_secs(v),
        Some(v) => {
            return Err(invalid(
                "task_deadline_secs",
                format!("{v} is not in 1..={MAX_TASK_DEADLINE_SECS} (seconds: 7 days at most)"),
            ));
        }
    };
    let poll_floor = env("MINIMAX_DL_TEST_TASK_POLL_MS")
        .and_then(|v| v.trim().parse().ok())
        .map_or(MIN_TASK_POLL_INTERVAL, Duration::from_millis);
    Ok(TaskSettings {
        api,
        deadline,
        poll_floor,
    })
}

/// Where `run` serves `/metrics`, the health checks and the dashboard.
#[derive(Clone, Debug)]
pub struct ListenSettings {
    /// `host:port`, as the user wrote it (resolved when bound).
    pub addr: String,
    /// `listen_public = true`: the user asked to serve beyond loopback.
    pub public: bool,
    /// Enables the dashboard's retry and cancel buttons for whoever
    /// presents it. Never printed (`SecretString`).
    pub token: Option<SecretString>,
}

/// Shortest `listen_token`: shorter ones are guessable.
pub const MIN_LISTEN_TOKEN: usize = 16;

pub const DEFAULT_CONCURRENCY: u32 = 4;
pub const MAX_CONCURRENCY: u32 = 256;
pub const MAX_SEGMENTS: u32 = 16;
/// Longest timeout or probe interval a config file may set, in seconds.
pub const MAX_WAIT_SECS: u64 = 86_400;

impl Settings {
    /// Reads the config file (the one named, else the first default that
    /// exists) and resolves every setting.
    pub fn load(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let (path, file) = match config_file_path(overrides, env) {
            Some((path, required)) => match read_text(&path) {
                Ok(text) => {
                    let file = FileConfig::parse(&text, &path)?;
                    (Some(path), file)
                }
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                    (None, FileConfig::default())
                }
                Err(source) => return Err(ConfigError::Read { path, source }),
            },
            None => (None, FileConfig::default()),
        };
        let warnings = exposed_secret_files(path.as_deref(), &file);
        let settings = Settings::resolve(overrides, env, path, file)?;
        check_paths(&settings)?;
        Ok(Settings {
            warnings,
            ..settings
        })
    }

    /// The precedence rules: flag, then environment, then file, then default.
    ///
    /// Longer than a screen on purpose: it is one table, a line or two per
    /// setting, and keeping every setting's precedence in one place is what
    /// makes "flag > environment > file > default" checkable at a glance.
    pub fn resolve(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
        config_path: Option<PathBuf>,
        mut file: FileConfig,
    ) -> Result<Settings, ConfigError> {
        let file_origin = |key: &str| match &config_path {
            Some(p) => format!("config file {}: key `{key}`", p.display()),
            None => format!("config key `{key}`"),
        };
        let env_nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let tasks = resolve_tasks(env, &file, &file_origin)?;
        let rate = resolve_rate(overrides.requests_per_minute, env, &file, &file_origin)?;
        let callback_token = resolve_callback_token(env, &file, &file_origin).map_err(Arc::new);

        let (api_base_raw, api_base_origin) = match env_nonempty("MINIMAX_API_BASE") {
            Some(v) => (v, "environment variable MINIMAX_API_BASE".to_string()),
            None => match file.api_base {
                Some(v) => (v, file_origin("api_base")),
                None => (
                    MAINLAND_API_BASE.to_string(),
                    "default api_base".to_string(),
                ),
            },
        };
        let api_base = parse_api_base(&api_base_raw).map_err(|message| ConfigError::Invalid {
            origin: api_base_origin,
            message,
        })?;

        let api_key =
            resolve_api_key(env, file.api_key_file.as_deref(), &file_origin).map_err(Arc::new);

        let (database, database_origin) = resolve_database(
            overrides,
            env,
            (file.database, file.database_url_file),
            &file_origin,
        )?;
        let location = DbLocation(database);
        if !location.is_postgres() {
            crate::queue::open::check_location(&location.0).map_err(|why| {
                ConfigError::Invalid {
                    origin: database_origin,
                    // Redacted: a mistyped scheme may still carry a password.
                    message: format!("{} {why}", crate::ids::quoted(&location.redacted())),
                }
            })?;
        }

        let (output_dir, bucket) = resolve_archive(
            overrides,
            env,
            (file.output_dir.take(), file.staging_dir.take()),
            &file_origin,
        )?;

        let concurrency = layered_number(
            overrides.concurrency.map(|v| (v, "--concurrency")),
            env("MINIMAX_DL_CONCURRENCY"),
            "MINIMAX_DL_CONCURRENCY",
            file.concurrency,
            &file_origin("concurrency"),
            DEFAULT_CONCURRENCY,
            1..=MAX_CONCURRENCY,
        )?;
        let segments = layered_number(
            overrides.segments.map(|v| (v, "--segments")),
            None,
            "",
            file.segments,
            &file_origin("segments"),
            1,
            1..=MAX_SEGMENTS,
        )?;
        let defaults = RetryPolicy::default();
        let max_attempts = layered_number(
            None,
            None,
            "",
            file.max_attempts,
            &file_origin("max_attempts"),
            defaults.max_attempts,
            1..=1000,
        )?;
        let seconds =
            |value: Option<u64>, key: &str, default: u64| -> Result<Duration, ConfigError> {
                match value {
                    Some(0) => Err(ConfigError::Invalid {
                        origin: file_origin(key),
                        message: "must be at least 1 second".into(),
                    }),
                    // A deadline is now + this: a huge value would overflow
                    // the clock where it is added (a panic), not wait longer.
                    Some(v) if v > MAX_WAIT_SECS => Err(ConfigError::Invalid {
                        origin: file_origin(key),
                        message: format!(
                            "{v} is not in 1..={MAX_WAIT_SECS} (seconds: one day at most)"
                        ),
                    }),
                    Some(v) => Ok(Duration::from_secs(v)),
                    None => Ok(Duration::from_secs(default)),
                }
            };

        let url_policy = UrlPolicy::new(file.cdn_allow.iter().flatten()).map_err(|message| {
            ConfigError::Invalid {
                origin: file_origin("cdn_allow"),
                message,
            }
        })?;
        let max_file_bytes = match file.max_file_bytes {
            Some(0) => {
                return Err(ConfigError::Invalid {
                    origin: file_origin("max_file_bytes"),
                    message: "must be at least 1 byte".into(),
                });
            }
            Some(v) => v,
            None => DEFAULT_MAX_FILE_BYTES,
        };
        let path_template = match file.path_template {
            Some(text) => PathTemplate::parse(&text).map_err(|e| ConfigError::Invalid {
                origin: file_origin("path_template"),
                message: format!("{}: {e}", crate::ids::quoted(&text)),
            })?,
            None => PathTemplate::default(),
        };

        Ok(Settings {
            api_base,
            api_key,
            api_key_file: file.api_key_file,
            database: location,
            output_dir,
            bucket,
            archive_allow_http: file.archive_allow_http.unwrap_or(false),
            concurrency,
            rate,
            retry: RetryPolicy {
                max_attempts,
                ..defaults
            },
            segments,
            connect_timeout: seconds(file.connect_timeout_secs, "connect_timeout_secs", 10)?,
            read_timeout: seconds(file.read_timeout_secs, "read_timeout_secs", 60)?,
            probe_interval: seconds(file.probe_interval_secs, "probe_interval_secs", 60)?,
            db_timeout: seconds(file.db_timeout_secs, "db_timeout_secs", 10)?,
            api_unreachable: seconds(file.api_unreachable_secs, "api_unreachable_secs", 120)?,
            log_format: overrides.log_format.or(file.log_format).unwrap_or_default(),
            listen: resolve_listen(
                overrides,
                env,
                (file.listen, file.listen_public, file.listen_token),
                &file_origin,
            )?,
            url_policy,
            max_file_bytes,
            tasks,
            callback_token,
            warnings: Vec::new(),
            path_template,
            sidecar: file.sidecar.unwrap_or(false),
            config_path,
        })
    }
}

/// Where files go: a directory, or a bucket (`s3://BUCKET/PREFIX`) with the
/// local staging directory its files wait in.
fn resolve_archive(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    (output_dir, staging_dir): (Option<PathBuf>, Option<PathBuf>),
    file_origin: &dyn Fn(&str) -> String,
) -> Result<(PathBuf, Option<BucketLocation>), ConfigError> {
    let env_nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let (chosen, origin) = match (
        &overrides.output_dir,
        env_nonempty("MINIMAX_DL_OUTPUT_DIR"),
        output_dir,
    ) {
        (Some(v), _, _) => (v.clone(), "--out".to_string()),
        (None, Some(v), _) => (
            PathBuf::from(v),
            "environment variable MINIMAX_DL_OUTPUT_DIR".to_string(),
        ),
        (None, None, Some(v)) => (v, file_origin("output_dir")),
        (None, None, None) => return Ok((absolute(&data_dir(env)?.join("files")), None)),
    };
    let text = chosen.to_string_lossy();
    if !names_object_store(&text) {
        return Ok((absolute(&chosen), None));
    }
    let bucket = BucketLocation::parse(&text).map_err(|e| ConfigError::Invalid {
        origin,
        message: e.to_string(),
    })?;
    let staging = match (env_nonempty("MINIMAX_DL_STAGING_DIR"), staging_dir) {
        (Some(v), _) => PathBuf::from(v),
        (None, Some(v)) => v,
        (None, None) => data_dir(env)?.join("staging"),
    };
    Ok((absolute(&staging), Some(bucket)))
}

/// The database setting and where it came from: at each layer (flag,
/// environment, config file) either the location itself or a file holding
/// it, never both; then the systemd credential `db_url`, then the default.
fn resolve_database(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    (file_database, file_url_file): (Option<String>, Option<PathBuf>),
    file_origin: &dyn Fn(&str) -> String,
) -> Result<(String, String), ConfigError> {
    let env_nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let layers = [
        (
            overrides.database.clone(),
            "command-line flag --db".to_string(),
            overrides.database_url_file.clone(),
            "command-line flag --database-url-file".to_string(),
        ),
        (
            env_nonempty("MINIMAX_DL_DATABASE"),
            "environment variable MINIMAX_DL_DATABASE".to_string(),
            env_nonempty("MINIMAX_DL_DATABASE_URL_FILE").map(PathBuf::from),
            "environment variable MINIMAX_DL_DATABASE_URL_FILE".to_string(),
        ),
        (
            file_database,
            file_origin("database"),
            file_url_file,
            file_origin("database_url_file"),
        ),
    ];
    for (value, value_origin, url_file, url_file_origin) in layers {
        match (value, url_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    origin: format!("{value_origin} and {url_file_origin}"),
                    message: "both set: give the database or a file holding its URL, not both"
                        .into(),
                });
            }
            (Some(v), None) => return Ok((v, value_origin)),
            (None, Some(path)) => {
                let origin = format!("{url_file_origin} ({})", path.display());
                return Ok((read_url_file(&path, &url_file_origin)?, origin));
            }
            (None, None) => {}
        }
    }
    // systemd's LoadCredential=db_url:... puts it here.
    if let Some(dir) = env_nonempty("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join("db_url");
        if path.exists() {
            let origin = "systemd credential db_url".to_string();
            return Ok((read_url_file(&path, &origin)?, origin));
        }
    }
    let default = data_dir(env)?.join("queue.db");
    Ok((
        default.to_string_lossy().into_owned(),
        file_origin("database"),
    ))
}

/// The database URL from a file: one line (a byte-order mark and the
/// surrounding whitespace, the trailing newline included, are dropped).
/// Errors name the file, never its contents.
fn read_url_file(path: &Path, origin: &str) -> Result<String, ConfigError> {
    let text = read_text(path).map_err(|source| ConfigError::UrlFile {
        path: path.to_path_buf(),
        origin: origin.to_string(),
        source,
    })?;
    let url = text.strip_prefix('\u{feff}').unwrap_or(&text).trim();
    if url.is_empty() {
        return Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!("the database URL file {} is empty", path.display()),
        });
    }
    if url.contains('\n') {
        return Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!(
                "the database URL file {} has more than one line: it holds the URL alone",
                path.display()
            ),
        });
    }
    Ok(url.to_string())
}

/// The listener: `--listen` > `MINIMAX_DL_LISTEN` > `listen`; the token
/// from `MINIMAX_DL_LISTEN_TOKEN` > `listen_token`. Off when no address is
/// given anywhere.
fn resolve_listen(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    (addr, public, token): (Option<String>, Option<bool>, Option<SecretString>),
    file_origin: &dyn Fn(&str) -> String,
) -> Result<Option<ListenSettings>, ConfigError> {
    use secrecy::ExposeSecret;
    let env_nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let Some(addr) = overrides
        .listen
        .clone()
        .or_else(|| env_nonempty("MINIMAX_DL_LISTEN"))
        .or(addr)
        .map(|a| a.trim().to_string())
    else {
        return Ok(None);
    };
    let (token, origin) = match env_nonempty("MINIMAX_DL_LISTEN_TOKEN") {
        Some(v) => (
            Some(SecretString::from(v.trim().to_string())),
            "environment variable MINIMAX_DL_LISTEN_TOKEN".to_string(),
        ),
        None => (token, file_origin("listen_token")),
    };
    if let Some(t) = &token {
        check_token(t.expose_secret(), origin)?;
    }
    Ok(Some(ListenSettings {
        addr,
        public: public.unwrap_or(false),
        token,
    }))
}

/// The config file (when it holds a secret), the API key file and the
/// database URL file, when users other than their owner may read them.
fn exposed_secret_files(config_path: Option<&Path>, file: &FileConfig) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    // Only files: a directory named by mistake is refused when it is read,
    // and `chmod 600` would not be the fix.
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.permissions().mode())
    };
    let mut warnings = Vec::new();
    let secrets = file.secret_keys();
    if let Some(path) = config_path.filter(|_| !secrets.is_empty())
        && let Some(mode) = mode(path)
    {
        let what = format!("a secret (`{}`)", secrets.join("`, `"));
        warnings.extend(exposure_warning(path, mode, &what));
    }
    if let Some(path) = file.api_key_file.as_deref()
        && let Some(mode) = mode(path)
    {
        warnings.extend(exposure_warning(path, mode, "the API key"));
    }
    if let Some(path) = file.callback_token_file.as_deref()
        && let Some(mode) = mode(path)
    {
        warnings.extend(exposure_warning(path, mode, "the callback token"));
    }
    if let Some(path) = file.database_url_file.as_deref()
        && let Some(mode) = mode(path)
    {
        warnings.extend(exposure_warning(path, mode, "the database URL"));
    }
    warnings
}

/// The queue file, when what is there already is a directory: said here in
/// words, before SQLite answers "disk I/O error".
fn check_paths(settings: &Settings) -> Result<(), ConfigError> {
    let db = &settings.database;
    if !db.is_postgres() && db.sqlite_path().is_dir() {
        return Err(ConfigError::Invalid {
            origin: "the queue database (--db, MINIMAX_DL_DATABASE or database)".to_string(),
            message: format!(
                "{} is a directory: name a file, e.g. {}",
                db.sqlite_path().display(),
                db.sqlite_path().join("queue.db").display()
            ),
        });
    }
    Ok(())
}

/// Which config file to read, and whether it must exist (it must when the
/// user named it).
fn config_file_path(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(PathBuf, bool)> {
    if let Some(path) = &overrides.config {
        return Some((path.clone(), true));
    }
    if let Some(path) = env("MINIMAX_DL_CONFIG").filter(|v| !v.is_empty()) {
        return Some((PathBuf::from(path), true));
    }
    let user = env("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })
        .map(|dir| dir.join("minimax-dl").join("config.toml"));
    if let Some(path) = user.filter(|p| p.exists()) {
        return Some((path, false));
    }
    Some((PathBuf::from("/etc/minimax-dl/config.toml"), false))
}

fn data_dir(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, ConfigError> {
    env("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("share"))
        })
        .map(|d| d.join("minimax-dl"))
        .ok_or(ConfigError::NoHome)
}

/// The path from the working directory, without its `.` components (so
/// `--out ./arch` is recorded and shown as `/cwd/arch`, not `/cwd/./arch`);
/// `..` stays, since only the filesystem knows what it leads to.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The key from the environment, else the key file, else the systemd
/// credential.
/// A token (`listen_token`, `callback_token`) long enough not to be
/// guessed, and usable in a header or a URL path as it is.
fn check_token(token: &str, origin: String) -> Result<(), ConfigError> {
    let printable = token.chars().all(|c| c.is_ascii_graphic() && c != '/');
    if token.len() < MIN_LISTEN_TOKEN || !printable {
        return Err(ConfigError::Invalid {
            origin,
            message: format!(
                "the token must be at least {MIN_LISTEN_TOKEN} printable ASCII characters \
                 without spaces or slashes (e.g. `openssl rand -hex 16`)"
            ),
        });
    }
    Ok(())
}

/// The callback token: `MINIMAX_DL_CALLBACK_TOKEN` > `callback_token_file`
/// > `callback_token` > the systemd credential `callback_token`.
fn resolve_callback_token(
    env: &dyn Fn(&str) -> Option<String>,
    file: &FileConfig,
    file_origin: &dyn Fn(&str) -> String,
) -> Result<Option<SecretString>, ConfigError> {
    use secrecy::ExposeSecret;
    let credential = env("CREDENTIALS_DIRECTORY")
        .filter(|v| !v.trim().is_empty())
        .map(|dir| Path::new(&dir).join("callback_token"))
        .filter(|p| p.exists());
    let (token, origin) =
        if let Some(v) = env("MINIMAX_DL_CALLBACK_TOKEN").filter(|v| !v.trim().is_empty()) {
            (
                v.trim().to_string(),
                "environment variable MINIMAX_DL_CALLBACK_TOKEN".to_string(),
            )
        } else if let Some(path) = file
            .callback_token_file
            .as_deref()
            .or(credential.as_deref())
        {
            let origin = match &file.callback_token_file {
                Some(_) => file_origin("callback_token_file"),
                None => "systemd credential callback_token".to_string(),
            };
            let text = read_text(path).map_err(|source| ConfigError::TokenFile {
                path: path.to_path_buf(),
                origin: origin.clone(),
                source,
            })?;
            (
                text.trim_start_matches('\u{feff}').trim().to_string(),
                origin,
            )
        } else if let Some(t) = &file.callback_token {
            (
                t.expose_secret().trim().to_string(),
                file_origin("callback_token"),
            )
        } else {
            return Ok(None);
        };
    check_token(&token, origin)?;
    Ok(Some(SecretString::from(token)))
}

fn resolve_api_key(
    env: &dyn Fn(&str) -> Option<String>,
    key_file: Option<&Path>,
    file_origin: &dyn Fn(&str) -> String,
) -> Result<Option<SecretString>, ConfigError> {
    if let Some(v) = env("MINIMAX_API_KEY").filter(|v| !v.trim().is_empty()) {
        let origin = "environment variable MINIMAX_API_KEY";
        check_key(v.trim(), origin)?;
        return Ok(Some(SecretString::from(v.trim().to_string())));
    }
    if let Some(path) = key_file {
        return read_key_file(path, &file_origin("api_key_file")).map(Some);
    }
    // systemd's LoadCredential=api_key:... puts it here.
    match env("CREDENTIALS_DIRECTORY").filter(|v| !v.trim().is_empty()) {
        Some(dir) if Path::new(&dir).join("api_key").exists() => read_key_file(
            &Path::new(&dir).join("api_key"),
            "systemd credential api_key",
        )
        .map(Some),
        _ => Ok(None),
    }
}

fn read_key_file(path: &Path, origin: &str) -> Result<SecretString, ConfigError> {
    let text = read_text(path).map_err(|source| ConfigError::KeyFile {
        path: path.to_path_buf(),
        origin: origin.to_string(),
        source,
    })?;
    // Editors on some systems start a UTF-8 file with a byte-order mark.
    let key = text.strip_prefix('\u{feff}').unwrap_or(&text).trim();
    if key.is_empty() {
        return Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!("the API key file {} is empty", path.display()),
        });
    }
    check_key(key, &format!("{origin} (file {})", path.display()))?;
    Ok(SecretString::from(key.to_string()))
}

/// A key is one line of printable ASCII: anything else cannot be sent in an
/// HTTP header, and would fail every job one retry at a time. The message
/// says where the key came from and where the bad character is, never the
/// key.
fn check_key(key: &str, origin: &str) -> Result<(), ConfigError> {
    match key.chars().position(|c| !c.is_ascii_graphic() && c != ' ') {
        None => Ok(()),
        Some(at) => Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!(
                "the API key has a control or non-ASCII character (a line break, tab, ...) at \
                 character {}; a key is one line of printable ASCII: copy it again",
                at + 1
            ),
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn layered_number(
    flag: Option<(u32, &str)>,
    env_value: Option<String>,
    env_name: &str,
    file_value: Option<u32>,
    file_origin: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    let (value, origin) = if let Some((v, name)) = flag {
        (v, format!("command-line flag {name}"))
    } else if let Some(raw) = env_value.filter(|v| !v.trim().is_empty()) {
        let origin = format!("environment variable {env_name}");
        let v = parse_whole(&raw, &range).map_err(|message| ConfigError::Invalid {
            origin: origin.clone(),
            message,
        })?;
        (v, origin)
    } else if let Some(v) = file_value {
        (v, file_origin.to_string())
    } else {
        return Ok(default);
    };
    if !range.contains(&value) {
        return Err(ConfigError::Invalid {
            origin,
            message: out_of_range(value, &range),
        });
    }
    Ok(value)
}

/// A whole number from the environment. Digits too many for any value in
/// range are out of range, not "not a number".
fn parse_whole(raw: &str, range: &std::ops::RangeInclusive<u32>) -> Result<u32, String> {
    let digits = raw.trim();
    match digits.parse::<u32>() {
        Ok(v) => Ok(v),
        Err(_) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Err(out_of_range(digits, range))
        }
        Err(_) => Err(format!(
            "{} is not a whole number",
            crate::ids::quoted(digits)
        )),
    }
}

/// A file's text; a directory is named as such (reading one fails with the
/// OS's bare "Is a directory", which does not say which setting is wrong).
fn read_text(path: &Path) -> std::io::Result<String> {
    if path.is_dir() {
        return Err(std::io::Error::other(
            "it is a directory; name the file inside it",
        ));
    }
    std::fs::read_to_string(path)
}

/// The one wording of a number outside its range, the same as the
/// command-line parser's.
pub fn out_of_range(
    value: impl std::fmt::Display,
    range: &std::ops::RangeInclusive<u32>,
) -> String {
    format!("{value} is not in {}..={}", range.start(), range.end())
}

/// The API base must be an http(s) URL with a host. Plain http is allowed
/// only for loopback hosts (the simulator): the key must not cross a network
/// in clear text.
pub fn parse_api_base(raw: &str) -> Result<Url, String> {
    let q = crate::ids::quoted(raw.trim());
    let url = Url::parse(raw.trim()).map_err(|e| format!("{q} is not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return Err(format!(
            "{} (shown without them) has a user name or password in it: they would be sent \
             to the host and written to logs. Remove them; the API key is set with \
             MINIMAX_API_KEY or api_key_file",
            crate::ids::quoted(shown.as_str())
        ));
    }
    let host = url.host_str().ok_or_else(|| format!("{q} has no host"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(host) => {}
        "http" => {
            return Err(format!(
                "{q} uses plain http: the API key would cross the network unencrypted; use https \
                 ({MAINLAND_API_BASE} or {INTERNATIONAL_API_BASE})"
            ));
        }
        other => return Err(format!("{q} has scheme \"{other}\"; expected https")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{q} must not carry a query or fragment"));
    }
    // A base with a path (a proxy prefix) must end in '/', or joining
    // "v1/files/retrieve" would replace its last segment.
    let mut url = url;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn file(text: &str) -> FileConfig {
        FileConfig::parse(text, Path::new("/etc/minimax-dl/config.toml")).unwrap()
    }

    #[test]
    fn defaults_apply_when_nothing_is_said() {
        let env = env_of(&[("HOME", "/home/u")]);
        let s =
            Settings::resolve(&Overrides::default(), &env, None, FileConfig::default()).unwrap();
        assert_eq!(s.api_base.as_str(), "https://api.minimaxi.com/");
        assert_eq!(s.database.0, "/home/u/.local/share/minimax-dl/queue.db");
        assert_eq!(
            s.output_dir,
            PathBuf::from("/home/u/.local/share/minimax-dl/files")
        );
        assert_eq!(s.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(
            s.rate,
            RateSettings {
                requests: RequestRate::Auto { ceiling: 600 },
                burst: DEFAULT_BURST,
                window: RATE_WINDOW,
            }
        );
        assert_eq!(s.retry, RetryPolicy::default());
        assert!(matches!(s.api_key, Ok(None)));
    }

    #[test]
    fn the_request_rate_is_auto_or_a_number_from_flag_environment_or_file() {
        let rate = |flag: Option<RateChoice>, var: Option<&str>, file: &str| {
            let env = |name: &str| match name {
                "HOME" => Some("/h".to_string()),
                "MINIMAX_DL_REQUESTS_PER_MINUTE" => var.map(str::to_string),
                _ => None,
            };
            let file = FileConfig::parse(file, Path::new("c.toml")).unwrap();
            let overrides = Overrides {
                requests_per_minute: flag,
                ..Overrides::default()
            };
            Settings::resolve(&overrides, &env, None, file).map(|s| s.rate)
        };
        let auto = |ceiling| RequestRate::Auto { ceiling };
        let cases: [(Option<RateChoice>, Option<&str>, &str, RequestRate); 7] = [
            (None, None, "", auto(600)),
            (
                None,
                None,
                "requests_per_minute = 90\n",
                RequestRate::Fixed(90),
            ),
            (
                None,
                None,
                "requests_per_minute = \"auto\"\nmax_requests_per_minute = 300\n",
                auto(300),
            ),
            (None, Some("auto"), "requests_per_minute = 90\n", auto(600)),
            (
                None,
                Some(" 45 "),
                "requests_per_minute = \"auto\"\n",
                RequestRate::Fixed(45),
            ),
            (
                Some(RateChoice::Fixed(7)),
                Some("auto"),
                "",
                RequestRate::Fixed(7),
            ),
            (
                Some(RateChoice::Auto),
                Some("12"),
                "requests_per_minute = 5\n",
                auto(600),
            ),
        ];
        for (flag, var, file, expected) in cases {
            assert_eq!(
                rate(flag, var, file).unwrap().requests,
                expected,
                "{flag:?} {var:?} {file:?}"
            );
        }
        assert_eq!(rate(None, None, "burst = 3\n").unwrap().burst, 3);
        let bad = [
            (None, "requests_per_minute = 0\n", "requests_per_minute"),
            (None, "requests_per_minute = -1\n", "requests_per_minute"),
            (
                None,
                "requests_per_minute = \"fast\"\n",
                "requests_per_minute",
            ),
            (
                None,
                "max_requests_per_minute = 0\n",
                "max_requests_per_minute",
            ),
            (None, "burst = 0\n", "burst"),
            (Some("lots"), "", "MINIMAX_DL_REQUESTS_PER_MINUTE"),
            (Some("0"), "", "MINIMAX_DL_REQUESTS_PER_MINUTE"),
        ];
        // A bad file value is an error even when the variable wins.
        let err = rate(None, Some("60"), "requests_per_minute = -1\n").unwrap_err();
        assert!(err.to_string().contains("requests_per_minute"), "{err}");
        for (var, file, named) in bad {
            let err = rate(None, var, file).unwrap_err().to_string();
            assert!(err.contains(named), "{var:?} {file:?}: {err}");
        }
        assert_eq!(parse_rate_choice("AUTO"), Ok(RateChoice::Auto));
        assert!(parse_rate_choice("1000001").is_err());
    }

    #[test]
    fn flags_beat_environment_beats_file() {
        let f = || file("concurrency = 3\ndatabase = \"/file.db\"\noutput_dir = \"/file-out\"\n");
        let env = env_of(&[
            ("MINIMAX_DL_CONCURRENCY", "5"),
            ("MINIMAX_DL_DATABASE", "/env.db"),
        ]);
        let s = Settings::resolve(&Overrides::default(), &env, None, f()).unwrap();
        assert_eq!((s.concurrency, s.database.0.as_str()), (5, "/env.db"));
        assert_eq!(s.output_dir, PathBuf::from("/file-out"));

        let flags = Overrides {
            concurrency: Some(7),
            database: Some("/flag.db".into()),
            ..Overrides::default()
        };
        let s = Settings::resolve(&flags, &env, None, f()).unwrap();
        assert_eq!((s.concurrency, s.database.0.as_str()), (7, "/flag.db"));

        let s = Settings::resolve(&Overrides::default(), &env_of(&[]), None, f()).unwrap();
        assert_eq!((s.concurrency, s.database.0.as_str()), (3, "/file.db"));
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key_and_file() {
        let path = Path::new("/etc/minimax-dl/config.toml");
        let err = FileConfig::parse("concurency = 3\n", path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/minimax-dl/config.toml") && err.contains("concurency"),
            "{err}"
        );
        let err = FileConfig::parse("concurrency = \"many\"\n", path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("concurrency") && err.contains("/etc/minimax-dl/config.toml"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_values_name_their_origin() {
        let err = Settings::resolve(
            &Overrides::default(),
            &env_of(&[("HOME", "/h")]),
            Some("/c.toml".into()),
            file("concurrency = 0"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/c.toml")
                && err.contains("concurrency")
                && err.contains("0 is not in 1..=256"),
            "{err}"
        );
        let err = Settings::resolve(
            &Overrides::default(),
            &env_of(&[("HOME", "/h"), ("MINIMAX_DL_REQUESTS_PER_MINUTE", "lots")]),
            None,
            FileConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("MINIMAX_DL_REQUESTS_PER_MINUTE") && err.contains("lots"),
            "{err}"
        );
    }

    #[test]
    fn timeouts_beyond_a_day_are_refused_before_they_overflow_a_deadline() {
        // Found by tests/it/props.rs: 2^63-1 seconds resolved, and the daemon's
        // `Instant::now() + probe_interval` then panicked at the first pause.
        for key in [
            "connect_timeout_secs",
            "read_timeout_secs",
            "probe_interval_secs",
            "db_timeout_secs",
            "api_unreachable_secs",
        ] {
            let resolve = |value: u64| {
                Settings::resolve(
                    &Overrides::default(),
                    &env_of(&[("HOME", "/h")]),
                    Some("/c.toml".into()),
                    file(&format!("{key} = {value}")),
                )
            };
            assert!(resolve(MAX_WAIT_SECS).is_ok(), "{key}");
            let err = resolve(i64::MAX as u64).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains("is not in 1..=86400"),
                "{err}"
            );
        }
    }

    #[test]
    fn api_base_must_be_https_unless_loopback() {
        assert!(parse_api_base("https://api.minimax.io").is_ok());
        assert!(parse_api_base("http://127.0.0.1:8380").is_ok());
        assert!(parse_api_base("http://localhost:1").is_ok());
        assert!(
            parse_api_base("http://api.minimax.io")
                .unwrap_err()
                .contains("unencrypted")
        );
        assert!(parse_api_base("ftp://x").is_err());
        assert_eq!(
            parse_api_base("https://proxy.example/minimax")
                .unwrap()
                .join("v1/files/retrieve")
                .unwrap()
                .as_str(),
            "https://proxy.example/minimax/v1/files/retrieve"
        );
        assert!(parse_api_base("not a url").is_err());
    }

    #[test]
    fn environment_key_beats_key_file_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("key");
        std::fs::write(&key_path, "file-secret\n").unwrap();
        let f = || file(&format!("api_key_file = {:?}", key_path.to_str().unwrap()));
        let s = Settings::resolve(&Overrides::default(), &env_of(&[("HOME", "/h")]), None, f())
            .unwrap();
        assert_eq!(key(&s), "file-secret");
        let s = Settings::resolve(
            &Overrides::default(),
            &env_of(&[("HOME", "/h"), ("MINIMAX_API_KEY", "env-secret")]),
            None,
            f(),
        )
        .unwrap();
        assert_eq!(key(&s), "env-secret");
        assert!(!format!("{s:?}").contains("env-secret"));
    }

    #[test]
    fn a_systemd_credential_is_the_last_resort_for_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api_key"), "cred-secret\n").unwrap();
        let creds = dir.path().to_str().unwrap();
        let s = Settings::resolve(
            &Overrides::default(),
            &env_of(&[("HOME", "/h"), ("CREDENTIALS_DIRECTORY", creds)]),
            None,
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(key(&s), "cred-secret");
        let s = Settings::resolve(
            &Overrides::default(),
            &env_of(&[
                ("HOME", "/h"),
                ("CREDENTIALS_DIRECTORY", creds),
                ("MINIMAX_API_KEY", "env"),
            ]),
            None,
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(key(&s), "env");
    }

    fn key(s: &Settings) -> &str {
        s.api_key
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap()
            .expose_secret()
    }

    fn key_error(env: &[(&str, &str)], text: &str) -> String {
        let s = Settings::resolve(&Overrides::default(), &env_of(env), None, file(text))
            .expect("a key problem leaves the other settings usable");
        s.api_key.unwrap_err().to_string()
    }

    #[test]
    fn a_missing_key_file_is_an_error_naming_it_for_the_verbs_that_ask() {
        let err = key_error(&[("HOME", "/h")], "api_key_file = \"/nonexistent/key\"");
        assert!(err.contains("/nonexistent/key"), "{err}");
    }

    #[test]
    fn a_key_with_control_characters_is_refused_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &[u8])] = &[
            ("newline", b"sk-first\nsk-second\n"),
            ("tab", b"sk-ab\tcd"),
            ("escape", b"sk-ab\x1bcd\n"),
            ("non-ASCII", "sk-ab\u{e9}cd".as_bytes()),
        ];
        for (what, bytes) in cases {
            let path = dir.path().join(what);
            std::fs::write(&path, bytes).unwrap();
            let err = key_error(
                &[("HOME", "/h")],
                &format!("api_key_file = {:?}", path.to_str().unwrap()),
            );
            assert!(err.contains(path.to_str().unwrap()), "{what}: {err}");
            assert!(!err.contains("sk-"), "{what}: the key leaked: {err}");
        }
        let err = key_error(&[("HOME", "/h"), ("MINIMAX_API_KEY", "sk-a\nsk-b")], "");
        assert!(err.contains("MINIMAX_API_KEY"), "{err}");
        assert!(!err.contains("sk-"), "the key leaked: {err}");
    }

    #[test]
    fn a_key_file_may_start_with_a_byte_order_mark_and_end_with_a_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "\u{feff}sk-key\r\n").unwrap();
        let text = format!("api_key_file = {:?}", path.to_str().unwrap());
        let s = Settings::resolve(
            &Overrides::default(),
            &env_of(&[("HOME", "/h")]),
            None,
            file(&text),
        )
        .unwrap();
        assert_eq!(key(&s), "sk-key");
    }

    #[test]
    fn an_api_base_with_credentials_is_refused_without_showing_them() {
        for raw in [
            "https://user:hunter2@api.minimax.io",
            "http://user:hunter2@127.0.0.1:8380",
            "https://hunter2@api.minimax.io",
        ] {
            let err = parse_api_base(raw).unwrap_err();
            assert!(err.contains("password"), "{raw}: {err}");
            assert!(!err.contains("hunter2"), "{raw}: {err}");
        }
    }

    #[test]
    fn a_database_that_cannot_outlive_the_command_is_refused_naming_its_origin() {
        for (flag, needle) in [("", "--db"), ("sqlite::memory:", "--db")] {
            let overrides = Overrides {
                database: Some(flag.into()),
                ..Overrides::default()
            };
            let err = Settings::resolve(&overrides, &env_of(&[("HOME", "/h")]), None, file(""))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(needle) && err.contains("file"),
                "{flag:?}: {err}"
            );
        }
        let err = Settings::resolve(
            &Overrides::default(),
            &env_of(&[("HOME", "/h"), ("MINIMAX_DL_DATABASE", ":memory:")]),
            None,
            file(""),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("MINIMAX_DL_DATABASE"), "{err}");
    }

    #[test]
    fn the_database_url_may_come_from_a_file_at_each_layer_and_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let url_file = dir.path().join("db_url");
        std::fs::write(&url_file, "postgres://u:hunter2@db/q\n").unwrap();
        let path = url_file.to_str().unwrap();
        let home = ("HOME", "/h");
        let resolve = |overrides: &Overrides, env: &[(&str, &str)], text: &str| {
            Settings::resolve(overrides, &env_of(env), None, file(text))
        };
        let from_file = format!("database_url_file = {path:?}");
        let flag = Overrides {
            database_url_file: Some(url_file.clone()),
            ..Overrides::default()
        };
        let env_var = [home, ("MINIMAX_DL_DATABASE_URL_FILE", path)];
        let dir_path = dir.path().to_str().unwrap();
        let credential = [home, ("CREDENTIALS_DIRECTORY", dir_path)];
        for s in [
            resolve(&Overrides::default(), &[home], &from_file),
            resolve(&flag, &[home], ""),
            resolve(&Overrides::default(), &env_var, ""),
            resolve(&Overrides::default(), &credential, ""),
        ] {
            let s = s.unwrap();
            assert_eq!(s.database.0, "postgres://u:hunter2@db/q");
            assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
            assert_eq!(s.database.redacted(), "postgres://u:***@db/q");
        }
        // A higher layer wins over the file; the credential comes last.
        let s = resolve(
            &Overrides::default(),
            &[home, ("MINIMAX_DL_DATABASE", "/e.db")],
            &from_file,
        );
        assert_eq!(s.unwrap().database.0, "/e.db");
        let s = resolve(&Overrides::default(), &credential, "database = \"/f.db\"");
        assert_eq!(s.unwrap().database.0, "/f.db");
        // Both at one layer is a mistake, named by both origins.
        let both = format!("database = \"/f.db\"\n{from_file}");
        let err = resolve(&Overrides::default(), &[home], &both)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`database`") && err.contains("`database_url_file`"),
            "{err}"
        );
        let err = resolve(
            &Overrides::default(),
            &[home, ("MINIMAX_DL_DATABASE", "/e.db"), env_var[1]],
            "",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("MINIMAX_DL_DATABASE_URL_FILE"), "{err}");
        // Unreadable, empty or several lines: the file is named, its contents never.
        for (contents, needle) in [
            ("", "empty"),
            ("postgres://u:hunter2@a/b\nmore\n", "one line"),
        ] {
            std::fs::write(&url_file, contents).unwrap();
            let err = resolve(&flag, &[home], "").unwrap_err().to_string();
            assert!(err.contains(path) && err.contains(needle), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let missing = Overrides {
            database_url_file: Some(dir.path().join("nope")),
            ..Overrides::default()
        };
        let err = resolve(&missing, &[home], "").unwrap_err().to_string();
        assert!(
            err.contains("nope") && err.contains("--database-url-file"),
            "{err}"
        );
    }

    #[test]
    fn the_listener_is_off_unless_an_address_is_given_and_the_flag_wins() {
        let env = env_of(&[("HOME", "/h"), ("MINIMAX_DL_LISTEN", "127.0.0.1:2")]);
        let none = Settings::resolve(
            &Overrides::default(),
            &env_of(&[("HOME", "/h")]),
            None,
            file(""),
        );
        assert!(none.unwrap().listen.is_none());
        let f = || file("listen = \"127.0.0.1:3\"\nlisten_public = true\n");
        let s = Settings::resolve(&Overrides::default(), &env_of(&[("HOME", "/h")]), None, f());
        let l = s.unwrap().listen.unwrap();
        assert_eq!((l.addr.as_str(), l.public), ("127.0.0.1:3", true));
        let s = Settings::resolve(&Overrides::default(), &env, None, f()).unwrap();
        assert_eq!(s.listen.unwrap().addr, "127.0.0.1:2");
        let flag = Overrides {
            listen: Some("127.0.0.1:1".into()),
            ..Overrides::default()
        };
        let s = Settings::resolve(&flag, &env, None, f()).unwrap();
        assert_eq!(s.listen.unwrap().addr, "127.0.0.1:1");
    }

    #[test]
    fn a_short_listen_token_is_refused_naming_its_origin_not_its_value() {
        let resolve = |env: &[(&str, &str)], text: &str| {
            Settings::resolve(
                &Overrides::default(),
                &env_of(env),
                Some("/c.toml".into()),
                file(text),
            )
        };
        let err = resolve(
            &[("HOME", "/h")],
            "listen = \"127.0.0.1:1\"\nlisten_token = \"abc\"",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("listen_token") && err.contains("16"), "{err}");
        assert!(!err.contains("abc"), "{err}");
        let env = [
            ("HOME", "/h"),
            ("MINIMAX_DL_LISTEN_TOKEN", "env-token-0123456789"),
        ];
        let s = resolve(
            &env,
            "listen = \"127.0.0.1:1\"\nlisten_token = \"file-token-0123456789\"",
        )
        .unwrap();
        let token = s.listen.as_ref().unwrap().token.as_ref().unwrap();
        assert_eq!(token.expose_secret(), "env-token-0123456789");
        assert!(!format!("{s:?}").contains("env-token"), "never printed");
    }

    #[test]
    fn the_example_config_parses_and_matches_the_defaults() {
        let text = include_str!("../config.example.toml");
        let parsed = FileConfig::parse(text, Path::new("config.example.toml")).unwrap();
        let env = env_of(&[("HOME", "/h")]);
        let s = Settings::resolve(&Overrides::default(), &env, None, parsed).unwrap();
        let d =
            Settings::resolve(&Overrides::default(), &env, None, FileConfig::default()).unwrap();
        assert_eq!(s.api_base, d.api_base);
        assert_eq!(s.concurrency, d.concurrency);
        assert_eq!(s.rate, d.rate);
        assert_eq!(s.retry, d.retry);
        assert_eq!(s.segments, d.segments);
        assert_eq!(s.read_timeout, d.read_timeout);
        assert_eq!(s.connect_timeout, d.connect_timeout);
        assert_eq!(s.probe_interval, d.probe_interval);
        assert!(s.listen.is_none() && d.listen.is_none());
        assert_eq!(s.url_policy, d.url_policy);
        assert_eq!(s.max_file_bytes, d.max_file_bytes);
        assert_eq!(s.path_template, d.path_template);
        assert_eq!(s.sidecar, d.sidecar);
    }

    #[test]
    fn cdn_allow_and_max_file_bytes_are_checked_naming_the_key() {
        let resolve = |text: &str| {
            Settings::resolve(
                &Overrides::default(),
                &env_of(&[("HOME", "/h")]),
                Some("/c.toml".into()),
                file(text),
            )
        };
        let s =
            resolve("cdn_allow = [\"AliyunCS.com\", \".minimax.io\"]\nmax_file_bytes = 5").unwrap();
        assert_eq!(s.url_policy.cdn_allow(), ["aliyuncs.com", "minimax.io"]);
        assert_eq!(s.max_file_bytes, 5);
        let d = resolve("").unwrap();
        assert!(d.url_policy.cdn_allow().is_empty());
        assert_eq!(d.max_file_bytes, 64 << 30);
        for (text, key) in [
            ("cdn_allow = [\"https://cdn.example\"]", "cdn_allow"),
            ("cdn_allow = [\"\"]", "cdn_allow"),
            ("max_file_bytes = 0", "max_file_bytes"),
        ] {
            let err = resolve(text).unwrap_err().to_string();
            assert!(
                err.contains("/c.toml") && err.contains(key),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn a_secret_in_a_file_others_can_read_is_named_with_the_fix() {
        let path = Path::new("/etc/minimax-dl/config.toml");
        let warning = exposure_warning(path, 0o100644, "the API key").unwrap();
        assert!(
            warning.contains("/etc/minimax-dl/config.toml")
                && warning.contains("chmod 600 /etc/minimax-dl/config.toml")
                && warning.contains("0644"),
            "{warning}"
        );
        assert!(exposure_warning(path, 0o100640, "x").is_some(), "group");
        assert!(exposure_warning(path, 0o100600, "x").is_none());
        assert!(exposure_warning(path, 0o100400, "x").is_none());
        let secrets = |text: &str| file(text).secret_keys();
        assert_eq!(
            secrets("database = \"postgres://dl:hunter2@db/queue\""),
            ["database"]
        );
        assert_eq!(
            secrets("database = \"host=db user=dl password=hunter2\""),
            ["database"]
        );
        assert!(secrets("database = \"postgres://dl@db/queue\"").is_empty());
        assert_eq!(
            secrets("listen_token = \"0123456789abcdef\""),
            ["listen_token"]
        );
        assert!(secrets("database = \"/var/lib/minimax-dl/queue.db\"").is_empty());
    }

    #[test]
    fn a_bad_path_template_names_the_key_and_the_problem() {
        let err = Settings::resolve(
            &Overrides::default(),
            &env_of(&[("HOME", "/h")]),
            Some("/c.toml".into()),
            file("path_template = \"{purpose}/../{filename}\""),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/c.toml") && err.contains("path_template") && err.contains("`..`"),
            "{err}"
        );
        let s = Settings::resolve(
            &Overrides::default(),
            &env_of(&[("HOME", "/h")]),
            None,
            file("path_template = \"{created:%Y/%m}/{filename}\"\nsidecar = true"),
        )
        .unwrap();
        assert_eq!(s.path_template.as_str(), "{created:%Y/%m}/{filename}");
        assert!(s.sidecar);
    }
}
