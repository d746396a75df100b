//! Decoding what both stores return in the same shape: a job row, a
//! history line, a table of counts and the fleet row; and binding what both
//! write in the same shape (a copied task, a verified file). Only `attempts` and `cancel_requested` differ in type
//! (SQLite: integers; PostgreSQL: `integer` and `boolean`, which sqlx will
//! not decode as `i64`), so each store decodes those two and hands them in.

use std::str::FromStr;

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};

use std::time::Duration;

use super::{
    FleetPause, FleetState, Job, JobEvent, JobState, StatusCounts, Task, TaskCounts, TaskState,
    VerifiedFile,
};
use crate::ids::TaskApi;
use crate::partial::SizeSource;
use crate::rate::RateState;

/// A job from a row with the columns of `JOB_COLUMNS`.
pub(super) fn job_from_row<'r, R>(
    row: &'r R,
    attempts: u32,
    cancel_requested: bool,
) -> Result<Job, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let text = |name: &'static str| row.try_get::<Option<String>, _>(name);
    let int = |name: &'static str| row.try_get::<Option<i64>, _>(name);
    let state: String = row.try_get("state")?;
    let state = JobState::from_str(&state).map_err(|e| sqlx::Error::Decode(e.into()))?;
    let size_source = text("size_source")?
        .map(|s| SizeSource::from_str(&s))
        .transpose()
        .map_err(|e| sqlx::Error::Decode(e.into()))?;
    let unsigned = |v: Option<i64>| v.map(|v| v.max(0) as u64);
    Ok(Job {
        file_id: row.try_get("file_id")?,
        state,
        attempts,
        next_attempt_at: row.try_get("next_attempt_at")?,
        lease_owner: text("lease_owner")?,
        lease_expires_at: int("lease_expires_at")?,
        cancel_requested,
        bytes_expected: unsigned(int("bytes_expected")?),
        size_source,
        bytes_done: unsigned(int("bytes_done")?).unwrap_or(0),
        validator: text("validator")?,
        pieces: text("pieces")?,
        boot_id: text("boot_id")?,
        filename: text("filename")?,
        final_path: text("final_path")?,
        sha256: text("sha256")?,
        last_error: text("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        file_host: text("file_host")?,
        task_id: int("task_id")?,
        task_api: text("task_api")?.and_then(|a| TaskApi::parse(&a)),
    })
}

/// A generation task from a row with the columns of `TASK_COLUMNS` (every
/// integer a BIGINT on both stores).
pub(super) fn task_from_row<'r, R>(row: &'r R) -> Result<Task, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let api: String = row.try_get("api")?;
    let state: String = row.try_get("state")?;
    Ok(Task {
        task_id: row.try_get("task_id")?,
        api: TaskApi::parse(&api).ok_or_else(|| decode(format!("unknown task api {api:?}")))?,
        state: TaskState::from_str(&state).map_err(decode)?,
        polls: row
            .try_get::<i64, _>("polls")?
            .clamp(0, i64::from(u32::MAX)) as u32,
        next_poll_at: row.try_get("next_poll_at")?,
        deadline_at: row.try_get("deadline_at")?,
        minimax_status: row.try_get("minimax_status")?,
        file_id: row.try_get("file_id")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The columns [`task_from_row`] reads and [`bind_task`] binds, in order.
pub(super) const TASK_COLUMNS: &str = "task_id, api, state, polls, next_poll_at, deadline_at, \
     minimax_status, file_id, last_error, created_at, updated_at";

/// Binds a task's values in the order of `TASK_COLUMNS` (a task copied as
/// it is: one list for both stores, which spell the placeholders).
pub(super) fn bind_task<'q, DB>(
    query: Query<'q, DB, DB::Arguments>,
    task: &Task,
) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
    for<'s> &'s str: Encode<'s, DB> + Type<DB>,
    for<'s> Option<&'s str>: Encode<'s, DB> + Type<DB>,
{
    query
        .bind(task.task_id)
        .bind(task.api.as_str())
        .bind(task.state.as_str())
        .bind(i64::from(task.polls))
        .bind(task.next_poll_at)
        .bind(task.deadline_at)
        .bind(task.minimax_status.as_deref())
        .bind(task.file_id)
        .bind(task.last_error.as_deref())
        .bind(task.created_at)
        .bind(task.updated_at)
}

/// Binds a verified file's values in the order both stores' statement of
/// it takes them: size (as `bytes_done` and `bytes_expected`), its source,
/// the digest, the API's filename, the destination.
pub(super) fn bind_verified<'q, DB>(
    query: Query<'q, DB, DB::Arguments>,
    verified: &VerifiedFile<'_>,
) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    for<'s> &'s str: Encode<'s, DB> + Type<DB>,
    for<'s> Option<&'s str>: Encode<'s, DB> + Type<DB>,
{
    query
        .bind(verified.size as i64)
        .bind(verified.size_source.as_str())
        .bind(verified.sha256)
        .bind(verified.filename)
        .bind(verified.final_path.to_string_lossy().into_owned())
}

