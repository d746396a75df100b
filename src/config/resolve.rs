//! The precedence: each setting from its flag, its environment variable,
//! the config file or its default, in that order, and checked.
//! [`Settings::resolve`] reads as its steps, a line or a call per setting;
//! a setting's layers are written once, in its step.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::file::{self, FileConfig, RateValue};
use super::secrets::{check_token, read_url_file, resolve_api_key, resolve_callback_token};
use super::{
    ConfigError, DEFAULT_BURST, DEFAULT_CONCURRENCY, DEFAULT_MAX_FILE_BYTES, DEFAULT_TASK_DEADLINE,
    ListenSettings, MAX_BURST, MAX_CONCURRENCY, MAX_REQUESTS_PER_MINUTE, MAX_SEGMENTS,
    MAX_TASK_DEADLINE_SECS, MAX_WAIT_SECS, MIN_TASK_POLL_INTERVAL, Overrides, RATE_WINDOW,
    RateChoice, RateSettings, RequestRate, Settings, TaskSettings,
};
use crate::http::{MAINLAND_API_BASE, normalise_allowed_host, parse_api_base};
use crate::ids::{TaskApi, quoted};
use crate::location::db::check_location;
use crate::location::{BucketLocation, DbLocation, mistyped_store_url, names_object_store};
use crate::rate::DEFAULT_CEILING;
use crate::retry::RetryPolicy;

/// What the steps read besides the config file: the flags, the
/// environment, and the file's path (for the origin an error names).
pub(super) struct Sources<'a> {
    pub overrides: &'a Overrides,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub config_path: Option<&'a Path>,
}

impl Sources<'_> {
    /// A variable as set, empty or not.
    pub(crate) fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// A variable, unless it is unset or blank.
    pub(crate) fn env_nonempty(&self, name: &str) -> Option<String> {
        self.env(name).filter(|v| !v.trim().is_empty())
    }

    /// Where a key of the config file is set, as an error names it.
    pub(crate) fn file_origin(&self, key: &str) -> String {
        file::origin(self.config_path, key)
    }

    /// A whole-number setting from the first of its layers that says
    /// something, checked against its range; else its default.
    fn number(&self, layer: Layer<'_>) -> Result<u32, ConfigError> {
        let range = layer.range;
        let from_env = layer
            .var
            .and_then(|name| Some((self.env_nonempty(name)?, name)));
        let (value, origin) = if let Some((v, name)) = layer.flag {
            (v, format!("command-line flag {name}"))
        } else if let Some((raw, name)) = from_env {
            let origin = format!("environment variable {name}");
            let v = parse_whole(&raw, &range).map_err(|message| ConfigError::Invalid {
                origin: origin.clone(),
                message,
            })?;
            (v, origin)
        } else if let (Some(v), key) = layer.file {
            (v, self.file_origin(key))
        } else {
            return Ok(layer.default);
        };
        if !range.contains(&value) {
            return Err(ConfigError::Invalid {
                origin,
                message: out_of_range(value, &range),
            });
        }
        Ok(value)
    }

    /// A wait in seconds from the config file: at least one second, at
    /// most a day.
    fn seconds(
        &self,
        value: Option<u64>,
        key: &str,
        default: u64,
    ) -> Result<Duration, ConfigError> {
        match value {
            Some(0) => Err(ConfigError::Invalid {
                origin: self.file_origin(key),
                message: "must be at least 1 second".into(),
            }),
            // A deadline is now + this: a huge value would overflow the
            // clock where it is added (a panic), not wait longer.
            Some(v) if v > MAX_WAIT_SECS => Err(ConfigError::Invalid {
                origin: self.file_origin(key),
                message: format!("{v} is not in 1..={MAX_WAIT_SECS} (seconds: one day at most)"),
            }),
            Some(v) => Ok(Duration::from_secs(v)),
            None => Ok(Duration::from_secs(default)),
        }
    }
}

