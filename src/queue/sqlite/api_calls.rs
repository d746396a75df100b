//! The API-call window on SQLite: the `api_calls` table shared by every
//! process using the queue, the shared cooldown (the `fleet` row), and the
//! adaptive rate (the `api_rate` row).

use std::time::Duration;

use sqlx::Row;

use super::{SqliteStore, SqliteTx};
use crate::queue::orchestrate::RateStatements;
use crate::queue::{Millis, QueueError, millis_after, now_millis};
use crate::rate::RateState;

/// Calls older than the window are deleted at every this many calls
/// counted, not at each: every reader counts only the window's calls, and
/// one statement a call is a round trip to the database thread and a
/// commit fewer than two (BENCHMARKS.md, "CPU per file").
const FORGET_EVERY: i64 = 100;

impl SqliteStore {
    /// Counts a call unless the fleet is cooling down or the window is
    /// full: one statement, atomic on its own (SQLite takes the write lock
    /// before the statement reads, so no other process counts between our
    /// count and our insert). When refused: until when, read after.
    pub(crate) async fn reserve_api_call(
        &self,
        per_minute: u32,
        window: Duration,
    ) -> Result<Option<Millis>, QueueError> {
        let now = now_millis();
        let since = now - window.as_millis() as i64;
        let counted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO api_calls (at) SELECT ?1 \
             WHERE (SELECT cooldown_until FROM fleet WHERE id = 1) <= ?1 \
               AND (SELECT count(*) FROM api_calls WHERE at > ?2) < ?3 \
             RETURNING rowid",
        )
        .bind(now)
        .bind(since)
        .bind(i64::from(per_minute))
        .fetch_optional(&self.writer)
        .await?;
        match counted {
            Some(rowid) => {
                if rowid % FORGET_EVERY == 0 {
                    sqlx::query("DELETE FROM api_calls WHERE at <= ?1")
                        .bind(since)
                        .execute(&self.writer)
                        .await?;
                }
                Ok(None)
            }
            None => self
                .refused_until(now, since, per_minute, window)
                .await
                .map(Some),
        }
    }

    /// Why a call was not counted: the fleet's cooldown, else the window
    /// full until its oldest call leaves it. (If neither holds any more,
    /// now: the caller asks again.)
    async fn refused_until(
        &self,
        now: Millis,
        since: Millis,
        per_minute: u32,
        window: Duration,
    ) -> Result<Millis, QueueError> {
        let row = sqlx::query(
            "SELECT (SELECT cooldown_until FROM fleet WHERE id = 1) AS cooldown_until, \
             count(*) AS n, min(at) AS oldest FROM api_calls WHERE at > ?1",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        let cooldown_until: i64 = row.try_get("cooldown_until")?;
        let count: i64 = row.try_get("n")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok(match oldest {
            _ if cooldown_until > now => cooldown_until,
            Some(at) if count >= i64::from(per_minute) => at + window.as_millis() as i64 + 1,
            _ => now,
        })
    }

    pub(crate) async fn api_calls_in_window(&self, window: Duration) -> Result<u64, QueueError> {
        let since = now_millis() - window.as_millis() as i64;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_calls WHERE at > ?1")
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }
}

/// The stored [`RateState`] in the row of `api_rate` (migration 0011).
fn rate_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<RateState, sqlx::Error> {
    crate::queue::rows::rate_from_row(row, row.try_get::<i64, _>("probing")? != 0)
}

const SELECT_RATE: &str =
    "SELECT per_minute, window_start, probing, decreases, last_decrease FROM api_rate WHERE id = 1";

impl SqliteStore {
    pub(crate) async fn rate_state(&self) -> Result<RateState, QueueError> {
        let row = sqlx::query(SELECT_RATE).fetch_one(&self.pool).await?;
        Ok(rate_from_row(&row)?)
    }
}

/// SQLite's write lock, taken when the transaction began, serialises the
/// processes' events; the time is the transaction's.
impl RateStatements for SqliteStore {
    async fn cool_fleet_in(tx: &mut SqliteTx, wait: Duration) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE fleet SET cooldown_until = max(cooldown_until, ?1) WHERE id = 1")
            .bind(millis_after(tx.now, wait))
            .execute(&mut *tx.tx)
            .await?;
        Ok(())
    }

    async fn rate_for_update(tx: &mut SqliteTx) -> Result<RateState, sqlx::Error> {
        rate_from_row(&sqlx::query(SELECT_RATE).fetch_one(&mut *tx.tx).await?)
    }

    async fn clock_and_calls(
        tx: &mut SqliteTx,
        window: Duration,
    ) -> Result<(Millis, u64), sqlx::Error> {
        let calls: i64 = sqlx::query_scalar("SELECT count(*) FROM api_calls WHERE at > ?1")
            .bind(tx.now - window.as_millis() as i64)
            .fetch_one(&mut *tx.tx)
            .await?;
        Ok((tx.now, calls.max(0) as u64))
    }

    async fn store_rate(tx: &mut SqliteTx, rate: &RateState) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE api_rate SET per_minute = ?1, window_start = ?2, probing = ?3, \
               decreases = ?4, last_decrease = ?5 WHERE id = 1",
        )
        .bind(rate.per_minute)
        .bind(rate.window_start)
        .bind(rate.probing)
        .bind(rate.decreases.min(i64::MAX as u64) as i64)
        .bind(rate.last_decrease)
        .execute(&mut *tx.tx)
        .await?;
        Ok(())
    }
}
