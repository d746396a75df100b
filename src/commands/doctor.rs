//! `minimax-dl doctor`: the first command to run on a new host. Read-only
//! and cheap: it looks at the configuration, makes one API call that costs
//! no quota (a page of the v2 task list), and checks the queue, the archive
//! and the listen address without creating or changing any of them. One
//! line per check (ok / warn / fail and what to do), `--json` for scripts;
//! exit 0 only when nothing fails.

use std::path::{Path, PathBuf};

use anyhow::Result;
use reqwest::Url;
use serde::Serialize;

use crate::api::{ApiClient, ApiError, ErrorClass, TaskPage};
use crate::config::{ConfigError, Settings};
use crate::queue::{Queue, QueueError};
use crate::runtime::exit;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    pub check: &'static str,
    pub level: Level,
    pub message: String,
}

fn check(name: &'static str, level: Level, message: impl Into<String>) -> Check {
    Check {
        check: name,
        level,
        message: message.into(),
    }
}

/// The page size asked of the list: its answer says what the server
/// serves.
const ASKED_PAGE_SIZE: u32 = 100;

/// The exit code when a check failed (as `run`'s when a job failed).
const FAILED: u8 = 1;

/// Free space under which the archive is worth a warning.
const LOW_SPACE: u64 = 1 << 30;

pub(crate) async fn doctor(settings: &Settings, json: bool) -> Result<u8> {
    let mut checks = vec![config_check(settings)];
    checks.extend(api_checks(settings).await);
    checks.push(queue_check(settings).await);
    checks.push(archive_check(&settings.output_dir));
    if let Some(listen) = &settings.listen {
        checks.push(listen_check(&listen.addr).await);
    }
    print(&checks, json)
}

/// The report when the configuration does not load: that line alone, as
/// every other check needs the configuration.
pub(crate) fn unconfigured(error: &ConfigError, json: bool) -> Result<u8> {
    print(&[config_failure(error)], json)
}

/// Pure.
pub(crate) fn config_failure(error: &ConfigError) -> Check {
    check(
        "config",
        Level::Fail,
        format!(
            "{}. Fix it, then run doctor again (the other checks need the configuration)",
            crate::stderr::error_line(error)
        ),
    )
}

/// Prints the report; its exit code (a closed stdout ends it quietly).
fn print(checks: &[Check], json: bool) -> Result<u8> {
    if json {
        out!("{}", serde_json::to_string(checks)?);
        return Ok(exit_code(checks));
    }
    for c in checks {
        let word = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        out!("{word} {:<8} {}", c.check, c.message);
    }
    Ok(exit_code(checks))
}

/// 0 when nothing failed (warnings allowed), else 1. Pure.
pub(crate) fn exit_code(checks: &[Check]) -> u8 {
    if checks.iter().any(|c| c.level == Level::Fail) {
        FAILED
    } else {
        exit::OK
    }
}

fn config_check(settings: &Settings) -> Check {
    let file = match &settings.config_path {
        Some(path) if path.exists() => format!("config file {}", path.display()),
        Some(path) => format!(
            "no config file at {} (defaults and environment)",
            path.display()
        ),
        None => "no config file (defaults and environment)".into(),
    };
    let warnings = settings.warnings.len();
    let level = if warnings > 0 { Level::Warn } else { Level::Ok };
    let mut message = format!("{file}; API base {}", settings.api_base);
    if warnings > 0 {
        message.push_str(&format!("; {}", settings.warnings.join("; ")));
    }
    check("config", level, message)
}

/// The key, the API's reachability (TLS included), the clock against the
/// API's and the list's real page size, from one call of the v2 list.
async fn api_checks(settings: &Settings) -> Vec<Check> {
    let key = match &settings.api_key {
        Ok(Some(key)) => key.clone(),
        Ok(None) => {
            return vec![check(
                "key",
                Level::Fail,
                "no API key: set MINIMAX_API_KEY or api_key_file in the config",
            )];
        }
        Err(e) => return vec![check("key", Level::Fail, e.to_string())],
    };
    let client = match ApiClient::new(
        settings.api_base.clone(),
        Some(key),
        settings.connect_timeout,
        settings.read_timeout,
    ) {
        Ok(client) => client,
        Err(e) => {
            return vec![check(
                "api",
                Level::Fail,
                format!("cannot set up the HTTP client: {e}"),
            )];
        }
    };
    match client.list_tasks_v2(1, ASKED_PAGE_SIZE).await {
        Ok(page) => vec![
            check(
                "api",
                Level::Ok,
                format!("{} answers; the key is accepted", settings.api_base),
            ),
            clock_check(page.clock_offset),
            page_size_check(&page),
        ],
        Err(error) => vec![api_failure(&settings.api_base, &error)],
    }
}

