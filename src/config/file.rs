//! The config file as written: every key optional, unknown keys refused
//! (a misspelt key is an error naming it, never a silent default), and
//! which file is read.

use std::path::{Path, PathBuf};

use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;

use super::{ConfigError, LogFormat, Overrides};

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

/// The config file's settings: the file named (which must exist), else the
/// first default that exists, else none.
pub(super) fn read(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<PathBuf>, FileConfig), ConfigError> {
    let Some((path, required)) = config_file_path(overrides, env) else {
        return Ok((None, FileConfig::default()));
    };
    match read_text(&path) {
        Ok(text) => {
            let file = FileConfig::parse(&text, &path)?;
            Ok((Some(path), file))
        }
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            Ok((None, FileConfig::default()))
        }
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

/// Where a key of the config file is set, as an error names it.
pub(super) fn origin(config_path: Option<&Path>, key: &str) -> String {
    match config_path {
        Some(p) => format!("config file {}: key `{key}`", p.display()),
        None => format!("config key `{key}`"),
    }
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

/// A file's text; a directory is named as such (reading one fails with the
/// OS's bare "Is a directory", which does not say which setting is wrong).
pub(super) fn read_text(path: &Path) -> std::io::Result<String> {
    if path.is_dir() {
        return Err(std::io::Error::other(
            "it is a directory; name the file inside it",
        ));
    }
    std::fs::read_to_string(path)
}
