//! The pool behind `run` and `demo`: a loop whose turns read as its steps
//! (take the outcomes, apply a reload, wait out a pause or probe it, claim,
//! spawn, back off while idle).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::outage::{BATCH_GRACE, Outage};
use super::probe::probe;
use super::running::RunningDownloads;
use super::{CLAIM_BATCH_MAX, CLAIM_LINGER, IDLE_POLL_MIN, Reload, RunEnd, RunOptions};
use crate::gate::Hold;
use crate::queue::{FleetPause, ProbeWhen, QueueError, now_millis};
use crate::worker::{Engine, HostProblem, LEASE, Outcome, resize_permits};

/// A pool-wide pause: its cause, when to probe whether it is gone, and
/// whether the other processes sharing the queue obey it too.
#[derive(Clone, Debug, PartialEq)]
struct Pause {
    problem: HostProblem,
    probe_at: Instant,
    scope: Scope,
    /// When it began.
    since: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scope {
    /// This host's alone (a full disk: each host has its own `--out`), or
    /// an account pause the queue could not record.
    Host,
    /// An account-level pause not yet recorded in the queue.
    Unshared,
    /// The queue's pause with this epoch: every process sharing the queue
    /// stops claiming until one probe, from any of them, lifts it.
    Fleet(i64),
}

/// The pause once a worker has reported `problem` at `now`. The first report
/// starts it and fixes its first probe (`probe_interval` later, or as long
/// as the API asked); later reports (workers that met the same answer, or
/// were turned back at the rate gate by it) never move the probe later.
fn pause_after(
    current: Option<Pause>,
    problem: HostProblem,
    now: Instant,
    probe_interval: Duration,
) -> Pause {
    if let Some(current) = current {
        return current;
    }
    let (wait, scope) = match &problem {
        HostProblem::Account { pause, .. } => (pause.unwrap_or(probe_interval), Scope::Unshared),
        HostProblem::DiskFull { .. } | HostProblem::Archive { .. } => (probe_interval, Scope::Host),
        // Another host's network may be fine: never shared. A connection
        // attempt is cheap, so probed more often than an account.
        HostProblem::ApiUnreachable { .. } => (probe_interval.min(UNREACHABLE_PROBE), Scope::Host),
    };
    Pause {
        problem,
        probe_at: now + wait,
        scope,
        since: now,
    }
}

/// How often a paused host refreshes its pause in the queue for `status`,
/// and how long `status` shows it after the last refresh.
const HOST_PAUSE_REFRESH: Duration = Duration::from_secs(10);
const HOST_PAUSE_SHOWN: Duration = Duration::from_secs(60);

/// The longest wait between probes of an API this host cannot connect to.
const UNREACHABLE_PROBE: Duration = Duration::from_secs(5);

/// What a batch (`--exit-when-idle`) does about a pause at `now` (pure):
/// `true` ends it. An account or disk pause ends it at once (but a pause
/// found at the start is probed first: its user may have fixed the cause);
/// an unreachable API only once it has lasted `api_unreachable`, an archive
/// bucket that does not answer once it has lasted [`BATCH_ARCHIVE_GRACE`].
fn batch_gives_up(
    pause: &Pause,
    probe_early: bool,
    now: Instant,
    api_unreachable: Duration,
) -> bool {
    match pause.problem {
        HostProblem::ApiUnreachable { .. } => now.duration_since(pause.since) >= api_unreachable,
        // A bucket that may come back is waited for a while too.
        HostProblem::Archive { lasting: false, .. } => {
            now.duration_since(pause.since) >= BATCH_ARCHIVE_GRACE
        }
        _ => !probe_early,
    }
}

/// How often a process paused by the queue's pause looks whether another
/// process lifted it (or moved its probe).
const FLEET_PAUSE_POLL: Duration = Duration::from_secs(2);

/// Runs the pool until the shutdown, or (with `exit_when_idle`) until the
/// queue is empty or a host problem stops it.
pub(crate) async fn run(
    engine: Engine,
    options: RunOptions,
    shutdown: CancellationToken,
    reloads: Option<watch::Receiver<Option<Reload>>>,
) -> Result<RunEnd, QueueError> {
    let downloads = RunningDownloads::start(&engine).await?;
    let concurrency = options.concurrency.max(1);
    let pool = Pool {
        engine,
        options,
        shutdown,
        reloads,
        downloads,
        permits: Arc::new(Semaphore::new(concurrency as usize)),
        concurrency,
        idle: IDLE_POLL_MIN,
        pause: None,
        probe_early: false,
        outage: None,
        host_pause_recorded: None,
    };
    pool.run().await
}

/// The workers of `run`: up to `concurrency` jobs at a time.
struct Pool {
    engine: Engine,
    options: RunOptions,
    shutdown: CancellationToken,
    reloads: Option<watch::Receiver<Option<Reload>>>,
    downloads: RunningDownloads,
    /// One permit a worker; `concurrency` of them in circulation.
    permits: Arc<Semaphore>,
    concurrency: u32,
    /// The sleep of the next idle turn (doubling up to the queue's
    /// `idle_poll_max`).
    idle: Duration,
    pause: Option<Pause>,
    /// Probe the pause at once, whatever its probe time (a pause found at
    /// start: the user may have restarted us because they fixed its cause).
    probe_early: bool,
    /// Since when the queue database has not answered a claim, if it has not.
    outage: Option<Outage>,
    /// When this host's pause was last recorded in the queue for `status`
    /// (see [`Pool::record_host_pause`]).
    host_pause_recorded: Option<Instant>,
}

/// How long a batch waits for an archive bucket that does not answer
/// before it gives up (exit 4, jobs left queued); a daemon waits for ever.
const BATCH_ARCHIVE_GRACE: Duration = Duration::from_secs(120);

/// What a turn of the loop leads to.
enum Turn {
    Again,
    End(RunEnd),
}

impl Pool {
    async fn run(mut self) -> Result<RunEnd, QueueError> {
        if let Ok(state) = self.engine.queue.fleet_state().await
            && let Some(pause) = state.pause
        {
            self.adopt(pause, Instant::now());
            self.probe_early = true;
        }
        // Started once a pause found at the start holds the gate: its
        // first poll must not meet an answer the pause already stands for.
        let poller_stop = self.shutdown.child_token();
        let poller = tokio::spawn(super::poller::run(
            self.engine.clone(),
            self.options.tasks,
            self.downloads.reporter(),
            poller_stop.clone(),
        ));
        let end = loop {
            // Outcomes first: a pause must stop claiming before the next claim.
            self.take_outcomes();
            self.share_pause().await;
            self.report_pause();
            self.record_host_pause().await;
            if self.shutdown.is_cancelled() {
                break RunEnd::Stopped;
            }
            if self.apply_reload().await {
                continue;
            }
            let turn = match self.pause.clone() {
                Some(pause)
                    if self.options.exit_when_idle
                        && batch_gives_up(
                            &pause,
                            self.probe_early,
                            Instant::now(),
                            self.options.api_unreachable,
                        ) =>
                {
                    Turn::End(RunEnd::Blocked(pause.problem))
                }
                Some(pause) => self.wait_out(pause).await,
                None => self.claim_and_spawn().await,
            };
            if let Turn::End(end) = turn {
                break end;
            }
        };
        poller_stop.cancel();
        let _ = poller.await;
        self.pause = None;
        self.record_host_pause().await;
        self.downloads.finish().await;
        Ok(end)
    }