/// What a failed call means for the operator. Pure.
pub(crate) fn api_failure(base: &Url, error: &ApiError) -> Check {
    // MiniMax's answers to a key it does not know (from the other region,
    // say: it cannot tell them apart), and a gateway's.
    let refused_key = matches!(
        error,
        ApiError::NoKey
            | ApiError::Status {
                code: 1004 | 2049,
                ..
            }
            | ApiError::Http {
                status: 401 | 403,
                ..
            }
    );
    match (error, error.class()) {
        (ApiError::Transport(why), _) => check(
            "api",
            Level::Fail,
            format!(
                "cannot reach {base}: {why}. Check api_base, the network, a proxy, and TLS (the host's CA certificates)"
            ),
        ),
        // Its message names the base and what to check.
        (ApiError::Unreachable { .. }, _) => check("api", Level::Fail, error.to_string()),
        _ if refused_key => check(
            "key",
            Level::Fail,
            format!("{error}. {}", region_hint(base)),
        ),
        (ApiError::Status { .. }, ErrorClass::Account { .. }) => check(
            "account",
            Level::Fail,
            format!(
                "the key is accepted, but the account cannot work now: {error}. See its balance, plan and verification on MiniMax's platform"
            ),
        ),
        (_, ErrorClass::RateLimited { .. }) => check(
            "api",
            Level::Warn,
            format!("{base} answers, but rate-limits this key now: {error}"),
        ),
        _ => check("api", Level::Fail, format!("{base} answered: {error}")),
    }
}

/// Keys work only on their own region's host: which one to try. Pure.
pub(crate) fn region_hint(base: &Url) -> String {
    match base.host_str() {
        Some("api.minimax.io") => "A key from platform.minimaxi.com (mainland China) works only with api_base = \"https://api.minimaxi.com\"".into(),
        Some("api.minimaxi.com") => "A key from platform.minimax.io (international) works only with api_base = \"https://api.minimax.io\"".into(),
        _ => "Check the key, and that it belongs to this api_base's region (api.minimax.io: international; api.minimaxi.com: mainland China)".into(),
    }
}

/// The host's clock against the API's `Date`. Pure.
pub(crate) fn clock_check(offset: Option<i64>) -> Check {
    match offset {
        None => check(
            "clock",
            Level::Warn,
            "the API sent no Date header: the host's clock could not be compared",
        ),
        Some(o) if crate::api::clock::is_off(o) => check(
            "clock",
            Level::Warn,
            format!(
                "this host's clock is {} s {} the API's: downloads still work (URLs are judged on the API's clock), but fix the time (NTP)",
                o.abs(),
                // The offset is the API's clock minus the host's.
                if o > 0 { "behind" } else { "ahead of" },
            ),
        ),
        Some(o) => check(
            "clock",
            Level::Ok,
            format!("within {} s of the API's", o.abs()),
        ),
    }
}

/// What one list page says of the server's page size. Pure.
pub(crate) fn page_size_check(page: &TaskPage) -> Check {
    let served = page.items.len() as u64 + page.unreadable;
    let total = page.total.unwrap_or(served);
    let message = if served == 0 {
        "the v2 task list is empty (the last 7 days): its page size is unknown".to_string()
    } else if served < u64::from(ASKED_PAGE_SIZE) && served < total {
        format!(
            "the v2 task list serves {served} a page (asked {ASKED_PAGE_SIZE}); {total} tasks in the last 7 days: sync pages through them all"
        )
    } else {
        format!("the v2 task list served {served} of {total} tasks on its first page")
    };
    check("list", Level::Ok, message)
}

/// What the file system says of a path doctor would see created: the path
/// itself or, when it does not exist yet, its nearest existing ancestor
/// (where the first write would make the missing directories).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathFacts {
    pub nearest: PathBuf,
    /// `nearest` is the path itself.
    pub exists: bool,
    pub is_dir: bool,
    /// `access(2)`: may this user write it.
    pub writable: bool,
}

