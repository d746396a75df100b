//! The `fleet` row on SQLite: the cooldown every process sharing the queue
//! file obeys; the account pauses (`account_pauses`) each process obeys
//! for its own account; and what `--exit-when-idle` asks before exiting.

use std::time::Duration;

use super::SqliteStore;
use crate::queue::{
    Claimable, FleetState, HostPause, ProbeWhen, QueueError, millis_after, now_millis,
};

/// An idle pool's longest wait between looks at a SQLite queue: nothing
/// tells it of an enqueue by another process, so it polls (a claim
/// statement is a few microseconds on a local file).
const IDLE_POLL_MAX: Duration = Duration::from_secs(1);

impl SqliteStore {
    pub(crate) fn idle_poll_max(&self) -> Duration {
        IDLE_POLL_MAX
    }

    /// SQLite has no notifications: the wait is the poll.
    pub(crate) async fn wait_for_work(&self, max: Duration) {
        tokio::time::sleep(max).await;
    }

    pub(crate) async fn pause_fleet(
        &self,
        account: &str,
        message: &str,
        paused_by: &str,
        first_probe_after: Duration,
    ) -> Result<i64, QueueError> {
        let now = now_millis();
        // A pause already in force keeps its cause and its probe time.
        let epoch = sqlx::query_scalar(
            "INSERT INTO account_pauses \
               (account, pause_message, paused_by, probe_at, paused_at, pause_epoch) \
             VALUES (?1, ?2, ?3, ?4, ?5, 1) \
             ON CONFLICT (account) DO UPDATE SET \
               pause_epoch = CASE WHEN paused_at IS NULL THEN pause_epoch + 1 ELSE pause_epoch END, \
               pause_message = CASE WHEN paused_at IS NULL THEN ?2 ELSE pause_message END, \
               paused_by = CASE WHEN paused_at IS NULL THEN ?3 ELSE paused_by END, \
               probe_at = CASE WHEN paused_at IS NULL THEN ?4 ELSE probe_at END, \
               paused_at = coalesce(paused_at, ?5) \
             RETURNING pause_epoch",
        )
        .bind(account)
        .bind(message)
        .bind(paused_by)
        .bind(millis_after(now, first_probe_after))
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(epoch)
    }

    /// The cooldown, and the account's pause (`""`: any account's newest).
    pub(crate) async fn fleet_state(&self, account: &str) -> Result<FleetState, QueueError> {
        let row = sqlx::query(
            "SELECT p.account, p.pause_message, p.paused_at, p.paused_by, p.pause_epoch, \
               p.probe_at - ?1 AS probe_in_ms, f.cooldown_until - ?1 AS cooldown_ms \
             FROM fleet f LEFT JOIN account_pauses p \
               ON p.paused_at IS NOT NULL AND (p.account = ?2 OR ?2 = '') \
             WHERE f.id = 1 ORDER BY p.paused_at DESC LIMIT 1",
        )
        .bind(now_millis())
        .bind(account)
        .fetch_one(&self.pool)
        .await?;
        Ok(crate::queue::rows::fleet_from_row(&row)?)
    }

    pub(crate) async fn take_probe_slot(
        &self,
        account: &str,
        next_probe_after: Duration,
        when: ProbeWhen,
    ) -> Result<Option<i64>, QueueError> {
        let now = now_millis();
        let epoch = sqlx::query_scalar(
            "UPDATE account_pauses SET probe_at = ?1 \
             WHERE account = ?4 AND paused_at IS NOT NULL \
               AND (?3 OR coalesce(probe_at, 0) <= ?2) \
             RETURNING pause_epoch",
        )
        .bind(millis_after(now, next_probe_after))
        .bind(now)
        .bind(when.even_if_early())
        .bind(account)
        .fetch_optional(&self.writer)
        .await?;
        Ok(epoch)
    }

    pub(crate) async fn lift_pause(&self, account: &str, epoch: i64) -> Result<bool, QueueError> {
        let lifted = sqlx::query(
            "UPDATE account_pauses \
             SET paused_at = NULL, pause_message = NULL, paused_by = NULL, probe_at = NULL \
             WHERE account = ?2 AND paused_at IS NOT NULL AND pause_epoch = ?1",
        )
        .bind(epoch)
        .bind(account)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(lifted == 1)
    }

    pub(crate) async fn record_host_pause(
        &self,
        host: &str,
        message: &str,
        paused_by: &str,
        valid_for: Duration,
    ) -> Result<(), QueueError> {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO host_pauses (host, message, paused_by, paused_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (host) DO UPDATE SET message = ?2, paused_by = ?3, expires_at = ?5, \
               paused_at = CASE WHEN host_pauses.expires_at > ?4 THEN host_pauses.paused_at ELSE ?4 END",
        )
        .bind(host)
        .bind(message)
        .bind(paused_by)
        .bind(now)
        .bind(millis_after(now, valid_for))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(crate) async fn lift_host_pause(
        &self,
        host: &str,
        paused_by: &str,
    ) -> Result<(), QueueError> {
        sqlx::query("DELETE FROM host_pauses WHERE host = ?1 AND paused_by = ?2")
            .bind(host)
            .bind(paused_by)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn host_pauses(&self) -> Result<Vec<HostPause>, QueueError> {
        let rows = sqlx::query(
            "SELECT host, message, paused_by, ?1 - paused_at AS lasted_ms FROM host_pauses \
             WHERE expires_at > ?1 ORDER BY host",
        )
        .bind(now_millis())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(crate::queue::rows::host_pause_from_row)
            .collect::<Result<_, _>>()?)
    }

    pub(crate) async fn cool_fleet(&self, wait: Duration) -> Result<(), QueueError> {
        sqlx::query("UPDATE fleet SET cooldown_until = max(cooldown_until, ?1) WHERE id = 1")
            .bind(millis_after(now_millis(), wait))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn claimable(&self) -> Result<Claimable, QueueError> {
        let row = sqlx::query(
            "SELECT coalesce((SELECT jobs FROM job_counts WHERE state = 'queued'), 0) AS queued, \
                    (SELECT count(*) FROM jobs WHERE state = 'running' AND lease_expires_at < ?1) AS abandoned, \
                    (SELECT count(*) FROM tasks WHERE state = 'generating') AS generating",
        )
        .bind(now_millis())
        .fetch_one(&self.pool)
        .await?;
        Ok(crate::queue::rows::claimable_from_row(&row)?)
    }
}
