//! `run --listen`: metrics, health, the dashboard's JSON and actions, and
//! the listener's defences (loopback only unless configured, a slow-loris
//! client, a 100 MB body), against the real binary working the simulator.

use std::collections::BTreeSet;
use std::time::Duration;

use minimax_sim::{Faults, SimConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    self, Listening, World, assert_exit, assert_success, http, run_listening, spawn_listening,
    wait_for,
};

const TOKEN: &str = "test-token-0123456789abcdef";
const MISSING: i64 = 906;

/// A simulator serving small files, where [`MISSING`] does not exist.
async fn sim_with_a_missing_file() -> minimax_sim::Simulator {
    let mut missing = std::collections::HashSet::new();
    missing.insert(MISSING);
    support::sim(SimConfig {
        faults: Faults {
            missing,
            ..Faults::default()
        },
        ..support::small_files()
    })
    .await
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = http().get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// Waits until the dashboard's state counts `done` and `failed` jobs.
async fn wait_for_counts(daemon: &Listening, done: u64, failed: u64) -> Value {
    let url = daemon.url("/api/state");
    wait_for(Duration::from_secs(60), "the jobs to finish", || async {
        let (_, state) = get_json(&url).await;
        let counts = &state["counts"];
        (counts["done"] == done && counts["failed"] == failed).then_some(state)
    })
    .await
}

#[tokio::test]
async fn metrics_health_and_the_dashboard_state_follow_the_work() {
    let sim = sim_with_a_missing_file().await;
    let world = World::new().with_sim(&sim);
    assert_success(
        &world
            .run(&["enqueue", "901", "902", "903", "904", "905", "906"])
            .await,
    );
    let daemon = run_listening(&world, &[]).await;

    let state = wait_for_counts(&daemon, 5, 1).await;
    let failed = state["failed"].as_array().expect("failed jobs");
    assert_eq!(failed[0]["file_id"], MISSING.to_string(), "{state}");
    assert!(
        failed[0]["last_error"].as_str().unwrap().contains("2013"),
        "{state}"
    );
    assert_eq!(state["actions"], false, "no token: read-only");
    assert_eq!(state["healthy"], true, "{state}");

    let (status, health) = get_json(&daemon.url("/healthz")).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = get_json(&daemon.url("/readyz")).await;
    assert_eq!((status, ready["ready"].as_bool()), (200, Some(true)));

    let response = http().get(daemon.url("/metrics")).send().await.unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    for line in [
        "minimax_dl_jobs{state=\"done\"} 5",
        "minimax_dl_jobs{state=\"failed\"} 1",
        "minimax_dl_job_outcomes_total{outcome=\"done\"} 5",
        "minimax_dl_job_outcomes_total{outcome=\"failed\"} 1",
        "minimax_dl_api_calls_total{outcome=\"ok\",class=\"ok\"} 5",
        "minimax_dl_api_calls_total{outcome=\"code_2013\",class=\"permanent\"} 1",
        "minimax_dl_downloaded_bytes_total 327680",
        "minimax_dl_download_duration_seconds_count 5",
        "minimax_dl_paused{reason=\"account\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(text.contains("minimax_dl_build_info{version="), "{text}");
    assert!(text.contains("process_resident_memory_bytes "), "{text}");
    every_metric_contrib_uses_is_exported(&text);
    assert!(daemon.stop().await.success());
}

/// The metric names a scrape exports: each `# TYPE` line's name, and a
/// histogram's `_bucket`, `_sum` and `_count` series.
fn exported(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            names.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

/// The metric names a file mentions: every word starting `minimax_dl_` or
/// `process_`.
fn mentioned(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("minimax_dl_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

fn every_metric_contrib_uses_is_exported(scrape: &str) {
    let exported = exported(scrape);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    for file in ["grafana-dashboard.json", "alerts.yml"] {
        let text = std::fs::read_to_string(root.join(file)).expect("contrib file");
        if file.ends_with(".json") {
            serde_json::from_str::<Value>(&text).expect("the dashboard is JSON");
        }
        let used = mentioned(&text);
        assert!(!used.is_empty(), "contrib/{file} uses no metric");
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "contrib/{file} uses metrics /metrics does not export: {missing:?}"
        );
    }
}

#[tokio::test]
async fn readyz_answers_503_with_the_reason_while_the_pool_is_paused() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new()
        .with_sim(&sim)
        .env("MINIMAX_API_KEY", "not-the-simulators-key");
    assert_success(&world.run(&["enqueue", "911"]).await);
    let daemon = run_listening(&world, &[]).await;
    let url = daemon.url("/readyz");
    let ready = wait_for(Duration::from_secs(60), "a paused pool", || async {
        let (status, body) = get_json(&url).await;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(ready["reason"], "paused", "{ready}");
    assert_eq!(ready["pause"]["reason"], "account", "{ready}");
    assert!(
        ready["pause"]["message"].as_str().unwrap().contains("1004"),
        "{ready}"
    );
    let (status, health) = get_json(&daemon.url("/healthz")).await;
    assert_eq!(status, 200, "paused is not dead: {health}");
    let text = daemon.text("/metrics").await;
    assert!(
        text.lines()
            .any(|l| l == "minimax_dl_paused{reason=\"account\"} 1"),
        "{text}"
    );
    assert!(daemon.stop().await.success());
}

/// A daemon started before its database answers is alive (a watchdog
/// must not restart it for that) but not ready, says why without the
/// password, and stops cleanly on SIGTERM. No server needed: a loopback
/// port nothing listens on.
#[tokio::test]
async fn while_the_database_does_not_answer_healthz_is_ok_and_readyz_says_why() {
    let (url, refused) = support::unreachable_pg_url("hunter2-0451");
    let port = refused.port();
    let world = World::new().on_database(&url).env("MINIMAX_API_KEY", "k");
    let daemon = run_listening(&world, &[]).await;
    let ready = wait_for(
        Duration::from_secs(30),
        "the reason it is not ready",
        || async {
            let (status, body) = get_json(&daemon.url("/readyz")).await;
            assert_eq!(status, 503, "{body}");
            let message = body["message"].as_str().unwrap_or_default().to_string();
            (message != "connecting").then_some(body)
        },
    )
    .await;
    assert_eq!(ready["reason"], "queue", "{ready}");
    let message = ready["message"].as_str().unwrap();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{ready}");
    let (status, health) = get_json(&daemon.url("/healthz")).await;
    assert_eq!(status, 200, "waiting is not dead: {health}");
    assert_eq!(health["status"], "starting", "{health}");
    let (status, _) = get_json(&daemon.url("/api/state")).await;
    assert_eq!(status, 503);
    let log = daemon.log.clone();
    assert!(
        daemon.stop().await.success(),
        "SIGTERM while waiting is a clean stop"
    );
    let log = log.lock().unwrap().clone();
    assert!(
        !log.contains("hunter2") && !message.contains("hunter2"),
        "{log}"
    );
}

#[tokio::test]
async fn the_dashboard_acts_only_for_a_same_site_request_with_the_token() {
    let sim = sim_with_a_missing_file().await;
    let world = World::new().with_sim(&sim);
    std::fs::write(&world.config, format!("listen_token = \"{TOKEN}\"\n")).unwrap();
    assert_success(&world.run(&["enqueue", "901", "906"]).await);
    let daemon = run_listening(&world, &[]).await;
    let state = wait_for_counts(&daemon, 1, 1).await;
    assert_eq!(state["actions"], true);

    let retry = daemon.url(&format!("/api/jobs/{MISSING}/retry"));
    let post = |url: String, token: Option<&'static str>, origin: Option<String>| async move {
        let mut request = http().post(url);
        if let Some(token) = token {
            request = request.header("X-Minimax-Dl-Token", token);
        }
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        let response = request.send().await.expect("POST");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    };
    let get = http().get(&retry).send().await.unwrap().status().as_u16();
    assert_eq!(get, 405, "no action by GET");
    assert_eq!(post(retry.clone(), None, None).await.0, 401);
    assert_eq!(
        post(retry.clone(), Some("wrong-token-0123456789"), None)
            .await
            .0,
        401
    );
    let (status, body) = post(
        retry.clone(),
        Some(TOKEN),
        Some("http://evil.example".into()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        world.job(MISSING).await["state"],
        "failed",
        "nothing refused acted"
    );
    let (status, body) = post(daemon.url("/api/jobs/12ab/retry"), Some(TOKEN), None).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = post(daemon.url("/api/jobs/906/frobnicate"), Some(TOKEN), None).await;
    assert_eq!(status, 404);

    // The page's own origin may act.
    let (status, body) = post(retry.clone(), Some(TOKEN), Some(daemon.base.clone())).await;
    assert_eq!(status, 200, "{body}");
    let job = world.job(MISSING).await;
    assert!(
        support::event_kinds(&job).contains(&"retried".into()),
        "{job}"
    );
    let (status, body) = post(daemon.url("/api/jobs/901/retry"), Some(TOKEN), None).await;
    assert_eq!(status, 409, "a done job is not retried: {body}");
    assert!(daemon.stop().await.success());
}

#[tokio::test]
async fn without_a_token_the_dashboard_is_read_only() {
    let world = World::new();
    let daemon = run_listening(&world, &[]).await;
    let response = http()
        .post(daemon.url("/api/jobs/1/retry"))
        .header("X-Minimax-Dl-Token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(response.text().await.unwrap().contains("listen_token"));
    assert!(daemon.stop().await.success());
}

#[tokio::test]
async fn nothing_is_served_off_loopback_unless_configured() {
    let world = World::new().env("MINIMAX_API_KEY", "k");
    let out = world
        .run(&["run", "--listen", "0.0.0.0:0", "--exit-when-idle"])
        .await;
    assert_exit(&out, 2);
    let err = support::stderr(&out);
    assert!(
        err.contains("not a loopback address") && err.contains("listen_public"),
        "{err}"
    );

    // A loopback listener answers only for this machine's names.
    let daemon = run_listening(&world, &[]).await;
    let status = status_for_host(&daemon.url("/healthz"), "rebound.example").await;
    assert_eq!(status, 421);
    assert!(daemon.stop().await.success());

    // Said explicitly: served on every address (reached here over loopback).
    std::fs::write(&world.config, "listen_public = true\n").unwrap();
    let daemon = spawn_listening(&world, "0.0.0.0:0", &[]).await;
    let url = daemon.url("/healthz").replace("0.0.0.0", "127.0.0.1");
    assert_eq!(status_for_host(&url, "dl.example").await, 200);
    assert!(daemon.stop().await.success());
}

/// The status of a GET of `url` asking for `host`.
async fn status_for_host(url: &str, host: &str) -> u16 {
    let response = http().get(url).header("Host", host).send().await;
    response.expect("GET").status().as_u16()
}

fn authority(daemon: &Listening) -> String {
    daemon.base.trim_start_matches("http://").to_string()
}

/// Sends a header line a second and reports whether the server closed the
/// connection before `limit`.
async fn trickle_until_closed(mut stream: TcpStream, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 1024];
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return true;
                }
            }
        }
    }
    false
}

#[tokio::test]
async fn a_slow_loris_client_is_cut_off_while_others_are_served() {
    // Kept to the end: a temporary `World` deletes the daemon's queue
    // while it starts.
    let world = World::new();
    let daemon = run_listening(&world, &[]).await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(authority(&daemon)).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        slow.push(tokio::spawn(trickle_until_closed(
            stream,
            Duration::from_secs(60),
        )));
    }
    for _ in 0..3 {
        let status = status_for_host(&daemon.url("/healthz"), "127.0.0.1").await;
        assert_eq!(status, 200, "served while slow clients hang on");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for client in slow {
        assert!(client.await.unwrap(), "a slow client was never cut off");
    }
    assert!(daemon.stop().await.success());
}

#[tokio::test]
async fn a_100_mb_body_is_refused_before_it_is_read() {
    // Kept to the end: a temporary `World` deletes the daemon's queue
    // while it starts.
    let world = World::new();
    let daemon = run_listening(&world, &[]).await;
    let mut stream = TcpStream::connect(authority(&daemon)).await.unwrap();
    let head = "POST /api/jobs/1/retry HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Length: 104857600\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    // One MiB of the hundred; the answer must not wait for the rest.
    let _ = stream.write_all(&vec![0u8; 1 << 20]).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer while the body was still owed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let status = status_for_host(&daemon.url("/healthz"), "127.0.0.1").await;
    assert_eq!(status, 200, "still serving");
    assert!(daemon.stop().await.success());
}
