//! The downloads a process is working, whoever claimed them (the pool or
//! the foreground `fetch`): one spawned worker each, a heartbeat renewing
//! their leases, and the channel their outcomes come back on. ("Task"
//! elsewhere means a MiniMax generation task; these are jobs.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::heartbeat::heartbeat;
use crate::queue::{Leased, QueueError};
use crate::worker::{self, Engine, JobControl, Outcome};

/// Jobs this process is working: their lease owner name and stop signals.
pub(super) type InFlight = Arc<Mutex<HashMap<i64, (String, JobControl)>>>;

/// One job's turn as its worker reports it.
pub(super) type Report = (i64, Result<Outcome, QueueError>);

/// Where reports go: the pool takes them before its next claim.
pub(super) type Reporter = mpsc::UnboundedSender<Report>;

/// The jobs this process works: spawns a worker per job, renews their
/// leases, and hands their outcomes back.
pub(super) struct RunningDownloads {
    engine: Engine,
    tracker: TaskTracker,
    running: InFlight,
    done_tx: Reporter,
    done_rx: mpsc::UnboundedReceiver<Report>,
    heartbeat_stop: CancellationToken,
}

impl RunningDownloads {
    /// Frees the jobs of workers that died on this host, then starts the
    /// heartbeat.
    pub(crate) async fn start(engine: &Engine) -> Result<RunningDownloads, QueueError> {
        // A queue that does not answer here must not end the daemon: the
        // claim loop backs off until it does (and frees these leases then:
        // an expired lease is claimed first).
        let freed = match engine
            .queue
            .expire_leases_of_dead_owners(worker::owner_is_dead)
            .await
        {
            Ok(freed) => freed,
            Err(e) => {
                warn!("cannot free the leases of workers that died on this host: {e}");
                0
            }
        };
        if freed > 0 {
            info!(
                jobs = freed,
                "resuming jobs left running by a worker that died on this host"
            );
        }
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let downloads = RunningDownloads {
            engine: engine.clone(),
            tracker: TaskTracker::new(),
            running: InFlight::default(),
            done_tx,
            done_rx,
            heartbeat_stop: CancellationToken::new(),
        };
        downloads.tracker.spawn(heartbeat(
            engine.clone(),
            downloads.running.clone(),
            downloads.heartbeat_stop.clone(),
        ));
        Ok(downloads)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A sender of reports for work that is not a job of this tracker
    /// (the task poller's pauses).
    pub(crate) fn reporter(&self) -> Reporter {
        self.done_tx.clone()
    }

    /// Has a worker reported an outcome not yet taken?
    pub(crate) fn has_reports(&self) -> bool {
        !self.done_rx.is_empty()
    }

    pub(crate) fn try_report(&mut self) -> Option<Report> {
        self.done_rx.try_recv().ok()
    }

    /// The next outcome a worker reports.
    pub(crate) async fn next_report(&mut self) -> Report {
        // `done_tx` lives as long as `self`: the channel never closes.
        match self.done_rx.recv().await {
            Some(report) => report,
            None => std::future::pending().await,
        }
    }

    /// Returns once a worker has reported, leaving the report to be taken.
    pub(crate) async fn report_arrived(&mut self) {
        let report = self.next_report().await;
        let _ = self.done_tx.send(report);
    }

    /// This process may have just reclaimed jobs whose lease it lost
    /// (heartbeats failed for a whole lease): stop the old workers, all at
    /// once, before new ones touch the same partial files.
    pub(crate) async fn stop_previous(&self, claimed: &[Leased]) {
        futures_util::future::join_all(
            claimed
                .iter()
                .map(|job| stop_previous_worker(&self.running, job.file_id)),
        )
        .await;
    }

    /// Works `job` under its lease in a worker of its own; `permit` goes
    /// back once its outcome is reported, or earlier, when the job's file
    /// enters the upload stage (see `worker::upload`).
    pub(crate) fn spawn(
        &self,
        job: Leased,
        shutdown: &CancellationToken,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let control = JobControl::new(shutdown, permit);
        let owner = job.lease.owner().to_string();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.file_id, (owner.to_string(), control.clone()));
        let (engine, running) = (self.engine.clone(), self.running.clone());
        let done_tx = self.done_tx.clone();
        self.tracker.spawn(async move {
            let file_id = job.file_id;
            let outcome = worker::process(&engine, job, &control).await;
            let mut map = running.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&file_id).is_some_and(|(o, _)| *o == owner) {
                map.remove(&file_id);
            }
            drop(map);
            // Outcome first, then the permit (unless the job gave it back
            // for its upload): the claim loop must see a pause (or fetch's
            // result) before it can claim again with this permit.
            let _ = done_tx.send((file_id, outcome));
            control.give_back_download_slot();
        });
    }

    /// Stops every job still running (each checkpoints and gives its lease
    /// back) and the heartbeat, and waits for them.
    pub(crate) async fn finish(mut self) {
        for (_, control) in self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            control.cancel.cancel();
        }
        self.tracker.close();
        self.heartbeat_stop.cancel();
        self.tracker.wait().await;
        while let Some((_, outcome)) = self.try_report() {
            if let Err(e) = outcome {
                warn!("queue error while stopping: {e}");
            }
        }
    }
}

/// Tells a worker still working `file_id` under an older lease to stop, and
/// waits (up to a few seconds) until it has.
async fn stop_previous_worker(running: &InFlight, file_id: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let previous = running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&file_id)
            .map(|(_, c)| c.clone());
        let Some(previous) = previous else { return };
        previous.lose_lease();
        if tokio::time::Instant::now() >= deadline {
            warn!(file_id, "an earlier worker on this job has not stopped yet");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
