//! `show`: one job and its history, or one generation task.

use anyhow::{Result, bail};
use serde_json::json;

use super::{file_ids, job_json, open_queue_to_read, rfc3339, task_json};
use crate::config::Settings;
use crate::queue::{Job, JobEvent, JobState, Task, TaskState, state};
use crate::runtime::exit;

fn event_json(event: &JobEvent) -> serde_json::Value {
    json!({
        "at": rfc3339(event.at),
        "kind": event.kind,
        "attempt": state::shown_attempt(&event.kind, event.attempt),
        "message": event.message,
    })
}

pub(crate) async fn show(settings: &Settings, raw_id: &str, as_json: bool) -> Result<u8> {
    let id = file_ids(&[raw_id.to_string()])?[0];
    let queue = open_queue_to_read(settings).await?;
    let task = queue.get_task(id).await?;
    let Some(job) = queue.get(id).await? else {
        return match task {
            Some(task) => show_task(&task, as_json),
            None => bail!(
                "{id} is not in the queue at {} (neither a file nor a generation task)",
                queue.location()
            ),
        };
    };
    let events = queue.events(id).await?;
    if as_json {
        return print_json(&job, &events, task.as_ref());
    }
    print_job(&job, &events, task.as_ref())
}

/// `show --json` of a job: its fields, its history and its task.
fn print_json(job: &Job, events: &[JobEvent], task: Option<&Task>) -> Result<u8> {
    let mut value = job_json(job);
    value["size_source"] = json!(job.size_source);
    value["next_attempt_at"] = json!(rfc3339(job.next_attempt_at));
    value["lease_owner"] = json!(job.lease_owner);
    value["file_host"] = json!(job.file_host);
    value["events"] = events.iter().map(event_json).collect();
    if let Some(task) = task {
        value["task"] = task_json(task);
    }
    out!("{value}");
    Ok(exit::OK)
}

/// A job in words: its fields, its history line by line, then its task.
fn print_job(job: &Job, events: &[JobEvent], task: Option<&Task>) -> Result<u8> {
    out!("file_id        {}", job.file_id);
    out!("state          {}", job.state);
    out!(
        "attempts       {} failed (counted against max_attempts)",
        job.attempts
    );
    let expected = job
        .bytes_expected
        .map_or("unknown".to_string(), |b| b.to_string());
    let source = job
        .size_source
        .map_or(String::new(), |s| format!(" (size from {})", s.as_str()));
    out!("bytes          {} of {expected}{source}", job.bytes_done);
    if let Some(name) = &job.filename {
        out!("filename       {name}");
    }
    if let Some(path) = &job.final_path {
        out!("path           {path}");
    }
    if let (JobState::Done, Some(host), Some(path)) = (job.state, &job.file_host, &job.final_path) {
        out!("file           held by host {host} at {path}");
    }
    if let Some(sha) = &job.sha256 {
        out!("sha256         {sha}");
    }
    if job.state == JobState::Queued && job.next_attempt_at > crate::queue::now_millis() {
        out!("next attempt   {}", rfc3339(job.next_attempt_at));
    }
    if let Some(owner) = &job.lease_owner {
        out!("worker         {owner}");
    }
    if let Some(err) = &job.last_error {
        out!("last error     {err}");
    }
    out!("created        {}", rfc3339(job.created_at));
    out!("history:");
    out!("  {}  enqueued", rfc3339(job.created_at));
    for e in events {
        let attempt = state::shown_attempt(&e.kind, e.attempt)
            .map_or(String::new(), |a| format!(" (failed attempt {a})"));
        out!(
            "  {}  {}{}: {}",
            rfc3339(e.at),
            e.kind,
            attempt,
            e.message.as_deref().unwrap_or("")
        );
    }
    if let Some(task) = task {
        out!("task:");
        return show_task(task, false);
    }
    Ok(exit::OK)
}

/// A generation task: where it is, what MiniMax last said, what it became.
fn show_task(task: &Task, as_json: bool) -> Result<u8> {
    if as_json {
        out!("{}", task_json(task));
        return Ok(exit::OK);
    }
    out!("task_id        {} ({})", task.task_id, task.api);
    out!("state          {}", task.state);
    out!("polls          {}", task.polls);
    match (task.state, task.file_id) {
        (TaskState::Generating, _) => {
            if let Some(status) = &task.minimax_status {
                out!("minimax says   {status}");
            }
            out!("next poll      {}", rfc3339(task.next_poll_at));
            out!("deadline       {}", rfc3339(task.deadline_at));
        }
        (TaskState::Done, Some(file_id)) => {
            out!("job            {file_id} (minimax-dl show {file_id})")
        }
        _ => {}
    }
    if let Some(err) = &task.last_error {
        out!("last error     {err}");
    }
    out!("created        {}", rfc3339(task.created_at));
    out!("updated        {}", rfc3339(task.updated_at));
    Ok(exit::OK)
}
