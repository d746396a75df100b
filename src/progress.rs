//! Showing work to a person: indicatif bars when stderr is a terminal, plain
//! periodic log lines when it is not (systemd, pipes, CI).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::info;

use crate::worker::{Observer, Outcome};

/// Bars: one per running download, plus an overall one when the total job
/// count is known.
pub(crate) struct Bars {
    multi: MultiProgress,
    overall: Option<ProgressBar>,
    jobs: Mutex<HashMap<i64, ProgressBar>>,
}

/// The template for one download. Until the size is known there is no
/// total to show a bar or an ETA against (indicatif would show the bytes so
/// far as the total, "976 KiB/976 KiB ETA 0s"), so a spinner shows the
/// bytes and the rate instead. Pure.
pub(crate) fn download_template(total: Option<u64>) -> &'static str {
    match total {
        Some(_) => {
            "{prefix:>20} [{bar:30.cyan/blue}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}"
        }
        None => "{prefix:>20} {spinner:.cyan} {bytes:>10} {bytes_per_sec:>12}",
    }
}

fn download_style(total: Option<u64>) -> ProgressStyle {
    ProgressStyle::with_template(download_template(total))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// How often a spinner turns while no bytes arrive.
const SPINNER_TICK: Duration = Duration::from_millis(120);

impl Bars {
    pub(crate) fn new(total_jobs: Option<u64>) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = total_jobs.map(|n| {
            let bar = multi.add(ProgressBar::new(n));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>20} [{bar:30.green/white}] {pos}/{len} files {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix("all files");
            bar
        });
        Bars {
            multi,
            overall,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.overall {
            bar.finish();
        }
        let _ = self.multi.clear();
    }

    fn bar(&self, file_id: i64) -> Option<ProgressBar> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&file_id)
            .cloned()
    }
}

impl Observer for Bars {
    fn started(&self, file_id: i64, bytes_done: u64) {
        let bar = self.multi.add(ProgressBar::no_length());
        bar.set_style(download_style(None));
        bar.enable_steady_tick(SPINNER_TICK);
        bar.set_prefix(file_id.to_string());
        bar.set_position(bytes_done);
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file_id, bar);
    }

    fn size_known(&self, file_id: i64, total: u64) {
        if let Some(bar) = self.bar(file_id) {
            bar.disable_steady_tick();
            bar.set_length(total);
            bar.set_style(download_style(Some(total)));
        }
    }

    fn transferred(&self, file_id: i64, bytes: u64) {
        if let Some(bar) = self.bar(file_id) {
            bar.inc(bytes);
        }
    }

    fn finished(&self, file_id: i64, outcome: &Outcome) {
        if let Some(bar) = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&file_id)
        {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        if let Some(overall) = &self.overall {
            match outcome {
                Outcome::Done { .. } | Outcome::Failed { .. } | Outcome::Cancelled => {
                    overall.inc(1)
                }
                _ => {}
            }
        }
    }
}

/// What is known of one running download: bytes so far, total if known,
/// when it was last logged.
type Logged = (u64, Option<u64>, Instant);

/// Log lines every few seconds per download, for terminals that are not.
pub(crate) struct LogLines {
    every: Duration,
    jobs: Mutex<HashMap<i64, Logged>>,
}

impl LogLines {
    pub(crate) fn new(every: Duration) -> LogLines {
        LogLines {
            every,
            jobs: Mutex::new(HashMap::new()),
        }
    }
}

impl Observer for LogLines {
    fn started(&self, file_id: i64, bytes_done: u64) {
        info!(file_id, bytes_done, "downloading");
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file_id, (bytes_done, None, Instant::now()));
    }

    fn size_known(&self, file_id: i64, total: u64) {
        if let Some(entry) = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&file_id)
        {
            entry.1 = Some(total);
        }
    }

    fn transferred(&self, file_id: i64, bytes: u64) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((done, total, last)) = jobs.get_mut(&file_id) {
            *done += bytes;
            if last.elapsed() >= self.every {
                *last = Instant::now();
                match total {
                    Some(t) => info!(
                        file_id,
                        bytes_done = *done,
                        total = *t,
                        "progress {}%",
                        *done * 100 / (*t).max(1)
                    ),
                    None => info!(file_id, bytes_done = *done, "progress"),
                }
            }
        }
    }

    fn finished(&self, file_id: i64, _outcome: &Outcome) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&file_id);
    }
}

/// How a foreground verb shows progress: bars on a terminal (returned too,
/// for the caller to finish), else a log line per file every 5 s.
pub(crate) fn for_stderr(
    total_files: Option<u64>,
) -> (Option<std::sync::Arc<Bars>>, std::sync::Arc<dyn Observer>) {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bars = std::sync::Arc::new(Bars::new(total_files));
        (Some(bars.clone()), bars)
    } else {
        (
            None,
            std::sync::Arc::new(LogLines::new(Duration::from_secs(5))),
        )
    }
}

/// Files worked through one after another (`verify`): a bar of files with
/// the bytes read and the rate on a terminal, nothing elsewhere. Cheap to
/// clone; every clone counts into the same bar.
#[derive(Clone)]
pub(crate) struct Tally {
    bar: Option<ProgressBar>,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    started: Instant,
}

impl Tally {
    /// A bar for `files` files, prefixed `what`, when stderr is a terminal.
    pub(crate) fn new(files: u64, what: &str) -> Tally {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(files), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30.green/white}] {pos}/{len} files {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(what.to_string());
            bar
        });
        Tally {
            bar,
            bytes: Default::default(),
            started: Instant::now(),
        }
    }

    /// `n` more bytes read.
    pub(crate) fn read(&self, n: u64) {
        let total = self
            .bytes
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed)
            + n;
        if let Some(bar) = &self.bar {
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!(
                "{} read, {}/s",
                indicatif::HumanBytes(total),
                indicatif::HumanBytes((total as f64 / secs) as u64)
            ));
        }
    }

    /// One more file done.
    pub(crate) fn file_done(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Runs `f` (which prints) with the bar out of the way.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_of_unknown_size_spins_with_bytes_and_rate() {
        let unknown = download_template(None);
        assert!(unknown.contains("{spinner"), "{unknown}");
        assert!(unknown.contains("{bytes:") && unknown.contains("{bytes_per_sec"));
        for absent in ["{bar", "{total_bytes", "{eta"] {
            assert!(!unknown.contains(absent), "{absent} in {unknown}");
        }
        let known = download_template(Some(1 << 20));
        for present in ["{bar", "{total_bytes", "{eta", "{bytes_per_sec"] {
            assert!(known.contains(present), "{present} missing from {known}");
        }
        assert!(ProgressStyle::with_template(unknown).is_ok());
        assert!(ProgressStyle::with_template(known).is_ok());
    }
}
