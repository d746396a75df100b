//! The lease heartbeat of the jobs a process is working.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::HEARTBEAT;
use super::outage::Outage;
use super::running::InFlight;
use crate::worker::{Engine, LEASE};

/// Renews the leases of running jobs every second and passes on user
/// cancellations recorded in the queue.
pub(super) async fn heartbeat(engine: Engine, running: InFlight, stop: CancellationToken) {
    if engine.hooks.heartbeat_stalled() {
        stop.cancelled().await;
        return;
    }
    let mut outage: Option<Outage> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
        engine.observer.alive();
        let leases: Vec<(i64, String)> = running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, (owner, _))| (*id, owner.clone()))
            .collect();
        if leases.is_empty() {
            continue;
        }
        match engine.queue.heartbeat(&leases, LEASE).await {
            Ok(report) => {
                engine.set_queue_silent(false);
                if let Some(outage) = outage.take() {
                    outage.ended(Instant::now());
                }
                let running = running.lock().unwrap_or_else(|p| p.into_inner());
                for id in report.lost {
                    if let Some((_, control)) = running.get(&id) {
                        warn!(
                            file_id = id,
                            "lease lost to another worker; stopping this download"
                        );
                        control.lose_lease();
                    }
                }
                for id in report.cancel {
                    if let Some((_, control)) = running.get(&id) {
                        info!(file_id = id, "cancel requested; stopping the download");
                        control.cancel_by_user();
                    }
                }
            }
            // Logged once a minute however long it lasts; the leases run
            // out after `LEASE`, and the jobs go to whoever claims next.
            Err(e) => {
                engine.set_queue_silent(e.is_unreachable());
                let now = Instant::now();
                outage.get_or_insert_with(|| Outage::new(now)).failed(
                    now,
                    "lease heartbeat failed",
                    &e,
                );
            }
        }
    }
}
