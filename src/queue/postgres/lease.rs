//! The lease protocol on PostgreSQL: claims, heartbeats, and every worker
//! write, each matching only while its owner holds the lease, each one
//! statement. Leases are judged on the database clock. History lines of
//! claims and completions come from triggers (as SQLite's 0005); the other
//! transitions write theirs in the same statement, through a
//! data-modifying CTE whose INSERT counts one row exactly when the lease was
//! held.

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::Duration;

use super::{JOB_COLUMNS, PgStore, delay_until, jobs_from_rows, millis, retry_conflicts};
use crate::partial::{ExpectedSize, Resume};
use crate::queue::error::lease_held;
use crate::queue::group_commit::Completion;
use crate::queue::orchestrate::{Failure, LeaseStatements, LeasedWrite};
use crate::queue::rows::bind_verified;
use crate::queue::{Job, QueueError, owner_host};

/// A claim's new values: the lease, and the partial-file columns reset when
/// the claimer is another host than the one holding the partial file
/// (`$4`; NULL, never claimed, counts as any host's). `$1` owner, `$2`
/// lease in ms.
const CLAIM_SET: &str = "state = 'running', lease_owner = $1::text, \
     lease_expires_at = mdl_now_ms() + $2::bigint, updated_at = mdl_now_ms(), \
     bytes_done = CASE WHEN jobs.file_host <> $4::text THEN 0 ELSE jobs.bytes_done END, \
     validator = CASE WHEN jobs.file_host <> $4::text THEN NULL ELSE jobs.validator END, \
     pieces = CASE WHEN jobs.file_host <> $4::text THEN NULL ELSE jobs.pieces END, \
     sha256 = CASE WHEN jobs.file_host <> $4::text THEN NULL ELSE jobs.sha256 END, \
     boot_id = CASE WHEN jobs.file_host <> $4::text THEN NULL ELSE jobs.boot_id END, \
     file_host = $4::text";

/// Up to `$3` due jobs: abandoned leases first (few, and the oldest work),
/// then the earliest due; none while the claimer's account (`$5`) is
/// paused for an account-level answer (checked once, in the same statement). PostgreSQL refuses `FOR UPDATE` on a UNION, so
/// each arm locks its own rows, skipping rows another claimer holds; the
/// update finds them by primary key (`= ANY(ARRAY(...))`: a join may be
/// planned as a merge join walking the whole key).
const CLAIM_DUE: &str = "WITH expired AS ( \
       SELECT file_id FROM jobs \
       WHERE state = 'running' AND lease_expires_at < mdl_now_ms() \
         AND NOT EXISTS (SELECT 1 FROM account_pauses \
                         WHERE account = $5::text AND paused_at IS NOT NULL) \
       ORDER BY next_attempt_at, file_id LIMIT $3::bigint \
       FOR UPDATE SKIP LOCKED \
     ), due AS ( \
       SELECT file_id FROM jobs \
       WHERE state = 'queued' AND next_attempt_at <= mdl_now_ms() \
         AND NOT EXISTS (SELECT 1 FROM account_pauses \
                         WHERE account = $5::text AND paused_at IS NOT NULL) \
       ORDER BY next_attempt_at, file_id \
       LIMIT greatest($3::bigint - (SELECT count(*) FROM expired), 0) \
       FOR UPDATE SKIP LOCKED \
     ) \
     UPDATE jobs SET {SET} \
     WHERE jobs.file_id = ANY (ARRAY(SELECT file_id FROM expired UNION ALL SELECT file_id FROM due)) \
     RETURNING {COLUMNS}";

/// Job `$3`, due or not (`fetch ID`). No SKIP LOCKED: the user asked for
/// this job, so the claim waits out a lock held a moment by someone else,
/// then re-checks the condition on the row as it is now.
const CLAIM_ONE: &str = "UPDATE jobs SET {SET} \
     WHERE file_id = $3::bigint \
       AND (state = 'queued' OR (state = 'running' AND lease_expires_at < mdl_now_ms())) \
     RETURNING {COLUMNS}";

