//! Layered configuration. Every setting is looked up in one order:
//!
//! 1. a command-line flag,
//! 2. an environment variable,
//! 3. the config file (`--config`, `MINIMAX_DL_CONFIG`, else
//!    `~/.config/minimax-dl/config.toml`, else `/etc/minimax-dl/config.toml`),
//! 4. the default.
//!
//! Not every setting has every layer; which ones it has is written once, in
//! [`Settings::resolve`], which takes the environment as a function so tests
//! drive it without touching the process environment.
//!
//! - `file.rs`: the config file as written (serde, unknown keys rejected)
//!   and which file is read.
//! - `resolve.rs`: the precedence, one named step per setting or group.
//! - `secrets.rs`: the API key, the callback token and the database URL
//!   from files and systemd credentials, and the warning about a secret in
//!   a file others may read.
//!
//! Config sits just above the plain values and imports nothing else of the
//! crate: `ids`, `http` (the URL and host checks), `location`, `rate` and
//! `retry`. A value whose syntax another module owns is handed over as
//! written (`path_template`, parsed by `archive` and checked at load by
//! `runtime::load_settings`).

mod file;
mod resolve;
mod secrets;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;

use crate::ids::TaskApi;
use crate::location::{BucketLocation, DbLocation};
use crate::retry::RetryPolicy;

pub use file::FileConfig;
pub(crate) use resolve::parse_rate_choice;

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
    /// The hosts downloads and redirects may go to (`cdn_allow`), each
    /// checked and normalised by `http::normalise_allowed_host`; empty: any
    /// host. `fetch::url_policy::UrlPolicy` applies them.
    pub cdn_allow: Vec<String>,
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
    /// Where each file goes inside `output_dir`, as written (`None`: the
    /// default). Handed over unparsed: `archive::PathTemplate` owns the
    /// syntax, and `runtime::load_settings` has it checked at load, so a
    /// bad template is still a config error naming the key.
    pub path_template: Option<String>,
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
    /// The window a cap is counted over: 60 s. Shorter only through a test
    /// hook (`test_hooks`), so a test of the adaptive rate runs minutes of
    /// the real thing in seconds.
    pub window: Duration,
}

/// `requests_per_minute` as a flag or variable says it: `auto` or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateChoice {
    Auto,
    Fixed(u32),
}

/// The largest fixed `requests_per_minute` or ceiling.
pub(crate) const MAX_REQUESTS_PER_MINUTE: u32 = 1_000_000;
/// Calls that may go at once (`burst`).
pub(crate) const DEFAULT_BURST: u32 = 10;
pub(crate) const MAX_BURST: u32 = 1000;
/// The cap's window (a test hook shortens it in tests).
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(60);

/// How generation tasks are taken in and polled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskSettings {
    /// The API of a task named without a `v1:`/`v2:` prefix (`task_api`).
    pub api: TaskApi,
    /// Still unfinished this long after it was enqueued, a task fails
    /// (`task_deadline_secs`, default a day).
    pub deadline: Duration,
    /// The shortest wait between two polls of one task: 10 s. Shorter only
    /// through a test hook (`test_hooks`).
    pub poll_floor: Duration,
}

/// How long a task may generate before it is given up (`task_deadline_secs`).
pub(crate) const DEFAULT_TASK_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// Never poll one task more often than this: MiniMax suggests about 10 s.
pub(crate) const MIN_TASK_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Longest `task_deadline_secs`: MiniMax keeps tasks queryable for 7 days.
pub(crate) const MAX_TASK_DEADLINE_SECS: u64 = 7 * 86_400;

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
pub(crate) const MIN_LISTEN_TOKEN: usize = 16;

pub(crate) const DEFAULT_CONCURRENCY: u32 = 4;
pub(crate) const MAX_CONCURRENCY: u32 = 256;
pub(crate) const MAX_SEGMENTS: u32 = 16;
/// Longest timeout or probe interval a config file may set, in seconds.
pub(crate) const MAX_WAIT_SECS: u64 = 86_400;

/// Default `max_file_bytes`: 64 GiB, far above any video MiniMax makes, and
/// a bound on what a CDN that never ends its body can write. The setting's
/// default lives with the setting; `fetch::range` re-exports it as the
/// download client's own default.
pub(crate) const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 30;

impl Settings {
    /// Reads the config file (the one named, else the first default that
    /// exists) and resolves every setting.
    pub fn load(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let (path, file) = file::read(overrides, env)?;
        let warnings = secrets::exposed_secret_files(path.as_deref(), &file);
        let settings = Settings::resolve(overrides, env, path, file)?;
        resolve::check_paths(&settings)?;
        Ok(Settings {
            warnings,
            ..settings
        })
    }

    /// Where a config file key is set, as an error names it.
    pub fn file_origin(&self, key: &str) -> String {
        file::origin(self.config_path.as_deref(), key)
    }

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
