//! `minimax-dl demo`: the whole product on the built-in simulator, with no
//! key and no network. A batch of files with faults switched on goes through
//! the real queue, API client, fetcher and pool; every file is then checked
//! against the simulator's own digest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::config::{LogFormat, Settings, TaskSettings};
use crate::daemon::{self, RunEnd, RunOptions};
use crate::fetch::file::hash_file;
use crate::fetch::range::DEFAULT_MAX_FILE_BYTES;
use crate::ids::TaskApi;
use crate::progress;
use crate::queue::{DbLocation, JobState, NewTask, Queue, RetryPolicy, TaskState};
use crate::runtime::{OnStop, engine, exit, spawn_signal_handler};
use crate::{outln, say};
use minimax_sim::{
    ApiFault, ApiFaultRule, CdnFault, CdnFaultRule, FaultCounts, Faults, SimApi, SimConfig,
    SimStats, SimTask, Simulator, TaskEnd,
};

const DEMO_KEY: &str = "demo-key";
/// The demo's tasks generate for seconds, not minutes: it polls them
/// every half second (a real run never polls a task more often than every 10 s).
const DEMO_POLL_FLOOR: Duration = Duration::from_millis(500);
const FIRST_ID: i64 = 305_000_000_000_001;

/// Files that arrive as generation tasks: a v1 task (its result is a file
/// id), a v2 task (its result is the video's URL; the job is keyed by the
/// task) and one MiniMax rejects.
struct DemoTasks {
    v1: i64,
    v1_file: i64,
    v2: i64,
    rejected: i64,
}

const DEMO_TASKS: DemoTasks = DemoTasks {
    v1: 424_010_985_738_001,
    v1_file: 424_010_985_739_001,
    v2: 424_010_985_738_003,
    rejected: 424_010_985_738_005,
};

/// How long the demo's tasks generate.
const DEMO_GENERATION: Duration = Duration::from_millis(1500);

impl DemoTasks {
    /// Declares them on the simulator (generating from now) and enqueues
    /// them: `run` polls them until they become jobs.
    async fn start(&self, sim: &Simulator, queue: &Queue, settings: &Settings) -> Result<()> {
        sim.add_task(
            self.v1,
            SimTask::new(SimApi::V1, self.v1_file).generating(DEMO_GENERATION),
        );
        sim.add_task(
            self.v2,
            SimTask::new(SimApi::V2, self.v2).generating(DEMO_GENERATION * 2),
        );
        let rejected = TaskEnd::Fail(1026, "video description contains sensitive content".into());
        sim.add_task(
            self.rejected,
            SimTask::new(SimApi::V2, self.rejected)
                .generating(DEMO_GENERATION)
                .ending(rejected),
        );
        let new = |task_id, api| NewTask {
            task_id,
            api,
            result: None,
        };
        let tasks = [
            new(self.v1, TaskApi::V1),
            new(self.v2, TaskApi::V2),
            new(self.rejected, TaskApi::V2),
        ];
        queue.enqueue_tasks(&tasks, settings.tasks.deadline).await?;
        Ok(())
    }

    /// The tasks ended as planned: two became jobs, one failed with
    /// MiniMax's reason.
    async fn check(&self, queue: &Queue, check: &mut Check) -> Result<()> {
        for (id, wanted) in [
            (self.v1, TaskState::Done),
            (self.v2, TaskState::Done),
            (self.rejected, TaskState::Failed),
        ] {
            match queue.get_task(id).await? {
                Some(task) if task.state == wanted => {}
                Some(task) => check.problems.push(format!(
                    "task {id}: ended {} ({})",
                    task.state,
                    task.last_error.unwrap_or_default()
                )),
                None => check.problems.push(format!("task {id}: not in the queue")),
            }
        }
        Ok(())
    }
}

/// Where the demo sees that a fault it announced actually happened.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Evidence {
    /// Each of these rules (indices into `Faults::api`) fired.
    ApiRules(Vec<usize>),
    /// Each of these rules (indices into `Faults::cdn`) fired.
    CdnRules(Vec<usize>),
    /// The API answered at least one retrieve call for this file (what a
    /// hostile filename or a missing file needs to be seen at all).
    Retrieved(i64),
}

