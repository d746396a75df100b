//! `status`: the counts of each state (jobs, then generation tasks), how
//! long the oldest due job has
//! waited, the API-call window, and any cooldown or pause every process
//! sharing the queue obeys.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::open_queue_to_read;
use crate::config::Settings;
use crate::gate::WINDOW;
use crate::queue::{
    FleetState, JobState, Queue, StatusCounts, TaskCounts, describe_delay, now_millis,
};
use crate::runtime::exit;

/// Everything `status` shows, read in one go.
struct Overview {
    counts: StatusCounts,
    tasks: TaskCounts,
    /// How long the earliest due queued job has been waiting, if one is due.
    oldest_due_waiting: Option<Duration>,
    api_calls: u64,
    fleet: FleetState,
}

async fn overview(queue: &Queue) -> Result<Overview> {
    let counts = queue.status().await?;
    let now = now_millis();
    let oldest_due_waiting = queue
        .next_due()
        .await?
        .filter(|due| *due <= now)
        .map(|due| Duration::from_millis((now - due) as u64));
    Ok(Overview {
        counts,
        tasks: queue.task_counts().await?,
        oldest_due_waiting,
        api_calls: queue.api_calls_in_window(WINDOW).await?,
        fleet: queue.fleet_state().await?,
    })
}

pub async fn status(settings: &Settings, as_json: bool) -> Result<u8> {
    let queue = open_queue_to_read(settings).await?;
    out!(
        "{}",
        report(&queue, settings.requests_per_minute, as_json).await?
    );
    Ok(exit::OK)
}

/// What `status` prints, as one block (`status --watch` prints it again at
/// each refresh); `cap` is the configured requests per minute.
pub(super) async fn report(queue: &Queue, cap: u32, as_json: bool) -> Result<String> {
    let seen = overview(queue).await?;
    if as_json {
        return Ok(as_json_line(&seen, cap).to_string());
    }
    let mut lines: Vec<String> = JobState::ALL
        .iter()
        .map(|&state| format!("{:<10} {}", state.as_str(), seen.counts.get(state)))
        .collect();
    let tasks = &seen.tasks;
    lines.push(format!(
        "{:<10} {} tasks (finished {}, failed {}, cancelled {}; {} polls)",
        "generating", tasks.generating, tasks.done, tasks.failed, tasks.cancelled, tasks.polls
    ));
    lines.push(format!("{:<10} {}", "bytes", seen.counts.bytes_done));
    lines.push(match seen.oldest_due_waiting {
        Some(waited) => format!(
            "{:<10} the oldest due job has waited {}",
            "waiting",
            describe_delay(waited.as_millis() as i64)
        ),
        None => format!("{:<10} no job is due", "waiting"),
    });
    lines.push(format!(
        "{:<10} {} calls in the last {} s (cap {cap} a minute, for every process sharing the queue)",
        "api",
        seen.api_calls,
        WINDOW.as_secs()
    ));
    if let Some(left) = seen.fleet.cooldown {
        lines.push(format!(
            "{:<10} no API call for {} after a rate-limit answer",
            "cooldown",
            describe_delay(left.as_millis() as i64)
        ));
    }
    if let Some(pause) = &seen.fleet.pause {
        lines.push(format!(
            "{:<10} {} (paused by {}, for the account of key digest {}; hosts with another key go on); next probe in {}; `run` resumes by itself once a probe succeeds",
            "paused",
            pause.message,
            pause.paused_by,
            pause.account,
            describe_delay(pause.probe_in.as_millis() as i64)
        ));
    }
    Ok(lines.join("\n"))
}

fn as_json_line(seen: &Overview, cap: u32) -> serde_json::Value {
    let mut line = serde_json::to_value(seen.counts).unwrap_or_default();
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let extra = json!({
        "oldest_due_waiting_s": secs(seen.oldest_due_waiting),
        "api_calls_last_window": seen.api_calls,
        "window_s": WINDOW.as_secs(),
        "requests_per_minute": cap,
        "tasks": seen.tasks,
        "cooldown_s": secs(seen.fleet.cooldown),
        "pause": seen.fleet.pause.as_ref().map(|p| json!({
            "message": p.message,
            "paused_by": p.paused_by,
            "account": p.account,
            "probe_in_s": p.probe_in.as_secs_f64(),
        })),
    });
    if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), extra) {
        line.extend(extra);
    }
    line
}
