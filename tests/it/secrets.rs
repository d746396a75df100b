//! Secrets never leak. One run of the whole flow at trace level, every
//! crate's logs included, with a known API key and signed CDN URLs whose
//! query carries a known token: `enqueue`, `run` through API and CDN
//! faults, a `fetch` that crashes at a crash point (the abort path) and its
//! recovery, `show`, `list --json`, `status`, in text and JSON log formats.
//! Then every surface a user or another program can read (each command's
//! stdout and stderr, the database and its WAL, every file name and byte
//! under the archive) is searched for each secret: zero hits.
//!
//! Growing it: a new surface (an export file, the metrics or dashboard
//! responses, a PostgreSQL dump) is one `seen.output(..)`, `seen.file(..)`
//! or `seen.bytes(..)` line in the flow; a new secret (a database password,
//! a dashboard token) is one line in [`secrets`].

use std::path::Path;
use std::process::Output;

use minimax_dl::sim::{
    ApiFault, ApiFaultRule, CdnFault, CdnFaultRule, Faults, SimConfig, Simulator,
};

use crate::support::{self, World, assert_success};

const API_KEY: &str = "sk-api-key-never-shown-5c21e9d0";
const URL_TOKEN: &str = "sts-url-token-never-shown-93fa17";

/// What must never be seen: the key, the URL token, the query parameter
/// names of a signed URL, and every signature the simulator handed out.
fn secrets(sim: &Simulator) -> Vec<(String, String)> {
    let mut secrets = vec![
        ("the API key".to_string(), API_KEY.to_string()),
        ("the URL's security token".into(), URL_TOKEN.into()),
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
    let sim = Simulator::start(SimConfig {
        api_key: Some(API_KEY.into()),
        url_token: Some(URL_TOKEN.into()),
        faults: faults(),
        ..support::small_files()
    })
    .await
    .expect("start simulator");
    let mut world = World::new()
        .env("MINIMAX_DL_LOG", "trace")
        .env("RUST_LOG", "trace")
        .env("RUST_BACKTRACE", "1");
    world.api = Some((sim.api_base(), API_KEY.to_string()));
    // Sidecars (the API's file object beside each file) and a template whose
    // names collide (reservation markers) are surfaces too.
    std::fs::write(
        &world.config,
        "read_timeout_secs = 1\nsidecar = true\npath_template = \"{purpose}/{filename}\"\n",
    )
    .unwrap();
    let mut seen = Seen::default();

    let flow: &[(&str, &[&str])] = &[
        ("enqueue", &["enqueue", "1", "2", "3", "4", "5", "6", "7"]),
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

    seen.file(&world.db);
    for sidecar in ["-wal", "-shm"] {
        seen.file(Path::new(&format!("{}{sidecar}", world.db.display())));
    }
    seen.tree(&world.out);

    // The flow did what it is here for: faults met, files fetched.
    let stats = sim.stats();
    assert!(stats.faults_injected >= 7, "{stats:?}");
    assert_eq!(stats.api_requests_without_valid_key, 0, "{stats:?}");
    assert_eq!(world.job(1).await["state"], "done");
    assert_eq!(world.job(7).await["state"], "failed");
    let secrets = secrets(&sim);
    assert!(secrets.len() > 8, "no signatures were issued");

    let leaks = seen.leaks(&secrets);
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
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
