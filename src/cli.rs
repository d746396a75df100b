//! The command line: flags and verbs, nothing else. Users and scripts depend
//! on it; keep it stable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};

use crate::config::{LogFormat, MAX_CONCURRENCY, MAX_SEGMENTS, RateChoice};
use crate::queue::JobState;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  some jobs (or generation tasks) failed (run --exit-when-idle, fetch, demo), or
     a running job's worker has not yet confirmed a cancel, or verify found a file
     missing, changed or unreadable (with --requeue too: it is downloaded again later)
  2  usage, configuration or database error (a missing or unreadable API key
     included); an id that is unknown or in the wrong state for retry/cancel/verify
     (the other ids of the call are still applied)
  3  stopped by an account-level API error (a key MiniMax refuses, no balance, quota, an api_base
     that is not the MiniMax API); jobs stay queued, attempts untouched
  4  stopped because the archive disk is full or not writable; jobs stay queued
  5  the queue database did not answer (PostgreSQL down, unreachable, or silent
     for db_timeout_secs): any verb at once, run --exit-when-idle after 15 s; a
     daemon (no --exit-when-idle) keeps retrying instead
  130  interrupted by SIGINT (Ctrl-C): fetch, or run --exit-when-idle with jobs left;
     jobs stay queued and resume from their last checkpoint
  143  interrupted by SIGTERM, as 130 (run without --exit-when-idle is a daemon: 0)";

/// An environment variable the program reads, and what for.
pub struct EnvVar {
    pub name: &'static str,
    pub what: &'static str,
    /// A hook for tests and benchmarks, not for users: kept out of `--help`.
    pub test_hook: bool,
}

const fn user(name: &'static str, what: &'static str) -> EnvVar {
    EnvVar {
        name,
        what,
        test_hook: false,
    }
}

#[cfg(feature = "test-hooks")]
const fn hook(name: &'static str, what: &'static str) -> EnvVar {
    EnvVar {
        name,
        what,
        test_hook: true,
    }
}

/// Names under `MINIMAX_DL_` that belong to the test suite, the
/// benchmarks and the scripts (`MINIMAX_DL_BIN`: the binary they run),
/// never to the program: prefixes.
const NOT_SETTINGS: &[&str] = &["MINIMAX_DL_TEST_", "MINIMAX_DL_BENCH_", "MINIMAX_DL_BIN"];

/// A warning for each variable named like one of ours (`MINIMAX_DL_…`)
/// that the program does not read. A typo such as `MINIMAX_DL_DB` would
/// otherwise leave the default queue in force without a word. Names the
/// closest variable it does read, when one is close.
pub(crate) fn unknown_variables<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut unknown: Vec<&str> = names
        .into_iter()
        .filter(|name| name.starts_with("MINIMAX_DL_"))
        .filter(|name| !NOT_SETTINGS.iter().any(|p| name.starts_with(p)))
        .filter(|name| ENVIRONMENT.iter().all(|v| v.name != *name))
        .collect();
    unknown.sort_unstable();
    unknown
        .into_iter()
        .map(|name| match closest_variable(name) {
            Some(known) => format!(
                "{name} is set but minimax-dl does not read it: did you mean {known}? (see --help, Environment)"
            ),
            None => format!(
                "{name} is set but minimax-dl does not read it (the variables it reads are under --help, Environment)"
            ),
        })
        .collect()
}

