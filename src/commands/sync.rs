//! `sync [--since DATE]`: the account's v2 task list into the queue (see
//! `intake::sync`), every page under the rate gate shared with `run`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use tokio_util::sync::CancellationToken;

use super::open_queue;
use crate::api::{ApiClient, ErrorClass};
use crate::config::Settings;
use crate::gate::RateGate;
use crate::intake::{SyncError, SyncOptions, SyncReport};
use crate::runtime::{OnStop, exit, spawn_signal_handler};
use crate::say;

pub(crate) async fn sync(settings: &Settings, since: Option<&str>, page_size: u32) -> Result<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let since = since
        .map(|raw| parse_since(raw, now))
        .transpose()
        .map_err(|e| anyhow!("--since: {e}"))?;
    let key = settings.api_key.clone().map_err(|e| anyhow!("{e}"))?;
    let api = ApiClient::new(
        settings.api_base.clone(),
        key,
        settings.connect_timeout,
        settings.read_timeout,
    )
    .context("cannot set up the HTTP client")?;
    let queue = open_queue(settings).await?;
    let gate = Arc::new(RateGate::configured(settings.rate, Some(queue.clone())));
    let cancel = CancellationToken::new();
    let interrupt = spawn_signal_handler(cancel.clone(), None, OnStop::Interrupt);
    let options = SyncOptions {
        since,
        page_size,
        deadline: settings.tasks.deadline,
    };
    let result = crate::intake::sync(&api, &gate, &queue, options, &cancel).await;
    queue.close().await;
    match result {
        Ok(report) => print_report(&report),
        Err(SyncError::Stopped) => Ok(interrupt.code().unwrap_or(exit::INTERRUPTED)),
        Err(SyncError::Api { error, page })
            if matches!(error.class(), ErrorClass::Account { .. }) =>
        {
            say!("minimax-dl: sync stopped at page {page}: {error}");
            Ok(exit::ACCOUNT)
        }
        Err(e) => Err(e.into()),
    }
}

fn print_report(report: &SyncReport) -> Result<u8> {
    let skipped = report.skipped_failed + report.skipped_not_video + report.skipped_old;
    out!(
        "listed {} tasks in {} pages: {} new ({} already finished: their videos are queued), {} already known, {} skipped",
        report.listed,
        report.pages,
        report.added,
        report.handed_over,
        report.known,
        skipped
    );
    if skipped + report.unreadable > 0 {
        out!(
            "skipped: {} failed, cancelled or expired; {} not video; {} before --since; {} without a usable id",
            report.skipped_failed,
            report.skipped_not_video,
            report.skipped_old,
            report.unreadable
        );
    }
    Ok(exit::OK)
}

/// `--since`: a date (`2026-07-01`), a date and time
/// (`2026-07-01T12:00:00Z`, UTC unless it says), or an age (`2d`, `12h`)
/// before `now`. Unix seconds. Pure.
pub(crate) fn parse_since(raw: &str, now: i64) -> Result<i64, String> {
    let raw = raw.trim();
    if let Ok(age) = humantime::parse_duration(raw) {
        return Ok(now - age.as_secs().min(i64::MAX as u64) as i64);
    }
    let full = if raw.len() == 10 {
        format!("{raw}T00:00:00Z")
    } else {
        raw.to_string()
    };
    humantime::parse_rfc3339_weak(&full)
        .map_err(|_| {
            format!(
                "{} is not a date (2026-07-01), a date and time (2026-07-01T12:00:00Z) or an age (2d)",
                crate::ids::quoted(raw)
            )
        })
        .map(|t| {
            t.duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs() as i64
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_dates_times_and_ages() {
        let now = 1_785_225_940;
        assert_eq!(parse_since("2026-07-01", now), Ok(1_782_864_000));
        assert_eq!(parse_since("2026-07-01T12:00:00Z", now), Ok(1_782_907_200));
        assert_eq!(parse_since("2026-07-01 12:00:00", now), Ok(1_782_907_200));
        assert_eq!(parse_since("2d", now), Ok(now - 2 * 86_400));
        assert_eq!(parse_since("12h", now), Ok(now - 12 * 3600));
        let err = parse_since("yesterday", now).unwrap_err();
        assert!(err.starts_with("\"yesterday\" is not a date"), "{err}");
        let err = parse_since("\u{feff}2026-07-01", now).unwrap_err();
        assert!(err.starts_with("\"<U+FEFF>2026-07-01\" is not"), "{err}");
    }
}
