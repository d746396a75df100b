//! The worker pool behind `run` and `fetch`: claims jobs up to the
//! concurrency, heartbeats their leases, passes user cancels to them, pauses
//! the whole pool on account-level errors or a full disk, and stops cleanly on
//! one cancellation token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::fetch::file::{FREE_SPACE_RESERVE, available_space};
use crate::queue::{QueueError, now_millis};
use crate::worker::{self, Engine, HostProblem, JobControl, LEASE, Outcome};

/// Longest sleep of an idle pool between looks at the queue: a job enqueued
/// by another process starts within about this long.
pub const IDLE_POLL_MAX: Duration = Duration::from_millis(1000);
const IDLE_POLL_MIN: Duration = Duration::from_millis(25);
/// Most jobs claimed in one statement.
const CLAIM_BATCH_MAX: usize = 64;
/// How long a claim waits for more workers to finish (see [`gather_permits`]).
pub const CLAIM_LINGER: Duration = Duration::from_millis(1);
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Free space wanted (beyond the reserve) before a disk-full pause lifts.
pub const DISK_RESUME_MARGIN: u64 = 64 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub concurrency: u32,
    pub exit_when_idle: bool,
    /// `fetch ID`: work this one job and stop.
    pub only: Option<i64>,
    pub probe_interval: Duration,
}

/// Why `run` returned.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEnd {
    /// `--exit-when-idle`: nothing left queued or running.
    Idle,
    /// The shutdown token was cancelled.
    Stopped,
    /// `--exit-when-idle` (or `fetch`) met a host-level problem.
    Blocked(HostProblem),
    /// `fetch ID`: that job's outcome.
    Single(Outcome),
}

/// A change of settings delivered on SIGHUP: a new API client (key) and
/// concurrency.
#[derive(Clone)]
pub struct Reload {
    pub api: crate::api::ApiClient,
    pub concurrency: u32,
    pub requests_per_minute: u32,
}

/// A pool-wide pause: its cause and when to probe whether it is gone.
type Pause = (HostProblem, tokio::time::Instant);

/// The pause once a worker has reported `problem` at `now`. The first report
/// starts it and fixes its first probe (`probe_interval` later, or as long
/// as the API asked); later reports (workers that met the same answer, or
/// were turned back at the rate gate by it) never move the probe later.
fn pause_after(
    current: Option<Pause>,
    problem: HostProblem,
    now: tokio::time::Instant,
    probe_interval: Duration,
) -> Pause {
    if let Some(current) = current {
        return current;
    }
    let wait = match &problem {
        HostProblem::Account { pause: Some(p), .. } => *p,
        _ => probe_interval,
    };
    (problem, now + wait)
}

/// Jobs this pool is working: their lease owner name and stop signals.
type Running = Arc<Mutex<HashMap<i64, (String, JobControl)>>>;

