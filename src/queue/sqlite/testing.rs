//! The test-support staging of `queue::testing` on SQLite.

use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use crate::queue::testing::{JobPatch, WriteLock};
use crate::queue::{JobState, Millis, QueueError};

impl SqliteStore {
    pub(crate) async fn patch_job(
        &self,
        file_id: i64,
        patch: &JobPatch,
    ) -> Result<bool, QueueError> {
        let text = |v: &Option<String>| v.clone().map(Value::Text);
        let int = |v: Option<i64>| v.map(Value::Int);
        let (expected, source) = patch.expected.unzip();
        let (final_path, sha256) = patch.placed.clone().unzip();
        let columns = [
            ("state", text(&patch.state.map(|s| s.as_str().into()))),
            ("attempts", int(patch.attempts.map(i64::from))),
            ("next_attempt_at", int(patch.next_attempt_at)),
            ("last_error", text(&patch.last_error)),
            ("lease_owner", text(&patch.lease_owner)),
            ("lease_expires_at", int(patch.lease_expires_at)),
            ("bytes_expected", int(expected.map(|v| v as i64))),
            ("bytes_done", int(patch.bytes_done.map(|v| v as i64))),
            ("size_source", text(&source.map(|s| s.as_str().into()))),
            ("filename", text(&patch.filename)),
            ("final_path", text(&final_path)),
            ("sha256", text(&sha256)),
            ("file_host", text(&patch.file_host)),
        ];
        let mut sql = QueryBuilder::<Sqlite>::new("UPDATE jobs SET ");
        let mut set = sql.separated(", ");
        for (column, value) in columns {
            match value {
                Some(Value::Int(v)) => set.push(format!("{column} = ")).push_bind_unseparated(v),
                Some(Value::Text(v)) => set.push(format!("{column} = ")).push_bind_unseparated(v),
                None => continue,
            };
        }
        sql.push(" WHERE file_id = ").push_bind(file_id);
        let done = sql.build().execute(&self.writer).await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn inflate_count(&self, state: JobState, n: i64) -> Result<(), QueueError> {
        sqlx::query("UPDATE job_counts SET jobs = jobs + ?1 WHERE state = ?2")
            .bind(n)
            .bind(state.as_str())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn record_api_calls(&self, at: Millis, n: u32) -> Result<(), QueueError> {
        for _ in 0..n {
            sqlx::query("INSERT INTO api_calls (at) VALUES (?1)")
                .bind(at)
                .execute(&self.writer)
                .await?;
        }
        Ok(())
    }

    /// On a connection of the read pool, so this process's own writer
    /// waits at SQLite's lock like another process would.
    pub(crate) async fn hold_write_lock(&self) -> Result<WriteLock, QueueError> {
        let held = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteLock::sqlite(held))
    }

    pub(crate) async fn remove_mark(&self) -> Result<(), QueueError> {
        sqlx::query("PRAGMA application_id = 0")
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

enum Value {
    Int(i64),
    Text(String),
}
