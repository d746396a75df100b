//! The API-call window on PostgreSQL: one cap for the whole fleet, on the
//! database clock, serialised by `mdl_reserve_api_call` (an advisory lock,
//! the time read after it is granted; see migrations/postgres/0001), which
//! also answers "wait" while the fleet's cooldown lasts.

use std::time::Duration;

use super::PgStore;
use crate::queue::{Millis, QueueError, now_millis};

impl PgStore {
    /// `None`: the call may go, and is counted. Otherwise when to ask
    /// again, on this host's clock (now plus the wait the database gave).
    pub async fn reserve_api_call(
        &self,
        per_minute: u32,
        window: Duration,
    ) -> Result<Option<Millis>, QueueError> {
        let per_minute = i32::try_from(per_minute).unwrap_or(i32::MAX);
        let window_ms = window.as_millis().min(i64::MAX as u128) as i64;
        let wait: Option<i64> =
            sqlx::query_scalar("SELECT mdl_reserve_api_call($1::integer, $2::bigint)")
                .bind(per_minute)
                .bind(window_ms)
                .fetch_one(&self.pool)
                .await?;
        Ok(wait.map(|ms| now_millis().saturating_add(ms)))
    }

    pub async fn api_calls_in_window(&self, window: Duration) -> Result<u64, QueueError> {
        let window_ms = window.as_millis().min(i64::MAX as u128) as i64;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM api_calls WHERE at > mdl_now_ms() - $1::bigint",
        )
        .bind(window_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }
}
