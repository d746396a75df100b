//! The test-support staging of `queue::testing` on PostgreSQL.

use sqlx::{Postgres, QueryBuilder};

use super::PgStore;
use crate::queue::testing::{JobPatch, WriteLock};
use crate::queue::{JobState, Millis, QueueError};

impl PgStore {
    pub(crate) async fn patch_job(
        &self,
        file_id: i64,
        patch: &JobPatch,
    ) -> Result<bool, QueueError> {
        let (expected, source) = patch.expected.unzip();
        let (final_path, sha256) = patch.placed.clone().unzip();
        let texts = [
            ("state", patch.state.map(|s| s.as_str().to_string())),
            ("last_error", patch.last_error.clone()),
            ("lease_owner", patch.lease_owner.clone()),
            ("size_source", source.map(|s| s.as_str().to_string())),
            ("filename", patch.filename.clone()),
            ("final_path", final_path),
            ("sha256", sha256),
            ("file_host", patch.file_host.clone()),
        ];
        let bigints = [
            ("next_attempt_at", patch.next_attempt_at),
            ("lease_expires_at", patch.lease_expires_at),
            ("bytes_expected", expected.map(|v| v as i64)),
            ("bytes_done", patch.bytes_done.map(|v| v as i64)),
        ];
        let mut sql = QueryBuilder::<Postgres>::new("UPDATE jobs SET ");
        let mut set = sql.separated(", ");
        // A no-op assignment first, so a patch of nothing is still valid SQL.
        set.push("file_id = file_id");
        for (column, value) in texts {
            if let Some(v) = value {
                set.push(format!("{column} = ")).push_bind_unseparated(v);
            }
        }
        for (column, value) in bigints {
            if let Some(v) = value {
                set.push(format!("{column} = ")).push_bind_unseparated(v);
            }
        }
        if let Some(attempts) = patch.attempts {
            let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
            set.push("attempts = ").push_bind_unseparated(attempts);
        }
        sql.push(" WHERE file_id = ").push_bind(file_id);
        let done = sql.build().execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Into shard 0 (any shard would do: `status` sums them).
    pub(crate) async fn inflate_count(&self, state: JobState, n: i64) -> Result<(), QueueError> {
        sqlx::query(
            "UPDATE job_counts SET jobs = jobs + $1::bigint WHERE state = $2::text AND shard = 0",
        )
        .bind(n)
        .bind(state.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn record_api_calls(&self, at: Millis, n: u32) -> Result<(), QueueError> {
        sqlx::query(
            "INSERT INTO api_calls (at) SELECT $1::bigint FROM generate_series(1, $2::bigint)",
        )
        .bind(at)
        .bind(i64::from(n))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `EXCLUSIVE` lets reads through and stops every write to `jobs` (from
    /// this process or any other) until the transaction ends.
    pub(crate) async fn hold_write_lock(&self) -> Result<WriteLock, QueueError> {
        let mut held = self.pool.begin().await?;
        sqlx::query("LOCK TABLE jobs IN EXCLUSIVE MODE")
            .execute(&mut *held)
            .await?;
        Ok(WriteLock::postgres(held))
    }

    /// Redefines the two clock functions with an offset (an integer literal:
    /// nothing but digits and a sign reaches the SQL).
    pub(crate) async fn offset_clock(&self, offset_ms: i64) -> Result<(), QueueError> {
        for (function, source, volatility) in [
            ("mdl_now_ms", "now()", "STABLE"),
            ("mdl_clock_ms", "clock_timestamp()", "VOLATILE"),
        ] {
            let sql = format!(
                "CREATE OR REPLACE FUNCTION {function}() RETURNS bigint \
                 LANGUAGE sql {volatility} PARALLEL SAFE \
                 AS $$ SELECT floor(extract(epoch FROM {source}) * 1000)::bigint + ({offset_ms}) $$"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}