/// The layers one whole-number setting is read from, highest first, with
/// its default and its range.
struct Layer<'a> {
    /// The command-line flag's value and name (`--concurrency`).
    flag: Option<(u32, &'a str)>,
    /// The environment variable that may set it.
    var: Option<&'a str>,
    /// The config file's value and key.
    file: (Option<u32>, &'a str),
    default: u32,
    range: RangeInclusive<u32>,
}

impl<'a> Layer<'a> {
    /// A setting only the config file sets.
    fn file(value: Option<u32>, key: &'a str, default: u32, range: RangeInclusive<u32>) -> Self {
        Layer {
            flag: None,
            var: None,
            file: (value, key),
            default,
            range,
        }
    }
}

impl Settings {
    /// The precedence rules: flag, then environment, then file, then
    /// default. Each step below is one setting or a group that belongs
    /// together; the order of the steps is the order errors are found in.
    pub fn resolve(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
        config_path: Option<PathBuf>,
        mut file: FileConfig,
    ) -> Result<Settings, ConfigError> {
        let src = Sources {
            overrides,
            env,
            config_path: config_path.as_deref(),
        };
        let tasks = resolve_tasks(&src, &file)?;
        let rate = resolve_rate(&src, &file)?;
        let callback_token = resolve_callback_token(&src, &file).map_err(Arc::new);
        let api_base = resolve_api_base(&src, file.api_base.take())?;
        let api_key = resolve_api_key(&src, file.api_key_file.as_deref()).map_err(Arc::new);
        let database = resolve_database(&src, file.database.take(), file.database_url_file.take())?;
        let (output_dir, bucket) =
            resolve_archive(&src, file.output_dir.take(), file.staging_dir.take())?;
        let (concurrency, segments, retry) = resolve_work(&src, &file)?;
        let (cdn_allow, max_file_bytes) = resolve_downloads(&src, &file)?;
        let listen = (
            file.listen.take(),
            file.listen_public,
            file.listen_token.take(),
        );
        Ok(Settings {
            api_base,
            api_key,
            api_key_file: file.api_key_file,
            database,
            output_dir,
            bucket,
            archive_allow_http: file.archive_allow_http.unwrap_or(false),
            concurrency,
            rate,
            retry,
            segments,
            connect_timeout: src.seconds(file.connect_timeout_secs, "connect_timeout_secs", 10)?,
            read_timeout: src.seconds(file.read_timeout_secs, "read_timeout_secs", 60)?,
            probe_interval: src.seconds(file.probe_interval_secs, "probe_interval_secs", 60)?,
            db_timeout: src.seconds(file.db_timeout_secs, "db_timeout_secs", 10)?,
            api_unreachable: src.seconds(file.api_unreachable_secs, "api_unreachable_secs", 120)?,
            log_format: overrides.log_format.or(file.log_format).unwrap_or_default(),
            listen: resolve_listen(&src, listen)?,
            cdn_allow,
            max_file_bytes,
            tasks,
            callback_token,
            warnings: Vec::new(),
            path_template: file.path_template,
            sidecar: file.sidecar.unwrap_or(false),
            config_path,
        })
    }
}

/// `MINIMAX_API_BASE` > `api_base` > the mainland API, checked by
/// [`parse_api_base`].
fn resolve_api_base(
    src: &Sources<'_>,
    from_file: Option<String>,
) -> Result<reqwest::Url, ConfigError> {
    let (raw, origin) = match src.env_nonempty("MINIMAX_API_BASE") {
        Some(v) => (v, "environment variable MINIMAX_API_BASE".to_string()),
        None => match from_file {
            Some(v) => (v, src.file_origin("api_base")),
            None => (
                MAINLAND_API_BASE.to_string(),
                "default api_base".to_string(),
            ),
        },
    };
    parse_api_base(&raw).map_err(|message| ConfigError::Invalid { origin, message })
}

/// How the pool works: `concurrency` (flag, variable, file), `segments`
/// (flag, file) and `max_attempts` (file).
fn resolve_work(
    src: &Sources<'_>,
    file: &FileConfig,
) -> Result<(u32, u32, RetryPolicy), ConfigError> {
    let concurrency = src.number(Layer {
        flag: src.overrides.concurrency.map(|v| (v, "--concurrency")),
        var: Some("MINIMAX_DL_CONCURRENCY"),
        ..Layer::file(
            file.concurrency,
            "concurrency",
            DEFAULT_CONCURRENCY,
            1..=MAX_CONCURRENCY,
        )
    })?;
    let segments = src.number(Layer {
        flag: src.overrides.segments.map(|v| (v, "--segments")),
        ..Layer::file(file.segments, "segments", 1, 1..=MAX_SEGMENTS)
    })?;
    let defaults = RetryPolicy::default();
    let max_attempts = src.number(Layer::file(
        file.max_attempts,
        "max_attempts",
        defaults.max_attempts,
        1..=1000,
    ))?;
    let retry = RetryPolicy {
        max_attempts,
        ..defaults
    };
    Ok((concurrency, segments, retry))
}

/// What a download may fetch: the `cdn_allow` hosts (each checked by
/// [`normalise_allowed_host`]) and `max_file_bytes`.
fn resolve_downloads(
    src: &Sources<'_>,
    file: &FileConfig,
) -> Result<(Vec<String>, u64), ConfigError> {
    let cdn_allow = file
        .cdn_allow
        .iter()
        .flatten()
        .map(|entry| normalise_allowed_host(entry))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|message| ConfigError::Invalid {
            origin: src.file_origin("cdn_allow"),
            message,
        })?;
    let max_file_bytes = match file.max_file_bytes {
        Some(0) => {
            return Err(ConfigError::Invalid {
                origin: src.file_origin("max_file_bytes"),
                message: "must be at least 1 byte".into(),
            });
        }
        Some(v) => v,
        None => DEFAULT_MAX_FILE_BYTES,
    };
    Ok((cdn_allow, max_file_bytes))
}