    /// Takes every outcome reported so far: a pause starts here.
    fn take_outcomes(&mut self) {
        while let Some((file_id, outcome)) = self.downloads.try_report() {
            match outcome {
                Ok(Outcome::Paused(problem)) => {
                    if self.pause.is_none() {
                        error!(file_id, "pausing all work: {}", problem.message());
                    }
                    let now = Instant::now();
                    self.pause = Some(pause_after(
                        self.pause.take(),
                        problem,
                        now,
                        self.options.probe_interval,
                    ));
                }
                Ok(_) => {}
                Err(e) => error!(file_id, "queue error while recording a job: {e}"),
            }
        }
    }

    /// Tells the observers (metrics, `/readyz`) whether the pool is paused,
    /// why, and how long until the next probe.
    fn report_pause(&self) {
        let now = Instant::now();
        let pause = self.pause.as_ref();
        let pause = pause.map(|p| (&p.problem, p.probe_at.saturating_duration_since(now)));
        self.engine.observer.paused(pause);
    }

    /// Keeps this host's pause for an API it cannot connect to, or for an
    /// archive bucket that cannot take files, in the queue, where `status`
    /// on any host shows it (no other host obeys it): refreshed every [`HOST_PAUSE_REFRESH`] while it lasts, shown
    /// for [`HOST_PAUSE_SHOWN`] after each (a daemon that dies paused
    /// leaves no lasting mark), removed when it ends.
    async fn record_host_pause(&mut self) {
        let message = self
            .pause
            .as_ref()
            .and_then(|p| p.problem.host_pause_record());
        let host = crate::worker::host_name();
        let me = self.engine.identity();
        let now = Instant::now();
        match message {
            Some(_)
                if self
                    .host_pause_recorded
                    .is_some_and(|at| now < at + HOST_PAUSE_REFRESH) => {}
            Some(message) => {
                let recorded = self
                    .engine
                    .queue
                    .record_host_pause(&host, &message, me, HOST_PAUSE_SHOWN)
                    .await;
                if let Err(e) = recorded {
                    warn!(
                        "cannot record this host's pause in the queue (status will not show it): {e}"
                    );
                }
                self.host_pause_recorded = Some(now);
            }
            None if self.host_pause_recorded.take().is_some() => {
                if let Err(e) = self.engine.queue.lift_host_pause(&host, me).await {
                    warn!(
                        "cannot remove this host's pause from the queue (status shows it for a minute more): {e}"
                    );
                }
            }
            None => {}
        }
    }