/// Rows of `(state, jobs, bytes)` into counts (a state with no row, or
/// NULL sums, counts nothing).
pub(super) fn counts_from_rows<'r, R>(rows: &'r [R]) -> Result<StatusCounts, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut counts = StatusCounts::default();
    for row in rows {
        let state: String = row.try_get("state")?;
        let n = row.try_get::<Option<i64>, _>("jobs")?.unwrap_or(0).max(0) as u64;
        counts.bytes_done += row.try_get::<Option<i64>, _>("bytes")?.unwrap_or(0).max(0) as u64;
        match JobState::from_str(&state) {
            Ok(JobState::Queued) => counts.queued = n,
            Ok(JobState::Running) => counts.running = n,
            Ok(JobState::Done) => counts.done = n,
            Ok(JobState::Failed) => counts.failed = n,
            Ok(JobState::Cancelled) => counts.cancelled = n,
            Err(_) => {}
        }
    }
    Ok(counts)
}

/// Rows of `(state, n, polls)` into the tasks' counts (a state this
/// version does not know counts only its polls).
pub(super) fn task_counts_from_rows<'r, R>(rows: &'r [R]) -> Result<TaskCounts, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut counts = TaskCounts::default();
    for row in rows {
        let state: String = row.try_get("state")?;
        if let Ok(state) = TaskState::from_str(&state) {
            counts.set(state, row.try_get::<i64, _>("n")?.max(0) as u64);
        }
        counts.polls += row.try_get::<i64, _>("polls")?.max(0) as u64;
    }
    Ok(counts)
}

/// A history line (`attempt`, whose type differs, decoded by the store).
pub(super) fn event_from_row<'r, R>(
    row: &'r R,
    attempt: Option<u32>,
) -> Result<JobEvent, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(JobEvent {
        at: row.try_get("at")?,
        kind: row.try_get("kind")?,
        attempt,
        message: row.try_get("message")?,
    })
}

/// The fleet row joined with an account's pause, with `probe_in_ms` and `cooldown_ms` computed against
/// the store's clock (zero or less: nothing left).
pub(super) fn fleet_from_row<'r, R>(row: &'r R) -> Result<FleetState, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let left = |name: &'static str| -> Result<Option<Duration>, sqlx::Error> {
        Ok(row
            .try_get::<Option<i64>, _>(name)?
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(ms as u64)))
    };
    let text = |name: &'static str| row.try_get::<Option<String>, _>(name);
    let pause = match row.try_get::<Option<i64>, _>("paused_at")? {
        None => None,
        Some(_) => Some(FleetPause {
            message: text("pause_message")?.unwrap_or_default(),
            paused_by: text("paused_by")?.unwrap_or_default(),
            account: text("account")?.unwrap_or_default(),
            epoch: row.try_get("pause_epoch")?,
            probe_in: left("probe_in_ms")?.unwrap_or_default(),
        }),
    };
    Ok(FleetState {
        pause,
        cooldown: left("cooldown_ms")?,
    })
}

/// What `--exit-when-idle` counts (columns `queued, abandoned, generating`).
pub(super) fn claimable_from_row<'r, R>(row: &'r R) -> Result<super::Claimable, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let count = |name: &'static str| row.try_get::<i64, _>(name).map(|n| n.max(0) as u64);
    Ok(super::Claimable {
        queued: count("queued")?,
        abandoned: count("abandoned")?,
        generating: count("generating")?,
    })
}

/// A `host_pauses` row (columns `host, message, paused_by, lasted_ms`).
pub(super) fn host_pause_from_row<'r, R>(row: &'r R) -> Result<super::HostPause, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(super::HostPause {
        host: row.try_get("host")?,
        message: row.try_get("message")?,
        paused_by: row.try_get("paused_by")?,
        lasted: Duration::from_millis(row.try_get::<i64, _>("lasted_ms")?.max(0) as u64),
    })
}

/// A job's `uploads` row (columns `object_url, upload_id, etag, version`).
pub(super) fn upload_from_row<'r, R>(row: &'r R) -> Result<super::Upload, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(super::Upload {
        object_url: row.try_get("object_url")?,
        upload_id: row.try_get("upload_id")?,
        etag: row.try_get("etag")?,
        version: row.try_get("version")?,
    })
}

/// The shared rate row (`api_rate`'s columns per_minute, window_start,
/// probing, decreases, last_decrease). `probing` is a boolean on
/// PostgreSQL and an integer on SQLite: each store decodes it and hands
/// it in.
pub(super) fn rate_from_row<'r, R>(row: &'r R, probing: bool) -> Result<RateState, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    f64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(RateState {
        per_minute: row.try_get("per_minute")?,
        window_start: row.try_get("window_start")?,
        probing,
        decreases: row.try_get::<i64, _>("decreases")?.max(0) as u64,
        last_decrease: row.try_get("last_decrease")?,
    })
}
