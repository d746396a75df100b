//! The lease protocol on SQLite: claims, and the statements of heartbeats
//! and every worker write (what they record and whether the lease held is
//! `orchestrate/lease.rs`'s), each matching only while its owner holds the
//! lease.

use std::collections::HashSet;
use std::time::Duration;

use super::{JOB_COLUMNS, SqliteStore, insert_event, job_from_row};
use crate::partial::{ExpectedSize, Resume};
use crate::queue::error::lease_held;
use crate::queue::group_commit::Completion;
use crate::queue::orchestrate::{Dialect, Failure, LeaseStatements, LeasedWrite};
use crate::queue::rows::bind_verified;
use crate::queue::{Job, QueueError, millis_after, now_millis, owner_host};

/// The job's partial file is on another host than the claimer (`?5`).
const OTHER_HOST: &str = "(file_host IS NOT NULL AND file_host <> ?5)";

/// Which jobs a claim may take.
#[derive(Clone, Copy, Debug)]
enum Pick<'a> {
    /// Up to this many due jobs, unless this account is paused.
    Due(usize, &'a str),
    /// This job, due or not (`fetch ID`).
    One(i64),
}

impl SqliteStore {
    pub(crate) async fn claim_batch(
        &self,
        owner: &str,
        account: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Job>, QueueError> {
        self.claim_where(owner, lease, Pick::Due(limit.max(1), account))
            .await
    }

    pub(crate) async fn claim_id(
        &self,
        file_id: i64,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Job>, QueueError> {
        Ok(self
            .claim_where(owner, lease, Pick::One(file_id))
            .await?
            .pop())
    }

    /// One UPDATE, atomic on its own: SQLite takes the write lock before the
    /// statement reads, so the choice and the lease cannot race another
    /// process. The history line comes from a trigger (migration 0005).
    async fn claim_where(
        &self,
        owner: &str,
        lease: Duration,
        pick: Pick<'_>,
    ) -> Result<Vec<Job>, QueueError> {
        let now = now_millis();
        let (chosen, parameter, account) = match pick {
            // Abandoned leases first (few, and the oldest work), then the
            // earliest due queued jobs: two indexed look-ups, not one OR.
            // Nothing while this account is paused for an account-level answer.
            Pick::Due(limit, account) => (
                "NOT EXISTS (SELECT 1 FROM account_pauses \
                   WHERE account = ?6 AND paused_at IS NOT NULL) AND file_id IN ( \
                   SELECT file_id FROM (SELECT file_id FROM jobs \
                     WHERE state = 'running' AND lease_expires_at < ?3 \
                     ORDER BY next_attempt_at, file_id LIMIT ?4) \
                   UNION ALL \
                   SELECT file_id FROM (SELECT file_id FROM jobs \
                     WHERE state = 'queued' AND next_attempt_at <= ?3 \
                     ORDER BY next_attempt_at, file_id LIMIT ?4) \
                   LIMIT ?4)",
                limit as i64,
                Some(account),
            ),
            Pick::One(id) => (
                "file_id = ?4 AND (state = 'queued' OR (state = 'running' AND lease_expires_at < ?3))",
                id,
                None,
            ),
        };
        // Another host's partial bytes are not ours: a claim by a host other
        // than the one recorded starts from its own partial file (none,
        // usually). NULL, from before the column, counts as ours.
        let query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'running', lease_owner = ?1, lease_expires_at = ?2, updated_at = ?3, \
             bytes_done = CASE WHEN {OTHER_HOST} THEN 0 ELSE bytes_done END, \
             validator = CASE WHEN {OTHER_HOST} THEN NULL ELSE validator END, \
             pieces = CASE WHEN {OTHER_HOST} THEN NULL ELSE pieces END, \
             sha256 = CASE WHEN {OTHER_HOST} THEN NULL ELSE sha256 END, \
             boot_id = CASE WHEN {OTHER_HOST} THEN NULL ELSE boot_id END, \
             file_host = ?5 \
             WHERE {chosen} RETURNING {JOB_COLUMNS}"
        )))
        .bind(owner)
        .bind(millis_after(now, lease))
        .bind(now)
        .bind(parameter)
        .bind(owner_host(owner));
        let query = match account {
            Some(account) => query.bind(account),
            None => query,
        };
        let rows = query.fetch_all(&self.writer).await?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|job| (job.next_attempt_at, job.file_id));
        Ok(jobs)
    }

    pub(crate) async fn expire_leases_of_dead_owners(
        &self,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<u64, QueueError> {
        let owners: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT lease_owner FROM jobs WHERE state = 'running' AND lease_owner IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        let mut freed = 0;
        for owner in owners.iter().filter(|o| is_dead(o)) {
            freed += sqlx::query(
                "UPDATE jobs SET lease_expires_at = 0 WHERE state = 'running' AND lease_owner = ?1",
            )
            .bind(owner)
            .execute(&self.writer)
            .await?
            .rows_affected();
        }
        Ok(freed)
    }

    pub(crate) async fn checkpoint(
        &self,
        file_id: i64,
        owner: &str,
        progress: &Resume,
        expected: Option<ExpectedSize>,
    ) -> Result<(), QueueError> {
        let result = sqlx::query(
            "UPDATE jobs SET bytes_done = ?1, bytes_expected = ?2, size_source = ?3, validator = ?4, \
             pieces = ?8, boot_id = ?9, updated_at = ?5 \
             WHERE file_id = ?6 AND state = 'running' AND lease_owner = ?7",
        )
        .bind(progress.bytes_done as i64)
        .bind(expected.map(|e| e.bytes as i64))
        .bind(expected.map(|e| e.source.as_str()))
        .bind(progress.validator.as_deref())
        .bind(now_millis())
        .bind(file_id)
        .bind(owner)
        .bind(progress.pieces.as_deref())
        .bind(progress.boot_id.as_deref())
        .execute(&self.writer)
        .await?;
        lease_held(result.rows_affected(), file_id)
    }

    /// Many completions in one UPDATE (atomic on its own; the history lines
    /// come from a trigger, migration 0005). Returns the jobs whose lease was
    /// still held: the others were reclaimed or cancelled meanwhile.
    pub(crate) async fn complete_many(
        &self,
        completions: &[Completion],
    ) -> Result<HashSet<i64>, QueueError> {
        let rows: Vec<(i64, &str, &str)> = completions
            .iter()
            .map(|c| (c.file_id, c.owner.as_str(), c.path.as_str()))
            .collect();
        let rows = serde_json::to_string(&rows).expect("completions serialise");
        let done: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'done', final_path = c.path, lease_owner = NULL, \
             lease_expires_at = NULL, last_error = NULL, cancel_requested = 0, updated_at = ?1 \
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS owner, value ->> 2 AS path \
                   FROM json_each(?2)) AS c \
             WHERE jobs.file_id = c.id AND jobs.state = 'running' AND jobs.lease_owner = c.owner \
             RETURNING file_id",
        )
        .bind(now_millis())
        .bind(rows)
        .fetch_all(&self.writer)
        .await?;
        Ok(done.into_iter().collect())
    }
}