/// Parses `auto` or a whole number in 1..=1,000,000 (the flag and the
/// environment variable; the file's number goes through [`rate_number`]).
pub(crate) fn parse_rate_choice(raw: &str) -> Result<RateChoice, String> {
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
fn resolve_rate(src: &Sources<'_>, file: &FileConfig) -> Result<RateSettings, ConfigError> {
    const VAR: &str = "MINIMAX_DL_REQUESTS_PER_MINUTE";
    let invalid = |origin: String, message: String| ConfigError::Invalid { origin, message };
    // The file's value is checked even when a flag or variable wins: a
    // bad config file is an error whatever else is set.
    let origin = || src.file_origin("requests_per_minute");
    let from_file = match &file.requests_per_minute {
        None => RateChoice::Auto,
        Some(RateValue::Number(n)) => rate_number(*n).map_err(|m| invalid(origin(), m))?,
        Some(RateValue::Word(w)) => parse_rate_choice(w).map_err(|m| invalid(origin(), m))?,
    };
    let choice = if let Some(choice) = src.overrides.requests_per_minute {
        choice
    } else if let Some(raw) = src.env_nonempty(VAR) {
        parse_rate_choice(&raw).map_err(|m| invalid(format!("environment variable {VAR}"), m))?
    } else {
        from_file
    };
    let ceiling = src.number(Layer::file(
        file.max_requests_per_minute,
        "max_requests_per_minute",
        DEFAULT_CEILING,
        1..=MAX_REQUESTS_PER_MINUTE,
    ))?;
    let burst = src.number(Layer::file(
        file.burst,
        "burst",
        DEFAULT_BURST,
        1..=MAX_BURST,
    ))?;
    let requests = match choice {
        RateChoice::Auto => RequestRate::Auto { ceiling },
        RateChoice::Fixed(n) => RequestRate::Fixed(n),
    };
    Ok(RateSettings {
        requests,
        burst,
        window: RATE_WINDOW,
    })
}

/// The task settings of a config file.
fn resolve_tasks(src: &Sources<'_>, file: &FileConfig) -> Result<TaskSettings, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        origin: src.file_origin(key),
        message,
    };
    let api = match file.task_api.as_deref() {
        None => TaskApi::V1,
        Some(raw) => TaskApi::parse(raw).ok_or_else(|| {
            invalid(
                "task_api",
                format!("{} is not \"v1\" or \"v2\"", quoted(raw)),
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
    Ok(TaskSettings {
        api,
        deadline,
        poll_floor: MIN_TASK_POLL_INTERVAL,
    })
}

/// Where files go: a directory, or a bucket (`s3://BUCKET/PREFIX`) with the
/// local staging directory its files wait in.
fn resolve_archive(
    src: &Sources<'_>,
    output_dir: Option<PathBuf>,
    staging_dir: Option<PathBuf>,
) -> Result<(PathBuf, Option<BucketLocation>), ConfigError> {
    let (chosen, origin) = match (
        &src.overrides.output_dir,
        src.env_nonempty("MINIMAX_DL_OUTPUT_DIR"),
        output_dir,
    ) {
        (Some(v), _, _) => (v.clone(), "--out".to_string()),
        (None, Some(v), _) => (
            PathBuf::from(v),
            "environment variable MINIMAX_DL_OUTPUT_DIR".to_string(),
        ),
        (None, None, Some(v)) => (v, src.file_origin("output_dir")),
        (None, None, None) => return Ok((absolute(&data_dir(src)?.join("files")), None)),
    };
    let text = chosen.to_string_lossy();
    if let Some(meant) = mistyped_store_url(&text) {
        return Err(ConfigError::Invalid {
            origin,
            message: format!(
                "{text:?} is not a bucket URL: write {meant} (or ./{text} for a local directory)"
            ),
        });
    }
    if !names_object_store(&text) {
        return Ok((absolute(&chosen), None));
    }
    let bucket = BucketLocation::parse(&text).map_err(|e| ConfigError::Invalid {
        origin,
        message: e.to_string(),
    })?;
    let staging = match (src.env_nonempty("MINIMAX_DL_STAGING_DIR"), staging_dir) {
        (Some(v), _) => PathBuf::from(v),
        (None, Some(v)) => v,
        (None, None) => data_dir(src)?.join("staging"),
    };
    Ok((absolute(&staging), Some(bucket)))
}

/// The queue's location, refused when it can never hold a queue (named
/// by where it came from, its password hidden).
fn resolve_database(
    src: &Sources<'_>,
    file_database: Option<String>,
    file_url_file: Option<PathBuf>,
) -> Result<DbLocation, ConfigError> {
    let (database, origin) = database_layers(src, file_database, file_url_file)?;
    let location = DbLocation(database);
    if !location.is_postgres() {
        check_location(&location.0).map_err(|why| ConfigError::Invalid {
            origin,
            // Redacted: a mistyped scheme may still carry a password.
            message: format!("{} {why}", quoted(&location.redacted())),
        })?;
    }
    Ok(location)
}

/// The database setting and where it came from: at each layer (flag,
/// environment, config file) either the location itself or a file holding
/// it, never both; then the systemd credential `db_url`, then the default.
fn database_layers(
    src: &Sources<'_>,
    file_database: Option<String>,
    file_url_file: Option<PathBuf>,
) -> Result<(String, String), ConfigError> {
    let layers = [
        (
            src.overrides.database.clone(),
            "command-line flag --db".to_string(),
            src.overrides.database_url_file.clone(),
            "command-line flag --database-url-file".to_string(),
        ),
        (
            src.env_nonempty("MINIMAX_DL_DATABASE"),
            "environment variable MINIMAX_DL_DATABASE".to_string(),
            src.env_nonempty("MINIMAX_DL_DATABASE_URL_FILE")
                .map(PathBuf::from),
            "environment variable MINIMAX_DL_DATABASE_URL_FILE".to_string(),
        ),
        (
            file_database,
            src.file_origin("database"),
            file_url_file,
            src.file_origin("database_url_file"),
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
    if let Some(dir) = src.env_nonempty("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join("db_url");
        if path.exists() {
            let origin = "systemd credential db_url".to_string();
            return Ok((read_url_file(&path, &origin)?, origin));
        }
    }
    let default = data_dir(src)?.join("queue.db");
    Ok((
        default.to_string_lossy().into_owned(),
        src.file_origin("database"),
    ))
}

/// The listener: `--listen` > `MINIMAX_DL_LISTEN` > `listen`; the token
/// from `MINIMAX_DL_LISTEN_TOKEN` > `listen_token`. Off when no address is
/// given anywhere.
fn resolve_listen(
    src: &Sources<'_>,
    (addr, public, token): (Option<String>, Option<bool>, Option<SecretString>),
) -> Result<Option<ListenSettings>, ConfigError> {
    let Some(addr) = src
        .overrides
        .listen
        .clone()
        .or_else(|| src.env_nonempty("MINIMAX_DL_LISTEN"))
        .or(addr)
        .map(|a| a.trim().to_string())
    else {
        return Ok(None);
    };
    let (token, origin) = match src.env_nonempty("MINIMAX_DL_LISTEN_TOKEN") {
        Some(v) => (
            Some(SecretString::from(v.trim().to_string())),
            "environment variable MINIMAX_DL_LISTEN_TOKEN".to_string(),
        ),
        None => (token, src.file_origin("listen_token")),
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

/// The queue file, when what is there already is a directory: said here in
/// words, before SQLite answers "disk I/O error".
pub(super) fn check_paths(settings: &Settings) -> Result<(), ConfigError> {
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

/// `$XDG_DATA_HOME/minimax-dl`, else `~/.local/share/minimax-dl`.
fn data_dir(src: &Sources<'_>) -> Result<PathBuf, ConfigError> {
    src.env("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            src.env("HOME")
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

/// A whole number from the environment. Digits too many for any value in
/// range are out of range, not "not a number".
fn parse_whole(raw: &str, range: &RangeInclusive<u32>) -> Result<u32, String> {
    let digits = raw.trim();
    match digits.parse::<u32>() {
        Ok(v) => Ok(v),
        Err(_) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Err(out_of_range(digits, range))
        }
        Err(_) => Err(format!("{} is not a whole number", quoted(digits))),
    }
}

/// The one wording of a number outside its range, the same as the
/// command-line parser's.
pub(crate) fn out_of_range(value: impl std::fmt::Display, range: &RangeInclusive<u32>) -> String {
    format!("{value} is not in {}..={}", range.start(), range.end())
}
