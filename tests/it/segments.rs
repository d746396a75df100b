//! Segmented downloads (`run --segments N`): several Range requests for one
//! large file, each piece checked and resumable, the digest still exact.

use std::time::{Duration, Instant};

use minimax_dl::queue::{DbLocation, Queue};
use minimax_dl::sim::{CdnFault, CdnFaultRule, Faults, SimConfig};

use crate::support::{self, World, assert_success, assert_verified};

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn a_large_file_arrives_over_several_connections_and_verifies() {
    let sim = support::sim(SimConfig {
        default_file_size: 96 * MIB + 12345,
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "1"]).await);
    assert_success(
        &world
            .run(&["run", "--exit-when-idle", "--segments", "4"])
            .await,
    );
    let job = world.job(1).await;
    assert_verified(&world, &sim, &job);
    let stats = sim.stats();
    // 96 MiB in 4 MiB pieces: 25 piece requests plus the 1-byte probe.
    assert_eq!(stats.cdn_range_requests, 26, "{stats:?}");
    assert_eq!(stats.cdn_bytes_sent, 96 * MIB + 12345 + 1);
    assert_eq!(stats.cdn_requests_with_authorization, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_pieces_are_fetched_again_and_nothing_else_is() {
    let size = 64 * MIB;
    let sim = support::sim(SimConfig {
        default_file_size: size,
        faults: Faults {
            cdn: vec![
                CdnFaultRule::new(CdnFault::DropAfter(MIB))
                    .every(4)
                    .limit(3),
            ],
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "2"]).await);
    assert_success(
        &world
            .run(&["run", "--exit-when-idle", "--segments", "4"])
            .await,
    );
    assert_verified(&world, &sim, &world.job(2).await);
    let stats = sim.stats();
    assert_eq!(stats.faults_injected, 3);
    // Each drop costs at most the bytes of its piece that had arrived.
    assert!(
        stats.cdn_bytes_sent <= size + 1 + 3 * MIB,
        "{}",
        stats.cdn_bytes_sent
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_segmented_download_keeps_its_fsynced_pieces() {
    let size = 48 * MIB;
    let sim = support::sim(SimConfig {
        default_file_size: size,
        faults: Faults {
            bandwidth_bytes_per_sec: Some(4 * MIB),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "3"]).await);
    let mut child = world
        .command()
        .args(["run", "--segments", "4"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let q = Queue::open(&DbLocation(world.db.to_string_lossy().into_owned()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let recorded = loop {
        let job = q.get(3).await.unwrap().unwrap();
        let pieces = job.pieces.clone().unwrap_or_default();
        if pieces.split('/').nth(2).is_some_and(|r| !r.is_empty()) {
            break job;
        }
        assert!(Instant::now() < deadline, "no piece recorded: {job:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let job = q.get(3).await.unwrap().unwrap();
    let map = minimax_dl::fetch::pieces::PieceMap::decode(job.pieces.as_deref().unwrap()).unwrap();
    assert!(
        map.done_bytes()
            >= minimax_dl::fetch::pieces::PieceMap::decode(recorded.pieces.as_deref().unwrap())
                .unwrap()
                .done_bytes()
    );

    sim.set_faults(Faults::default());
    let before = sim.stats().cdn_bytes_sent;
    assert_success(
        &world
            .run(&["run", "--exit-when-idle", "--segments", "4"])
            .await,
    );
    assert_verified(&world, &sim, &world.job(3).await);
    let resent = sim.stats().cdn_bytes_sent - before;
    assert!(
        resent <= size - map.done_bytes() + 1,
        "re-sent {resent}, {} were durable",
        map.done_bytes()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cdn_that_ignores_ranges_falls_back_to_one_stream() {
    let sim = support::sim(SimConfig {
        default_file_size: 24 * MIB,
        faults: Faults {
            cdn: vec![CdnFaultRule::new(CdnFault::IgnoreRange)],
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "4"]).await);
    assert_success(
        &world
            .run(&["run", "--exit-when-idle", "--segments", "4"])
            .await,
    );
    assert_verified(&world, &sim, &world.job(4).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn pieces_of_an_older_version_are_never_mixed_with_a_newer_one() {
    let size = 48 * MIB;
    let sim = support::sim(SimConfig {
        default_file_size: size,
        faults: Faults {
            bandwidth_bytes_per_sec: Some(4 * MIB),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    assert_success(&world.run(&["enqueue", "5"]).await);
    let mut child = world
        .command()
        .args(["run", "--segments", "4"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let q = Queue::open(&DbLocation(world.db.to_string_lossy().into_owned()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until at least one piece is recorded ("size/total/ranges" with ranges).
    while q
        .get(5)
        .await
        .unwrap()
        .unwrap()
        .pieces
        .is_none_or(|p| p.ends_with('/'))
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
    sim.bump_version(5);
    sim.set_faults(Faults::default());
    assert_success(
        &world
            .run(&["run", "--exit-when-idle", "--segments", "4"])
            .await,
    );
    let job = world.job(5).await;
    assert_verified(&world, &sim, &job);
}
