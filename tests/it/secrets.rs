//! Secrets never leak. One run of the whole flow at trace level, every
//! crate's logs included, with a known API key, signed CDN URLs whose query
//! carries a known token, a callback token and a dashboard token (and, on
//! PostgreSQL, a known database password): `enqueue`, `run` through API and
//! CDN faults, a `fetch` that crashes at a crash point (the abort path) and
//! one that panics in its worker, their recoveries, `show`, `list --json`,
//! `status`, `export`, `verify`, in text and JSON log formats; generation
//! tasks (a v2 task's answer carries the signed URL itself); and a
//! `run --listen` daemon's every route: the dashboard and its JSON, its
//! actions with the token and with a wrong one, `/metrics`, the health
//! checks, a callback's challenge.
//! Then every surface a user or another program can read (each command's
//! stdout and stderr, every HTTP answer with its headers, the database,
//! every file name and byte under the archive) is searched for each
//! secret: zero hits. The flow runs on SQLite and on PostgreSQL.
//!
//! Growing it: a new surface is one `seen.output(..)`, `seen.file(..)` or
//! `seen.bytes(..)` line in the flow; a new secret is one line in
//! [`secrets`].

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use minimax_sim::SimApi;
use minimax_sim::{
    ApiFault, ApiFaultRule, CdnFault, CdnFaultRule, Faults, SimConfig, SimTask, Simulator,
};

use crate::support::{self, PgTestDb, World, assert_success, http, run_listening, wait_for};

const API_KEY: &str = "sk-api-key-never-shown-5c21e9d0";
const URL_TOKEN: &str = "sts-url-token-never-shown-93fa17";
const CALLBACK_TOKEN: &str = "cb-token-never-shown-0d7e44b1";
const LISTEN_TOKEN: &str = "dash-token-never-shown-7a3c55e2";

/// What must never be seen: the key, the URL token, the query parameter
/// names of a signed URL, and every signature the simulator handed out.
fn secrets(sim: &Simulator) -> Vec<(String, String)> {
    let mut secrets = vec![
        ("the API key".to_string(), API_KEY.to_string()),
        ("the URL's security token".into(), URL_TOKEN.into()),
        ("the callback token".into(), CALLBACK_TOKEN.into()),
        ("the dashboard token".into(), LISTEN_TOKEN.into()),
        ("a signed URL's query".into(), "Signature=".into()),
        ("a signed URL's query".into(), "security-token=".into()),
    ];
    for request in sim.stats().cdn_log {
        let (Some(id), Some(expires)) = (request.file_id, request.expires) else {
            continue;
        };
        let url = sim.download_url_expiring(id, expires);
        let signature = url.split("Signature=").nth(1).unwrap_or_default();
        let signature = signature.split('&').next().unwrap_or_default();
        secrets.push((
            format!("the signature of file {id}'s URL"),
            signature.into(),
        ));
    }
    secrets
}

/// Everything a secret could surface in, by name.
#[derive(Default)]
struct Seen {
    surfaces: Vec<(String, Vec<u8>)>,
}

impl Seen {
    fn bytes(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        self.surfaces.push((name.into(), bytes));
    }

    fn output(&mut self, what: &str, out: &Output) {
        self.bytes(format!("{what}: stdout"), out.stdout.clone());
        self.bytes(format!("{what}: stderr"), out.stderr.clone());
    }

    fn file(&mut self, path: &Path) {
        if let Ok(bytes) = std::fs::read(path) {
            self.bytes(path.display().to_string(), bytes);
        }
    }

    /// Every file under `dir`: its name and its bytes.
    fn tree(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            self.bytes(
                format!("the name {}", path.display()),
                path.display().to_string().into_bytes(),
            );
            if path.is_dir() {
                self.tree(&path);
            } else {
                self.file(&path);
            }
        }
    }

    /// `(surface, secret's name)` for every secret found anywhere.
    fn leaks(&self, secrets: &[(String, String)]) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for (surface, bytes) in &self.surfaces {
            for (name, secret) in secrets {
                let needle = secret.as_bytes();
                if !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push((surface.clone(), name.clone()));
                }
            }
        }
        found
    }
}