    /// Records a new account-level pause in the queue, so that every other
    /// process sharing it stops claiming too.
    async fn share_pause(&mut self) {
        let Some(pause) = self.pause.as_mut() else {
            return;
        };
        if pause.scope != Scope::Unshared {
            return;
        }
        let first_probe = pause.probe_at.saturating_duration_since(Instant::now());
        let owner = self.engine.identity();
        match self
            .engine
            .queue
            .pause_fleet(pause.problem.message(), owner, first_probe)
            .await
        {
            Ok(epoch) => pause.scope = Scope::Fleet(epoch),
            Err(e) => {
                warn!(
                    "cannot record the pause in the queue (other processes will meet the same answer): {e}"
                );
                pause.scope = Scope::Host;
            }
        }
    }

    /// Takes on the queue's pause, recorded by another process (or by an
    /// earlier run of this one).
    fn adopt(&mut self, pause: FleetPause, probe_at: Instant) {
        let message = format!("{} (paused by {})", pause.message, pause.paused_by);
        error!("the queue is paused; not claiming jobs: {message}");
        self.engine.gate.hold(Hold {
            message: message.clone(),
            pause: None,
        });
        self.pause = Some(Pause {
            problem: HostProblem::Account {
                message,
                pause: None,
            },
            probe_at,
            scope: Scope::Fleet(pause.epoch),
            since: Instant::now(),
        });
    }

    /// The pause is over: calls and claims go on.
    async fn resume(&mut self, why: &str) {
        if let Some(Pause {
            scope: Scope::Fleet(epoch),
            ..
        }) = self.pause.take()
            && let Err(e) = self.engine.queue.lift_pause(epoch).await
        {
            warn!(
                "cannot lift the queue's pause (other processes lift it by their own probe): {e}"
            );
        }
        self.engine.gate.release();
        info!("{why}; resuming work");
    }