/// The variable `name` most likely meant: one whose suffix starts with
/// `name`'s or is spelt nearly alike, or of which `name`'s suffix is an
/// abbreviation (`DB` for `DATABASE`: its letters in order, the first
/// first).
fn closest_variable(name: &str) -> Option<&'static str> {
    let suffix = |n: &str| n.strip_prefix("MINIMAX_DL_").unwrap_or(n).to_string();
    let typed = suffix(name);
    let abbreviates = |known: &str| {
        let mut rest = known.chars();
        typed.chars().next() == known.chars().next() && typed.chars().all(|c| rest.any(|k| k == c))
    };
    ENVIRONMENT
        .iter()
        .filter(|v| !v.test_hook)
        .map(|v| (v.name, suffix(v.name)))
        .map(|(known, s)| (known, strsim::jaro_winkler(&typed, &s), s))
        .filter(|(_, score, s)| {
            *score >= 0.85
                || s.starts_with(typed.as_str())
                || typed.starts_with(s.as_str())
                || abbreviates(s)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(known, _, _)| known)
}

/// Every environment variable the program reads, in one place: `--help`
/// and the man page print it, and a test (tests/it/reference.rs) scans the
/// source for environment reads and fails when one is missing here.
pub const ENVIRONMENT: &[EnvVar] = &[
    user(
        "MINIMAX_API_KEY",
        "the API key (run, fetch, sync); else api_key_file",
    ),
    user(
        "MINIMAX_API_BASE",
        "the API's base URL (default https://api.minimaxi.com)",
    ),
    user("MINIMAX_DL_CONFIG", "the config file"),
    user("MINIMAX_DL_DATABASE", "the queue (--db)"),
    user(
        "MINIMAX_DL_DATABASE_URL_FILE",
        "a file holding the queue's location (--database-url-file)",
    ),
    user(
        "MINIMAX_DL_OUTPUT_DIR",
        "the archive: a directory, or s3://BUCKET/PREFIX (--out)",
    ),
    user(
        "MINIMAX_DL_STAGING_DIR",
        "with a bucket archive, where files wait before they go up (staging_dir)",
    ),
    user(
        "MINIMAX_DL_CONCURRENCY",
        "downloads at once (run --concurrency)",
    ),
    user(
        "MINIMAX_DL_REQUESTS_PER_MINUTE",
        "the cap of API calls in any 60 s",
    ),
    user(
        "MINIMAX_DL_LISTEN",
        "the address of /metrics and the dashboard (run --listen)",
    ),
    user(
        "MINIMAX_DL_LISTEN_TOKEN",
        "the token the dashboard's actions need",
    ),
    user(
        "MINIMAX_DL_CALLBACK_TOKEN",
        "the secret path of POST /callback/{token}",
    ),
    user("MINIMAX_DL_LOG", "the log filter (e.g. minimax_dl=debug)"),
    user("XDG_CONFIG_HOME", "where the config file is looked for"),
    user("XDG_DATA_HOME", "where the queue and archive go by default"),
    user("HOME", "the default for both XDG directories"),
    user(
        "CREDENTIALS_DIRECTORY",
        "systemd credentials: api_key, db_url, callback_token, aws_access_key_id, aws_secret_access_key, aws_session_token",
    ),
    user("NOTIFY_SOCKET", "systemd's readiness and watchdog socket"),
    #[cfg(feature = "test-hooks")]
    hook(
        "MINIMAX_DL_BOOT_ID_FILE",
        "tests: a file standing for the boot id",
    ),
    #[cfg(feature = "test-hooks")]
    hook(
        "MINIMAX_DL_CRASH_AT",
        "tests: abort the process at a named step",
    ),
    #[cfg(feature = "test-hooks")]
    hook(
        "MINIMAX_DL_TEST_TASK_POLL_MS",
        "tests: a shorter floor between task polls",
    ),
    #[cfg(feature = "test-hooks")]
    hook(
        "MINIMAX_DL_TEST_CLOCK_SKEW_MS",
        "tests: this host's clock, off by so much",
    ),
    #[cfg(feature = "test-hooks")]
    hook(
        "MINIMAX_DL_TEST_IDLE_POLL_MS",
        "tests: a longer idle poll, so only a wake-up starts work",
    ),
    #[cfg(feature = "test-hooks")]
    hook(
        "MINIMAX_DL_TEST_RATE_WINDOW_MS",
        "tests: a shorter rate window than 60 s",
    ),
];

