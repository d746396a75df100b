//! `db copy` on SQLite: reading a queue's history in pages, and taking in
//! jobs copied from another queue as they are.

use std::collections::HashMap;

use sqlx::Row;

use super::{SqliteStore, event_from_row, insert_event};
use crate::queue::{Job, JobEvent, JobState, QueueError};

/// Job ids per statement when reading their history.
const EVENTS_CHUNK: usize = 500;

impl SqliteStore {
    pub(crate) async fn events_of(&self, ids: &[i64]) -> Result<Vec<(i64, JobEvent)>, QueueError> {
        let mut events = Vec::new();
        for chunk in ids.chunks(EVENTS_CHUNK) {
            let placeholders = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "SELECT file_id, at, kind, attempt, message FROM job_events \
                 WHERE file_id IN ({placeholders}) ORDER BY file_id, id"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await? {
                events.push((row.try_get("file_id")?, event_from_row(&row)?));
            }
        }
        Ok(events)
    }

    pub(crate) async fn import(
        &self,
        jobs: &[Job],
        events: &[(i64, JobEvent)],
    ) -> Result<u64, QueueError> {
        let mut tx = self.write_tx().await?;
        let mut added: HashMap<JobState, (i64, i64)> = HashMap::new();
        let mut inserted = std::collections::HashSet::new();
        for job in jobs {
            let rows = sqlx::query(
                "INSERT INTO jobs (file_id, state, attempts, next_attempt_at, lease_owner, \
                   lease_expires_at, cancel_requested, bytes_expected, size_source, bytes_done, \
                   validator, pieces, boot_id, filename, final_path, sha256, last_error, \
                   created_at, updated_at, file_host, task_id, task_api) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22) \
                 ON CONFLICT (file_id) DO NOTHING",
            )
            .bind(job.file_id)
            .bind(job.state.as_str())
            .bind(i64::from(job.attempts))
            .bind(job.next_attempt_at)
            .bind(&job.lease_owner)
            .bind(job.lease_expires_at)
            .bind(job.cancel_requested)
            .bind(job.bytes_expected.map(|b| b as i64))
            .bind(job.size_source.map(|s| s.as_str()))
            .bind(job.bytes_done as i64)
            .bind(&job.validator)
            .bind(&job.pieces)
            .bind(&job.boot_id)
            .bind(&job.filename)
            .bind(&job.final_path)
            .bind(&job.sha256)
            .bind(&job.last_error)
            .bind(job.created_at)
            .bind(job.updated_at)
            .bind(&job.file_host)
            .bind(job.task_id)
            .bind(job.task_api.map(|a| a.as_str()))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if rows == 1 {
                inserted.insert(job.file_id);
                let entry = added.entry(job.state).or_default();
                entry.0 += 1;
                entry.1 += job.bytes_done as i64;
            }
        }
        for (file_id, event) in events.iter().filter(|(id, _)| inserted.contains(id)) {
            insert_event(
                &mut tx,
                *file_id,
                event.at,
                &event.kind,
                event.attempt,
                event.message.as_deref(),
            )
            .await?;
        }
        // Inserts are not counted by a trigger (see migration 0003).
        for (state, (jobs, bytes)) in added {
            sqlx::query(
                "UPDATE job_counts SET jobs = jobs + ?1, bytes = bytes + ?2 WHERE state = ?3",
            )
            .bind(jobs)
            .bind(bytes)
            .bind(state.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(inserted.len() as u64)
    }
}