/// A fault as the demo announces it, and how to tell that it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Announced {
    note: String,
    evidence: Evidence,
}

/// The faults the demo switches on, each for a few files: a taste of the
/// night a real batch goes through. A fault is only announced when it has
/// a file to land on: the last id is the missing file, so per-file faults
/// go to the others, and a small batch gets fewer of them.
#[derive(Debug, Default)]
struct Plan {
    faults: Faults,
    announced: Vec<Announced>,
}

impl Plan {
    fn new(ids: &[i64], sizes: &HashMap<i64, u64>) -> Plan {
        let mut plan = Plan::default();
        let missing = *ids.last().unwrap_or(&FIRST_ID);
        let existing = &ids[..ids.len().saturating_sub(1)];
        let pick = |i: usize| existing.get(i).map(|&id| (id, sizes[&id]));
        plan.api_faults(ids.len(), pick(3));
        plan.cdn_faults([pick(1), pick(5)], pick(2), pick(6));
        if let Some((id, _)) = pick(4) {
            plan.faults.filenames.insert(id, "../../etc/passwd".into());
            plan.announce(
                format!("a hostile filename \"../../etc/passwd\" for file {id}"),
                Evidence::Retrieved(id),
            );
        }
        plan.faults.missing.insert(missing);
        plan.announce(
            format!("file {missing} does not exist (fails at once, code 2013)"),
            Evidence::Retrieved(missing),
        );
        plan
    }

    fn announce(&mut self, note: String, evidence: Evidence) {
        self.announced.push(Announced { note, evidence });
    }

    fn api(&mut self, rule: ApiFaultRule) -> usize {
        self.faults.api.push(rule);
        self.faults.api.len() - 1
    }

    fn cdn(&mut self, rule: CdnFaultRule) -> usize {
        self.faults.cdn.push(rule);
        self.faults.cdn.len() - 1
    }

    /// A rate limit on a call that must come (every job makes at least one
    /// retrieve call), and a gateway 502 for one file.
    fn api_faults(&mut self, files: usize, gateway: Option<(i64, u64)>) {
        let nth = files.clamp(1, 9) as u32;
        let rule = self.api(
            ApiFaultRule::new(ApiFault::Code(1002, "rate limit exceeded(RPM)".into()))
                .every(nth)
                .limit(1),
        );
        self.announce(
            "one 1002 rate-limit answer (the whole pool backs off)".into(),
            Evidence::ApiRules(vec![rule]),
        );
        if let Some((id, _)) = gateway {
            let rule = self.api(
                ApiFaultRule::new(ApiFault::Http(502))
                    .for_files([id])
                    .limit(1),
            );
            self.announce(
                format!("an HTML 502 from the API gateway for file {id}"),
                Evidence::ApiRules(vec![rule]),
            );
        }
    }

    /// Drops (the second file's resume then meets a CDN ignoring Range),
    /// an expired URL and a truncated body, each placed inside its file.
    fn cdn_faults(
        &mut self,
        dropped: [Option<(i64, u64)>; 2],
        expired: Option<(i64, u64)>,
        truncated: Option<(i64, u64)>,
    ) {
        if let [Some((a, a_size)), Some((b, b_size))] = dropped {
            let rules = [(a, a_size), (b, b_size)]
                .map(|(id, size)| {
                    self.cdn(
                        CdnFaultRule::new(CdnFault::DropAfter(size / 3))
                            .for_files([id])
                            .limit(1),
                    )
                })
                .to_vec();
            self.announce(
                format!("connections dropped mid-body for files {a} and {b} (resumed with Range)"),
                Evidence::CdnRules(rules),
            );
            let rule = self.cdn(
                CdnFaultRule::new(CdnFault::IgnoreRange)
                    .for_files([b])
                    .limit(1),
            );
            self.announce(
                format!("a CDN that ignored Range once for file {b} (restarted cleanly)"),
                Evidence::CdnRules(vec![rule]),
            );
        }
        if let Some((id, _)) = expired {
            let rule = self.cdn(
                CdnFaultRule::new(CdnFault::Expired)
                    .for_files([id])
                    .limit(1),
            );
            self.announce(
                format!("an expired download URL for file {id} (a fresh one is fetched)"),
                Evidence::CdnRules(vec![rule]),
            );
        }
        if let Some((id, size)) = truncated {
            let rule = self.cdn(
                CdnFaultRule::new(CdnFault::TruncateChunked(size / 4))
                    .for_files([id])
                    .limit(1),
            );
            self.announce(
                format!("a silently truncated body for file {id} (caught by the size check)"),
                Evidence::CdnRules(vec![rule]),
            );
        }
    }
}