/// What `--help` (and so the man page) says after the options: the exit
/// codes and [`ENVIRONMENT`].
pub fn after_help() -> String {
    let mut text = format!("{EXIT_CODES}\n\nEnvironment:\n");
    for v in ENVIRONMENT.iter().filter(|v| !v.test_hook) {
        text.push_str(&format!("  {}  {}\n", v.name, v.what));
    }
    text.push_str("PostgreSQL also reads PGPASSWORD, ~/.pgpass and PGSSLMODE as libpq does.\n");
    text.push_str(
        "A bucket archive reads the AWS settings: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL, AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, AWS_VIRTUAL_HOSTED_STYLE_REQUEST and the web-identity and container credential variables.",
    );
    text
}

/// Durable background downloader for files generated by the MiniMax API.
#[derive(Debug, Parser)]
#[command(
    name = "minimax-dl",
    version = crate::build_info::version_line(),
    after_help = after_help()
)]
pub struct Cli {
    /// Config file (default: $MINIMAX_DL_CONFIG, else $XDG_CONFIG_HOME/minimax-dl/config.toml, else /etc/minimax-dl/config.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Queue database: a SQLite file path or sqlite:// URL, or a postgres:// URL shared by many hosts (status, list and show never create it).
    #[arg(long, global = true, value_name = "URL_OR_PATH")]
    pub db: Option<String>,