pub async fn run(
    engine: Engine,
    options: RunOptions,
    shutdown: CancellationToken,
    mut reloads: Option<watch::Receiver<Option<Reload>>>,
) -> Result<RunEnd, QueueError> {
    let freed = engine
        .queue
        .expire_leases_of_dead_owners(worker::owner_is_dead)
        .await?;
    if freed > 0 {
        info!(
            jobs = freed,
            "resuming jobs left running by a worker that died on this host"
        );
    }
    let tracker = TaskTracker::new();
    let running: Running = Arc::default();
    let mut concurrency = options.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency as usize));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(i64, Result<Outcome, QueueError>)>();
    let heartbeat_stop = CancellationToken::new();
    tracker.spawn(heartbeat(
        engine.clone(),
        running.clone(),
        heartbeat_stop.clone(),
    ));

    let mut idle = IDLE_POLL_MIN;
    let mut pause: Option<Pause> = None;
    let mut single_outcome: Option<Outcome> = None;
    let end = loop {
        // Outcomes first: a pause must stop claiming before the next claim.
        while let Ok((file_id, outcome)) = done_rx.try_recv() {
            match outcome {
                Ok(Outcome::Paused(problem)) => {
                    if pause.is_none() {
                        error!(file_id, "pausing all work: {}", problem.message());
                    }
                    let now = tokio::time::Instant::now();
                    pause = Some(pause_after(
                        pause.take(),
                        problem,
                        now,
                        options.probe_interval,
                    ));
                }
                Ok(other) if options.only == Some(file_id) => single_outcome = Some(other),
                Ok(_) => {}
                Err(e) => error!(file_id, "queue error while recording a job: {e}"),
            }
        }
        if let Some(outcome) = single_outcome.take() {
            break RunEnd::Single(outcome);
        }
        if shutdown.is_cancelled() {
            break RunEnd::Stopped;
        }
        if let Some(reload) = reloads.as_mut().and_then(take_reload) {
            apply_reload(&engine, &permits, &mut concurrency, reload);
            if pause.take().is_some() {
                engine.gate.release();
                info!("resuming after reload");
            }
            continue;
        }
        if let Some((problem, probe_at)) = &pause {
            if options.exit_when_idle || options.only.is_some() {
                break RunEnd::Blocked(problem.clone());
            }
            let now = tokio::time::Instant::now();
            if now < *probe_at {
                // Wakes on a reload without consuming it: the top of the loop applies it.
                let reload_changed = async {
                    match reloads.as_ref() {
                        Some(r) => {
                            let mut r = r.clone();
                            let _ = r.changed().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep_until(*probe_at) => {}
                    _ = reload_changed => {}
                }
                continue;
            }
            if probe(&engine, problem, &shutdown).await {
                info!("the problem is gone; resuming work");
                engine.gate.release();
                pause = None;
            } else {
                error!(
                    "still paused: {} (next check in {}s)",
                    problem.message(),
                    options.probe_interval.as_secs()
                );
                let next = tokio::time::Instant::now() + options.probe_interval;
                pause = Some((problem.clone(), next));
            }
            continue;
        }

        let permit = tokio::select! {
            _ = shutdown.cancelled() => continue,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break RunEnd::Stopped,
            },
        };
        if !done_rx.is_empty() {
            // An outcome came in while we waited: handle it before claiming.
            drop(permit);
            continue;
        }
        // Claim for every free worker at once: one statement for the batch.
        let batch_permits = match options.only {
            Some(_) => vec![permit],
            None => {
                let max = (concurrency as usize).min(CLAIM_BATCH_MAX);
                gather_permits(&permits, permit, max, CLAIM_LINGER).await
            }
        };
        if !done_rx.is_empty() {
            // A worker that reported (a pause, say) gave its permit back
            // while we gathered: its outcome comes before any claim.
            drop(batch_permits);
            continue;
        }
        let owner = engine.next_owner();
        let claimed = match options.only {
            Some(id) => engine
                .queue
                .claim_id(id, &owner, LEASE)
                .await
                .map(Vec::from_iter),
            None => {
                engine
                    .queue
                    .claim_batch(&owner, LEASE, batch_permits.len())
                    .await
            }
        };
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(e) => {
                // A busy or briefly failing database: wait and try again
                // rather than abandon the jobs in flight.
                drop(batch_permits);
                warn!("cannot claim a job: {e}; retrying shortly");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(IDLE_POLL_MAX) => {}
                }
                continue;
            }
        };
        if claimed.is_empty() {
            drop(batch_permits);
            let in_flight = running.lock().unwrap_or_else(|p| p.into_inner()).len();
            if in_flight == 0 && (options.exit_when_idle || options.only.is_some()) {
                if options.only.is_some() {
                    break RunEnd::Idle;
                }
                match engine.queue.status().await {
                    Ok(counts) if counts.queued == 0 && counts.running == 0 => {
                        break RunEnd::Idle;
                    }
                    Ok(_) => {}
                    Err(e) => warn!("cannot read the queue's counts: {e}"),
                }
            }
            let mut wait = idle;
            if let Ok(Some(due)) = engine.queue.next_due().await {
                let until_due = Duration::from_millis((due - now_millis()).max(0) as u64);
                wait = wait.min(until_due.max(IDLE_POLL_MIN));
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
                Some(message) = done_rx.recv() => {
                    // Put it back for the top of the loop to handle.
                    let _ = done_tx.send(message);
                }
            }
            idle = (idle * 2).min(IDLE_POLL_MAX);
            continue;
        }
        idle = IDLE_POLL_MIN;
        // This pool may have just reclaimed jobs whose lease it lost
        // (heartbeats failed for a whole lease): stop the old tasks,
        // all at once, before new ones touch the same partial files.
        futures_util::future::join_all(
            claimed
                .iter()
                .map(|job| stop_previous_task(&running, job.file_id)),
        )
        .await;
        for (job, permit) in claimed.into_iter().zip(batch_permits) {
            let control = JobControl::new(&shutdown);
            running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(job.file_id, (owner.clone(), control.clone()));
            let (engine, running, done_tx) = (engine.clone(), running.clone(), done_tx.clone());
            let owner = owner.clone();
            tracker.spawn(async move {
                let file_id = job.file_id;
                let outcome = worker::process(&engine, job, &control).await;
                let mut map = running.lock().unwrap_or_else(|p| p.into_inner());
                if map.get(&file_id).is_some_and(|(o, _)| *o == owner) {
                    map.remove(&file_id);
                }
                drop(map);
                // Outcome first, then the permit: the claim loop must
                // see a pause (or fetch's result) before it can claim again.
                let _ = done_tx.send((file_id, outcome));
                drop(permit);
            });
        }
    };
    // Stop every job still running: each checkpoints and gives its lease back.
    for (_, control) in running.lock().unwrap_or_else(|p| p.into_inner()).values() {
        control.cancel.cancel();
    }
    tracker.close();
    heartbeat_stop.cancel();
    tracker.wait().await;
    while let Ok((_, outcome)) = done_rx.try_recv() {
        if let Err(e) = outcome {
            warn!("queue error while stopping: {e}");
        }
    }
    Ok(end)
}

