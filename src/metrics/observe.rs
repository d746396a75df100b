//! [`Metrics`] as an [`Observer`]: each event the pool reports becomes
//! counts, histogram samples and the dashboard's live state.

use std::time::{Duration, Instant};

use super::live::Live;
use super::{Metrics, OutcomeLabel, lock, reason_label};
use crate::api::{ApiError, ErrorClass};
use crate::worker::{HostProblem, Observer, Outcome};

/// The `outcome` label of a job's turn.
fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done { .. } => "done",
        Outcome::RetryLater { .. } => "retry",
        Outcome::Failed { .. } => "failed",
        Outcome::Requeued { .. } => "requeued",
        Outcome::Cancelled => "cancelled",
        Outcome::Stopped => "stopped",
        Outcome::Paused(problem) => match pause_reason(problem) {
            "account" => "paused_account",
            _ => "paused_disk",
        },
        Outcome::LeaseLost => "lease_lost",
    }
}

fn pause_reason(problem: &HostProblem) -> &'static str {
    match problem {
        HostProblem::Account { .. } => "account",
        HostProblem::DiskFull { .. } => "disk",
        HostProblem::ApiUnreachable { .. } => "api_unreachable",
        HostProblem::Archive { .. } => "archive",
    }
}

/// The `outcome` and `class` labels of an API answer. Codes the API
/// documents keep their number; any other becomes `code_other`, so a
/// misbehaving server cannot create series without bound.
fn api_labels(answer: Result<(), &ApiError>) -> (String, &'static str) {
    let Err(e) = answer else {
        return ("ok".into(), "ok");
    };
    let class = match e.class() {
        ErrorClass::Transient => "transient",
        ErrorClass::Unknown => "unknown",
        ErrorClass::RateLimited { .. } => "rate_limited",
        ErrorClass::Account { .. } => "account",
        ErrorClass::Permanent => "permanent",
        ErrorClass::Unreachable => "unreachable",
    };
    let outcome = match e {
        ApiError::Status { code, .. } if class != "unknown" => format!("code_{code}"),
        ApiError::Status { .. } => "code_other".into(),
        ApiError::Http { status, .. } if (100..=599).contains(status) => format!("http_{status}"),
        ApiError::Http { .. } => "http_other".into(),
        ApiError::Malformed { .. } => "malformed".into(),
        ApiError::Transport(_) => "transport".into(),
        ApiError::Unreachable { .. } => "unreachable".into(),
        ApiError::NoKey => "no_key".into(),
        ApiError::DownloadScheme { .. } => "download_scheme".into(),
        ApiError::TaskEnded { .. } => "task_ended".into(),
    };
    (outcome, class)
}

impl Metrics {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        lock(&self.0.live)
    }
}

impl Observer for Metrics {
    fn task_polled(&self) {
        self.0.f.task_polls.inc();
    }

    fn started(&self, file_id: i64, bytes_done: u64) {
        if bytes_done > 0 {
            self.0.f.resumes.inc();
        }
        self.live().started(file_id, bytes_done, Instant::now());
    }

    fn size_known(&self, file_id: i64, total: u64) {
        if let Some(flight) = self.live().flights.get_mut(&file_id) {
            flight.total = Some(total);
        }
    }

    fn transferred(&self, file_id: i64, bytes: u64) {
        self.0.f.downloaded_bytes.inc_by(bytes);
        self.live().transferred(file_id, bytes, Instant::now());
    }

    fn finished(&self, file_id: i64, outcome: &Outcome) {
        let f = &self.0.f;
        let label = outcome_label(outcome);
        f.outcomes
            .get_or_create(&OutcomeLabel {
                outcome: label.into(),
            })
            .inc();
        let mut live = self.live();
        let flight = live.flights.remove(&file_id);
        match outcome {
            Outcome::Done { .. } => {
                if let Some(flight) = flight {
                    let took = flight.started.elapsed().as_secs_f64();
                    f.duration.observe(took);
                    if flight.turn_bytes > 0 && took > 0.0 {
                        f.throughput.observe(flight.turn_bytes as f64 / took);
                    }
                }
            }
            Outcome::RetryLater { error, .. } | Outcome::Failed { error } => {
                live.error(file_id, label, error);
            }
            Outcome::Requeued { reason } => live.error(file_id, label, reason),
            Outcome::Paused(problem) => live.error(file_id, label, problem.message()),
            _ => {}
        }
    }

    fn api_called(&self, answer: Result<(), &ApiError>) {
        let (outcome, class) = api_labels(answer);
        let labels = super::ApiLabels {
            outcome,
            class: class.into(),
        };
        self.0.f.api_calls.get_or_create(&labels).inc();
    }

