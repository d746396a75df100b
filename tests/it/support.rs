//! Shared helpers: a temporary home for one test, the binary, the simulator.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use minimax_dl::queue::{DbLocation, Queue};
use minimax_sim::{SimConfig, Simulator};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_minimax-dl");
pub const TEST_KEY: &str = "test-key-0123456789";

/// A private world for one test: database, archive, config, home.
pub struct World {
    pub dir: TempDir,
    pub db: PathBuf,
    /// Whether `db` is passed as `--db` (else the other layers decide).
    pub db_flag: bool,
    pub out: PathBuf,
    pub config: PathBuf,
    /// API base and key given to the binary (from a simulator), if any.
    pub api: Option<(String, String)>,
    pub extra_env: Vec<(String, String)>,
    /// A database other than the SQLite file `db` (a PostgreSQL URL).
    pub database: Option<String>,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "").expect("write empty config");
        World {
            db: dir.path().join("queue.db"),
            db_flag: true,
            out: dir.path().join("archive"),
            config,
            dir,
            api: None,
            extra_env: Vec::new(),
            database: None,
        }
    }

    /// Uses this database (a `postgres://` URL) instead of the SQLite file.
    pub fn on_database(mut self, location: &str) -> World {
        self.database = Some(location.to_string());
        self
    }

    /// What `--db` says: the SQLite file or [`World::on_database`]'s URL.
    pub fn location(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| self.db.to_string_lossy().into_owned())
    }

    /// Points the binary at a simulator with the right key.
    pub fn with_sim(mut self, sim: &Simulator) -> World {
        self.api = Some((sim.api_base(), TEST_KEY.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> World {
        self.extra_env.push((key.into(), value.into()));
        self
    }

    /// The binary with a clean environment: nothing from the developer's
    /// own config or key can leak in.
    pub fn command(&self) -> tokio::process::Command {
        self.command_archiving_to(&self.out)
    }

    /// [`World::command`] with an archive of its own: each host of a fleet
    /// has its own `--out`.
    pub fn command_archiving_to(&self, out: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg-config"))
            .env("XDG_DATA_HOME", self.dir.path().join("xdg-data"))
            .env("MINIMAX_DL_CONFIG", &self.config)
            // Tests are not about the rate cap unless they say so.
            .env("MINIMAX_DL_REQUESTS_PER_MINUTE", "100000")
            .arg("--out")
            .arg(out)
            .kill_on_drop(true);
        if self.db_flag {
            cmd.arg("--db").arg(self.location());
        }
        if let Some((base, key)) = &self.api {
            cmd.env("MINIMAX_API_BASE", base)
                .env("MINIMAX_API_KEY", key);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the binary to completion (bounded: a hang fails the test).
    pub async fn run(&self, args: &[&str]) -> Output {
        run_bounded(self.command().args(args), Duration::from_secs(120)).await
    }

    pub async fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use tokio::io::AsyncWriteExt;
        let mut child = self
            .command()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn minimax-dl");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin).await.expect("write stdin");
        drop(input);
        tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("minimax-dl did not finish in 120 s")
            .expect("wait")
    }

    /// `status --json` as a JSON value.
    pub async fn status(&self) -> serde_json::Value {
        let out = self.run(&["status", "--json"]).await;
        assert_success(&out);
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    /// `list --json` as JSON values, one per job.
    pub async fn jobs(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["list", "--json"]).await;
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("list --json lines are JSON"))
            .collect()
    }

    pub async fn job(&self, id: i64) -> serde_json::Value {
        let out = self.run(&["show", &id.to_string(), "--json"]).await;
        assert_success(&out);
        serde_json::from_slice(&out.stdout).expect("show --json is JSON")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub async fn run_bounded(cmd: &mut tokio::process::Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn minimax-dl");
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("minimax-dl did not finish in {limit:?}"))
        .expect("wait")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "minimax-dl exited {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// A simulator requiring [`TEST_KEY`], with small files by default.
pub async fn sim(config: SimConfig) -> Simulator {
    Simulator::start(SimConfig {
        api_key: Some(TEST_KEY.into()),
        ..config
    })
    .await
    .expect("start simulator")
}

pub fn small_files() -> SimConfig {
    SimConfig {
        default_file_size: 64 * 1024,
        ..SimConfig::default()
    }
}

/// sha256 of a file on disk, lower hex.
pub fn sha256_of(path: &Path) -> String {
    minimax_dl::parts::hash_file(path).expect("hash file").1
}

/// Asserts a done job's file exists inside the archive and matches the
/// simulator's content.
#[track_caller]
pub fn assert_verified(world: &World, sim: &Simulator, job: &serde_json::Value) {
    let id = job["file_id"].as_i64().expect("file_id");
    assert_eq!(job["state"], "done", "job {id}: {job}");
    let path = PathBuf::from(job["path"].as_str().expect("done job has a path"));
    assert!(path.is_absolute(), "{path:?}");
    assert!(
        path.starts_with(&world.out),
        "{path:?} outside {:?}",
        world.out
    );
    let expected = sim.expected_sha256(id);
    assert_eq!(
        job["sha256"].as_str(),
        Some(expected.as_str()),
        "recorded sha256 of {id}"
    );
    assert_eq!(sha256_of(&path), expected, "content of {path:?}");
}

pub async fn queue(world: &World) -> Queue {
    Queue::open(&DbLocation(world.location()))
        .await
        .expect("open queue")
}

pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// Polls `check` every 50 ms until it returns Some, failing after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn spawn(world: &World, args: &[&str]) -> tokio::process::Child {
    world
        .command()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn minimax-dl")
}

pub async fn finish(child: tokio::process::Child, limit: Duration) -> std::process::Output {
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("minimax-dl did not exit within {limit:?}"))
        .expect("wait")
}

/// A simulator serving every file as `size` bytes at `bytes_per_sec` per
/// connection: slow enough for a test to act in the middle of a transfer.
pub async fn throttled_sim(size: u64, bytes_per_sec: u64) -> Simulator {
    sim(SimConfig {
        default_file_size: size,
        faults: minimax_sim::Faults {
            bandwidth_bytes_per_sec: Some(bytes_per_sec),
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await
}

/// Waits until job `id` has recorded a checkpoint with some bytes in it.
pub async fn wait_for_checkpoint(q: &Queue, id: i64, limit: Duration) {
    wait_for(limit, "a checkpoint", || async {
        q.get(id)
            .await
            .unwrap()
            .filter(|j| j.bytes_done > 0)
            .map(|_| ())
    })
    .await
}

/// The variable naming the PostgreSQL server the tests may use (`.ci/run`
/// starts a throwaway one and sets it): a URL whose role may CREATE DATABASE.
pub const PG_URL_VAR: &str = "MINIMAX_DL_TEST_PG_URL";

/// A PostgreSQL database of its own for one test (its own NOTIFY channels
/// and advisory locks too, which are database-wide), dropped when this is
/// dropped. `url` points at it, with the server's password.
pub struct PgTestDb {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgTestDb {
    /// A fresh, empty database; `None` when [`PG_URL_VAR`] is not set (the
    /// test then says so and returns), except under CI, where that fails
    /// the test: CI must run the PostgreSQL cases.
    pub async fn create() -> Option<PgTestDb> {
        use sqlx::Connection;
        let Some(admin_url) = std::env::var(PG_URL_VAR).ok().filter(|v| !v.is_empty()) else {
            skip_or_fail(
                &format!("{PG_URL_VAR} is not set"),
                "start a PostgreSQL server (.ci/postgres.sh) and set it",
            );
            return None;
        };
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("mdl_test_{}_{n}_{nanos:08x}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to the test PostgreSQL server");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        let _ = admin.close().await;
        let mut url = reqwest::Url::parse(&admin_url).expect("the test PostgreSQL URL parses");
        url.set_path(&format!("/{name}"));
        Some(PgTestDb {
            url: url.to_string(),
            admin_url,
            name,
        })
    }

    pub fn location(&self) -> DbLocation {
        DbLocation(self.url.clone())
    }

    /// The password in [`PgTestDb::url`], which must never be shown.
    pub fn password(&self) -> String {
        let url = reqwest::Url::parse(&self.url).expect("the test URL parses");
        url.password()
            .expect("the test URL has a password")
            .to_string()
    }

    /// The tables of the database, with their row counts: what a test
    /// compares to show that a verb left a database as it was.
    pub async fn tables(&self) -> Vec<(String, i64)> {
        let mut conn = self.connect().await;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut tables = Vec::new();
        for name in names {
            let sql = format!("SELECT count(*) FROM \"{name}\"");
            let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            tables.push((name, rows));
        }
        tables
    }

    /// Every row of every table, as text: what a search for a secret in
    /// the database reads.
    pub async fn dump(&self) -> Vec<u8> {
        let mut conn = self.connect().await;
        let mut dump = Vec::new();
        for (name, _) in self.tables().await {
            let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{name}\" t");
            let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            dump.extend_from_slice(format!("-- {name}\n{rows}\n").as_bytes());
        }
        dump
    }

    /// Makes this database another application's: a table of notes.
    pub async fn make_foreign(&self) {
        let mut conn = self.connect().await;
        for sql in [
            "CREATE TABLE notes (id integer PRIMARY KEY, text text)",
            "INSERT INTO notes VALUES (1, 'buy milk'), (2, 'call mum')",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }

    async fn connect(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for PgTestDb {
    /// On a thread of its own: a test's runtime may be shutting down.
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            use sqlx::Connection;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await;
                admin.close().await.ok()
            })
        });
        let _ = dropped.join();
    }
}

/// A loopback port that refuses every connection for as long as this is
/// held: a socket bound to it that never listens. It is bound without
/// `SO_REUSEADDR`, which every listener of the tests and the binary sets,
/// so no other test's server can take the port meanwhile. Drop it to
/// listen on the port yourself.
pub struct RefusedPort {
    _socket: tokio::net::TcpSocket,
    port: u16,
}

impl RefusedPort {
    pub fn new() -> RefusedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(([127, 0, 0, 1], 0).into())
            .expect("bind a loopback port");
        let port = socket.local_addr().expect("its address").port();
        RefusedPort {
            _socket: socket,
            port,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// An `api_base` on a loopback port that refuses connections while the
/// [`RefusedPort`] is held.
pub fn closed_api_base() -> (String, RefusedPort) {
    let refused = RefusedPort::new();
    (format!("http://127.0.0.1:{}", refused.port()), refused)
}

/// A PostgreSQL URL, with `password`, to a loopback port that refuses
/// connections while the [`RefusedPort`] is held: a database that does
/// not answer, with no server needed.
pub fn unreachable_pg_url(password: &str) -> (String, RefusedPort) {
    let refused = RefusedPort::new();
    (
        format!(
            "postgres://mdl:{password}@127.0.0.1:{}/queue",
            refused.port()
        ),
        refused,
    )
}

/// `run --listen 127.0.0.1:0` (plus `args`), started, and the base URL it
/// says it serves (`http://127.0.0.1:PORT`). Its stderr is kept in `log`.
pub struct Listening {
    pub child: tokio::process::Child,
    pub base: String,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

pub async fn run_listening(world: &World, args: &[&str]) -> Listening {
    spawn_listening(world, "127.0.0.1:0", args).await
}

/// [`run_listening`] on another address.
pub async fn spawn_listening(world: &World, listen: &str, args: &[&str]) -> Listening {
    use tokio::io::AsyncBufReadExt;
    let mut command = world.command();
    // `run` needs a key; these tests are about the listener.
    let has_key =
        world.api.is_some() || world.extra_env.iter().any(|(k, _)| k == "MINIMAX_API_KEY");
    if !has_key {
        command.env("MINIMAX_API_KEY", "listen-test-key");
    }
    let mut child = command
        .args(["run", "--listen", listen])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn minimax-dl run");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (found, base) = tokio::sync::oneshot::channel();
    let kept = log.clone();
    tokio::spawn(async move {
        let mut found = Some(found);
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(at) = line.find("listening on http://") {
                let url = &line[at + "listening on ".len()..];
                let base = url.split('/').take(3).collect::<Vec<_>>().join("/");
                if let Some(found) = found.take() {
                    let _ = found.send(base);
                }
            }
            let mut log = kept.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let base = tokio::time::timeout(Duration::from_secs(60), base)
        .await
        .unwrap_or_else(|_| panic!("no 'listening on' line in 60 s:\n{}", log.lock().unwrap()))
        .unwrap_or_else(|_| panic!("run exited before listening:\n{}", log.lock().unwrap()));
    Listening { child, base, log }
}

impl Listening {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The body of `GET path` as text (a failed request fails the test).
    pub async fn text(&self, path: &str) -> String {
        http()
            .get(self.url(path))
            .send()
            .await
            .expect("GET from the daemon")
            .text()
            .await
            .expect("a text body")
    }

    /// SIGTERM, then the exit (bounded).
    pub async fn stop(self) -> std::process::ExitStatus {
        signal(self.child.id().expect("running"), "-TERM");
        let mut child = self.child;
        tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("run did not stop within 60 s of SIGTERM")
            .expect("wait")
    }
}

/// An HTTP client for the tests' own loopback servers (no proxy).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// What a test does when the machine lacks what it needs (`missing`, and
/// `fix` to get it). Under CI (`CI` set and not empty, as `.ci/run` sets
/// it) that is a failure: CI must run every test. Elsewhere the test says
/// SKIPPED and returns; the line is written to the process's stderr, past
/// the harness's capture, because a passing test's captured output is never
/// shown and a skip must not read as a pass.
pub fn skip_or_fail(missing: &str, fix: &str) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "{test}: {missing}: {fix}; CI must run it"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {missing} ({fix}; set CI=1 to make this a failure)"
    );
}

/// The kinds of a job's history (`show --json`'s `events`), oldest first.
pub fn event_kinds(job: &serde_json::Value) -> Vec<String> {
    job["events"]
        .as_array()
        .expect("a job with its events")
        .iter()
        .map(|e| e["kind"].as_str().expect("an event kind").to_string())
        .collect()
}

/// The ids of a range as the command line takes them.
pub fn ids(range: std::ops::RangeInclusive<i64>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

/// `enqueue ID...`, which must succeed.
pub async fn enqueue(world: &World, ids: &[String]) {
    let mut args = vec!["enqueue"];
    args.extend(ids.iter().map(String::as_str));
    assert_success(&world.run(&args).await);
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Whether this process may make a UTS namespace (to run a daemon under
/// another host name, as a second host would): root with util-linux.
pub fn can_unshare_uts() -> bool {
    std::process::Command::new("unshare")
        .args(["--uts", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
