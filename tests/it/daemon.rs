//! The daemon as systemd sees it: the notify protocol, signals, log format,
//! and what it costs while idle.

use std::time::{Duration, Instant};

use minimax_dl::sim::{Faults, SimConfig};
use tokio::net::UnixDatagram;

use crate::support::{self, World, assert_success, assert_verified, signal};

fn spawn_with_env(world: &World, args: &[&str], envs: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = world.command();
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn minimax-dl")
}

async fn next_message(socket: &UnixDatagram, limit: Duration) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(limit, socket.recv(&mut buf))
        .await
        .expect("no notify message in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn it_speaks_the_systemd_notify_protocol() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    let socket_path = world.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let child = spawn_with_env(
        &world,
        &["run"],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let ready = next_message(&socket, Duration::from_secs(10)).await;
    assert!(ready.contains("READY=1"), "{ready:?}");
    assert_success(&world.run(&["enqueue", "1", "2"]).await);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(seen.iter().any(|m: &String| m.contains("WATCHDOG=1"))
        && seen
            .iter()
            .any(|m| m.contains("STATUS=") && m.contains("2 done")))
    {
        assert!(Instant::now() < deadline, "messages so far: {seen:?}");
        seen.push(next_message(&socket, Duration::from_secs(10)).await);
    }
    signal(child.id().unwrap(), "-TERM");
    let stopping = next_message(&socket, Duration::from_secs(10)).await;
    assert!(stopping.contains("STOPPING=1"), "{stopping:?}");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_success(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once_and_still_loses_nothing() {
    let sim = support::sim(SimConfig {
        default_file_size: 32 * 1024 * 1024,
        faults: Faults {
            bandwidth_bytes_per_sec: Some(2 * 1024 * 1024),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "1"]).await);
    let child = spawn_with_env(&world, &["run"], &[]);
    let q = minimax_dl::queue::Queue::open(&minimax_dl::queue::DbLocation(
        world.db.to_string_lossy().into_owned(),
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while q.get(1).await.unwrap().unwrap().bytes_done == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap();
    signal(pid, "-TERM");
    signal(pid, "-TERM");
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    sim.set_faults(Faults::default());
    assert_success(&world.run(&["run", "--exit-when-idle"]).await);
    assert_verified(&world, &sim, &world.job(1).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_file_id_of_each_job() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "21"]).await);
    let out = world
        .run(&["--log-format", "json", "run", "--exit-when-idle"])
        .await;
    assert_success(&out);
    let lines: Vec<serde_json::Value> = support::stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let done = lines
        .iter()
        .find(|l| l["fields"]["message"] == "done")
        .expect("a 'done' line");
    assert_eq!(done["span"]["file_id"], 21, "{done}");
    assert!(
        !support::stderr(&out).contains(support::TEST_KEY),
        "the key is never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_daemon_costs_almost_nothing() {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim);
    let child = spawn_with_env(&world, &["run"], &[]);
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = ticks(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = ticks(pid) - before;
    eprintln!("idle daemon: {used} clock ticks of CPU in 5 s");
    // 100 ticks a second: 25 ticks in 5 s would be 5% of a core.
    assert!(used < 25, "idle CPU {used} ticks in 5 s");
    signal(pid, "-TERM");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_success(&out);
}