    /// A file holding the --db value on one line: keeps a database password out of the command line.
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "db")]
    pub database_url_file: Option<PathBuf>,

    /// Archive directory for finished files.
    #[arg(long, global = true, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// More log detail (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add file ids, or generation tasks, to the queue (ids already present are skipped).
    Enqueue {
        /// File ids to add (decimal, 1 to 9223372036854775807), as MiniMax returns them.
        #[arg(value_name = "ID", allow_negative_numbers = true)]
        ids: Vec<String>,
        /// Read ids from FILE, one per line ('-' for stdin; blank lines and # comments ignored).
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Generation task ids (from POST /v1|v2/video_generation): each is polled until its
        /// video exists, then downloaded. v1:ID or v2:ID picks the API; a bare ID uses task_api
        /// (default v1).
        #[arg(long = "task", value_name = "TASK_ID", num_args = 1.., allow_negative_numbers = true)]
        tasks: Vec<String>,
        /// Read task ids from FILE, one ID, v1:ID or v2:ID per line ('-' for stdin).
        #[arg(long, value_name = "FILE")]
        tasks_from: Option<PathBuf>,
    },
    /// Check this host before the first run: the config and its sources, the API (one call
    /// that costs no quota), the key and its region, the clock against the API's, the task
    /// list's page size, the queue, the archive and the listen address. Changes nothing.
    /// Exit 0 unless a check fails.
    Doctor {
        /// One JSON array of {check, level, message}.
        #[arg(long)]
        json: bool,
    },
    /// Enqueue every video task this account generated in the last 7 days (the v2 task list)
    /// that the queue does not know yet. Idempotent: safe to run from a timer.
    Sync {
        /// Only tasks created at or after DATE: 2026-07-01, 2026-07-01T12:00:00Z, or an age
        /// such as 2d or 12h.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Tasks asked for per page of the list (1 to 100).
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=100))]
        page_size: u32,
    },
    /// Work the queue: download, verify and archive.
    Run {
        /// Downloads at once (1 to 256; default 4, or `concurrency` in the config).
        #[arg(
            long,
            value_name = "N",
            allow_negative_numbers = true,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONCURRENCY))
        )]
        concurrency: Option<u32>,
        /// Parallel Range requests for one large file (1 to 16; default 1, or `segments` in the config).
        #[arg(
            long,
            value_name = "N",
            allow_negative_numbers = true,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SEGMENTS))
        )]
        segments: Option<u32>,
        /// API calls in any 60 s for every process sharing the queue: a number never exceeded,
        /// or `auto` to find the account's limit (default: `requests_per_minute` in the
        /// config, else auto).
        #[arg(long, value_name = "N|auto", value_parser = crate::config::parse_rate_choice)]
        requests_per_minute: Option<RateChoice>,
        /// Exit once nothing is left that this process could claim: nothing queued, no
        /// abandoned lease (jobs running in other processes are theirs) and no task still
        /// generating. Exit 1 if any job or task failed.
        #[arg(long)]
        exit_when_idle: bool,
        /// Serve /metrics, /healthz, /readyz and the dashboard on ADDR (host:port; loopback only
        /// unless listen_public = true in the config; default: `listen` in the config, else off).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Job counts per state, generation tasks per state, and bytes downloaded.
    Status {
        /// One JSON object with a count per state and "bytes_done", for scripts.
        #[arg(long)]
        json: bool,
        /// Keep showing it, refreshed every --interval (in place on a terminal, repeated
        /// otherwise) until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// How often --watch refreshes (e.g. 500ms, 2s, 1m).
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval, requires = "watch")]
        interval: Duration,
    },
    /// List jobs, or generation tasks with --tasks (a table, or JSON Lines with --json).
    List {
        /// Only jobs in this state: queued, running, done, failed or cancelled. `generating`
        /// lists the tasks still generating; a listing of tasks takes generating, done, failed
        /// or cancelled.
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        /// List generation tasks instead of jobs.
        #[arg(long)]
        tasks: bool,
        /// At most N jobs (in file id order).
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// JSON Lines, one object per job, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// One job with its history ("attempts" counts failed tries that count against max_attempts),
    /// or one generation task.
    Show {
        /// The file id of the job, or a task id.
        #[arg(value_name = "ID", allow_negative_numbers = true)]
        id: String,
        /// One JSON object, with the history under "events", for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Put failed or cancelled jobs back in the queue with attempts reset (a failed or
    /// cancelled task id: polled again, with a new deadline).
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "all_failed"])))]
    Retry {
        /// File ids of failed or cancelled jobs.
        #[arg(value_name = "ID", allow_negative_numbers = true)]
        ids: Vec<String>,
        /// Every failed job, instead of listing ids.
        #[arg(long)]
        all_failed: bool,
    },
    /// Cancel queued jobs (running ones stop within about two seconds), or stop polling tasks.
    Cancel {
        /// File ids of queued or running jobs, or ids of generating tasks.
        #[arg(value_name = "ID", required = true, allow_negative_numbers = true)]
        ids: Vec<String>,
    },
    /// Download one file now, in the foreground, with a progress bar.
    Fetch {
        /// The file id to download (enqueued if it is not in the queue yet).
        #[arg(value_name = "ID", allow_negative_numbers = true)]
        id: String,
    },
    /// See it work: the built-in simulator, a batch with faults, verified files. No key, no network.
    Demo {
        /// Files in the batch.
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(2..=10_000))]
        files: u32,
        /// Keep the demo's database and files in DIR (default: a temporary directory, removed).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// A manifest of the archive, streamed: one line per job (ids, state, path, size,
    /// sha256, when enqueued and done).
    Export {
        /// jsonl (one JSON object a line) or csv (RFC 4180, with a header line).
        #[arg(long, value_enum, default_value = "jsonl", value_name = "FORMAT")]
        format: ExportFormat,
        /// Only jobs in this state (done: the files in the archive).
        #[arg(long, value_name = "STATE", value_parser = parse_state)]
        state: Option<JobState>,
    },
    /// Fixity check: re-hash archived files against the sha256 recorded when they were
    /// downloaded, and report each as ok, missing, changed or unreadable. Files are only read.
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "all"])))]
    Verify {
        /// File ids of done jobs.
        #[arg(value_name = "ID", allow_negative_numbers = true)]
        ids: Vec<String>,
        /// Every done job.
        #[arg(long)]
        all: bool,
        /// Put missing and changed files back in the queue for a fresh download (the next
        /// `run` fetches them; a changed file is replaced where it is).
        #[arg(long)]
        requeue: bool,
        /// Compare sizes (and, for objects in a bucket, the sha256 each object carries)
        /// without reading the bytes.
        #[arg(long)]
        quick: bool,
    },
    /// Delete done jobs and their history from the queue (never files), a batch at a time,
    /// so a running daemon is not held up.
    Prune {
        /// Done jobs that finished longer ago than this: 30d, 12h, 2weeks, ...
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        done_older_than: Duration,
    },
    /// Run the MiniMax API + CDN simulator on loopback.
    Sim(SimArgs),
    /// Print a shell completion script (e.g. `minimax-dl completions bash > /etc/bash_completion.d/minimax-dl`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page minimax-dl(1) (roff), or with --dir write it and one page per verb
    /// (minimax-dl-enqueue(1), ...), as git does.
    Man {
        /// Write every page into DIR (created if missing), e.g. /usr/local/share/man/man1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Move a queue to another database (SQLite to PostgreSQL when one host is no longer enough).
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy every job (state, attempts, schedule, recorded digest, history) into another queue.
    /// The source is only read; stop the daemons using it first. The target must be empty
    /// unless --merge; the counts of both are compared at the end.
    Copy {
        /// The queue to copy: a SQLite path or a postgres:// URL.
        #[arg(long, value_name = "DB")]
        from: String,
        /// The queue to copy into (created if missing). Keep passwords out of the URL:
        /// PGPASSWORD or ~/.pgpass are read as libpq reads them.
        #[arg(long, value_name = "DB")]
        to: String,
        /// Copy into a queue that has jobs already: ids it has are left as they are.
        #[arg(long)]
        merge: bool,
    },
}