impl PathFacts {
    /// Reads them; nothing is written.
    fn of(path: &Path) -> PathFacts {
        let nearest = path
            .ancestors()
            .find(|p| !p.as_os_str().is_empty() && p.exists())
            .unwrap_or(Path::new("."));
        PathFacts {
            exists: nearest == path,
            is_dir: nearest.is_dir(),
            writable: writable(nearest),
            nearest: nearest.to_path_buf(),
        }
    }
}

/// Reachable and writable, never created: a queue that does not exist yet
/// is a warning (the first `enqueue` or `run` creates it).
async fn queue_check(settings: &Settings) -> Check {
    let location = &settings.database;
    if !location.is_postgres() {
        let path = location.sqlite_path();
        if let Some(verdict) = sqlite_verdict(&path, &PathFacts::of(&path)) {
            return verdict;
        }
    }
    match Queue::open_read_only(location).await {
        Ok(queue) => {
            let shown = queue.location().to_string();
            queue.close().await;
            check("queue", Level::Ok, format!("{shown} opens"))
        }
        Err(e) => queue_failure(&location.redacted(), &e),
    }
}

/// A SQLite path before it is opened: a verdict, or `None` to open it.
/// Pure.
pub(crate) fn sqlite_verdict(path: &Path, facts: &PathFacts) -> Option<Check> {
    let shown = path.display();
    let nearest = facts.nearest.display();
    let (level, message) = match facts {
        PathFacts {
            exists: true,
            writable: false,
            ..
        } => (
            Level::Fail,
            format!("{shown} is not writable by this user: fix its owner or mode"),
        ),
        PathFacts { exists: true, .. } => return None,
        PathFacts { is_dir: false, .. } => (
            Level::Fail,
            format!(
                "no queue at {shown} and {nearest} is a file, not a directory: choose another database path"
            ),
        ),
        PathFacts {
            writable: false, ..
        } => (
            Level::Fail,
            format!(
                "no queue at {shown} and {nearest} is not writable: choose another database path"
            ),
        ),
        _ => (
            Level::Warn,
            format!("no queue yet at {shown}: the first enqueue or run creates it"),
        ),
    };
    Some(check("queue", level, message))
}

/// A queue that would not open. An empty PostgreSQL database is what a
/// new SQLite path is: the first `enqueue` or `run` creates the queue in
/// it. Pure.
pub(crate) fn queue_failure(shown: &str, error: &QueueError) -> Check {
    if let QueueError::NoQueueIn { .. } = error {
        return check(
            "queue",
            Level::Warn,
            format!("no queue yet in {shown}: the first enqueue or run creates it"),
        );
    }
    let message = error.to_string();
    // Most errors name the location already.
    let message = match message.contains(shown) {
        true => message,
        false => format!("{shown}: {message}"),
    };
    check("queue", Level::Fail, message)
}

/// May this user write `path`? (`access(2)`: nothing is written.)
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

fn archive_check(dir: &Path) -> Check {
    let facts = PathFacts::of(dir);
    let free = match facts.is_dir {
        true => crate::fetch::file::available_space(&facts.nearest).map_err(|e| e.to_string()),
        false => Err("not a directory".into()),
    };
    archive_verdict(dir, &facts, free)
}

/// The archive directory from its facts and free space. Pure.
pub(crate) fn archive_verdict(dir: &Path, facts: &PathFacts, free: Result<u64, String>) -> Check {
    let shown = dir.display();
    let nearest = facts.nearest.display();
    let fail = |message: String| check("archive", Level::Fail, message);
    if !facts.is_dir {
        return fail(match facts.exists {
            true => format!("{shown} is a file, not a directory: name a directory with --out"),
            false => format!("{nearest} is a file, not a directory: choose another --out"),
        });
    }
    if !facts.writable {
        return fail(format!(
            "{nearest} is not writable by this user: choose another --out or fix its mode"
        ));
    }
    let created = match facts.exists {
        true => "",
        false => " (created by the first download)",
    };
    match free {
        Ok(free) if free < LOW_SPACE => check(
            "archive",
            Level::Warn,
            format!("{shown}{created}: only {} free", human(free)),
        ),
        Ok(free) => check(
            "archive",
            Level::Ok,
            format!("{shown}{created}: writable, {} free", human(free)),
        ),
        Err(e) => check(
            "archive",
            Level::Warn,
            format!("{shown}: free space unknown ({e})"),
        ),
    }
}

