//! `db copy` on PostgreSQL: reading a queue's history in pages, and taking
//! in jobs copied from another queue as they are, a page in two statements
//! (one array per column). The statement triggers count the new jobs, and
//! wake the fleet for those that arrive queued.

use std::collections::HashSet;

use sqlx::{PgConnection, Row};

use super::PgStore;
use crate::queue::{Job, JobEvent, QueueError};

/// The columns of a job, each as an array over a page of jobs.
#[derive(Default)]
struct JobColumns<'a> {
    file_id: Vec<i64>,
    state: Vec<&'a str>,
    attempts: Vec<i32>,
    next_attempt_at: Vec<i64>,
    lease_owner: Vec<Option<&'a str>>,
    lease_expires_at: Vec<Option<i64>>,
    cancel_requested: Vec<bool>,
    bytes_expected: Vec<Option<i64>>,
    size_source: Vec<Option<&'a str>>,
    bytes_done: Vec<i64>,
    validator: Vec<Option<&'a str>>,
    pieces: Vec<Option<&'a str>>,
    boot_id: Vec<Option<&'a str>>,
    filename: Vec<Option<&'a str>>,
    final_path: Vec<Option<&'a str>>,
    sha256: Vec<Option<&'a str>>,
    last_error: Vec<Option<&'a str>>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    file_host: Vec<Option<&'a str>>,
    task_id: Vec<Option<i64>>,
    task_api: Vec<Option<&'static str>>,
}

impl<'a> JobColumns<'a> {
    fn of(jobs: &'a [Job]) -> JobColumns<'a> {
        let mut c = JobColumns::default();
        for job in jobs {
            c.file_id.push(job.file_id);
            c.state.push(job.state.as_str());
            c.attempts
                .push(i32::try_from(job.attempts).unwrap_or(i32::MAX));
            c.next_attempt_at.push(job.next_attempt_at);
            c.lease_owner.push(job.lease_owner.as_deref());
            c.lease_expires_at.push(job.lease_expires_at);
            c.cancel_requested.push(job.cancel_requested);
            c.bytes_expected.push(job.bytes_expected.map(|b| b as i64));
            c.size_source.push(job.size_source.map(|s| s.as_str()));
            c.bytes_done.push(job.bytes_done as i64);
            c.validator.push(job.validator.as_deref());
            c.pieces.push(job.pieces.as_deref());
            c.boot_id.push(job.boot_id.as_deref());
            c.filename.push(job.filename.as_deref());
            c.final_path.push(job.final_path.as_deref());
            c.sha256.push(job.sha256.as_deref());
            c.last_error.push(job.last_error.as_deref());
            c.created_at.push(job.created_at);
            c.updated_at.push(job.updated_at);
            c.file_host.push(job.file_host.as_deref());
            c.task_id.push(job.task_id);
            c.task_api.push(job.task_api.map(|a| a.as_str()));
        }
        c
    }
}

impl PgStore {
    pub(crate) async fn events_of(&self, ids: &[i64]) -> Result<Vec<(i64, JobEvent)>, QueueError> {
        let rows = sqlx::query(
            "SELECT file_id, at, kind, attempt, message FROM job_events \
             WHERE file_id = ANY($1::bigint[]) ORDER BY file_id, id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("file_id")?, super::event_from_row(row)?)))
            .collect()
    }

    /// Ids already here are left alone, and so is their history.
    pub(crate) async fn import(
        &self,
        jobs: &[Job],
        events: &[(i64, JobEvent)],
    ) -> Result<u64, QueueError> {
        let mut tx = self.pool.begin().await?;
        let inserted = insert_jobs(&mut tx, jobs).await?;
        insert_events(&mut tx, events, &inserted).await?;
        tx.commit().await?;
        Ok(inserted.len() as u64)
    }
}

/// The jobs not here yet, one statement of column arrays; the ids it
/// inserted.
async fn insert_jobs(conn: &mut PgConnection, jobs: &[Job]) -> Result<HashSet<i64>, QueueError> {
    let c = JobColumns::of(jobs);
    let inserted: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO jobs (file_id, state, attempts, next_attempt_at, lease_owner, \
           lease_expires_at, cancel_requested, bytes_expected, size_source, bytes_done, \
           validator, pieces, boot_id, filename, final_path, sha256, last_error, \
           created_at, updated_at, file_host, task_id, task_api) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::integer[], $4::bigint[], \
           $5::text[], $6::bigint[], $7::boolean[], $8::bigint[], $9::text[], $10::bigint[], \
           $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], \
           $17::text[], $18::bigint[], $19::bigint[], $20::text[], $21::bigint[], $22::text[]) \
         ON CONFLICT (file_id) DO NOTHING RETURNING file_id",
    )
    .bind(&c.file_id)
    .bind(&c.state)
    .bind(&c.attempts)
    .bind(&c.next_attempt_at)
    .bind(&c.lease_owner)
    .bind(&c.lease_expires_at)
    .bind(&c.cancel_requested)
    .bind(&c.bytes_expected)
    .bind(&c.size_source)
    .bind(&c.bytes_done)
    .bind(&c.validator)
    .bind(&c.pieces)
    .bind(&c.boot_id)
    .bind(&c.filename)
    .bind(&c.final_path)
    .bind(&c.sha256)
    .bind(&c.last_error)
    .bind(&c.created_at)
    .bind(&c.updated_at)
    .bind(&c.file_host)
    .bind(&c.task_id)
    .bind(&c.task_api)
    .fetch_all(conn)
    .await?;
    Ok(inserted.into_iter().collect())
}

/// The history of the jobs just inserted, in the order given (oldest first
/// per job), which the identity column keeps.
async fn insert_events(
    conn: &mut PgConnection,
    events: &[(i64, JobEvent)],
    inserted: &HashSet<i64>,
) -> Result<(), QueueError> {
    let events: Vec<&(i64, JobEvent)> = events
        .iter()
        .filter(|(id, _)| inserted.contains(id))
        .collect();
    sqlx::query(
        "INSERT INTO job_events (file_id, at, kind, attempt, message) \
         SELECT file_id, at, kind, attempt, message \
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::integer[], $5::text[]) \
           WITH ORDINALITY AS e(file_id, at, kind, attempt, message, n) \
         ORDER BY n",
    )
    .bind(events.iter().map(|(id, _)| *id).collect::<Vec<i64>>())
    .bind(events.iter().map(|(_, e)| e.at).collect::<Vec<i64>>())
    .bind(
        events
            .iter()
            .map(|(_, e)| e.kind.as_str())
            .collect::<Vec<&str>>(),
    )
    .bind(
        events
            .iter()
            .map(|(_, e)| e.attempt.map(|a| i32::try_from(a).unwrap_or(i32::MAX)))
            .collect::<Vec<Option<i32>>>(),
    )
    .bind(
        events
            .iter()
            .map(|(_, e)| e.message.as_deref())
            .collect::<Vec<Option<&str>>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}