    fn rate_limited(&self, _cooldown: Duration) {
        self.0.f.cooldowns.inc();
    }

    fn checkpointed(&self, took: Duration) {
        self.0.f.checkpoint.observe(took.as_secs_f64());
    }

    fn synced(&self, took: Duration) {
        self.0.f.fsync.observe(took.as_secs_f64());
    }

    fn restarted(&self, file_id: i64) {
        self.0.f.restarts.inc();
        if let Some(flight) = self.live().flights.get_mut(&file_id) {
            flight.bytes_done = 0;
        }
    }

    fn paused(&self, pause: Option<(&HostProblem, Duration)>) {
        let now = Instant::now();
        // Time so far goes to the reason it was paused for.
        self.settle_pause(now);
        let reason = pause.map(|(problem, _)| pause_reason(problem));
        let mut clock = lock(&self.0.pause_clock);
        if clock.map(|(r, _)| r) != reason {
            *clock = reason.map(|r| (r, now));
            for r in super::PAUSE_REASONS {
                let on = i64::from(Some(r) == reason);
                self.0.f.paused.get_or_create(&reason_label(r)).set(on);
            }
        }
        drop(clock);
        let mut live = self.live();
        match pause {
            Some((problem, until_probe)) => {
                live.pause(pause_reason(problem), problem.message(), until_probe)
            }
            None => live.pause = None,
        }
    }

    fn alive(&self) {
        *lock(&self.0.heartbeat) = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scrape(m: &Metrics) -> String {
        m.render(None)
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn a_finished_download_counts_its_bytes_outcome_and_duration() {
        let m = Metrics::new();
        m.started(7, 0);
        m.size_known(7, 100);
        m.transferred(7, 100);
        m.finished(
            7,
            &Outcome::Done {
                path: PathBuf::from("/a"),
                size: 100,
                sha256: String::new(),
            },
        );
        let text = scrape(&m);
        assert_eq!(value(&text, "minimax_dl_downloaded_bytes_total"), 100.0);
        assert_eq!(
            value(&text, "minimax_dl_job_outcomes_total{outcome=\"done\"}"),
            1.0
        );
        assert_eq!(
            value(&text, "minimax_dl_download_duration_seconds_count"),
            1.0
        );
        assert_eq!(value(&text, "minimax_dl_downloads_in_flight"), 0.0);
    }

    #[test]
    fn a_resume_a_restart_and_an_error_are_counted_and_listed() {
        let m = Metrics::new();
        m.started(9, 4096);
        m.restarted(9);
        m.finished(
            9,
            &Outcome::Failed {
                error: "2013 file not found".into(),
            },
        );
        let text = scrape(&m);
        assert_eq!(value(&text, "minimax_dl_resumes_total"), 1.0);
        assert_eq!(value(&text, "minimax_dl_restarts_from_zero_total"), 1.0);
        let errors = m.snapshot(None).recent_errors;
        assert_eq!(
            (errors[0].file_id.as_str(), errors[0].outcome),
            ("9", "failed")
        );
    }

    #[test]
    fn api_answers_are_labelled_by_code_with_unknown_codes_folded() {
        let status = |code| ApiError::Status {
            code,
            message: String::new(),
            trace_id: None,
        };
        assert_eq!(api_labels(Ok(())), ("ok".into(), "ok"));
        assert_eq!(
            api_labels(Err(&status(1008))),
            ("code_1008".into(), "account")
        );
        assert_eq!(
            api_labels(Err(&status(987_654))),
            ("code_other".into(), "unknown")
        );
        let m = Metrics::new();
        m.api_called(Err(&status(1002)));
        m.api_called(Ok(()));
        let text = scrape(&m);
        let series = "minimax_dl_api_calls_total{outcome=\"code_1002\",class=\"rate_limited\"}";
        assert_eq!(value(&text, series), 1.0);
    }

    #[test]
    fn a_pause_is_shown_timed_by_reason_and_cleared() {
        let m = Metrics::new();
        let problem = HostProblem::Account {
            message: "1008 insufficient balance".into(),
            pause: None,
        };
        m.paused(Some((&problem, Duration::from_secs(60))));
        assert_eq!(m.pause().unwrap().reason, "account");
        let text = scrape(&m);
        assert_eq!(value(&text, "minimax_dl_paused{reason=\"account\"}"), 1.0);
        assert_eq!(value(&text, "minimax_dl_paused{reason=\"disk\"}"), 0.0);
        m.paused(None);
        assert_eq!(m.pause(), None);
        let text = scrape(&m);
        assert_eq!(value(&text, "minimax_dl_paused{reason=\"account\"}"), 0.0);
        assert!(value(&text, "minimax_dl_paused_seconds_total{reason=\"account\"}") >= 0.0);
    }
}