    /// Applies the newest reload, if one came; a reload also lifts a pause.
    async fn apply_reload(&mut self) -> bool {
        let Some(reload) = self.reloads.as_mut().and_then(take_reload) else {
            return false;
        };
        self.engine.replace_api(reload.api);
        self.engine.gate.set_settings(reload.rate);
        self.resize(reload.concurrency.max(1));
        info!(
            concurrency = self.concurrency,
            requests_per_minute = %reload.rate.requests,
            "configuration reloaded"
        );
        if self.pause.is_some() {
            self.resume("configuration reloaded").await;
        }
        true
    }

    /// The download slots, and the upload stage beside them, become
    /// `wanted` (see [`resize_permits`]).
    fn resize(&mut self, wanted: u32) {
        resize_permits(&self.permits, self.concurrency as usize, wanted as usize);
        self.engine.resize_upload_stage(self.concurrency, wanted);
        self.concurrency = wanted;
    }

    /// Paused: sleeps until the probe is due (or a reload or the shutdown
    /// comes), then probes whether the problem is gone. A pause shared
    /// through the queue is probed by one process at a time, and lifted for
    /// all by the first probe that succeeds.
    async fn wait_out(&mut self, pause: Pause) -> Turn {
        let now = Instant::now();
        let early = std::mem::take(&mut self.probe_early);
        let pause = match pause.scope {
            Scope::Fleet(epoch) if !early => {
                match self.follow_fleet_pause(pause, epoch, now).await {
                    Some(pause) => pause,
                    None => return Turn::Again,
                }
            }
            _ => pause,
        };
        if !early && now < pause.probe_at {
            let wake = match pause.scope {
                Scope::Fleet(_) => pause.probe_at.min(now + FLEET_PAUSE_POLL),
                _ => pause.probe_at,
            };
            self.sleep_until(wake).await;
            return Turn::Again;
        }
        let interval = self.options.probe_interval;
        if let Scope::Fleet(_) = pause.scope {
            match self
                .engine
                .queue
                .take_probe_slot(
                    interval,
                    if early {
                        ProbeWhen::Now
                    } else {
                        ProbeWhen::IfDue
                    },
                )
                .await
            {
                Ok(Some(_)) => {}
                Ok(None) => {
                    // Another process probes this time.
                    self.set_probe_at(now + FLEET_PAUSE_POLL);
                    return Turn::Again;
                }
                Err(e) => warn!("cannot take the probe slot from the queue; probing anyway: {e}"),
            }
        }
        if probe(&self.engine, &pause.problem, &self.shutdown).await {
            self.resume("the problem is gone").await;
        } else {
            error!(
                "still paused: {} (next check in {}s)",
                pause.problem.message(),
                interval.as_secs()
            );
            self.set_probe_at(Instant::now() + interval);
        }
        Turn::Again
    }

    /// Brings a pause shared through the queue up to date: `None` when
    /// another process lifted it (this one resumes too).
    async fn follow_fleet_pause(
        &mut self,
        pause: Pause,
        epoch: i64,
        now: Instant,
    ) -> Option<Pause> {
        match self.engine.queue.fleet_state().await {
            Ok(state) => match state.pause {
                None => {
                    self.pause = None;
                    self.engine.gate.release();
                    info!("the queue's pause was lifted by another process; resuming work");
                    None
                }
                Some(current) if current.epoch != epoch => {
                    self.adopt(current.clone(), now + current.probe_in);
                    self.pause.clone()
                }
                Some(current) => {
                    self.set_probe_at(now + current.probe_in);
                    self.pause.clone()
                }
            },
            Err(e) => {
                warn!("cannot read the queue's pause: {e}");
                Some(pause)
            }
        }
    }

