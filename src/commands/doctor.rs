//! `minimax-dl doctor`: the first command to run on a new host. Read-only
//! and cheap: it looks at the configuration, makes one API call that costs
//! no quota (a page of the v2 task list), and checks the queue, the archive
//! and the listen address without creating or changing any of them. One
//! line per check (ok / warn / fail and what to do), `--json` for scripts;
//! exit 0 only when nothing fails.

use std::path::Path;

use anyhow::Result;
use reqwest::Url;
use serde::Serialize;

use crate::api::{ApiClient, ApiError, ErrorClass, TaskPage};
use crate::config::Settings;
use crate::queue::Queue;
use crate::runtime::exit;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
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

pub async fn doctor(settings: &Settings, json: bool) -> Result<u8> {
    let mut checks = vec![config_check(settings)];
    checks.extend(api_checks(settings).await);
    checks.push(queue_check(settings).await);
    checks.push(archive_check(&settings.output_dir));
    if let Some(listen) = &settings.listen {
        checks.push(listen_check(&listen.addr).await);
    }
    print(&checks, json)
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
pub fn exit_code(checks: &[Check]) -> u8 {
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
pub fn api_failure(base: &Url, error: &ApiError) -> Check {
    match (error, error.class()) {
        (ApiError::Transport(why), _) => check(
            "api",
            Level::Fail,
            format!(
                "cannot reach {base}: {why}. Check api_base, the network, a proxy, and TLS (the host's CA certificates)"
            ),
        ),
        (_, ErrorClass::Account { .. }) => check(
            "key",
            Level::Fail,
            format!("{error}. {}", region_hint(base)),
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
pub fn region_hint(base: &Url) -> String {
    match base.host_str() {
        Some("api.minimax.io") => "A key from platform.minimaxi.com (mainland China) works only with api_base = \"https://api.minimaxi.com\"".into(),
        Some("api.minimaxi.com") => "A key from platform.minimax.io (international) works only with api_base = \"https://api.minimax.io\"".into(),
        _ => "Check the key, and that it belongs to this api_base's region (api.minimax.io: international; api.minimaxi.com: mainland China)".into(),
    }
}

/// The host's clock against the API's `Date`. Pure.
pub fn clock_check(offset: Option<i64>) -> Check {
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
                "this host's clock is {o} s off the API's: downloads still work (URLs are judged on the API's clock), but fix the time (NTP)"
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
pub fn page_size_check(page: &TaskPage) -> Check {
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

/// Reachable and writable, never created: a SQLite file that does not
/// exist yet is a warning (the first `enqueue` or `run` creates it).
async fn queue_check(settings: &Settings) -> Check {
    let location = &settings.database;
    if !location.is_postgres() {
        let path = location.sqlite_path();
        if !path.exists() {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let nearest = parent.ancestors().find(|p| p.exists()).unwrap_or(parent);
            return match writable(nearest) {
                true => check(
                    "queue",
                    Level::Warn,
                    format!(
                        "no queue yet at {}: the first enqueue or run creates it",
                        path.display()
                    ),
                ),
                false => check(
                    "queue",
                    Level::Fail,
                    format!(
                        "no queue at {} and {} is not writable: choose another database path",
                        path.display(),
                        nearest.display()
                    ),
                ),
            };
        }
        if !writable(&path) {
            return check(
                "queue",
                Level::Fail,
                format!(
                    "{} is not writable by this user: fix its owner or mode",
                    path.display()
                ),
            );
        }
    }
    match Queue::open_read_only(location).await {
        Ok(queue) => {
            let shown = queue.location().to_string();
            queue.close().await;
            check("queue", Level::Ok, format!("{shown} opens"))
        }
        Err(e) => check(
            "queue",
            Level::Fail,
            format!("{}: {e}", location.redacted()),
        ),
    }
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
    let nearest = dir.ancestors().find(|p| p.exists()).unwrap_or(dir);
    if !writable(nearest) {
        return check(
            "archive",
            Level::Fail,
            format!(
                "{} is not writable by this user: choose another --out or fix its mode",
                nearest.display()
            ),
        );
    }
    let created = if nearest == dir {
        ""
    } else {
        " (created by the first download)"
    };
    match crate::fetch::file::available_space(nearest) {
        Ok(free) if free < LOW_SPACE => check(
            "archive",
            Level::Warn,
            format!("{}{created}: only {} free", dir.display(), human(free)),
        ),
        Ok(free) => check(
            "archive",
            Level::Ok,
            format!("{}{created}: writable, {} free", dir.display(), human(free)),
        ),
        Err(e) => check(
            "archive",
            Level::Warn,
            format!("{}: free space unknown ({e})", dir.display()),
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
}