/// Shortest and longest `status --watch --interval`.
pub const WATCH_INTERVAL: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);

fn parse_interval(raw: &str) -> Result<Duration, String> {
    let interval =
        humantime::parse_duration(raw).map_err(|e| format!("{}: {e}", crate::ids::quoted(raw)))?;
    if WATCH_INTERVAL.contains(&interval) {
        Ok(interval)
    } else {
        Err(format!(
            "{} is not between 100ms and 1h",
            crate::ids::quoted(raw)
        ))
    }
}

/// `export --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

fn parse_state(raw: &str) -> Result<JobState, String> {
    raw.parse()
}

/// An age with its unit: a bare number (`30`, and `0`, which humantime
/// alone would take as zero and so prune every done job) is refused;
/// `0s` says it on purpose.
fn parse_age(raw: &str) -> Result<Duration, String> {
    if !raw.trim_end().ends_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!(
            "{} has no unit: give an age like 30d, 12h or 0s (everything)",
            crate::ids::quoted(raw)
        ));
    }
    humantime::parse_duration(raw).map_err(|e| {
        format!(
            "{} is not an age like 30d or 12h ({e})",
            crate::ids::quoted(raw)
        )
    })
}

/// Command-line options of the simulator.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct SimArgs {
    /// Address of the fake API host (loopback only).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8380")]
    pub listen: SocketAddr,

    /// Address of the fake CDN host (loopback only; a different origin from
    /// the API, as in production).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8381")]
    pub cdn_listen: SocketAddr,

    /// Seed of the generated content, ETags and URL signatures.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Size of every file, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub file_size: u64,

    /// Require this API key (`Authorization: Bearer KEY`); any key is accepted
    /// when absent.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,

    /// Advertise the real size in `file.bytes` (the real API says 0 for videos).
    #[arg(long)]
    pub report_bytes: bool,

    /// Lifetime of issued download URLs, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub url_ttl: u64,

    /// Answer every n-th retrieve call with status 1002 (rate limited).
    #[arg(long, value_name = "N")]
    pub rate_limit_every: Option<u32>,

    /// A hidden rate limit: beyond N answered retrieve calls in any 60 s, answer 1002
    /// (as an account's limit does), for trying requests_per_minute = "auto".
    #[arg(long, value_name = "N")]
    pub rpm: Option<u32>,

    /// Abort every n-th CDN body half way through the file.
    #[arg(long, value_name = "N")]
    pub drop_every: Option<u32>,

    /// Throttle each CDN connection to this many bytes per second.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub bandwidth: Option<u64>,

    /// Hand out download URLs `URL/{file_id}.bin` on another server (e.g. a
    /// local nginx for benchmarks) instead of the built-in CDN.
    #[arg(long, value_name = "URL")]
    pub external_cdn: Option<String>,

    /// How long a task created with `POST /v1|v2/video_generation` generates, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    pub task_generation_secs: u64,

    /// Every n-th created task fails (status_code 1027, output rejected).
    #[arg(long, value_name = "N")]
    pub task_fail_every: Option<u32>,

    /// POST each task's final update this many times to its callback_url.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub callback_repeats: u32,

    /// Most tasks a page of the v2 task list serves, whatever is asked
    /// (MiniMax's documented example serves 20).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub list_page_max: u32,

    /// MiniMax's clock minus this host's, in seconds (API `Date`, URL
    /// `Expires`, the CDN's expiry check): a host clock that is wrong.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub clock_offset_secs: i64,
}