/// Tells a task still working `file_id` under an older lease to stop, and
/// waits (up to a few seconds) until it has.
async fn stop_previous_task(running: &Running, file_id: i64) {
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
            warn!(file_id, "an earlier task on this job has not stopped yet");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The newest reload not yet applied, if any.
fn take_reload(reloads: &mut watch::Receiver<Option<Reload>>) -> Option<Reload> {
    if reloads.has_changed().unwrap_or(false) {
        reloads.borrow_and_update().clone()
    } else {
        None
    }
}

/// Takes, besides `first`, every permit that is free or given back within
/// `linger` (up to `max` in all), so that one claim serves every worker that
/// finishes at about the same moment instead of one claim each: claims are
/// one statement whatever their size, and on a queue of small files that is
/// what sets the pace. A millisecond is nothing to a download, and the wait
/// ends at once when `max` permits are in hand.
pub async fn gather_permits(
    permits: &Arc<Semaphore>,
    first: OwnedSemaphorePermit,
    max: usize,
    linger: Duration,
) -> Vec<OwnedSemaphorePermit> {
    let deadline = tokio::time::Instant::now() + linger;
    let mut batch = vec![first];
    while batch.len() < max {
        match permits.clone().try_acquire_owned() {
            Ok(permit) => batch.push(permit),
            Err(_) => {
                match tokio::time::timeout_at(deadline, permits.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => batch.push(permit),
                    _ => break,
                }
            }
        }
    }
    batch
}

fn apply_reload(engine: &Engine, permits: &Arc<Semaphore>, concurrency: &mut u32, reload: Reload) {
    engine.replace_api(reload.api);
    engine.gate.set_per_minute(reload.requests_per_minute);
    let wanted = reload.concurrency.max(1);
    if wanted > *concurrency {
        permits.add_permits((wanted - *concurrency) as usize);
    } else if wanted < *concurrency {
        // Take the surplus permits out of circulation as running jobs return them.
        let surplus = *concurrency - wanted;
        let permits = permits.clone();
        tokio::spawn(async move {
            if let Ok(taken) = permits.acquire_many_owned(surplus).await {
                taken.forget();
            }
        });
    }
    *concurrency = wanted;
    info!(
        concurrency = wanted,
        requests_per_minute = reload.requests_per_minute,
        "configuration reloaded"
    );
}

/// Renews the leases of running jobs every second and passes on user
/// cancellations recorded in the queue.
async fn heartbeat(engine: Engine, running: Running, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
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
            Err(e) => warn!("lease heartbeat failed: {e}"),
        }
    }
}

