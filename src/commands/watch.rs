//! `status --watch`: the status block again every interval until Ctrl-C.
//! On a terminal the screen is redrawn in place, like `watch`; into a pipe
//! or a file each refresh is appended under a time stamp (with `--json`,
//! one JSON object a line), so a log of it reads top to bottom.

use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::open_queue_to_read;
use super::status::report;
use crate::config::Settings;
use crate::runtime::{OnStop, exit, spawn_signal_handler};

/// Clears the screen and puts the cursor top left.
const CLEAR: &str = "\x1b[H\x1b[2J";

pub(crate) async fn watch(settings: &Settings, as_json: bool, interval: Duration) -> Result<u8> {
    let queue = open_queue_to_read(settings).await?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), None, OnStop::Finish);
    let tty = std::io::stdout().is_terminal();
    loop {
        // A busy or briefly failing database is shown, not fatal.
        let block = report(&queue, &settings.rate, as_json)
            .await
            .unwrap_or_else(|e| format!("cannot read the queue: {e:#}"));
        out!(
            "{}",
            frame(&block, SystemTime::now(), interval, tty, as_json)
        );
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    queue.close().await;
    Ok(exit::OK)
}

/// One refresh as printed: redrawn under a header on a terminal, appended
/// under a time stamp elsewhere, bare for `--json` into a pipe.
fn frame(block: &str, at: SystemTime, interval: Duration, tty: bool, as_json: bool) -> String {
    let stamp = humantime::format_rfc3339_seconds(at);
    match (tty, as_json) {
        (true, _) => format!(
            "{CLEAR}Every {}: minimax-dl status    {stamp}\n\n{block}",
            humantime::format_duration(interval)
        ),
        (false, true) => block.to_string(),
        (false, false) => format!("--- {stamp}\n{block}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Duration = Duration::from_secs(1_700_000_000);

    #[test]
    fn a_terminal_is_redrawn_in_place_under_a_header() {
        let f = frame(
            "queued 1",
            SystemTime::UNIX_EPOCH + AT,
            Duration::from_secs(2),
            true,
            false,
        );
        assert!(f.starts_with(CLEAR), "{f:?}");
        assert!(
            f.contains("Every 2s") && f.contains("2023-11-14T22:13:20Z"),
            "{f:?}"
        );
        assert!(f.ends_with("\n\nqueued 1"), "{f:?}");
    }

    #[test]
    fn a_pipe_gets_appended_blocks_without_escape_codes() {
        let at = SystemTime::UNIX_EPOCH + AT;
        let f = frame("queued 1", at, Duration::from_secs(2), false, false);
        assert_eq!(f, "--- 2023-11-14T22:13:20Z\nqueued 1");
        let json = frame("{\"queued\":1}", at, Duration::from_secs(2), false, true);
        assert_eq!(json, "{\"queued\":1}", "one JSON object a line");
    }
}