    fn set_probe_at(&mut self, at: Instant) {
        if let Some(pause) = self.pause.as_mut() {
            pause.probe_at = at;
        }
    }

    /// Sleeps until `until`, a reload (not consumed: the top of the loop
    /// applies it) or the shutdown.
    async fn sleep_until(&self, until: Instant) {
        let reload_changed = async {
            match self.reloads.as_ref() {
                Some(r) => {
                    let mut r = r.clone();
                    let _ = r.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = tokio::time::sleep_until(until) => {}
            _ = reload_changed => {}
        }
    }

    /// Claims a job for every free worker (one statement for the batch)
    /// and spawns them; backs off when there is none.
    async fn claim_and_spawn(&mut self) -> Turn {
        let permits = match self.permits_for_claim().await {
            Ok(permits) => permits,
            Err(turn) => return turn,
        };
        let owner = self.engine.next_owner();
        let began = Instant::now();
        let claim = self.engine.queue.claim_batch(&owner, LEASE, permits.len());
        let claimed = match self.claim_limit(began) {
            Some(limit) => match tokio::time::timeout(limit, claim).await {
                Ok(claimed) => claimed.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer to a claim in {} ms", limit.as_millis())),
            },
            None => claim.await.map_err(|e| e.to_string()),
        };
        let claimed = match claimed {
            Ok(claimed) if claimed.is_empty() => {
                drop(permits);
                return self.idle().await;
            }
            Ok(claimed) => claimed,
            Err(e) => {
                drop(permits);
                return self.claim_failed(began, e).await;
            }
        };
        if let Some(outage) = self.outage.take() {
            outage.ended(Instant::now());
        }
        self.idle = IDLE_POLL_MIN;
        self.downloads.stop_previous(&claimed).await;
        for (job, permit) in claimed.into_iter().zip(permits) {
            self.downloads.spawn(job, &self.shutdown, Some(permit));
        }
        Turn::Again
    }

    /// A busy, restarting or unreachable database: back off and try again
    /// rather than abandon the jobs in flight (their leases outlive a short
    /// outage; a long one hands them to whoever claims next). A batch gives
    /// up after [`BATCH_GRACE`].
    ///
    /// The outage counts from the start of the first claim that failed: a
    /// statement against a database that is gone waits for the pool's
    /// acquire timeout before it fails.
    async fn claim_failed(&mut self, began: Instant, e: String) -> Turn {
        let now = Instant::now();
        let outage = self.outage.get_or_insert_with(|| Outage::new(began));
        let wait = outage.failed(now, "cannot claim a job from the queue database", &e);
        if self.options.exit_when_idle && outage.lasted(now) >= BATCH_GRACE {
            return Turn::End(RunEnd::Unreachable(e));
        }
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        Turn::Again
    }

    /// How long a batch's claim may wait for the database: what is left of
    /// [`BATCH_GRACE`], so that a batch gives up on time however long the
    /// database takes to fail. A daemon waits as long as it takes.
    fn claim_limit(&self, now: Instant) -> Option<Duration> {
        if !self.options.exit_when_idle {
            return None;
        }
        let lasted = self
            .outage
            .as_ref()
            .map_or(Duration::ZERO, |o| o.lasted(now));
        Some(
            BATCH_GRACE
                .saturating_sub(lasted)
                .max(Duration::from_millis(100)),
        )
    }

    /// A permit for every worker free now or within [`CLAIM_LINGER`]; none
    /// when the shutdown or an outcome comes first (outcomes come before
    /// any claim).
    async fn permits_for_claim(&self) -> Result<Vec<OwnedSemaphorePermit>, Turn> {
        let permit = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(Turn::Again),
            p = self.permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Err(Turn::End(RunEnd::Stopped)),
            },
        };
        if self.downloads.has_reports() {
            // An outcome came in while we waited: handle it before claiming.
            return Err(Turn::Again);
        }
        let max = (self.concurrency as usize).min(CLAIM_BATCH_MAX);
        let batch = gather_permits(&self.permits, permit, max, CLAIM_LINGER).await;
        if self.downloads.has_reports() {
            // A worker that reported (a pause, say) gave its permit back
            // while we gathered: its outcome comes before any claim.
            return Err(Turn::Again);
        }
        Ok(batch)
    }

