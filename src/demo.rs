//! `minimax-dl demo`: the whole product on the built-in simulator, with no
//! key and no network. A batch of files with faults switched on goes through
//! the real queue, API client, fetcher and pool; every file is then checked
//! against the simulator's own digest.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::commands::{OnStop, engine, exit, spawn_signal_handler};
use crate::config::{LogFormat, Settings};
use crate::daemon::{self, RunEnd, RunOptions};
use crate::fetch::file::hash_file;
use crate::progress::{Bars, LogLines};
use crate::queue::{DbLocation, JobState, Queue, RetryPolicy};
use crate::sim::{ApiFault, ApiFaultRule, CdnFault, CdnFaultRule, Faults, SimConfig, Simulator};
use crate::worker::Observer;

const DEMO_KEY: &str = "demo-key";
const FIRST_ID: i64 = 305_000_000_000_001;

/// The faults the demo switches on, each for a few files: a taste of the
/// night a real batch goes through.
fn demo_faults(ids: &[i64]) -> (Faults, Vec<String>) {
    let pick = |i: usize| ids[i % ids.len()];
    let mut faults = Faults::default();
    let mut notes = Vec::new();
    faults.api.push(
        ApiFaultRule::new(ApiFault::Code(1002, "rate limit exceeded(RPM)".into()))
            .every(9)
            .limit(1),
    );
    notes.push("one 1002 rate-limit answer (the whole pool backs off)".to_string());
    faults.api.push(
        ApiFaultRule::new(ApiFault::Http(502))
            .for_files([pick(3)])
            .limit(1),
    );
    notes.push(format!(
        "an HTML 502 from the API gateway for file {}",
        pick(3)
    ));
    for file in [pick(1), pick(5)] {
        faults.cdn.push(
            CdnFaultRule::new(CdnFault::DropAfter(300_000))
                .for_files([file])
                .limit(1),
        );
    }
    notes.push(format!(
        "connections dropped mid-body for files {} and {} (resumed with Range)",
        pick(1),
        pick(5)
    ));
    faults.cdn.push(
        CdnFaultRule::new(CdnFault::Expired)
            .for_files([pick(2)])
            .limit(1),
    );
    notes.push(format!(
        "an expired download URL for file {} (a fresh one is fetched)",
        pick(2)
    ));
    faults.cdn.push(
        CdnFaultRule::new(CdnFault::IgnoreRange)
            .for_files([pick(5)])
            .limit(1),
    );
    notes.push(format!(
        "a CDN that ignored Range once for file {} (restarted cleanly)",
        pick(5)
    ));
    faults.cdn.push(
        CdnFaultRule::new(CdnFault::TruncateChunked(200_000))
            .for_files([pick(7)])
            .limit(1),
    );
    notes.push(format!(
        "a silently truncated body for file {} (caught by the size check)",
        pick(7)
    ));
    faults.filenames.insert(pick(4), "../../etc/passwd".into());
    notes.push(format!(
        "a hostile filename \"../../etc/passwd\" for file {}",
        pick(4)
    ));
    let missing = *ids.last().unwrap_or(&FIRST_ID);
    faults.missing.insert(missing);
    notes.push(format!(
        "file {missing} does not exist (fails at once, code 2013)"
    ));
    (faults, notes)
}