/// The announced faults the simulator's counters show no sign of.
fn unfired<'a>(announced: &'a [Announced], counts: &FaultCounts, stats: &SimStats) -> Vec<&'a str> {
    let fired = |rules: &[usize], counts: &[u64]| {
        rules.iter().all(|&r| counts.get(r).is_some_and(|&n| n > 0))
    };
    announced
        .iter()
        .filter(|a| match &a.evidence {
            Evidence::ApiRules(rules) => !fired(rules, &counts.api),
            Evidence::CdnRules(rules) => !fired(rules, &counts.cdn),
            Evidence::Retrieved(id) => !stats.api_requests_by_file.contains_key(id),
        })
        .map(|a| a.note.as_str())
        .collect()
}

/// The demo's archive and queue: a kept directory, or a temporary one
/// removed when the demo ends.
struct Place {
    dir: PathBuf,
    kept: bool,
    _temp: tempfile::TempDir,
}

impl Place {
    fn new(keep_dir: Option<PathBuf>) -> Result<Place> {
        let temp = tempfile::Builder::new()
            .prefix("minimax-dl-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let kept = keep_dir.is_some();
        let dir = keep_dir.unwrap_or_else(|| temp.path().to_path_buf());
        let dir = std::path::absolute(&dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        if kept {
            make_room(&dir)?;
        }
        Ok(Place {
            dir,
            kept,
            _temp: temp,
        })
    }
}

/// What the demo writes in a kept `--dir`: its queue (with SQLite's
/// companions) and its archive.
const DEMO_ENTRIES: [&str; 5] = [
    "queue.db",
    "queue.db-wal",
    "queue.db-shm",
    "queue.db-journal",
    "files",
];

/// Whether a directory's entries are all the demo's own, with its queue
/// among them: an earlier demo, which a new one replaces. Pure.
fn earlier_demo(entries: &[String]) -> bool {
    entries.iter().any(|e| e == "queue.db")
        && entries.iter().all(|e| DEMO_ENTRIES.contains(&e.as_str()))
}

/// A demo given `--dir D` twice must work the second time too, on a fresh
/// queue and archive (an old queue would hold every job done, and the
/// faults it announces would never happen): an earlier demo's queue and
/// files are removed, saying so. A directory holding anything else is the
/// user's, and is refused untouched.
fn make_room(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    if entries.is_empty() {
        return Ok(());
    }
    if !earlier_demo(&entries) {
        anyhow::bail!(
            "{} is not empty and holds no earlier demo: give the demo a new or empty directory (it writes queue.db and files/ there)",
            dir.display()
        );
    }
    say!(
        "minimax-dl demo: replacing the earlier demo in {} (its queue.db and files/)",
        dir.display()
    );
    for entry in &entries {
        let path = dir.join(entry);
        let removed = if entry == "files" {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// What the demo found in the archive.
#[derive(Default)]
struct Check {
    verified: u64,
    bytes: u64,
    problems: Vec<String>,
}

pub(crate) async fn run(files: u32, keep_dir: Option<PathBuf>) -> Result<u8> {
    let place = Place::new(keep_dir)?;
    let ids: Vec<i64> = (0..i64::from(files)).map(|i| FIRST_ID + i).collect();
    let sizes: HashMap<i64, u64> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, 256 * 1024 + (i as u64 * 7919 % 29) * 256 * 1024))
        .collect();
    let plan = Plan::new(&ids, &sizes);
    let sim = Simulator::start(SimConfig {
        api_key: Some(DEMO_KEY.into()),
        sizes,
        faults: plan.faults.clone(),
        ..SimConfig::default()
    })
    .await
    .context("cannot start the simulator on 127.0.0.1")?;
    let settings = settings(&sim, &place.dir)?;
    announce(files, &sim, &settings, &plan);

    let queue = Queue::open_for_workers(&settings.database).await?;
    queue.enqueue(&ids).await?;
    DEMO_TASKS.start(&sim, &queue, &settings).await?;
    let started = Instant::now();
    match work(&settings, &queue, files + 2).await? {
        RunEnd::Idle => {}
        RunEnd::Stopped => {
            outln!("demo interrupted");
            return Ok(exit::JOB_FAILURES);
        }
        RunEnd::Blocked(problem) => {
            say!("minimax-dl demo: stopped: {}", problem.message());
            return Ok(exit::JOB_FAILURES);
        }
        RunEnd::Unreachable(why) => {
            say!("minimax-dl demo: stopped: the queue database does not answer: {why}");
            return Ok(exit::DB_UNREACHABLE);
        }
    }
    let elapsed = started.elapsed();
    let missing: Vec<i64> = plan.faults.missing.iter().copied().collect();
    let mut check = verify(&queue, &sim, &settings, &missing).await?;
    DEMO_TASKS.check(&queue, &mut check).await?;
    let stats = sim.stats();
    let unseen = unfired(&plan.announced, &sim.fault_counts(), &stats);
    check.problems.extend(
        unseen
            .iter()
            .map(|note| format!("an announced fault never happened: {note}")),
    );
    let total: u64 = ids
        .iter()
        .chain([&DEMO_TASKS.v1_file, &DEMO_TASKS.v2])
        .filter(|id| !missing.contains(id))
        .map(|&id| sim.file_size(id))
        .sum();
    let summary = Summary {
        expected: files as usize + 2 - missing.len(),
        missing: missing.len(),
        announced: plan.announced.len(),
        unseen: unseen.len(),
        total,
        elapsed,
    };
    summary.print(&check, &stats);
    if place.kept {
        outln!("  look:      minimax-dl --db {} list", settings.database.0);
    } else {
        outln!(
            "  removed:   {} (a temporary directory; keep the queue and files with --dir DIR)",
            place.dir.display()
        );
    }
    queue.close().await;
    Ok(verdict(&check, &stats))
}

/// Settings for the real engine against the simulator, in `dir`.
fn settings(sim: &Simulator, dir: &Path) -> Result<Settings> {
    Ok(Settings {
        config_path: None,
        api_base: crate::http::parse_api_base(&sim.api_base()).map_err(anyhow::Error::msg)?,
        api_key: Ok(Some(SecretString::from(DEMO_KEY))),
        api_key_file: None,
        database: DbLocation(dir.join("queue.db").to_string_lossy().into_owned()),
        output_dir: dir.join("files"),
        bucket: None,
        archive_allow_http: false,
        concurrency: 4,
        rate: crate::config::RateSettings {
            requests: crate::config::RequestRate::Fixed(600),
            burst: crate::config::DEFAULT_BURST,
            window: crate::config::RATE_WINDOW,
        },
        retry: RetryPolicy {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            ..RetryPolicy::default()
        },
        segments: 1,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
        probe_interval: Duration::from_secs(5),
        db_timeout: Duration::from_secs(10),
        api_unreachable: Duration::from_secs(120),
        log_format: LogFormat::Text,
        listen: None,
        cdn_allow: Vec::new(),
        max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        tasks: TaskSettings {
            api: TaskApi::V1,
            deadline: Duration::from_secs(600),
            poll_floor: DEMO_POLL_FLOOR,
        },
        callback_token: Ok(None),
        warnings: Vec::new(),
        path_template: None,
        sidecar: false,
    })
}

fn announce(files: u32, sim: &Simulator, settings: &Settings, plan: &Plan) {
    outln!(
        "minimax-dl demo: {} files from the built-in MiniMax simulator ({})",
        files,
        sim.api_base()
    );
    outln!("  queue:   {}", settings.database.0);
    outln!("  archive: {}", settings.output_dir.display());
    outln!("  faults switched on:");
    for announced in &plan.announced {
        outln!("    - {}", announced.note);
    }
    outln!(
        "  and 3 generation tasks: v1 task {} and v2 task {} polled until their videos exist, \
         v2 task {} rejected by MiniMax (1026)",
        DEMO_TASKS.v1,
        DEMO_TASKS.v2,
        DEMO_TASKS.rejected
    );
}

/// Runs the pool over the whole queue until it is empty.
async fn work(settings: &Settings, queue: &Queue, files: u32) -> Result<RunEnd> {
    let (bars, observer) = progress::for_stderr(Some(u64::from(files)));
    let engine = engine(settings, queue.clone(), observer)?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), None, OnStop::Finish);
    let options = RunOptions {
        concurrency: settings.concurrency,
        exit_when_idle: true,
        probe_interval: settings.probe_interval,
        api_unreachable: settings.api_unreachable,
        tasks: settings.tasks,
    };
    let end = daemon::run(engine, options, shutdown, None).await?;
    if let Some(b) = &bars {
        b.finish();
    }
    Ok(end)
}

/// Every job against the simulator: done files hash to its digest inside
/// the archive; only the missing files failed.
async fn verify(
    queue: &Queue,
    sim: &Simulator,
    settings: &Settings,
    missing: &[i64],
) -> Result<Check> {
    let mut check = Check::default();
    for job in queue.list(None, None).await? {
        let expected_failure = missing.contains(&job.file_id);
        match (job.state, expected_failure) {
            (JobState::Done, false) => {
                let path = PathBuf::from(job.final_path.clone().unwrap_or_default());
                match hash_file(&path) {
                    Ok((size, sha))
                        if sha == sim.expected_sha256(job.file_id)
                            && size == sim.file_size(job.file_id) =>
                    {
                        check.verified += 1;
                        check.bytes += size;
                    }
                    Ok(_) => check.problems.push(format!(
                        "{}: content differs from the simulator's",
                        job.file_id
                    )),
                    Err(e) => check.problems.push(format!(
                        "{}: cannot read {}: {e}",
                        job.file_id,
                        path.display()
                    )),
                }
                if !path.starts_with(&settings.output_dir) {
                    check
                        .problems
                        .push(format!("{}: placed outside the archive", job.file_id));
                }
            }
            (JobState::Failed, true) => {}
            (state, _) => check.problems.push(format!(
                "{}: ended {state} ({})",
                job.file_id,
                job.last_error.unwrap_or_default()
            )),
        }
    }
    Ok(check)
}

/// The numbers of the summary besides the check's and the simulator's.
struct Summary {
    expected: usize,
    missing: usize,
    announced: usize,
    unseen: usize,
    /// Bytes of the files that exist.
    total: u64,
    elapsed: Duration,
}

impl Summary {
    fn print(&self, check: &Check, stats: &SimStats) {
        let total = self.total;
        outln!();
        outln!("summary");
        outln!(
            "  verified   {} of {} files, {:.1} MiB{}",
            check.verified,
            self.expected,
            check.bytes as f64 / 1048576.0,
            if check.verified as usize == self.expected {
                ", every sha256 matching the simulator's"
            } else {
                " (see the problems below)"
            }
        );
        outln!(
            "  faults     {} of {} announced faults seen happening",
            self.announced - self.unseen,
            self.announced
        );
        outln!(
            "  failed     {} as expected (missing on the API side), and 1 generation task \
             rejected by MiniMax",
            self.missing
        );
        outln!("  time       {:.1} s", self.elapsed.as_secs_f64());
        outln!(
            "  api calls  {} ({} faults injected in all)",
            stats.api_requests,
            stats.faults_injected
        );
        outln!(
            "  cdn bytes  {:.1} MiB sent for {:.1} MiB of files ({:.1}% re-sent after faults)",
            stats.cdn_bytes_sent as f64 / 1048576.0,
            total as f64 / 1048576.0,
            (stats.cdn_bytes_sent.saturating_sub(total)) as f64 * 100.0 / total.max(1) as f64
        );
        outln!(
            "  api key at the CDN: {} times",
            stats.cdn_requests_with_authorization
        );
    }
}

/// `demo OK` and exit 0, or the problems and exit 1.
fn verdict(check: &Check, stats: &SimStats) -> u8 {
    if check.problems.is_empty() && stats.cdn_requests_with_authorization == 0 {
        outln!("demo OK");
        exit::OK
    } else {
        for p in &check.problems {
            say!("minimax-dl demo: {p}");
        }
        exit::JOB_FAILURES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(files: i64) -> (Vec<i64>, Plan) {
        let ids: Vec<i64> = (0..files).map(|i| FIRST_ID + i).collect();
        let sizes = ids.iter().map(|&id| (id, 1 << 20)).collect();
        let plan = Plan::new(&ids, &sizes);
        (ids, plan)
    }

    /// Every file a rule or an override names.
    fn targets(faults: &Faults) -> Vec<i64> {
        let api = faults.api.iter().filter_map(|r| r.file_ids.clone());
        let cdn = faults.cdn.iter().filter_map(|r| r.file_ids.clone());
        api.chain(cdn)
            .flatten()
            .chain(faults.filenames.keys().copied())
            .collect()
    }

    #[test]
    fn per_file_faults_land_on_files_that_exist() {
        for files in [2, 3, 7, 8, 9, 24] {
            let (ids, plan) = plan(files);
            let missing = *ids.last().unwrap();
            assert_eq!(plan.faults.missing, [missing].into());
            for id in targets(&plan.faults) {
                assert_ne!(id, missing, "{files} files: a fault on the missing file");
                assert!(ids.contains(&id));
            }
        }
    }

    #[test]
    fn only_a_directory_of_the_demos_own_is_an_earlier_demo() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (entries, earlier) in [
            (&["queue.db", "files"][..], true),
            (&["queue.db", "queue.db-wal", "queue.db-shm", "files"], true),
            (&["queue.db"], true),
            (&["files"], false),
            (&["queue.db", "files", "notes.txt"], false),
            (&["photos"], false),
            (&[], false),
        ] {
            assert_eq!(earlier_demo(&names(entries)), earlier, "{entries:?}");
        }
    }

    #[test]
    fn eight_files_get_every_fault() {
        let (_, plan) = plan(8);
        assert_eq!(plan.announced.len(), 8, "{:#?}", plan.announced);
        assert!(plan.announced.iter().any(|a| a.note.contains("truncated")));
    }

    #[test]
    fn a_fault_whose_rule_never_fired_is_reported() {
        let (ids, plan) = plan(8);
        let all = FaultCounts {
            api: vec![1; plan.faults.api.len()],
            cdn: vec![1; plan.faults.cdn.len()],
        };
        let mut stats = SimStats {
            api_requests_by_file: ids.iter().map(|&id| (id, 1)).collect(),
            ..SimStats::default()
        };
        assert!(unfired(&plan.announced, &all, &stats).is_empty());

        let mut one_short = all.clone();
        *one_short.cdn.last_mut().unwrap() = 0;
        let unseen = unfired(&plan.announced, &one_short, &stats);
        assert_eq!(unseen.len(), 1);
        assert!(unseen[0].contains("truncated"), "{unseen:?}");

        stats.api_requests_by_file.remove(ids.last().unwrap());
        let unseen = unfired(&plan.announced, &all, &stats);
        assert!(unseen[0].contains("does not exist"), "{unseen:?}");
    }
}
