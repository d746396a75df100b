//! The dashboard in a real browser: headless Chromium, driven through
//! chromedriver (WebDriver, the thirtyfour crate), against `run --listen`
//! working the simulator. The page must show jobs moving to done, and a
//! retry from the page must re-queue a failed job with the token and be
//! refused without it. Without chromedriver and Chromium the test says
//! SKIPPED, and fails under CI (`.ci/run` installs Debian's `chromium` and
//! `chromium-driver`).
//!
//! The screenshot lands in `target/dashboard.png`; with
//! `MINIMAX_DL_TEST_UPDATE_SCREENSHOT=1` also in `docs/dashboard.png`, the one
//! the README shows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use minimax_sim::{Faults, SimConfig};
use thirtyfour::common::capabilities::chromium::ChromiumLikeCapabilities;
use thirtyfour::prelude::*;
use tokio::io::AsyncBufReadExt;

use crate::support::{self, Listening, World, assert_success, http, run_listening, wait_for};

const TOKEN: &str = "dashboard-test-token-0123456789";
const MISSING: i64 = 7_000_099;
const GOOD: [i64; 8] = [
    7_000_001, 7_000_002, 7_000_003, 7_000_004, 7_000_005, 7_000_006, 7_000_007, 7_000_008,
];

/// Where a program is: `$PATH` first, then Debian's place for it.
fn find(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// chromedriver on a port of its choosing, killed on drop.
struct Chromedriver {
    child: tokio::process::Child,
    url: String,
    chromium: PathBuf,
}

impl Chromedriver {
    /// Ends it and waits for it (no zombie left behind).
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

async fn chromedriver() -> Option<Chromedriver> {
    let (Some(driver), Some(chromium)) = (find("chromedriver"), find("chromium")) else {
        support::skip_or_fail(
            "no chromedriver or chromium",
            "apt-get install chromium chromium-driver",
        );
        return None;
    };
    let mut child = tokio::process::Command::new(driver)
        .arg("--port=0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                return rest.trim_end_matches('.').parse::<u16>().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("chromedriver says its port");
    // Keep reading its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Chromedriver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        chromium,
    })
}

async fn browser(driver: &Chromedriver) -> WebDriver {
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(driver.chromium.to_str().unwrap()).unwrap();
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        "--window-size=1280,1000",
    ] {
        caps.add_arg(arg).unwrap();
    }
    WebDriver::builder(&driver.url, caps)
        .client(http())
        .await
        .expect("a Chromium session")
}

