//! The `fleet` row on SQLite: the pause and cooldown every process sharing
//! the queue file obeys, and what `--exit-when-idle` asks before exiting.

use std::time::Duration;

use sqlx::Row;

use super::SqliteStore;
use crate::queue::{Claimable, FleetPause, FleetState, QueueError, millis_after, now_millis};

/// Milliseconds left until `at`, if any.
fn left_until(at: Option<i64>, now: i64) -> Option<Duration> {
    at.filter(|&at| at > now)
        .map(|at| Duration::from_millis((at - now) as u64))
}

/// An idle pool's longest wait between looks at a SQLite queue: nothing
/// tells it of an enqueue by another process, so it polls (a claim
/// statement is a few microseconds on a local file).
const IDLE_POLL_MAX: Duration = Duration::from_secs(1);

impl SqliteStore {
    pub fn idle_poll_max(&self) -> Duration {
        IDLE_POLL_MAX
    }

    /// SQLite has no notifications: the wait is the poll.
    pub async fn wait_for_work(&self, max: Duration) {
        tokio::time::sleep(max).await;
    }

    pub async fn pause_fleet(
        &self,
        message: &str,
        paused_by: &str,
        first_probe_after: Duration,
    ) -> Result<i64, QueueError> {
        let now = now_millis();
        // A pause already in force keeps its cause and its probe time.
        let epoch = sqlx::query_scalar(
            "UPDATE fleet SET \
               pause_epoch = CASE WHEN paused_at IS NULL THEN pause_epoch + 1 ELSE pause_epoch END, \
               pause_message = CASE WHEN paused_at IS NULL THEN ?1 ELSE pause_message END, \
               paused_by = CASE WHEN paused_at IS NULL THEN ?2 ELSE paused_by END, \
               probe_at = CASE WHEN paused_at IS NULL THEN ?3 ELSE probe_at END, \
               paused_at = coalesce(paused_at, ?4) \
             WHERE id = 1 RETURNING pause_epoch",
        )
        .bind(message)
        .bind(paused_by)
        .bind(millis_after(now, first_probe_after))
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(epoch)
    }

    pub async fn fleet_state(&self) -> Result<FleetState, QueueError> {
        let row = sqlx::query(
            "SELECT cooldown_until, pause_message, paused_at, paused_by, probe_at, pause_epoch \
             FROM fleet WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        let now = now_millis();
        let paused_at: Option<i64> = row.try_get("paused_at")?;
        let pause = match paused_at {
            None => None,
            Some(_) => Some(FleetPause {
                message: row
                    .try_get::<Option<String>, _>("pause_message")?
                    .unwrap_or_default(),
                paused_by: row
                    .try_get::<Option<String>, _>("paused_by")?
                    .unwrap_or_default(),
                epoch: row.try_get("pause_epoch")?,
                probe_in: left_until(row.try_get("probe_at")?, now).unwrap_or_default(),
            }),
        };
        Ok(FleetState {
            pause,
            cooldown: left_until(Some(row.try_get("cooldown_until")?), now),
        })
    }

    pub async fn take_probe_slot(
        &self,
        next_probe_after: Duration,
        even_if_early: bool,
    ) -> Result<Option<i64>, QueueError> {
        let now = now_millis();
        let epoch = sqlx::query_scalar(
            "UPDATE fleet SET probe_at = ?1 \
             WHERE id = 1 AND paused_at IS NOT NULL AND (?3 OR coalesce(probe_at, 0) <= ?2) \
             RETURNING pause_epoch",
        )
        .bind(millis_after(now, next_probe_after))
        .bind(now)
        .bind(even_if_early)
        .fetch_optional(&self.writer)
        .await?;
        Ok(epoch)
    }

    pub async fn lift_pause(&self, epoch: i64) -> Result<bool, QueueError> {
        let lifted = sqlx::query(
            "UPDATE fleet SET paused_at = NULL, pause_message = NULL, paused_by = NULL, probe_at = NULL \
             WHERE id = 1 AND paused_at IS NOT NULL AND pause_epoch = ?1",
        )
        .bind(epoch)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(lifted == 1)
    }

    pub async fn cool_fleet(&self, wait: Duration) -> Result<(), QueueError> {
        sqlx::query("UPDATE fleet SET cooldown_until = max(cooldown_until, ?1) WHERE id = 1")
            .bind(millis_after(now_millis(), wait))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn claimable(&self) -> Result<Claimable, QueueError> {
        let row = sqlx::query(
            "SELECT coalesce((SELECT jobs FROM job_counts WHERE state = 'queued'), 0) AS queued, \
                    (SELECT count(*) FROM jobs WHERE state = 'running' AND lease_expires_at < ?1) AS abandoned",
        )
        .bind(now_millis())
        .fetch_one(&self.pool)
        .await?;
        Ok(Claimable {
            queued: row.try_get::<i64, _>("queued")?.max(0) as u64,
            abandoned: row.try_get::<i64, _>("abandoned")?.max(0) as u64,
        })
    }
}