impl LeaseStatements for SqliteStore {
    /// The update and its history line in one write transaction.
    async fn write_leased(
        &self,
        file_id: i64,
        owner: &str,
        write: LeasedWrite<'_>,
        kind: &str,
        message: &str,
    ) -> Result<u64, sqlx::Error> {
        let mut tx = self.begin().await?;
        let now = tx.now;
        let update = match write {
            LeasedWrite::Verified(verified) => bind_verified(
                sqlx::query(
                    "UPDATE jobs SET bytes_done = ?1, bytes_expected = ?1, size_source = ?2, sha256 = ?3, \
                     pieces = NULL, filename = ?4, final_path = ?5, updated_at = ?6 \
                     WHERE file_id = ?7 AND state = 'running' AND lease_owner = ?8",
                ),
                verified,
            )
            .bind(now)
            .bind(file_id)
            .bind(owner),
            LeasedWrite::Cleared => sqlx::query(
                "UPDATE jobs SET sha256 = NULL, bytes_done = 0, validator = NULL, pieces = NULL, \
                 updated_at = ?1 WHERE file_id = ?2 AND state = 'running' AND lease_owner = ?3",
            )
            .bind(now)
            .bind(file_id)
            .bind(owner),
            LeasedWrite::Released {
                reason,
                not_before,
                reason_kept,
            } => sqlx::query(
                "UPDATE jobs SET state = 'queued', next_attempt_at = ?1, \
                 last_error = CASE WHEN ?2 THEN ?3 ELSE last_error END, \
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = ?4 \
                 WHERE file_id = ?5 AND state = 'running' AND lease_owner = ?6",
            )
            .bind(not_before)
            .bind(reason_kept.sets_last_error())
            .bind(reason)
            .bind(now)
            .bind(file_id)
            .bind(owner),
            LeasedWrite::Cancelled => sqlx::query(
                "UPDATE jobs SET state = 'cancelled', cancel_requested = 0, lease_owner = NULL, \
                 lease_expires_at = NULL, updated_at = ?1 \
                 WHERE file_id = ?2 AND state = 'running' AND lease_owner = ?3",
            )
            .bind(now)
            .bind(file_id)
            .bind(owner),
        };
        let written = update.execute(&mut *tx.tx).await?.rows_affected();
        if written == 1 {
            insert_event(&mut tx.tx, file_id, now, kind, None, Some(message)).await?;
        }
        tx.tx.commit().await?;
        Ok(written)
    }

    async fn write_failure(
        &self,
        file_id: i64,
        owner: &str,
        failure: &Failure<'_>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let now = tx.now;
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE jobs SET state = ?1, attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = ?4 \
             WHERE file_id = ?5 AND state = 'running' AND lease_owner = ?6 RETURNING attempts",
        )
        .bind(failure.state.as_str())
        .bind(failure.retry_at.unwrap_or(now))
        .bind(failure.error)
        .bind(now)
        .bind(file_id)
        .bind(owner)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(attempt) = attempts else {
            return Ok(false);
        };
        let attempt = Some(attempt.max(0) as u32);
        insert_event(
            &mut tx.tx,
            file_id,
            now,
            failure.kind,
            attempt,
            Some(&failure.message),
        )
        .await?;
        tx.tx.commit().await?;
        Ok(true)
    }

    /// One update a lease, in one write transaction.
    async fn renew_leases(
        &self,
        leases: &[(i64, String)],
        lease: Duration,
    ) -> Result<Vec<(i64, bool)>, sqlx::Error> {
        let mut tx = self.begin().await?;
        let until = millis_after(tx.now, lease);
        let mut renewed = Vec::with_capacity(leases.len());
        for (file_id, owner) in leases {
            let cancel: Option<i64> = sqlx::query_scalar(
                "UPDATE jobs SET lease_expires_at = ?1 \
                 WHERE file_id = ?2 AND state = 'running' AND lease_owner = ?3 \
                 RETURNING cancel_requested",
            )
            .bind(until)
            .bind(file_id)
            .bind(owner)
            .fetch_optional(&mut *tx.tx)
            .await?;
            if let Some(cancel) = cancel {
                renewed.push((*file_id, cancel != 0));
            }
        }
        tx.tx.commit().await?;
        Ok(renewed)
    }
}