    /// Nothing to claim: ends an `exit_when_idle` pool with nothing left,
    /// else sleeps until a job is due, an outcome comes, or the back-off
    /// has passed.
    async fn idle(&mut self) -> Turn {
        // Claims take nothing while the queue is paused: is that why?
        if let Ok(state) = self.engine.queue.fleet_state().await
            && let Some(pause) = state.pause
        {
            let probe_at = Instant::now() + pause.probe_in;
            self.adopt(pause, probe_at);
            return Turn::Again;
        }
        if self.options.exit_when_idle
            && self.downloads.in_flight() == 0
            && self.nothing_claimable().await
        {
            return Turn::End(RunEnd::Idle);
        }
        let mut wait = self.engine.hooks.idle_poll().unwrap_or(self.idle);
        if let Ok(Some(due)) = self.engine.queue.next_due().await {
            let until_due = Duration::from_millis((due - now_millis()).max(0) as u64);
            wait = wait.min(until_due.max(IDLE_POLL_MIN));
        }
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = self.engine.queue.wait_for_work(wait) => {}
            _ = self.downloads.report_arrived() => {}
        }
        self.idle = (self.idle * 2).min(self.engine.queue.idle_poll_max());
        Turn::Again
    }
}

impl Pool {
    /// `--exit-when-idle`: nothing queued anywhere (due or not) and no
    /// abandoned lease (after freeing those of workers dead on this host).
    /// Jobs running under live leases, on this host or another, are theirs.
    async fn nothing_claimable(&self) -> bool {
        let queue = &self.engine.queue;
        if let Err(e) = queue
            .expire_leases_of_dead_owners(crate::worker::owner_is_dead)
            .await
        {
            warn!("cannot free the leases of dead workers: {e}");
            return false;
        }
        match queue.claimable().await {
            Ok(left) => left.is_empty(),
            Err(e) => {
                warn!("cannot read what is left in the queue: {e}");
                false
            }
        }
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
        assert_eq!(first.probe_at, began + interval);
        assert_eq!(first.scope, Scope::Unshared, "to be recorded in the queue");
        // Three more workers report the same answer as the wait ends.
        let later = began + interval;
        let mut pause = first.clone();
        for _ in 0..3 {
            pause = pause_after(Some(pause), account("1008 no balance"), later, interval);
        }
        assert_eq!(pause, first, "later reports change neither cause nor probe");
    }

    #[test]
    fn a_batch_gives_up_on_an_unreachable_api_only_after_its_time() {
        let minute = Duration::from_secs(60);
        let began = tokio::time::Instant::now();
        let unreachable = HostProblem::ApiUnreachable {
            message: "connection refused".into(),
        };
        let pause = pause_after(None, unreachable, began, minute);
        assert_eq!(pause.scope, Scope::Host, "never shared with other hosts");
        assert_eq!(pause.probe_at, began + UNREACHABLE_PROBE);
        let grace = 2 * minute;
        for (after, gives_up) in [(Duration::ZERO, false), (minute, false), (grace, true)] {
            assert_eq!(
                batch_gives_up(&pause, false, began + after, grace),
                gives_up,
                "{after:?}"
            );
        }
        let account = pause_after(None, account("1004"), began, minute);
        assert!(batch_gives_up(&account, false, began, grace), "at once");
        assert!(
            !batch_gives_up(&account, true, began, grace),
            "probed first"
        );
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
        assert_eq!(pause.probe_at, now + hour);
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
