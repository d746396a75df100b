//! Generation tasks as monitoring sees them: counts by state and polls in
//! `/metrics`, the dashboard's JSON and `status --watch`; and `/metrics`
//! while the queue database does not answer (Prometheus text, not 503).

use std::time::Duration;

use minimax_sim::SimApi;
use minimax_sim::SimTask;
use tokio::io::AsyncReadExt;

use crate::support::{self, World, assert_success, http, run_listening, wait_for};

/// The value of one series in Prometheus text, if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn generating_tasks_and_their_polls_show_in_metrics_the_dashboard_and_status_watch() {
    let sim = support::sim(support::small_files()).await;
    // Still generating long after the test is over.
    sim.add_task(
        7301,
        SimTask::new(SimApi::V1, 7_300).generating(Duration::from_secs(3600)),
    );
    let world = World::new()
        .with_sim(&sim)
        .env("MINIMAX_DL_TEST_TASK_POLL_MS", "100");
    assert_success(&world.run(&["enqueue", "--task", "7301"]).await);
    let daemon = run_listening(&world, &[]).await;
    let text = wait_for(Duration::from_secs(60), "two recorded polls", || async {
        let text = daemon.text("/metrics").await;
        (value(&text, "minimax_dl_queue_task_polls").unwrap_or(0.0) >= 2.0).then_some(text)
    })
    .await;
    assert_eq!(
        value(&text, "minimax_dl_tasks{state=\"generating\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "minimax_dl_tasks{state=\"failed\"}"),
        Some(0.0),
        "{text}"
    );
    assert!(
        value(&text, "minimax_dl_task_polls_total").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert_eq!(value(&text, "minimax_dl_queue_up"), Some(1.0), "{text}");
    let state: serde_json::Value =
        serde_json::from_str(&daemon.text("/api/state").await).expect("state is JSON");
    assert_eq!(state["tasks"]["generating"], 1, "{state}");
    assert!(
        state["tasks"]["polls"].as_u64().unwrap_or(0) >= 2,
        "{state}"
    );

    let mut watch = support::spawn(&world, &["status", "--watch", "--interval", "200ms"]);
    let mut out = watch.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let text = String::from_utf8_lossy(&seen).into_owned();
            if text.contains("1 tasks (finished 0, failed 0, cancelled 0; ") {
                return text;
            }
            match out.read(&mut buf).await {
                Ok(0) | Err(_) => return text,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("status --watch printed nothing in 30 s");
    let line = found
        .lines()
        .find(|l| l.starts_with("generating"))
        .unwrap_or_else(|| panic!("{found}"));
    let polls: u64 = line
        .rsplit("; ")
        .next()
        .and_then(|p| p.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(polls >= 2, "{line}");
    let _ = watch.kill().await;
    daemon.stop().await;
}

#[tokio::test]
async fn metrics_stay_prometheus_text_while_the_database_does_not_answer() {
    let (url, _refused) = support::unreachable_pg_url("hunter2-0452");
    let world = World::new().on_database(&url).env("MINIMAX_API_KEY", "k");
    let daemon = run_listening(&world, &[]).await;
    let response = http().get(daemon.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text")
            || content_type.starts_with("text/plain"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert_eq!(value(&text, "minimax_dl_queue_up"), Some(0.0), "{text}");
    assert!(text.contains("minimax_dl_build_info{"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.trim_start().starts_with('{'),
        "{text}"
    );
    daemon.stop().await;
}
