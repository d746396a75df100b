//! The `fleet` row on PostgreSQL: the cooldown every host sharing the
//! database obeys, and the account pauses (`account_pauses`) each host
//! obeys for its own account, on the database clock; what `--exit-when-idle` asks
//! before exiting; and waiting for work on `LISTEN minimax_dl_jobs`, which
//! the jobs table's triggers notify whenever rows become queued (enqueue,
//! retry, a job given back) and which `lift_pause` notifies too.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use super::{PgStore, millis};
use crate::queue::{Claimable, FleetState, HostPause, ProbeWhen, QueueError};

/// The channel the triggers notify when jobs become claimable.
const JOBS_CHANNEL: &str = "minimax_dl_jobs";

/// An idle pool's longest wait between looks at a PostgreSQL queue. New
/// work wakes it at once through the notification; this bounds what a lost
/// notification (sent while its listening connection was down) or a lease
/// running out on a dead host costs: a dead host's jobs are taken up within
/// the lease (30 s) plus this.
const IDLE_POLL_MAX: Duration = Duration::from_secs(5);

impl PgStore {
    pub(crate) fn idle_poll_max(&self) -> Duration {
        IDLE_POLL_MAX
    }

    /// Waits up to `max` for a notification that jobs became claimable.
    /// The first call only subscribes and returns at once: the caller looks
    /// at the queue again, and from then on nothing enqueued goes unheard.
    /// A lost connection returns at once too (notifications sent meanwhile
    /// are lost: look again); a listener that fails is dropped and the wait
    /// becomes a plain sleep until the next call subscribes anew.
    pub(crate) async fn wait_for_work(&self, max: Duration) {
        let mut listener = self.listener.lock().await;
        let Some(subscribed) = listener.as_mut() else {
            match tokio::time::timeout(max, self.listen()).await {
                Ok(Ok(subscribed)) => *listener = Some(subscribed),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cannot listen for new jobs; polling");
                    tokio::time::sleep(max).await;
                }
                // The wait is over before the subscription was made.
                Err(_) => {}
            }
            return;
        };
        match tokio::time::timeout(max, subscribed.try_recv()).await {
            // Work, a lost connection, or nothing within `max`: look again.
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "listening for new jobs failed; polling");
                *listener = None;
                tokio::time::sleep(max).await;
            }
        }
    }

    /// A listener on a connection of its own (a pool of one, so the
    /// queue's pool keeps all of its connections).
    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(PgConnectOptions::clone(&self.options));
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(JOBS_CHANNEL).await?;
        Ok(listener)
    }

    pub(crate) async fn pause_fleet(
        &self,
        account: &str,
        message: &str,
        paused_by: &str,
        first_probe_after: Duration,
    ) -> Result<i64, QueueError> {
        // A pause already in force keeps its cause and its probe time.
        let epoch = sqlx::query_scalar(
            "INSERT INTO account_pauses AS p \
               (account, pause_message, paused_by, probe_at, paused_at, pause_epoch) \
             VALUES ($1::text, $2::text, $3::text, mdl_now_ms() + $4::bigint, mdl_now_ms(), 1) \
             ON CONFLICT (account) DO UPDATE SET \
               pause_epoch = CASE WHEN p.paused_at IS NULL THEN p.pause_epoch + 1 ELSE p.pause_epoch END, \
               pause_message = CASE WHEN p.paused_at IS NULL THEN $2::text ELSE p.pause_message END, \
               paused_by = CASE WHEN p.paused_at IS NULL THEN $3::text ELSE p.paused_by END, \
               probe_at = CASE WHEN p.paused_at IS NULL THEN mdl_now_ms() + $4::bigint ELSE p.probe_at END, \
               paused_at = coalesce(p.paused_at, mdl_now_ms()) \
             RETURNING pause_epoch",
        )
        .bind(account)
        .bind(message)
        .bind(paused_by)
        .bind(millis(first_probe_after))
        .fetch_one(&self.pool)
        .await?;
        Ok(epoch)
    }

    pub(crate) async fn record_host_pause(
        &self,
        host: &str,
        message: &str,
        paused_by: &str,
        valid_for: Duration,
    ) -> Result<(), QueueError> {
        sqlx::query(
            "INSERT INTO host_pauses (host, message, paused_by, paused_at, expires_at) \
             VALUES ($1::text, $2::text, $3::text, mdl_now_ms(), mdl_now_ms() + $4::bigint) \
             ON CONFLICT (host) DO UPDATE SET message = EXCLUDED.message, \
               paused_by = EXCLUDED.paused_by, expires_at = EXCLUDED.expires_at, \
               paused_at = CASE WHEN host_pauses.expires_at > mdl_now_ms() \
                 THEN host_pauses.paused_at ELSE EXCLUDED.paused_at END",
        )
        .bind(host)
        .bind(message)
        .bind(paused_by)
        .bind(millis(valid_for))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn lift_host_pause(
        &self,
        host: &str,
        paused_by: &str,
    ) -> Result<(), QueueError> {
        sqlx::query("DELETE FROM host_pauses WHERE host = $1::text AND paused_by = $2::text")
            .bind(host)
            .bind(paused_by)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn host_pauses(&self) -> Result<Vec<HostPause>, QueueError> {
        let rows = sqlx::query(
            "SELECT host, message, paused_by, mdl_now_ms() - paused_at AS lasted_ms \
             FROM host_pauses WHERE expires_at > mdl_now_ms() ORDER BY host",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(crate::queue::rows::host_pause_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The cooldown, and the account's pause (`""`: any account's newest).
    pub(crate) async fn fleet_state(&self, account: &str) -> Result<FleetState, QueueError> {
        let row = sqlx::query(
            "SELECT p.account, p.pause_message, p.paused_at, p.paused_by, p.pause_epoch, \
               p.probe_at - mdl_now_ms() AS probe_in_ms, f.cooldown_until - mdl_now_ms() AS cooldown_ms \
             FROM fleet f LEFT JOIN account_pauses p \
               ON p.paused_at IS NOT NULL AND (p.account = $1::text OR $1::text = '') \
             ORDER BY p.paused_at DESC NULLS LAST LIMIT 1",
        )
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
        let epoch = sqlx::query_scalar(
            "UPDATE account_pauses SET probe_at = mdl_now_ms() + $1::bigint \
             WHERE account = $3::text AND paused_at IS NOT NULL \
               AND ($2::boolean OR coalesce(probe_at, 0) <= mdl_now_ms()) \
             RETURNING pause_epoch",
        )
        .bind(millis(next_probe_after))
        .bind(when.even_if_early())
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        Ok(epoch)
    }

    /// Lifting the pause makes the queued jobs claimable again: the waiting
    /// pools are woken as by an enqueue (the notification goes at commit).
    pub(crate) async fn lift_pause(&self, account: &str, epoch: i64) -> Result<bool, QueueError> {
        let mut tx = self.pool.begin().await?;
        let lifted = sqlx::query(
            "UPDATE account_pauses \
             SET paused_at = NULL, pause_message = NULL, paused_by = NULL, probe_at = NULL \
             WHERE account = $2::text AND paused_at IS NOT NULL AND pause_epoch = $1::bigint",
        )
        .bind(epoch)
        .bind(account)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if lifted {
            sqlx::query("SELECT pg_notify($1::text, 'resumed')")
                .bind(JOBS_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(lifted)
    }

    pub(crate) async fn cool_fleet(&self, wait: Duration) -> Result<(), QueueError> {
        sqlx::query(
            "UPDATE fleet SET cooldown_until = greatest(cooldown_until, mdl_now_ms() + $1::bigint)",
        )
        .bind(millis(wait))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn claimable(&self) -> Result<Claimable, QueueError> {
        let row = sqlx::query(
            "SELECT (SELECT coalesce(sum(jobs), 0)::bigint FROM job_counts WHERE state = 'queued') AS queued, \
               (SELECT count(*) FROM jobs \
                WHERE state = 'running' AND lease_expires_at < mdl_now_ms()) AS abandoned, \
               (SELECT count(*) FROM tasks WHERE state = 'generating') AS generating",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(crate::queue::rows::claimable_from_row(&row)?)
    }
}