async fn text(page: &WebDriver, css: &str) -> String {
    match page.find(By::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the element `css` says what `wanted` accepts.
async fn wait_text(page: &WebDriver, css: &str, what: &str, wanted: impl Fn(&str) -> bool) {
    wait_for(Duration::from_secs(90), what, || async {
        wanted(&text(page, css).await).then_some(())
    })
    .await
}

/// Clicks `css`; the page redraws every second, so a button found just
/// before a redraw is looked up again.
async fn click(page: &WebDriver, css: &str) {
    wait_for(Duration::from_secs(30), css, || async {
        let element = page.find(By::Css(css)).await.ok()?;
        element.click().await.ok()
    })
    .await
}

fn save_screenshot(png: &[u8]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::write(root.join("target").join("dashboard.png"), png).unwrap();
    if std::env::var_os("MINIMAX_DL_TEST_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(root.join("docs").join("dashboard.png"), png).unwrap();
    }
}

/// Waits until a download in flight is half done (for the screenshot's
/// sake: bars that show progress), or they have all ended.
async fn halfway(daemon: &Listening) {
    wait_for(Duration::from_secs(30), "a download half done", || async {
        let state: serde_json::Value = http()
            .get(daemon.url("/api/state"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let flights = state["in_flight"].as_array()?;
        let half = |f: &serde_json::Value| {
            let (done, total) = (f["bytes_done"].as_u64(), f["total"].as_u64());
            done.zip(total).is_some_and(|(d, t)| 2 * d >= t)
        };
        (flights.is_empty() || flights.iter().any(half)).then_some(())
    })
    .await
}

async fn retried(world: &World) -> bool {
    support::event_kinds(&world.job(MISSING).await).contains(&"retried".into())
}

#[tokio::test]
async fn the_dashboard_shows_jobs_finish_and_retries_a_failed_one_only_with_the_token() {
    let Some(driver) = chromedriver().await else {
        return;
    };
    // 2 MiB files at 384 KiB/s, three at a time: three waves of five seconds.
    let sim = support::sim(SimConfig {
        default_file_size: 2 << 20,
        faults: Faults {
            missing: [MISSING].into_iter().collect(),
            bandwidth_bytes_per_sec: Some(384 << 10),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    std::fs::write(&world.config, format!("listen_token = \"{TOKEN}\"\n")).unwrap();
    let ids: Vec<String> = GOOD.iter().chain([&MISSING]).map(i64::to_string).collect();
    let mut args = vec!["enqueue"];
    args.extend(ids.iter().map(String::as_str));
    assert_success(&world.run(&args).await);
    // The browser first (it takes seconds to start), then the work.
    let page = browser(&driver).await;
    let daemon: Listening = run_listening(&world, &["--concurrency", "3"]).await;
    check_then_close(driver, &page, watch_and_retry(&page, &daemon, &world)).await;
    assert!(daemon.stop().await.success());
}

/// Runs `checks`, then closes the browser and chromedriver whatever
/// happened (a failed check must not leave Chromium running once
/// chromedriver is gone), then fails as the checks did.
async fn check_then_close(
    driver: Chromedriver,
    page: &WebDriver,
    checks: impl Future<Output = ()>,
) {
    use futures_util::FutureExt;
    let checked = std::panic::AssertUnwindSafe(checks).catch_unwind().await;
    let _ = page.clone().quit().await;
    driver.stop().await;
    if let Err(failure) = checked {
        std::panic::resume_unwind(failure);
    }
}

/// What the test checks in the page.
async fn watch_and_retry(page: &WebDriver, daemon: &Listening, world: &World) {
    page.goto(daemon.url("/")).await.unwrap();
    // Moving: the missing file failed, some done, more in flight ...
    wait_text(page, "#count-failed", "the missing file to fail", |t| {
        t == "1"
    })
    .await;
    wait_text(page, "#count-done", "a first file done", |t| {
        t != "0" && t != "–"
    })
    .await;
    wait_text(page, "#in-flight tbody", "a download in progress", |t| {
        t.contains("KiB/s") || t.contains("MiB/s")
    })
    .await;
    halfway(daemon).await;
    save_screenshot(&page.screenshot_as_png().await.unwrap());
    // ... then done.
    let all = GOOD.len().to_string();
    wait_text(page, "#count-done", "every good file done", |t| t == all).await;
    let failed_row = format!("#failed tr[data-id='{MISSING}']");
    wait_text(page, &failed_row, "the failed job listed", |t| {
        t.contains("2013")
    })
    .await;

    // Without the token: refused, and the job stays failed.
    let retry = format!("{failed_row} button.retry");
    click(page, &retry).await;
    wait_text(page, "#notice", "the refusal", |t| {
        t.contains("refused (401)")
    })
    .await;
    assert_eq!(world.job(MISSING).await["state"], "failed");
    assert!(!retried(world).await, "a refused retry changed nothing");

    // With it: re-queued (it fails again: the file is still missing).
    let token = page.find(By::Id("token")).await.unwrap();
    token.send_keys(TOKEN).await.unwrap();
    click(page, &retry).await;
    let retried_notice = format!("job {MISSING}");
    wait_text(page, "#notice", "the retry", |t| {
        t.contains(&retried_notice)
    })
    .await;
    assert!(retried(world).await, "the retry reached the queue");
}

/// A pool paused because its API cannot be connected to: the page's pause
/// banner names that cause (not another: it once said "the archive disk"
/// for every pause but an account's) and tells the operator what to
/// check, and that work resumes by itself.
#[tokio::test]
async fn the_dashboard_tells_the_operator_what_to_do_about_an_unreachable_api() {
    let Some(driver) = chromedriver().await else {
        return;
    };
    let refused = support::RefusedPort::new();
    let world = World::new()
        .env(
            "MINIMAX_API_BASE",
            &format!("http://127.0.0.1:{}", refused.port()),
        )
        .env("MINIMAX_API_KEY", support::TEST_KEY);
    assert_success(&world.run(&["enqueue", "1"]).await);
    let page = browser(&driver).await;
    let daemon: Listening = run_listening(&world, &[]).await;
    let checks = async {
        page.goto(daemon.url("/")).await.unwrap();
        wait_text(&page, "#pause", "the pause banner", |t| {
            t.contains("cannot connect to the MiniMax API")
        })
        .await;
        let banner = text(&page, "#pause").await;
        assert!(
            banner.contains("because of an API this host cannot connect to"),
            "{banner}"
        );
        assert!(
            banner.contains("Check this host's network and api_base")
                && banner.contains("work resumes by itself once a connection succeeds"),
            "{banner}"
        );
        assert!(!banner.contains("disk"), "{banner}");
    };
    check_then_close(driver, &page, checks).await;
    assert!(daemon.stop().await.success());
}
