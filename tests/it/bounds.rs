//! Resource bounds of the real binary: big inputs stream through bounded
//! memory. Peak RSS is the child's `VmHWM` in `/proc/<pid>/status`, read
//! every 10 ms while it runs (the last read is at most 10 ms before it
//! exits). Not `ru_maxrss` from `wait4`: a child spawned from this process
//! shares its memory until exec (posix_spawn), and Linux records that
//! memory's peak as the child's, so every child would report this test
//! process's size, over 100 MiB, instead of its own.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::{BIN, World};

const MIB: u64 = 1024 * 1024;

/// How one run of the binary went.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// Peak resident set size, bytes.
    peak_rss: u64,
    took: Duration,
}

/// `VmHWM` of a running process, in bytes; `None` once it has exited.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs the binary in `world` (its environment, as `World::command` sets
/// it) with stdout and stderr in files, and measures its peak RSS.
fn run_measured(world: &World, args: &[&str], name: &str) -> Run {
    let out_path = world.path(&format!("{name}.stdout"));
    let err_path = world.path(&format!("{name}.stderr"));
    let started = Instant::now();
    // spawn() returns after the exec: every read below is of minimax-dl.
    let mut child = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", world.dir.path())
        .env("XDG_CONFIG_HOME", world.dir.path().join("xdg-config"))
        .env("XDG_DATA_HOME", world.dir.path().join("xdg-data"))
        .env("MINIMAX_DL_CONFIG", &world.config)
        .arg("--db")
        .arg(&world.db)
        .arg("--out")
        .arg(&world.out)
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn minimax-dl");
    let mut peak_rss = 0;
    let status = loop {
        if let Some(hwm) = vm_hwm(child.id()) {
            peak_rss = peak_rss.max(hwm);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("minimax-dl {args:?} did not finish in 300 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        status,
        stdout: std::fs::read_to_string(&out_path).expect("read stdout"),
        stderr: std::fs::read_to_string(&err_path).expect("read stderr"),
        peak_rss,
        took: started.elapsed(),
    }
}

/// Writes `count` ids, one a line, without holding them in memory.
fn write_id_list(path: &Path, ids: impl Iterator<Item = i64>) {
    let mut file = BufWriter::new(File::create(path).expect("create id list"));
    for id in ids {
        writeln!(file, "{id}").expect("write id");
    }
    file.flush().expect("flush id list");
}

#[track_caller]
fn assert_ok(run: &Run) {
    assert!(
        run.status.success(),
        "minimax-dl exited {:?}\nstdout (start):\n{}\nstderr:\n{}",
        run.status,
        &run.stdout[..run.stdout.len().min(2000)],
        run.stderr
    );
}

/// 1 GiB: a sparse file costs no disk and no time to write, and reads as
/// NUL bytes, which are valid UTF-8 (so a reader that loads the whole file
/// gets all of it in memory before the parser refuses the first line).
const GARBAGE_BYTES: u64 = 1 << 30;

#[test]
fn enqueue_from_a_gigabyte_of_garbage_fails_fast_in_bounded_memory() {
    let world = World::new();
    let list = world.path("garbage.txt");
    // A plausible start, then a gigabyte of NULs with no line break.
    write_id_list(&list, 1..=1000);
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&list)
        .expect("open list");
    file.set_len(GARBAGE_BYTES).expect("extend sparse");
    drop(file);

    let run = run_measured(
        &world,
        &["enqueue", "--from", list.to_str().unwrap()],
        "garbage",
    );
    assert!(!run.status.success(), "garbage accepted: {}", run.stdout);
    assert!(
        run.stderr.contains("line 1001") && run.stderr.contains("not a list of ids"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.len() < 1000,
        "{} bytes of message",
        run.stderr.len()
    );
    assert!(
        run.peak_rss < 64 * MIB,
        "peak RSS {} MiB for a 1 GiB file",
        run.peak_rss / MIB
    );
    // Nothing was enqueued: the first bad line fails the whole list.
    assert!(
        !world.db.exists() || {
            let status = run_measured(&world, &["status", "--json"], "status");
            assert_ok(&status);
            status.stdout.contains("\"queued\":0")
        }
    );
}

#[test]
fn enqueue_from_a_binary_file_fails_at_its_first_line() {
    let world = World::new();
    let list = world.path("binary.bin");
    // Not UTF-8 from the first byte: refused before anything is parsed.
    let mut bytes = vec![0xff, 0xfe, 0x00, 0x01];
    bytes.extend((0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    std::fs::write(&list, &bytes).expect("write binary");
    let run = run_measured(
        &world,
        &["enqueue", "--from", list.to_str().unwrap()],
        "binary",
    );
    assert!(!run.status.success(), "binary accepted: {}", run.stdout);
    assert!(run.stderr.contains("binary.bin"), "{}", run.stderr);
    assert!(
        run.stderr.len() < 1000,
        "{} bytes of message",
        run.stderr.len()
    );
}

/// A million-line list is enqueued whole, in bounded memory; `list` over a
/// million jobs streams: its peak RSS is about that of `list` over 10,000.
#[test]
fn a_million_ids_stream_in_and_list_streams_out() {
    const MILLION: i64 = 1_000_000;
    const SMALL: i64 = 10_000;

    let big = World::new();
    let list = big.path("ids.txt");
    write_id_list(&list, 1..=MILLION);
    let enqueue = run_measured(
        &big,
        &["enqueue", "--from", list.to_str().unwrap()],
        "enqueue",
    );
    assert_ok(&enqueue);
    assert!(
        enqueue.stdout.contains("enqueued 1000000 new"),
        "{}",
        enqueue.stdout
    );
    // The ids themselves are 8 MB (measured: about 24 MiB in all, with
    // enqueue still reading the whole 6.9 MB file).
    assert!(
        enqueue.peak_rss < 64 * MIB,
        "enqueue of a million ids peaked at {} MiB",
        enqueue.peak_rss / MIB
    );

    let small = World::new();
    let small_list = small.path("ids.txt");
    write_id_list(&small_list, 1..=SMALL);
    assert_ok(&run_measured(
        &small,
        &["enqueue", "--from", small_list.to_str().unwrap()],
        "enqueue",
    ));

    // `list` only: `list --json` reads the same stream, and a million rows
    // take half a minute of a debug build each way.
    let small_run = run_measured(&small, &["list"], "list");
    let big_run = run_measured(&big, &["list"], "list");
    assert_ok(&small_run);
    assert_ok(&big_run);
    assert_eq!(small_run.stdout.lines().count(), SMALL as usize + 1);
    assert_eq!(big_run.stdout.lines().count(), MILLION as usize + 1);
    eprintln!(
        "enqueue of {MILLION}: peak RSS {} MiB ({:?}); list: {} MiB for {SMALL} jobs, {} MiB for {MILLION} ({:?})",
        enqueue.peak_rss / MIB,
        enqueue.took,
        small_run.peak_rss / MIB,
        big_run.peak_rss / MIB,
        big_run.took
    );
    // Flat: a million rows held at once would be hundreds of MiB. The
    // margin is the allocator's, not the rows': on a loaded machine more
    // runtime threads take turns at the pages and each touches an arena
    // of its own (a run once peaked 16 MiB above the small list).
    assert!(
        big_run.peak_rss < small_run.peak_rss + 48 * MIB,
        "list peaked at {} MiB for {MILLION} jobs, {} MiB for {SMALL}",
        big_run.peak_rss / MIB,
        small_run.peak_rss / MIB
    );
}

/// `export` of a million jobs streams: its peak RSS is about that of an
/// export of 10,000, and every job is one line.
#[test]
fn export_of_a_million_jobs_streams_in_flat_memory() {
    const MILLION: i64 = 1_000_000;
    const SMALL: i64 = 10_000;
    let mut runs = Vec::new();
    for count in [SMALL, MILLION] {
        let world = World::new();
        let list = world.path("ids.txt");
        write_id_list(&list, 1..=count);
        assert_ok(&run_measured(
            &world,
            &["enqueue", "--from", list.to_str().unwrap()],
            "enqueue",
        ));
        let export = run_measured(&world, &["export", "--format", "csv"], "export");
        assert_ok(&export);
        assert_eq!(export.stdout.lines().count(), count as usize + 1);
        runs.push(export);
    }
    let (small, big) = (&runs[0], &runs[1]);
    eprintln!(
        "export: {} MiB for {SMALL} jobs, {} MiB for {MILLION} ({:?})",
        small.peak_rss / MIB,
        big.peak_rss / MIB,
        big.took
    );
    assert!(
        big.peak_rss < small.peak_rss + 16 * MIB,
        "export peaked at {} MiB for {MILLION} jobs, {} MiB for {SMALL}",
        big.peak_rss / MIB,
        small.peak_rss / MIB
    );
}
