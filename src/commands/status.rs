//! `status`: the counts of each state (jobs, then generation tasks), how
//! long the oldest due job has
//! waited, the API-call window and its rate (fixed, or the fleet's
//! adaptive rate as found so far), and any cooldown or pause every process
//! sharing the queue obeys.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::open_queue_to_read;
use crate::config::{RateSettings, RequestRate, Settings};
use crate::gate::{counting_window, limits_of};
use crate::queue::{
    FleetState, HostPause, JobState, Queue, StatusCounts, TaskCounts, describe_delay, now_millis,
};
use crate::rate::RateState;
use crate::runtime::exit;
use crate::worker::{HostPauseKind, read_host_pause};

/// Everything `status` shows, read in one go.
struct Overview {
    counts: StatusCounts,
    tasks: TaskCounts,
    /// How long the earliest due queued job has been waiting, if one is due.
    oldest_due_waiting: Option<Duration>,
    api_calls: u64,
    fleet: FleetState,
    /// The fleet's adaptive rate (None from a queue too old to hold one
    /// that this reader may not upgrade).
    rate: Option<RateState>,
    /// The hosts whose daemon cannot connect to the API (none from a
    /// queue too old to hold them that this reader may not upgrade).
    host_pauses: Vec<HostPause>,
}

async fn overview(queue: &Queue, window: std::time::Duration) -> Result<Overview> {
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
        api_calls: queue.api_calls_in_window(window).await?,
        fleet: queue.fleet_state().await?,
        rate: queue.rate_state().await.ok(),
        host_pauses: queue.host_pauses().await.unwrap_or_default(),
    })
}

pub(crate) async fn status(settings: &Settings, as_json: bool) -> Result<u8> {
    let queue = open_queue_to_read(settings).await?;
    out!("{}", report(&queue, &settings.rate, as_json).await?);
    Ok(exit::OK)
}

/// What `status` prints, as one block (`status --watch` prints it again at
/// each refresh); `rate` is the configured rate.
pub(super) async fn report(queue: &Queue, rate: &RateSettings, as_json: bool) -> Result<String> {
    let window = counting_window(rate.window);
    let seen = overview(queue, window).await?;
    let gate = GateLine::new(&seen, rate);
    if as_json {
        return Ok(as_json_line(&seen, &gate, window).to_string());
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
        "{:<10} {} calls in the last {} s ({}, for every process sharing the queue)",
        "api",
        seen.api_calls,
        window.as_secs(),
        gate.describe()
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
    for pause in &seen.host_pauses {
        let lasted = describe_delay(pause.lasted.as_millis() as i64);
        lines.push(match read_host_pause(&pause.message) {
            (HostPauseKind::ApiUnreachable, message) => format!(
                "{:<10} host {} for {lasted}: {message} (seen by {}; only that host waits, and its daemon resumes by itself once a connection succeeds)",
                "no api", pause.host, pause.paused_by,
            ),
            (HostPauseKind::Archive, message) => format!(
                "{:<10} host {} for {lasted}: {message} (seen by {}; its jobs stay queued, and its daemon resumes by itself once a probe of the bucket succeeds)",
                "no archive", pause.host, pause.paused_by,
            ),
        });
    }
    Ok(lines.join("\n"))
}

/// The rate in force, as `status` says it.
struct GateLine {
    cap: u32,
    ceiling: Option<u32>,
    decreases: u64,
    burst: u32,
}

impl GateLine {
    fn new(seen: &Overview, rate: &RateSettings) -> GateLine {
        let limits = limits_of(rate);
        let state = seen.rate.unwrap_or_default();
        let (cap, ceiling) = match rate.requests {
            RequestRate::Fixed(n) => (n, None),
            RequestRate::Auto { ceiling } => (state.cap(&limits), Some(ceiling)),
        };
        GateLine {
            cap,
            ceiling,
            decreases: state.decreases,
            burst: rate.burst,
        }
    }

    fn describe(&self) -> String {
        match self.ceiling {
            None => format!("cap {} a minute", self.cap),
            Some(ceiling) => format!(
                "auto: {} a minute found so far, at most {ceiling}, lowered {} times by rate-limit answers",
                self.cap, self.decreases
            ),
        }
    }
}

fn as_json_line(seen: &Overview, gate: &GateLine, window: Duration) -> serde_json::Value {
    let mut line = serde_json::to_value(seen.counts).unwrap_or_default();
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let extra = json!({
        "oldest_due_waiting_s": secs(seen.oldest_due_waiting),
        "api_calls_last_window": seen.api_calls,
        "window_s": window.as_secs(),
        "requests_per_minute": gate.cap,
        "rate": {
            "mode": if gate.ceiling.is_some() { "auto" } else { "fixed" },
            "per_minute": gate.cap,
            "ceiling": gate.ceiling,
            "decreases": gate.decreases,
            "burst": gate.burst,
        },
        "tasks": seen.tasks,
        "cooldown_s": secs(seen.fleet.cooldown),
        "pause": seen.fleet.pause.as_ref().map(|p| json!({
            "message": p.message,
            "paused_by": p.paused_by,
            "account": p.account,
            "probe_in_s": p.probe_in.as_secs_f64(),
        })),
        "api_unreachable": host_pauses_json(&seen.host_pauses, HostPauseKind::ApiUnreachable),
        "archive_stopped": host_pauses_json(&seen.host_pauses, HostPauseKind::Archive),
    });
    if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), extra) {
        line.extend(extra);
    }
    line
}

/// The recorded host pauses of one kind, for `status --json`.
fn host_pauses_json(pauses: &[HostPause], kind: HostPauseKind) -> Vec<serde_json::Value> {
    pauses
        .iter()
        .filter_map(|p| {
            let (of_kind, message) = read_host_pause(&p.message);
            (of_kind == kind).then(|| {
                json!({
                    "host": p.host,
                    "message": message,
                    "paused_by": p.paused_by,
                    "lasted_s": p.lasted.as_secs_f64(),
                })
            })
        })
        .collect()
}
