//! The API-call window on SQLite: the `api_calls` table shared by every
//! process using the queue, and the shared cooldown (the `fleet` row).

use std::time::Duration;

use sqlx::Row;

use super::SqliteStore;
use crate::queue::{Millis, QueueError, now_millis};

impl SqliteStore {
    pub async fn reserve_api_call(
        &self,
        per_minute: u32,
        window: Duration,
    ) -> Result<Option<Millis>, QueueError> {
        let now = now_millis();
        let window_ms = window.as_millis() as i64;
        let mut tx = self.write_tx().await?;
        let cooldown_until: i64 =
            sqlx::query_scalar("SELECT cooldown_until FROM fleet WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
        if cooldown_until > now {
            return Ok(Some(cooldown_until));
        }
        sqlx::query("DELETE FROM api_calls WHERE at <= ?1")
            .bind(now - window_ms)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT count(*) AS n, min(at) AS oldest FROM api_calls")
            .fetch_one(&mut *tx)
            .await?;
        let count: i64 = row.try_get("n")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        let verdict = if count < i64::from(per_minute) {
            sqlx::query("INSERT INTO api_calls (at) VALUES (?1)")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            None
        } else {
            Some(oldest.unwrap_or(now) + window_ms + 1)
        };
        tx.commit().await?;
        Ok(verdict)
    }

    pub async fn api_calls_in_window(&self, window: Duration) -> Result<u64, QueueError> {
        let since = now_millis() - window.as_millis() as i64;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_calls WHERE at > ?1")
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }
}
