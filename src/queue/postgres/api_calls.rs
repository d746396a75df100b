//! The API-call window on PostgreSQL: one cap for the whole fleet, on the
//! database clock, serialised by `mdl_reserve_api_call` (an advisory lock,
//! the time read after it is granted; see migrations/postgres/0001), which
//! also answers "wait" while the fleet's cooldown lasts; and the fleet's
//! adaptive rate (the `api_rate` row).

use std::time::Duration;

use sqlx::Row;

use super::{PgStore, PgTx, after_wait, millis};
use crate::queue::orchestrate::RateStatements;
use crate::queue::{Millis, QueueError};
use crate::rate::RateState;

impl PgStore {
    /// `None`: the call may go, and is counted. Otherwise when to ask
    /// again, on this host's clock (now plus the wait the database gave).
    pub(crate) async fn reserve_api_call(
        &self,
        per_minute: u32,
        window: Duration,
    ) -> Result<Option<Millis>, QueueError> {
        let per_minute = i32::try_from(per_minute).unwrap_or(i32::MAX);
        let window_ms = millis(window);
        let wait: Option<i64> =
            sqlx::query_scalar("SELECT mdl_reserve_api_call($1::integer, $2::bigint)")
                .bind(per_minute)
                .bind(window_ms)
                .fetch_one(&self.pool)
                .await?;
        Ok(after_wait(wait))
    }

    pub(crate) async fn api_calls_in_window(&self, window: Duration) -> Result<u64, QueueError> {
        let window_ms = millis(window);
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM api_calls WHERE at > mdl_now_ms() - $1::bigint",
        )
        .bind(window_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }
}

/// The stored [`RateState`] in the row of `api_rate` (migration 0004).
fn rate_from_row(row: &sqlx::postgres::PgRow) -> Result<RateState, sqlx::Error> {
    crate::queue::rows::rate_from_row(row, row.try_get("probing")?)
}

const SELECT_RATE: &str =
    "SELECT per_minute, window_start, probing, decreases, last_decrease FROM api_rate";

impl PgStore {
    pub(crate) async fn rate_state(&self) -> Result<RateState, QueueError> {
        let row = sqlx::query(SELECT_RATE).fetch_one(&self.pool).await?;
        Ok(rate_from_row(&row)?)
    }
}

/// The rate row read `FOR UPDATE` (hosts apply events one at a time); the
/// time is the database clock read after the lock is granted
/// (`mdl_clock_ms()`, not the transaction's start).
impl RateStatements for PgStore {
    async fn cool_fleet_in(tx: &mut PgTx, wait: Duration) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE fleet SET cooldown_until = greatest(cooldown_until, mdl_clock_ms() + $1::bigint)",
        )
        .bind(millis(wait))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn rate_for_update(tx: &mut PgTx) -> Result<RateState, sqlx::Error> {
        let locked = sqlx::query(
            "SELECT per_minute, window_start, probing, decreases, last_decrease FROM api_rate FOR UPDATE",
        );
        rate_from_row(&locked.fetch_one(&mut **tx).await?)
    }

    async fn clock_and_calls(
        tx: &mut PgTx,
        window: Duration,
    ) -> Result<(Millis, u64), sqlx::Error> {
        let row = sqlx::query(
            "SELECT t AS now, (SELECT count(*) FROM api_calls WHERE at > t - $1::bigint) AS calls \
             FROM (SELECT mdl_clock_ms() AS t) AS clock",
        )
        .bind(millis(window))
        .fetch_one(&mut **tx)
        .await?;
        let calls: i64 = row.try_get("calls")?;
        Ok((row.try_get("now")?, calls.max(0) as u64))
    }

    async fn store_rate(tx: &mut PgTx, rate: &RateState) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE api_rate SET per_minute = $1, window_start = $2, probing = $3, \
               decreases = $4, last_decrease = $5",
        )
        .bind(rate.per_minute)
        .bind(rate.window_start)
        .bind(rate.probing)
        .bind(rate.decreases.min(i64::MAX as u64) as i64)
        .bind(rate.last_decrease)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