/// Is the host problem gone? Account: one retrieve call succeeds (or fails
/// for a reason that is not the account's). Disk: space is back.
async fn probe(engine: &Engine, problem: &HostProblem, shutdown: &CancellationToken) -> bool {
    match problem {
        HostProblem::DiskFull { needed, .. } => available_space(&engine.output_dir)
            .map(|free| free > FREE_SPACE_RESERVE + (*needed).max(DISK_RESUME_MARGIN))
            .unwrap_or(false),
        HostProblem::Account { .. } => {
            let Ok(jobs) = engine
                .queue
                .list(Some(crate::queue::JobState::Queued), Some(1))
                .await
            else {
                return false;
            };
            let Some(job) = jobs.first() else {
                return true;
            };
            if engine.gate.acquire_probe(shutdown).await.is_err() {
                return false;
            }
            let api = engine.api();
            let answer = tokio::select! {
                _ = shutdown.cancelled() => return false,
                answer = api.retrieve(job.file_id) => answer,
            };
            match answer {
                Ok(_) => true,
                Err(e) => !matches!(e.class(), crate::api::ErrorClass::Account { .. }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(message: &str) -> HostProblem {
        HostProblem::Account {
            message: message.into(),
            pause: None,
        }
    }

    #[test]
    fn the_first_probe_stays_one_interval_after_the_pause_began() {
        let interval = Duration::from_secs(60);
        let began = tokio::time::Instant::now();
        let first = pause_after(None, account("1008 no balance"), began, interval);
        assert_eq!(first.1, began + interval);
        // Three more workers report the same answer as the wait ends.
        let later = began + interval;
        let mut pause = first.clone();
        for _ in 0..3 {
            pause = pause_after(Some(pause), account("1008 no balance"), later, interval);
        }
        assert_eq!(pause, first, "later reports change neither cause nor probe");
    }

    #[test]
    fn a_pause_the_api_asked_for_sets_the_first_probe() {
        let hour = Duration::from_secs(3600);
        let now = tokio::time::Instant::now();
        let problem = HostProblem::Account {
            message: "2056 usage window".into(),
            pause: Some(hour),
        };
        let pause = pause_after(None, problem, now, Duration::from_secs(60));
        assert_eq!(pause.1, now + hour);
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_gathers_every_free_permit_up_to_its_limit() {
        let permits = Arc::new(Semaphore::new(5));
        let first = permits.clone().acquire_owned().await.unwrap();
        let batch = gather_permits(&permits, first, 3, CLAIM_LINGER).await;
        assert_eq!((batch.len(), permits.available_permits()), (3, 2));
        drop(batch);

        // Every permit free: no wait for the linger.
        let started = tokio::time::Instant::now();
        let first = permits.clone().acquire_owned().await.unwrap();
        let batch = gather_permits(&permits, first, 5, Duration::from_secs(60)).await;
        assert_eq!((batch.len(), permits.available_permits()), (5, 0));
        assert_eq!(started.elapsed(), Duration::ZERO);
        drop(batch);
        assert_eq!(permits.available_permits(), 5, "every permit goes back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_finishing_within_the_linger_joins_the_claim_and_a_busy_one_does_not() {
        let permits = Arc::new(Semaphore::new(3));
        let soon = permits.clone().acquire_owned().await.unwrap();
        let busy = permits.clone().acquire_owned().await.unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            drop(soon);
        });
        let linger = Duration::from_millis(10);
        let started = tokio::time::Instant::now();
        let first = permits.clone().acquire_owned().await.unwrap();
        let batch = gather_permits(&permits, first, 3, linger).await;
        assert_eq!(batch.len(), 2, "the busy worker's permit is not waited for");
        assert_eq!(started.elapsed(), linger, "no longer than the linger");
        drop(busy);
    }
}