fn faults() -> Faults {
    Faults {
        api: vec![
            ApiFaultRule::new(ApiFault::Code(1002, "rate limit exceeded(RPM)".into())).limit(1),
            ApiFaultRule::new(ApiFault::Http(500)).limit(1),
            ApiFaultRule::new(ApiFault::TruncatedJson).limit(1),
        ],
        cdn: vec![
            CdnFaultRule::new(CdnFault::DropAfter(20_000)).limit(1),
            CdnFaultRule::new(CdnFault::Expired).limit(1),
            CdnFaultRule::new(CdnFault::Status(503)).limit(1),
            CdnFaultRule::new(CdnFault::StallAfter(10_000)).limit(1),
        ],
        missing: [7].into(),
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_any_output_the_database_or_the_archive() {
    let mut world = World::new();
    let (sim, mut seen) = whole_flow(&mut world).await;
    seen.file(&world.db);
    for sidecar in ["-wal", "-shm"] {
        seen.file(Path::new(&format!("{}{sidecar}", world.db.display())));
    }
    assert_no_leaks(&seen, secrets(&sim));
}

/// The same flow on PostgreSQL, with the database's password among the
/// secrets and every row of every table searched.
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_nor_the_database_password_reaches_any_output_on_postgres() {
    let Some(db) = PgTestDb::create().await else {
        return;
    };
    let mut world = World::new().on_database(&db.url);
    let (sim, mut seen) = whole_flow(&mut world).await;
    seen.bytes("every row of the PostgreSQL database", db.dump().await);
    let mut secrets = secrets(&sim);
    secrets.push(("the database password".into(), db.password()));
    assert_no_leaks(&seen, secrets);
}

fn assert_no_leaks(seen: &Seen, secrets: Vec<(String, String)>) {
    assert!(secrets.len() > 8, "no signatures were issued");
    let leaks = seen.leaks(&secrets);
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
}

/// Runs the whole flow against `world`'s queue: every verb's output, a
/// crash and a panic with their recoveries, and a listening daemon's
/// answers, kept in what it returns along with the archive.
async fn whole_flow(world: &mut World) -> (Simulator, Seen) {
    let sim = Simulator::start(SimConfig {
        api_key: Some(API_KEY.into()),
        url_token: Some(URL_TOKEN.into()),
        faults: faults(),
        ..support::small_files()
    })
    .await
    .expect("start simulator");
    for (key, value) in [
        ("MINIMAX_DL_LOG", "trace"),
        ("RUST_LOG", "trace"),
        ("RUST_BACKTRACE", "1"),
    ] {
        world.extra_env.push((key.into(), value.into()));
    }
    world.api = Some((sim.api_base(), API_KEY.to_string()));
    // Sidecars (the API's file object beside each file) and a template whose
    // names collide (reservation markers) are surfaces too.
    std::fs::write(
        &world.config,
        format!(
            "read_timeout_secs = 1\nsidecar = true\npath_template = \"{{purpose}}/{{filename}}\"\n\
             callback_token = \"{CALLBACK_TOKEN}\"\nlisten_token = \"{LISTEN_TOKEN}\"\n"
        ),
    )
    .unwrap();
    // A v2 task's video (its answer holds the signed URL) and a v1 task's file.
    sim.add_task(900, SimTask::new(SimApi::V2, 900));
    sim.add_task(901, SimTask::new(SimApi::V1, 9));
    let mut seen = Seen::default();

    let flow: &[(&str, &[&str])] = &[
        ("enqueue", &["enqueue", "1", "2", "3", "4", "5", "6", "7"]),
        ("enqueue tasks", &["enqueue", "--task", "v2:900", "901"]),
        ("run", &["run", "--exit-when-idle", "--concurrency", "3"]),
        (
            "run, JSON logs",
            &["--log-format", "json", "run", "--exit-when-idle"],
        ),
        ("show", &["show", "1"]),
        ("show --json", &["show", "7", "--json"]),
        ("list", &["list"]),
        ("list --json", &["list", "--json"]),
        ("status", &["status"]),
        ("status --json", &["status", "--json"]),
        ("list --tasks", &["list", "--tasks", "--json"]),
        ("show a task", &["show", "901", "--json"]),
        ("show a v2 video", &["show", "900", "--json"]),
        ("export", &["export"]),
        ("export --format csv", &["export", "--format", "csv"]),
        ("verify", &["verify", "--all"]),
    ];
    for (what, args) in flow {
        let out = world.run(args).await;
        seen.output(what, &out);
    }
    let crashed = world
        .command()
        .env("MINIMAX_DL_CRASH_AT", "after-verified")
        .args(["fetch", "8"])
        .output()
        .await
        .expect("run fetch");
    assert!(!crashed.status.success(), "the crash point did not fire");
    seen.output("fetch, crashing", &crashed);
    let recovered = world.run(&["fetch", "8"]).await;
    assert_success(&recovered);
    seen.output("fetch, recovering", &recovered);
    assert_success(&world.run(&["enqueue", "10"]).await);
    let panicked = world
        .command()
        .env("MINIMAX_DL_CRASH_AT", "panic:after-reserve")
        .args(["fetch", "10"])
        .output()
        .await
        .expect("run fetch");
    assert!(
        support::stderr(&panicked).contains("a test panic at after-reserve"),
        "the panic did not happen: {}",
        support::stderr(&panicked)
    );
    seen.output("fetch, panicking", &panicked);
    listening_daemon(world, &mut seen).await;
    seen.tree(&world.out);

    // The flow did what it is here for: faults met, files fetched.
    let stats = sim.stats();
    assert!(stats.faults_injected >= 7, "{stats:?}");
    assert_eq!(stats.api_requests_without_valid_key, 0, "{stats:?}");
    assert_eq!(world.job(1).await["state"], "done");
    assert_eq!(world.job(900).await["state"], "done");
    assert_eq!(world.job(9).await["state"], "done");
    (sim, seen)
}

/// `run --listen`: every route's answer (headers and body), the dashboard's
/// actions with the token and without, a callback with its challenge, and
/// the daemon's log; it also finishes the job the panic left to retry and
/// retries the failed one from the page.
async fn listening_daemon(world: &World, seen: &mut Seen) {
    let daemon = run_listening(world, &[]).await;
    wait_for(
        Duration::from_secs(60),
        "job 10 done after its panic",
        || async { (world.job(10).await["state"] == "done").then_some(()) },
    )
    .await;
    for path in [
        "/",
        "/api/state",
        "/api/jobs/1",
        "/api/jobs/7",
        "/api/jobs/900",
        "/api/jobs/10",
        "/metrics",
        "/healthz",
        "/readyz",
        "/callback/wrong-token",
    ] {
        let response = http().get(daemon.url(path)).send().await.expect("GET");
        seen.bytes(format!("GET {path}"), answer(response).await);
    }
    let posts: [(&str, Option<&str>, &str); 4] = [
        ("/api/jobs/7/retry", Some(LISTEN_TOKEN), ""),
        ("/api/jobs/7/cancel", Some("a-wrong-token-0123456789"), ""),
        (
            &format!("/callback/{CALLBACK_TOKEN}"),
            None,
            r#"{"challenge":"c-1"}"#,
        ),
        ("/callback/wrong-token", None, r#"{"challenge":"c-2"}"#),
    ];
    for (path, token, body) in posts {
        let mut request = http()
            .post(daemon.url(path))
            .header("Origin", daemon.base.clone())
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.header("X-Minimax-Dl-Token", token);
        }
        let response = request.send().await.expect("POST");
        let status = response.status().as_u16();
        seen.bytes(format!("POST {path}"), answer(response).await);
        if path.ends_with("/retry") {
            assert_eq!(status, 200, "the page's retry was refused");
        }
    }
    let log = daemon.log.clone();
    assert!(daemon.stop().await.success());
    let log = log.lock().unwrap().clone();
    seen.bytes("run --listen: stderr", log.into_bytes());
}

/// A response as a client sees it: status line, headers, body.
async fn answer(response: reqwest::Response) -> Vec<u8> {
    let mut text = format!("{}\n", response.status());
    for (name, value) in response.headers() {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let body = response.bytes().await.expect("body");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

#[test]
fn the_search_finds_a_secret_where_there_is_one() {
    let mut seen = Seen::default();
    seen.bytes(
        "a log",
        format!("GET /x?Signature=abc&k={API_KEY}").into_bytes(),
    );
    let secrets = [
        ("key".to_string(), API_KEY.to_string()),
        ("query".to_string(), "Signature=".to_string()),
        ("token".to_string(), URL_TOKEN.to_string()),
    ];
    let leaks = seen.leaks(&secrets);
    let names: Vec<&str> = leaks.iter().map(|(_, name)| name.as_str()).collect();
    assert_eq!(names, ["key", "query"]);
}
