//! Test hooks: ways for the integration tests to make a process crash at a
//! named step, stall its heartbeat, fix its idle poll, see another boot id,
//! run on a skewed clock, or count its rate cap over a shorter window and
//! poll tasks more often. They exist only with the `test-hooks` cargo
//! feature, which the test builds turn on (the crate's dev-dependency on
//! itself) and a release build never has: without it [`TestHooks`] is an
//! empty value whose every hook is inert, and no variable below is read,
//! or even named, in the binary.
//!
//! [`TestHooks::from_env`] is the one place the environment is read for
//! them, by `main` at start-up; the engine gets them through its
//! construction (`runtime::engine`: [`crate::worker::Engine::with_hooks`],
//! [`crate::fetch::Fetcher::with_hooks`]), and the settings as they are
//! loaded (`runtime::load_settings`). The clock skew is the one
//! process-wide hook, since every timestamp comes from
//! `queue::now_millis`, which reads [`clock_skew_ms`].
//!
//! This module names nothing of the crate but `stderr`: everything from
//! `fetch` up may take a `TestHooks`.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

#[cfg(feature = "test-hooks")]
use std::path::PathBuf;

/// `<point>` aborts the process at that crash point; `panic:<point>`
/// panics there; `stall:heartbeat` keeps the heartbeat from turning.
#[cfg(feature = "test-hooks")]
pub(crate) const CRASH_AT: &str = "MINIMAX_DL_CRASH_AT";
/// An idle pool's fixed wait for work, in ms.
#[cfg(feature = "test-hooks")]
pub(crate) const IDLE_POLL_MS: &str = "MINIMAX_DL_TEST_IDLE_POLL_MS";
/// A file whose content replaces the kernel's boot id.
#[cfg(feature = "test-hooks")]
pub(crate) const BOOT_ID_FILE: &str = "MINIMAX_DL_BOOT_ID_FILE";
/// The rate cap's window, in ms (instead of 60 s).
#[cfg(feature = "test-hooks")]
pub(crate) const RATE_WINDOW_MS: &str = "MINIMAX_DL_TEST_RATE_WINDOW_MS";
/// The shortest wait between two polls of one task, in ms (instead of 10 s).
#[cfg(feature = "test-hooks")]
pub(crate) const TASK_POLL_MS: &str = "MINIMAX_DL_TEST_TASK_POLL_MS";
/// How far this process's clock is off, in ms.
#[cfg(feature = "test-hooks")]
pub(crate) const CLOCK_SKEW_MS: &str = "MINIMAX_DL_TEST_CLOCK_SKEW_MS";

/// The hooks a test asked for; all inert by default (and always, without
/// the `test-hooks` feature, where this is a zero-sized value).
#[derive(Clone, Debug, Default)]
pub struct TestHooks {
    #[cfg(feature = "test-hooks")]
    crash_at: Option<String>,
    #[cfg(feature = "test-hooks")]
    idle_poll: Option<Duration>,
    #[cfg(feature = "test-hooks")]
    boot_id_file: Option<PathBuf>,
    #[cfg(feature = "test-hooks")]
    clock_skew_ms: i64,
    #[cfg(feature = "test-hooks")]
    rate_window: Option<Duration>,
    #[cfg(feature = "test-hooks")]
    task_poll: Option<Duration>,
}

static INSTALLED: OnceLock<TestHooks> = OnceLock::new();

/// How far a test moved this process's clock, in ms (as a host whose clock
/// is wrong, to show what is counted on the database's clock instead): 0
/// unless set, and always without the `test-hooks` feature.
pub(crate) fn clock_skew_ms() -> i64 {
    #[cfg(feature = "test-hooks")]
    return INSTALLED.get().map_or(0, |hooks| hooks.clock_skew_ms);
    #[cfg(not(feature = "test-hooks"))]
    0
}

impl TestHooks {
    /// The hooks the environment sets (none without the feature).
    pub fn from_env() -> TestHooks {
        #[cfg(feature = "test-hooks")]
        {
            let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
            let millis = |name| {
                var(name)
                    .and_then(|ms| ms.trim().parse::<u64>().ok())
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis)
            };
            TestHooks {
                crash_at: var(CRASH_AT),
                idle_poll: millis(IDLE_POLL_MS),
                boot_id_file: var(BOOT_ID_FILE).map(PathBuf::from),
                clock_skew_ms: var(CLOCK_SKEW_MS)
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0),
                rate_window: millis(RATE_WINDOW_MS),
                task_poll: millis(TASK_POLL_MS),
            }
        }
        #[cfg(not(feature = "test-hooks"))]
        TestHooks::default()
    }

    /// Makes these the hooks of this process: the clock takes the skew
    /// ([`clock_skew_ms`]), and [`TestHooks::installed`] returns them. The first call wins.
    pub fn install(self) {
        let _ = INSTALLED.set(self);
    }

    /// The hooks [`TestHooks::install`] made this process's, else inert ones.
    pub fn installed() -> TestHooks {
        INSTALLED.get().cloned().unwrap_or_default()
    }

    /// A crash point: aborts the process at `point`, or panics there
    /// (`panic:<point>`: a bug in a worker, or in the task poller:
    /// `poll-task`), when a test asked for it.
    pub fn crash_point(&self, point: &str) {
        #[cfg(feature = "test-hooks")]
        {
            let wanted = self.crash_at.as_deref().unwrap_or_default();
            if wanted.strip_prefix("panic:") == Some(point) {
                panic!("a test panic at {point} ({CRASH_AT})");
            }
            if wanted == point {
                crate::say!("minimax-dl: crashing at {point} ({CRASH_AT})");
                crate::stderr::sink().flush(Duration::from_millis(200));
                std::process::abort();
            }
        }
        #[cfg(not(feature = "test-hooks"))]
        let _ = point;
    }

    /// Must the heartbeat never turn (as a wedged runtime's would), so that
    /// a test can see `/healthz` say so?
    pub fn heartbeat_stalled(&self) -> bool {
        #[cfg(feature = "test-hooks")]
        return self.crash_at.as_deref() == Some("stall:heartbeat");
        #[cfg(not(feature = "test-hooks"))]
        false
    }

    /// An idle pool's fixed wait for work (no back-off), so that a test can
    /// tell a wake-up from a poll.
    pub fn idle_poll(&self) -> Option<Duration> {
        #[cfg(feature = "test-hooks")]
        return self.idle_poll;
        #[cfg(not(feature = "test-hooks"))]
        None
    }

    /// The rate cap's window, shortened so that a test runs minutes of the
    /// adaptive rate in seconds (`runtime::load_settings` applies it).
    pub fn rate_window(&self) -> Option<Duration> {
        #[cfg(feature = "test-hooks")]
        return self.rate_window;
        #[cfg(not(feature = "test-hooks"))]
        None
    }

    /// The floor between two polls of one task, shortened for tests
    /// (`runtime::load_settings` applies it).
    pub fn task_poll(&self) -> Option<Duration> {
        #[cfg(feature = "test-hooks")]
        return self.task_poll;
        #[cfg(not(feature = "test-hooks"))]
        None
    }

    /// A file standing for the kernel's boot id, so that a test can
    /// simulate a reboot between two runs by changing it.
    pub fn boot_id_file(&self) -> Option<&Path> {
        #[cfg(feature = "test-hooks")]
        return self.boot_id_file.as_deref();
        #[cfg(not(feature = "test-hooks"))]
        None
    }
}