impl Default for SimArgs {
    fn default() -> Self {
        SimArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 8380)),
            cdn_listen: SocketAddr::from(([127, 0, 0, 1], 8381)),
            seed: 42,
            file_size: 1 << 20,
            api_key: None,
            report_bytes: false,
            url_ttl: 3600,
            rate_limit_every: None,
            rpm: None,
            drop_every: None,
            bandwidth: None,
            external_cdn: None,
            task_generation_secs: 20,
            task_fail_every: None,
            callback_repeats: 1,
            list_page_max: 20,
            clock_offset_secs: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(names: &[&str]) -> Vec<String> {
        unknown_variables(names.iter().copied())
    }

    #[test]
    fn a_misspelt_variable_is_named_with_the_one_meant() {
        let cases = [
            ("MINIMAX_DL_DB", "MINIMAX_DL_DATABASE"),
            ("MINIMAX_DL_OUTPUT", "MINIMAX_DL_OUTPUT_DIR"),
            ("MINIMAX_DL_CONCURENCY", "MINIMAX_DL_CONCURRENCY"),
            (
                "MINIMAX_DL_REQUEST_PER_MINUTE",
                "MINIMAX_DL_REQUESTS_PER_MINUTE",
            ),
        ];
        for (typed, meant) in cases {
            let warnings = warned(&[typed]);
            assert_eq!(warnings.len(), 1, "{typed}: {warnings:?}");
            assert!(
                warnings[0].starts_with(&format!(
                    "{typed} is set but minimax-dl does not read it: did you mean {meant}?"
                )),
                "{typed}: {}",
                warnings[0]
            );
        }
    }

    #[test]
    fn a_variable_like_no_other_is_still_named() {
        let warnings = warned(&["MINIMAX_DL_XYZZY"]);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with(
                "MINIMAX_DL_XYZZY is set but minimax-dl does not read it (the variables"
            )
        );
    }

    #[test]
    fn known_variables_tests_benchmarks_and_other_programs_are_left_alone() {
        let known: Vec<&str> = ENVIRONMENT.iter().map(|v| v.name).collect();
        assert!(warned(&known).is_empty());
        assert!(
            warned(&[
                "MINIMAX_DL_TEST_PG_URL",
                "MINIMAX_DL_BENCH_PG_URL",
                "MINIMAX_DL_BIN"
            ])
            .is_empty()
        );
        assert!(warned(&["MINIMAX_GROUP_ID", "PATH", "AWS_REGION"]).is_empty());
    }
}