pub async fn run(files: u32, keep_dir: Option<PathBuf>) -> Result<u8> {
    let temp = tempfile::Builder::new()
        .prefix("minimax-dl-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let kept = keep_dir.is_some();
    let dir = keep_dir.unwrap_or_else(|| temp.path().to_path_buf());
    let dir =
        std::path::absolute(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let ids: Vec<i64> = (0..i64::from(files)).map(|i| FIRST_ID + i).collect();
    let sizes: HashMap<i64, u64> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, 256 * 1024 + (i as u64 * 7919 % 29) * 256 * 1024))
        .collect();
    let (faults, notes) = demo_faults(&ids);
    let missing: Vec<i64> = faults.missing.iter().copied().collect();
    let sim = Simulator::start(SimConfig {
        api_key: Some(DEMO_KEY.into()),
        sizes,
        faults,
        ..SimConfig::default()
    })
    .await
    .context("cannot start the simulator on 127.0.0.1")?;

    let settings = Settings {
        config_path: None,
        api_base: crate::config::parse_api_base(&sim.api_base()).map_err(anyhow::Error::msg)?,
        api_key: Some(SecretString::from(DEMO_KEY)),
        api_key_file: None,
        database: DbLocation(dir.join("queue.db").to_string_lossy().into_owned()),
        output_dir: dir.join("files"),
        concurrency: 4,
        requests_per_minute: 600,
        retry: RetryPolicy {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            ..RetryPolicy::default()
        },
        segments: 1,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
        probe_interval: Duration::from_secs(5),
        log_format: LogFormat::Text,
    };
    println!(
        "minimax-dl demo: {} files from the built-in MiniMax simulator ({})",
        files,
        sim.api_base()
    );
    println!("  queue:   {}", settings.database.0);
    println!("  archive: {}", settings.output_dir.display());
    println!("  faults switched on:");
    for note in &notes {
        println!("    - {note}");
    }

    let queue = Queue::open_for_workers(&settings.database).await?;
    queue.enqueue(&ids).await?;
    let bars = std::io::stderr()
        .is_terminal()
        .then(|| Arc::new(Bars::new(Some(u64::from(files)))));
    let observer: Arc<dyn Observer> = match &bars {
        Some(b) => b.clone(),
        None => Arc::new(LogLines::new(Duration::from_secs(5))),
    };
    let engine = engine(&settings, queue.clone(), observer)?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), None, OnStop::Finish);
    let started = Instant::now();
    let options = RunOptions {
        concurrency: settings.concurrency,
        exit_when_idle: true,
        only: None,
        probe_interval: settings.probe_interval,
    };
    let end = daemon::run(engine, options, shutdown, None).await?;
    if let Some(b) = &bars {
        b.finish();
    }
    let elapsed = started.elapsed();
    match &end {
        RunEnd::Idle => {}
        RunEnd::Stopped | RunEnd::Single(_) => {
            println!("demo interrupted");
            return Ok(exit::JOB_FAILURES);
        }
        RunEnd::Blocked(problem) => {
            eprintln!("minimax-dl demo: stopped: {}", problem.message());
            return Ok(exit::JOB_FAILURES);
        }
    }

    let mut verified = 0u64;
    let mut bytes = 0u64;
    let mut problems = Vec::new();
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
                        verified += 1;
                        bytes += size;
                    }
                    Ok(_) => problems.push(format!(
                        "{}: content differs from the simulator's",
                        job.file_id
                    )),
                    Err(e) => problems.push(format!(
                        "{}: cannot read {}: {e}",
                        job.file_id,
                        path.display()
                    )),
                }
                if !path.starts_with(&settings.output_dir) {
                    problems.push(format!("{}: placed outside the archive", job.file_id));
                }
            }
            (JobState::Failed, true) => {}
            (state, _) => problems.push(format!(
                "{}: ended {state} ({})",
                job.file_id,
                job.last_error.unwrap_or_default()
            )),
        }
    }
    let stats = sim.stats();
    let total: u64 = ids
        .iter()
        .filter(|id| !missing.contains(id))
        .map(|&id| sim.file_size(id))
        .sum();
    println!();
    println!("summary");
    println!(
        "  verified   {verified} of {} files, {:.1} MiB, every sha256 matching the simulator's",
        files as usize - missing.len(),
        bytes as f64 / 1048576.0
    );
    println!(
        "  failed     {} as expected (missing on the API side)",
        missing.len()
    );
    println!("  time       {:.1} s", elapsed.as_secs_f64());
    println!(
        "  api calls  {} ({} faults injected in all)",
        stats.api_requests, stats.faults_injected
    );
    println!(
        "  cdn bytes  {:.1} MiB sent for {:.1} MiB of files ({:.1}% re-sent after faults)",
        stats.cdn_bytes_sent as f64 / 1048576.0,
        total as f64 / 1048576.0,
        (stats.cdn_bytes_sent.saturating_sub(total)) as f64 * 100.0 / total.max(1) as f64
    );
    println!(
        "  api key at the CDN: {} times",
        stats.cdn_requests_with_authorization
    );
    if kept {
        println!("  look:      minimax-dl --db {} list", settings.database.0);
    }
    queue.close().await;
    if problems.is_empty() && stats.cdn_requests_with_authorization == 0 {
        println!("demo OK");
        Ok(exit::OK)
    } else {
        for p in &problems {
            eprintln!("minimax-dl demo: {p}");
        }
        Ok(exit::JOB_FAILURES)
    }
}