impl PgStore {
    pub(crate) async fn claim_batch(
        &self,
        owner: &str,
        account: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Job>, QueueError> {
        self.claim_with(CLAIM_DUE, owner, lease, limit.max(1) as i64, Some(account))
            .await
    }

    pub(crate) async fn claim_id(
        &self,
        file_id: i64,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Job>, QueueError> {
        Ok(self
            .claim_with(CLAIM_ONE, owner, lease, file_id, None)
            .await?
            .pop())
    }

    async fn claim_with(
        &self,
        template: &str,
        owner: &str,
        lease: Duration,
        parameter: i64,
        account: Option<&str>,
    ) -> Result<Vec<Job>, QueueError> {
        let sql = template
            .replace("{SET}", CLAIM_SET)
            .replace("{COLUMNS}", &returning_columns());
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(millis(lease))
            .bind(parameter)
            .bind(owner_host(owner));
        let query = match account {
            Some(account) => query.bind(account),
            None => query,
        };
        let rows = query.fetch_all(&self.pool).await?;
        let mut jobs = jobs_from_rows(&rows)?;
        // RETURNING's order is not the claim's.
        jobs.sort_by_key(|job| (job.next_attempt_at, job.file_id));
        Ok(jobs)
    }

    pub(crate) async fn expire_leases_of_dead_owners(
        &self,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<u64, QueueError> {
        let owners: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM jobs WHERE state = 'running' AND lease_owner IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let dead: Vec<String> = owners.into_iter().filter(|o| is_dead(o)).collect();
        if dead.is_empty() {
            return Ok(0);
        }
        let result = sqlx::query(
            "UPDATE jobs SET lease_expires_at = 0 WHERE state = 'running' AND lease_owner = ANY($1::text[])",
        )
        .bind(&dead)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    pub(crate) async fn checkpoint(
        &self,
        file_id: i64,
        owner: &str,
        progress: &Resume,
        expected: Option<ExpectedSize>,
    ) -> Result<(), QueueError> {
        let result = sqlx::query(
            "UPDATE jobs SET bytes_done = $3::bigint, bytes_expected = $4::bigint, size_source = $5::text, \
             validator = $6::text, pieces = $7::text, boot_id = $8::text, updated_at = mdl_now_ms() \
             WHERE file_id = $1::bigint AND state = 'running' AND lease_owner = $2::text",
        )
        .bind(file_id)
        .bind(owner)
        .bind(progress.bytes_done as i64)
        .bind(expected.map(|e| e.bytes as i64))
        .bind(expected.map(|e| e.source.as_str()))
        .bind(progress.validator.as_deref())
        .bind(progress.pieces.as_deref())
        .bind(progress.boot_id.as_deref())
        .execute(&self.pool)
        .await?;
        lease_held(result.rows_affected(), file_id)
    }

    /// Many completions in one UPDATE over arrays (sorted by `file_id`; the
    /// `done` lines come from a trigger). Returns the jobs whose lease was
    /// still held.
    pub(crate) async fn complete_many(
        &self,
        completions: &[Completion],
    ) -> Result<HashSet<i64>, QueueError> {
        let mut sorted: Vec<&Completion> = completions.iter().collect();
        sorted.sort_by_key(|c| c.file_id);
        let ids: Vec<i64> = sorted.iter().map(|c| c.file_id).collect();
        let owners: Vec<&str> = sorted.iter().map(|c| c.owner.as_str()).collect();
        let paths: Vec<&str> = sorted.iter().map(|c| c.path.as_str()).collect();
        let done: Vec<i64> = retry_conflicts(|| {
            sqlx::query_scalar(
                "UPDATE jobs SET state = 'done', final_path = c.path, lease_owner = NULL, \
                 lease_expires_at = NULL, last_error = NULL, cancel_requested = false, \
                 updated_at = mdl_now_ms() \
                 FROM unnest($1::bigint[], $2::text[], $3::text[]) AS c(file_id, owner, path) \
                 WHERE jobs.file_id = c.file_id AND jobs.state = 'running' AND jobs.lease_owner = c.owner \
                 RETURNING jobs.file_id",
            )
            .bind(&ids)
            .bind(&owners)
            .bind(&paths)
            .fetch_all(&self.pool)
        })
        .await?;
        Ok(done.into_iter().collect())
    }
}

/// Each write one statement: the update and, through a data-modifying CTE,
/// its history line, inserted exactly when the lease was held.
impl LeaseStatements for PgStore {
    async fn write_leased(
        &self,
        file_id: i64,
        owner: &str,
        write: LeasedWrite<'_>,
        kind: &str,
        message: &str,
    ) -> Result<u64, sqlx::Error> {
        let query = sqlx::query(sqlx::AssertSqlSafe(leased_statement(write)))
            .bind(file_id)
            .bind(owner)
            .bind(kind)
            .bind(message);
        let query = match write {
            LeasedWrite::Verified(verified) => bind_verified(query, verified),
            LeasedWrite::Released {
                not_before,
                reason_kept,
                ..
            } => query
                .bind(delay_until(not_before))
                .bind(reason_kept.sets_last_error()),
            LeasedWrite::Cleared | LeasedWrite::Cancelled => query,
        };
        Ok(query.execute(&self.pool).await?.rows_affected())
    }

    async fn write_failure(
        &self,
        file_id: i64,
        owner: &str,
        failure: &Failure<'_>,
    ) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(
            "WITH u AS ( \
               UPDATE jobs SET state = $4::text, attempts = attempts + 1, \
                 next_attempt_at = mdl_now_ms() + coalesce($5::bigint, 0), \
                 last_error = $3::text, lease_owner = NULL, lease_expires_at = NULL, \
                 updated_at = mdl_now_ms() \
               WHERE file_id = $1::bigint AND state = 'running' AND lease_owner = $2::text \
               RETURNING file_id, attempts, updated_at) \
             INSERT INTO job_events (file_id, at, kind, attempt, message) \
             SELECT file_id, updated_at, $6::text, attempts, $7::text FROM u RETURNING attempt",
        )
        .bind(file_id)
        .bind(owner)
        .bind(failure.error)
        .bind(failure.state.as_str())
        .bind(failure.retry_in)
        .bind(failure.kind)
        .bind(&failure.message)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// One statement for every lease (arrays sorted by `file_id`): no
    /// history line, no counter row, and no indexed column touched.
    async fn renew_leases(
        &self,
        leases: &[(i64, String)],
        lease: Duration,
    ) -> Result<Vec<(i64, bool)>, sqlx::Error> {
        let mut sorted: Vec<&(i64, String)> = leases.iter().collect();
        sorted.sort_by_key(|(id, _)| *id);
        let ids: Vec<i64> = sorted.iter().map(|(id, _)| *id).collect();
        let owners: Vec<&str> = sorted.iter().map(|(_, o)| o.as_str()).collect();
        let lease_ms = millis(lease);
        retry_conflicts(|| {
            sqlx::query_as(
                "UPDATE jobs SET lease_expires_at = mdl_now_ms() + $3::bigint \
                 FROM unnest($1::bigint[], $2::text[]) AS l(file_id, owner) \
                 WHERE jobs.file_id = l.file_id AND jobs.state = 'running' AND jobs.lease_owner = l.owner \
                 RETURNING jobs.file_id, jobs.cancel_requested",
            )
            .bind(&ids)
            .bind(&owners)
            .bind(lease_ms)
            .fetch_all(&self.pool)
        })
        .await
    }
}

/// The statement of a lease holder's write: its update, matching only while
/// the lease is held (`$1` the job, `$2` the owner), and its history line
/// (`$3` the kind, `$4` the message) in a data-modifying CTE. Made once a
/// kind of write.
fn leased_statement(write: LeasedWrite<'_>) -> &'static str {
    fn with_event(update: &str) -> String {
        format!(
            "WITH u AS ({update} \
               WHERE file_id = $1::bigint AND state = 'running' AND lease_owner = $2::text \
               RETURNING file_id, updated_at) \
             INSERT INTO job_events (file_id, at, kind, attempt, message) \
             SELECT file_id, updated_at, $3::text, NULL, $4::text FROM u"
        )
    }
    static VERIFIED: LazyLock<String> = LazyLock::new(|| {
        with_event(
            "UPDATE jobs SET bytes_done = $5::bigint, bytes_expected = $5::bigint, \
             size_source = $6::text, sha256 = $7::text, pieces = NULL, filename = $8::text, \
             final_path = $9::text, updated_at = mdl_now_ms()",
        )
    });
    static CLEARED: LazyLock<String> = LazyLock::new(|| {
        with_event(
            "UPDATE jobs SET sha256 = NULL, bytes_done = 0, validator = NULL, pieces = NULL, \
             updated_at = mdl_now_ms()",
        )
    });
    static RELEASED: LazyLock<String> = LazyLock::new(|| {
        with_event(
            "UPDATE jobs SET state = 'queued', next_attempt_at = mdl_now_ms() + $5::bigint, \
             last_error = CASE WHEN $6::boolean THEN $4::text ELSE last_error END, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = mdl_now_ms()",
        )
    });
    static CANCELLED: LazyLock<String> = LazyLock::new(|| {
        with_event(
            "UPDATE jobs SET state = 'cancelled', cancel_requested = false, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = mdl_now_ms()",
        )
    });
    match write {
        LeasedWrite::Verified(_) => &VERIFIED,
        LeasedWrite::Cleared => &CLEARED,
        LeasedWrite::Released { .. } => &RELEASED,
        LeasedWrite::Cancelled => &CANCELLED,
    }
}

/// `JOB_COLUMNS` qualified by the table, for an UPDATE whose FROM or CTEs
/// have a `file_id` of their own.
fn returning_columns() -> String {
    JOB_COLUMNS
        .split(',')
        .map(|c| format!("jobs.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_columns_are_the_job_columns_of_the_table() {
        let columns = returning_columns();
        assert!(
            columns.starts_with("jobs.file_id, jobs.state,"),
            "{columns}"
        );
        assert!(
            columns.ends_with("jobs.file_host, jobs.task_id, jobs.task_api"),
            "{columns}"
        );
    }
}
