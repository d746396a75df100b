//! Segmented downloads (`run --segments N`): several Range requests for one
//! large file, each piece checked and resumable, the digest still exact.

use std::time::Duration;

use minimax_dl::parts::PieceMap;
use minimax_sim::{CdnFault, CdnFaultRule, Faults, SimConfig, Simulator};

use crate::support::{self, World, assert_success, assert_verified, queue, wait_for};

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

/// A throttled 48 MiB download over 4 connections, SIGKILLed once its first
/// piece is recorded as written. Returns the job as it was then, and the
/// piece map the queue holds after the kill; faults are cleared for the
/// next run.
async fn killed_after_the_first_piece(
    sim: &Simulator,
    world: &World,
    id: i64,
) -> (PieceMap, PieceMap) {
    assert_success(&world.run(&["enqueue", &id.to_string()]).await);
    let mut child = world
        .command()
        .args(["run", "--segments", "4"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let q = queue(world).await;
    // "piece_size/total/ranges": recorded once the ranges are not empty.
    let recorded = wait_for(Duration::from_secs(30), "a recorded piece", || async {
        q.get(id)
            .await
            .unwrap()
            .and_then(|j| j.pieces)
            .filter(|p| !p.ends_with('/'))
    })
    .await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let after = q.get(id).await.unwrap().unwrap().pieces.unwrap();
    sim.set_faults(Faults::default());
    (
        PieceMap::decode(&recorded).unwrap(),
        PieceMap::decode(&after).unwrap(),
    )
}

fn throttled_48_mib() -> SimConfig {
    SimConfig {
        default_file_size: 48 * MIB,
        faults: Faults {
            bandwidth_bytes_per_sec: Some(4 * MIB),
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_segmented_download_keeps_the_pieces_it_wrote() {
    let size = 48 * MIB;
    let sim = support::sim(throttled_48_mib()).await;
    let world = World::new().with_sim(&sim);
    let (recorded, map) = killed_after_the_first_piece(&sim, &world, 3).await;
    assert!(map.done_bytes() >= recorded.done_bytes());

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
    let sim = support::sim(throttled_48_mib()).await;
    let world = World::new().with_sim(&sim);
    killed_after_the_first_piece(&sim, &world, 5).await;
    sim.bump_version(5);
    assert_success(
        &world
            .run(&["run", "--exit-when-idle", "--segments", "4"])
            .await,
    );
    let job = world.job(5).await;
    assert_verified(&world, &sim, &job);
}

/// A CDN that says when to come back is not asked again sooner, whether it
/// says so to the probe or to a piece: the whole download stops and the
/// job waits, as on a single stream.
#[tokio::test(flavor = "multi_thread")]
async fn a_cdn_retry_after_on_the_probe_or_a_piece_sets_the_next_attempt() {
    let sim = support::sim(SimConfig {
        default_file_size: 24 * MIB,
        faults: Faults {
            cdn: vec![
                CdnFaultRule::new(CdnFault::StatusRetryAfter(503, 1800))
                    .limit(1)
                    .for_files([1]),
                // The probe is the first request, pieces follow.
                CdnFaultRule::new(CdnFault::StatusRetryAfter(503, 1800))
                    .every(3)
                    .limit(1)
                    .for_files([2]),
            ],
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let world = World::new().with_sim(&sim);
    std::fs::write(&world.config, "segments = 4\n").unwrap();
    assert_success(&world.run(&["enqueue", "1", "2"]).await);
    for id in [1i64, 2] {
        let before = std::time::SystemTime::now();
        let out = world.run(&["fetch", &id.to_string()]).await;
        assert_eq!(out.status.code(), Some(1), "{}", support::stderr(&out));
        let job = world.job(id).await;
        assert_eq!(job["state"], "queued", "{job}");
        let next = humantime::parse_rfc3339(job["next_attempt_at"].as_str().unwrap()).unwrap();
        assert!(next >= before + Duration::from_secs(1790), "{job}");
    }
    let refused: Vec<_> = sim
        .stats()
        .cdn_log
        .into_iter()
        .filter(|r| r.status == 503)
        .map(|r| (r.file_id, r.range))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0], (Some(1), Some("bytes=0-0".into())), "the probe");
    assert!(
        refused[1].0 == Some(2) && refused[1].1.as_deref() != Some("bytes=0-0"),
        "a piece: {refused:?}"
    );
}
