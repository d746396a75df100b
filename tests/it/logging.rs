//! Output that cannot stop the work: stderr on a pipe nobody reads, a closed
//! pipe or `/dev/full`, and stdout closed early (`| head`).

use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::time::Duration;

use minimax_sim::Faults;

use crate::support::{self, World, assert_success, finish, queue, signal, wait_for};

const JOBS: i64 = 20;

/// A batch of small files worked by `run` with `stderr` and trace-level
/// logging for every crate (hundreds of lines), then SIGTERM: the batch
/// finishes and the process exits 0 in time.
async fn batch_survives(stderr: Stdio) {
    let sim = support::sim(support::small_files()).await;
    let world = World::new().with_sim(&sim).env("MINIMAX_DL_LOG", "trace");
    let ids: Vec<String> = (1..=JOBS).map(|i| i.to_string()).collect();
    let mut enqueue = vec!["enqueue"];
    enqueue.extend(ids.iter().map(String::as_str));
    assert_success(&world.run(&enqueue).await);
    let child = world
        .command()
        .arg("run")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn minimax-dl");
    let q = queue(&world).await;
    wait_for(Duration::from_secs(60), "the batch to finish", || async {
        let counts = q.status().await.unwrap();
        (counts.done == JOBS as u64).then_some(())
    })
    .await;
    signal(child.id().unwrap(), "-TERM");
    let out = finish(child, Duration::from_secs(15)).await;
    assert_eq!(out.status.code(), Some(0), "exit status {:?}", out.status);
}

/// A pipe whose reader is kept open but never read, shrunk to one page so a
/// few lines fill it.
fn stalled_pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    // SAFETY: fcntl on a pipe descriptor this function owns.
    let size = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(
        size > 0,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    (reader, writer)
}

fn dev_full() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full")
}

#[tokio::test(flavor = "multi_thread")]
async fn stderr_on_a_pipe_nobody_reads_never_stalls_the_work_or_the_signals() {
    let (_unread, writer) = stalled_pipe();
    batch_survives(Stdio::from(writer)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stderr_on_a_closed_pipe_never_stalls_the_work_or_the_signals() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    batch_survives(Stdio::from(writer)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stderr_on_dev_full_never_stalls_the_work_or_the_signals() {
    batch_survives(Stdio::from(dev_full())).await;
}

/// `fetch` with a broken stderr, finished and interrupted: neither its
/// messages nor its log lines change what it does or its exit code.
#[tokio::test(flavor = "multi_thread")]
async fn fetch_with_stderr_on_dev_full_keeps_its_exit_codes() {
    let sim = support::throttled_sim(32 * 1024 * 1024, 2 * 1024 * 1024).await;
    let world = World::new().with_sim(&sim);
    let child = world
        .command()
        .args(["fetch", "5"])
        .stdout(Stdio::piped())
        .stderr(dev_full())
        .spawn()
        .expect("spawn minimax-dl");
    let q = queue(&world).await;
    support::wait_for_checkpoint(&q, 5, Duration::from_secs(30)).await;
    signal(child.id().unwrap(), "-INT");
    let out = finish(child, Duration::from_secs(30)).await;
    assert_eq!(
        out.status.code(),
        Some(130),
        "interrupted: {:?}",
        out.status
    );
    sim.set_faults(Faults::default());
    let out = support::run_bounded(
        world.command().args(["fetch", "5"]).stderr(dev_full()),
        Duration::from_secs(60),
    )
    .await;
    assert_success(&out);
    support::assert_verified(&world, &sim, &world.job(5).await);
}

/// `minimax-dl list | head -1`: once the reader is gone, the verb ends
/// quietly with 0, as `ls | head` does.
#[tokio::test(flavor = "multi_thread")]
async fn list_and_show_on_a_closed_stdout_exit_0_quietly() {
    let world = World::new();
    let ids: Vec<String> = (1..=2000).map(|i| i.to_string()).collect();
    let mut enqueue = vec!["enqueue"];
    enqueue.extend(ids.iter().map(String::as_str));
    assert_success(&world.run(&enqueue).await);
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["show", "1"],
        &["show", "1", "--json"],
        &["status"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let child = world
            .command()
            .args(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn minimax-dl");
        let out = finish(child, Duration::from_secs(30)).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {:?}", out.status);
        assert_eq!(support::stderr(&out), "", "{args:?} says nothing");
    }
}