fn human(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Is the listen address free? Bound and released at once.
async fn listen_check(addr: &str) -> Check {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            drop(listener);
            check("listen", Level::Ok, format!("{addr} is free"))
        }
        Err(e) => check(
            "listen",
            Level::Fail,
            format!("cannot listen on {addr}: {e}. Stop what holds it or choose another address"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_is_0_only_when_nothing_fails() {
        let ok = check("a", Level::Ok, "");
        let warn = check("b", Level::Warn, "");
        let fail = check("c", Level::Fail, "");
        let cases = [
            (vec![], exit::OK),
            (vec![ok.clone(), warn.clone()], exit::OK),
            (vec![ok, warn, fail.clone()], FAILED),
            (vec![fail], FAILED),
        ];
        for (checks, code) in cases {
            assert_eq!(exit_code(&checks), code, "{checks:?}");
        }
    }

    #[test]
    fn the_clock_is_worth_a_warning_past_a_minute() {
        for (offset, level) in [
            (Some(0), Level::Ok),
            (Some(-60), Level::Ok),
            (Some(61), Level::Warn),
            (Some(-7200), Level::Warn),
            (None, Level::Warn),
        ] {
            assert_eq!(clock_check(offset).level, level, "{offset:?}");
        }
    }

    #[test]
    fn the_region_hint_names_the_other_host() {
        let intl = Url::parse("https://api.minimax.io").unwrap();
        let cn = Url::parse("https://api.minimaxi.com").unwrap();
        assert!(region_hint(&intl).contains("https://api.minimaxi.com"));
        assert!(region_hint(&cn).contains("https://api.minimax.io"));
    }

    #[test]
    fn the_page_size_is_read_from_a_short_first_page() {
        let page = |served: usize, total| TaskPage {
            items: (0..served)
                .map(|n| crate::api::ListedTask {
                    id: n as i64 + 1,
                    status: crate::api::TaskStatus::Generating("queued".into()),
                    created_at: None,
                    not_video: false,
                })
                .collect(),
            total,
            ..TaskPage::default()
        };
        assert!(
            page_size_check(&page(20, Some(476)))
                .message
                .contains("serves 20 a page")
        );
        assert!(
            page_size_check(&page(5, Some(5)))
                .message
                .contains("served 5 of 5")
        );
        assert!(
            page_size_check(&page(0, Some(0)))
                .message
                .contains("unknown")
        );
    }

    #[test]
    fn the_clock_says_which_way_it_is_off() {
        // The offset is the API's clock minus the host's.
        assert!(clock_check(Some(7200)).message.contains("7200 s behind"));
        assert!(clock_check(Some(-7200)).message.contains("7200 s ahead of"));
    }

    #[test]
    fn each_api_failure_names_its_check_and_what_to_do() {
        let base = Url::parse("http://127.0.0.1:9/").unwrap();
        let status = |code| ApiError::Status {
            code,
            message: "m".into(),
            trace_id: None,
        };
        let http = |status| ApiError::Http {
            status,
            endpoint: "http://127.0.0.1:9/v2/query/video_generation".into(),
            retry_after: None,
            trace_id: None,
        };
        let cases = [
            (ApiError::Transport("tls".into()), "api", Level::Fail, "TLS"),
            (
                ApiError::Unreachable {
                    base: base.to_string(),
                    detail: "refused".into(),
                },
                "api",
                Level::Fail,
                "check api_base",
            ),
            (status(1004), "key", Level::Fail, "region"),
            (status(2049), "key", Level::Fail, "region"),
            (http(401), "key", Level::Fail, "region"),
            (ApiError::NoKey, "key", Level::Fail, "MINIMAX_API_KEY"),
            (status(1008), "account", Level::Fail, "balance"),
            (status(2056), "account", Level::Fail, "balance"),
            (status(1002), "api", Level::Warn, "rate-limits"),
            (http(429), "api", Level::Warn, "rate-limits"),
            (http(404), "api", Level::Fail, "check api_base"),
            (http(302), "api", Level::Fail, "check api_base"),
            (status(1000), "api", Level::Fail, "answered"),
        ];
        for (error, name, level, says) in cases {
            let c = api_failure(&base, &error);
            assert_eq!((c.check, c.level), (name, level), "{error}");
            assert!(c.message.contains(says), "{error}: {}", c.message);
        }
    }

    fn facts(nearest: &str, exists: bool, is_dir: bool, writable: bool) -> PathFacts {
        PathFacts {
            nearest: PathBuf::from(nearest),
            exists,
            is_dir,
            writable,
        }
    }

    #[test]
    fn a_sqlite_path_is_judged_before_it_is_opened() {
        let path = Path::new("/q/queue.db");
        let cases = [
            (facts("/q/queue.db", true, false, true), None),
            (
                facts("/q/queue.db", true, false, false),
                Some((Level::Fail, "not writable")),
            ),
            (
                facts("/q", false, true, true),
                Some((Level::Warn, "no queue yet")),
            ),
            (
                facts("/q", false, true, false),
                Some((Level::Fail, "/q is not writable")),
            ),
            (
                facts("/q", false, false, true),
                Some((Level::Fail, "/q is a file, not a directory")),
            ),
        ];
        for (facts, want) in cases {
            let got = sqlite_verdict(path, &facts);
            match (got, want) {
                (None, None) => {}
                (Some(c), Some((level, says))) => {
                    assert_eq!(c.level, level, "{facts:?}");
                    assert!(c.message.contains(says), "{facts:?}: {}", c.message);
                }
                (got, want) => panic!("{facts:?}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn the_archive_must_be_a_writable_directory_with_room() {
        let dir = Path::new("/a/archive");
        let plenty = || Ok(100 << 30);
        let cases = [
            (
                facts("/a/archive", true, true, true),
                plenty(),
                Level::Ok,
                "writable",
            ),
            (
                facts("/a", false, true, true),
                plenty(),
                Level::Ok,
                "created by the first download",
            ),
            (
                facts("/a/archive", true, true, true),
                Ok(1 << 20),
                Level::Warn,
                "only",
            ),
            (
                facts("/a/archive", true, true, true),
                Err("EIO".into()),
                Level::Warn,
                "unknown",
            ),
            (
                facts("/a", false, true, false),
                plenty(),
                Level::Fail,
                "/a is not writable",
            ),
            (
                facts("/a/archive", true, false, true),
                plenty(),
                Level::Fail,
                "is a file",
            ),
            (
                facts("/a", false, false, true),
                plenty(),
                Level::Fail,
                "/a is a file",
            ),
        ];
        for (facts, free, level, says) in cases {
            let c = archive_verdict(dir, &facts, free);
            assert_eq!(c.level, level, "{facts:?}");
            assert!(c.message.contains(says), "{facts:?}: {}", c.message);
        }
    }

    #[test]
    fn an_empty_database_is_a_queue_not_made_yet() {
        let shown = "postgres://u:***@db/q";
        let empty = QueueError::NoQueueIn {
            location: shown.into(),
        };
        let c = queue_failure(shown, &empty);
        assert_eq!(c.level, Level::Warn);
        assert!(c.message.contains("the first enqueue or run creates it"));
        let foreign = QueueError::NotOurs {
            location: shown.into(),
        };
        let c = queue_failure(shown, &foreign);
        assert_eq!(c.level, Level::Fail);
        assert_eq!(c.message.matches(shown).count(), 1, "{}", c.message);
        let c = queue_failure(shown, &QueueError::Sql(sqlx::Error::PoolTimedOut));
        assert!(c.message.starts_with(shown), "{}", c.message);
    }

    #[test]
    fn a_configuration_that_does_not_load_is_a_failed_check() {
        let error = ConfigError::Parse {
            path: "/etc/minimax-dl/config.toml".into(),
            message: "line 1: unclosed array".into(),
        };
        let c = config_failure(&error);
        assert_eq!((c.check, c.level), ("config", Level::Fail));
        assert!(
            c.message.contains("/etc/minimax-dl/config.toml: line 1"),
            "{}",
            c.message
        );
        assert_eq!(exit_code(&[c]), FAILED);
    }
}
