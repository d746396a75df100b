//! What the download client fetches, follows and accepts, through the real
//! binary: the URL policy (schemes, plain http, `cdn_allow`, redirects),
//! the bounds on a body (the size being verified, `max_file_bytes`), the
//! stall floor of the read timeout, and the cap on an API answer. Each test
//! runs one job against the simulator or a small server of its own on
//! 127.0.0.1 and reads the outcome from `show --json`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use minimax_dl::policy::PARTIAL_DIR;
use minimax_sim::{CdnFault, CdnFaultRule, Faults, SimConfig, Simulator};
use serde_json::Value;

use crate::support::{self, TEST_KEY, World, assert_success};

const TOKEN: &str = "sts-token-never-shown-6b0d";

/// Enqueues file 1, runs the queue until idle with `config` as the config
/// file, and returns the job as `show --json` tells it.
async fn one_job(world: &World, config: &str) -> Value {
    std::fs::write(&world.config, config).expect("write config");
    assert_success(&world.run(&["enqueue", "1"]).await);
    world
        .run(&["run", "--exit-when-idle", "--concurrency", "1"])
        .await;
    world.job(1).await
}

/// A simulator whose download URLs point at `cdn` and carry [`TOKEN`].
async fn sim_pointing_at(cdn: &str) -> Simulator {
    support::sim(SimConfig {
        external_cdn: Some(cdn.to_string()),
        url_token: Some(TOKEN.into()),
        ..support::small_files()
    })
    .await
}

/// The job failed at once (permanent), with an error mentioning `needle`
/// and neither the URL's query nor its token.
#[track_caller]
fn assert_failed_with(job: &Value, needle: &str) {
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["last_error"].as_str().unwrap_or_default();
    assert!(error.contains(needle), "{error:?} lacks {needle:?}");
    assert!(
        !error.contains(TOKEN) && !error.contains("Expires="),
        "the signed query leaked: {error}"
    );
}

// ------------------------------------------------------------ a test CDN

/// A CDN on 127.0.0.1 that redirects as its path says:
/// `/hop/N/NAME` redirects N times (to `/hop/N-1/NAME`, query kept), then
/// serves 4 KiB; `/to/ftp/NAME`, `/to/plain/NAME` and `/to/localhost/NAME`
/// redirect to an ftp URL, to plain http on a public name, and to this very
/// server under the name `localhost`. It records the `Host` and path of
/// every request.
struct TestCdn {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    _server: tokio::task::JoinHandle<()>,
}

const BODY: usize = 4096;

impl TestCdn {
    async fn start() -> TestCdn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .fallback(redirecting)
            .with_state((addr, seen.clone()));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestCdn {
            addr,
            seen,
            _server: server,
        }
    }

    fn base(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

type CdnState = (SocketAddr, Arc<Mutex<Vec<String>>>);

async fn redirecting(
    State((addr, seen)): State<CdnState>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    seen.lock().unwrap().push(format!("{host} {}", uri.path()));
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let location = match parts.as_slice() {
        ["hop", "0", _] => {
            return Response::builder()
                .header(header::CONTENT_LENGTH, BODY)
                .body(Body::from(vec![b'x'; BODY]))
                .unwrap();
        }
        ["hop", n, name] => {
            let n: u32 = n.parse().unwrap_or(0);
            format!("/hop/{}/{name}{query}", n.saturating_sub(1))
        }
        ["to", "ftp", name] => format!("ftp://127.0.0.1/{name}{query}"),
        ["to", "plain", name] => format!("http://cdn.example/{name}{query}"),
        ["to", "localhost", name] => {
            format!("http://localhost:{}/hop/0/{name}{query}", addr.port())
        }
        _ => {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::empty())
                .unwrap();
        }
    };
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .body(Body::empty())
        .unwrap()
}

// ---------------------------------------------------------------- schemes

#[tokio::test(flavor = "multi_thread")]
async fn a_download_url_of_another_scheme_fails_at_once_naming_only_its_scheme() {
    for (cdn, scheme) in [
        ("ftp://127.0.0.1:9/files", "\"ftp\""),
        ("file:///etc", "\"file\""),
    ] {
        let sim = sim_pointing_at(cdn).await;
        let world = World::new().with_sim(&sim);
        let job = one_job(&world, "").await;
        assert_failed_with(&job, scheme);
        assert_eq!(job["attempts"], 1, "{job}");
    }
}

/// `http://0.0.0.0:PORT` is not loopback by name (so the policy upgrades it)
/// but Linux connects it to this host: the listener must see a TLS
/// handshake (first byte 0x16), never a plain `GET` with the signature.
#[tokio::test(flavor = "multi_thread")]
async fn plain_http_beyond_loopback_is_upgraded_to_https() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().unwrap().port();
    let first_bytes = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let record = first_bytes.clone();
    let _server = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 4];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            record.lock().unwrap().push(buf[..n].to_vec());
        }
    });
    let sim = sim_pointing_at(&format!("http://0.0.0.0:{port}/files")).await;
    let world = World::new()
        .with_sim(&sim)
        .env("MINIMAX_DL_LOG", "minimax_dl=debug");
    std::fs::write(&world.config, "max_attempts = 1\n").unwrap();
    assert_success(&world.run(&["enqueue", "1"]).await);
    let out = world
        .run(&["run", "--exit-when-idle", "--concurrency", "1"])
        .await;
    assert!(
        support::stderr(&out).contains("plain http download URL upgraded to https"),
        "{}",
        support::stderr(&out)
    );
    let job = world.job(1).await;
    assert_eq!(job["state"], "failed", "{job}");
    let seen = first_bytes.lock().unwrap().clone();
    assert!(!seen.is_empty(), "no connection reached the listener");
    for bytes in &seen {
        assert_eq!(bytes.first(), Some(&0x16), "not a TLS handshake: {bytes:?}");
    }
}

// -------------------------------------------------------------- redirects

#[tokio::test(flavor = "multi_thread")]
async fn five_redirects_are_followed_and_a_sixth_is_refused() {
    let cdn = TestCdn::start().await;
    let sim = sim_pointing_at(&cdn.base("hop/5")).await;
    let job = one_job(&World::new().with_sim(&sim), "").await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["bytes_expected"], BODY);

    let before = cdn.seen().len();
    let sim = sim_pointing_at(&cdn.base("hop/6")).await;
    let job = one_job(&World::new().with_sim(&sim), "").await;
    assert_failed_with(&job, "more than 5 redirects");
    let asked = cdn.seen().split_off(before);
    assert!(
        !asked.iter().any(|r| r.contains("/hop/0/")),
        "the sixth redirect was followed: {asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_another_scheme_or_to_plain_http_beyond_loopback_is_refused() {
    let cdn = TestCdn::start().await;
    for (path, needle) in [
        ("to/ftp", "a redirect to scheme \"ftp\" was refused"),
        ("to/plain", "plain http on cdn.example was refused"),
    ] {
        let sim = sim_pointing_at(&cdn.base(path)).await;
        let job = one_job(&World::new().with_sim(&sim), "").await;
        assert_failed_with(&job, needle);
        assert_eq!(job["attempts"], 1, "{job}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cdn_allow_holds_for_the_first_url_and_every_redirect() {
    let cdn = TestCdn::start().await;
    let allow_loopback_ip = "cdn_allow = [\"127.0.0.1\"]\n";

    let sim = sim_pointing_at(&cdn.base("hop/2")).await;
    let job = one_job(&World::new().with_sim(&sim), allow_loopback_ip).await;
    assert_eq!(job["state"], "done", "{job}");

    let sim = sim_pointing_at(&cdn.base("to/localhost")).await;
    let job = one_job(&World::new().with_sim(&sim), allow_loopback_ip).await;
    assert_failed_with(&job, "localhost is not allowed by cdn_allow");
    assert!(
        !cdn.seen().iter().any(|r| r.starts_with("localhost")),
        "the refused redirect target was asked: {:?}",
        cdn.seen()
    );

    let before = cdn.seen().len();
    let sim = sim_pointing_at(&cdn.base("hop/0")).await;
    let job = one_job(
        &World::new().with_sim(&sim),
        "cdn_allow = [\"example.com\"]\n",
    )
    .await;
    assert_failed_with(&job, "127.0.0.1 is not allowed by cdn_allow");
    assert_eq!(
        cdn.seen().len(),
        before,
        "a refused first URL is never asked"
    );
}

// ----------------------------------------------------------- body bounds

fn chunked_whole_body() -> Faults {
    Faults {
        cdn: vec![CdnFaultRule::new(CdnFault::TruncateChunked(u64::MAX))],
        ..Faults::default()
    }
}

/// The API says 1000 bytes; the CDN sends 64 KiB with no length: the body
/// is cut at the first chunk past 1000, and nothing past it is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_longer_than_the_verified_size_is_cut_and_fails_verification() {
    let sim = support::sim(SimConfig {
        faults: Faults {
            wrong_bytes: HashMap::from([(1, 1000)]),
            ..chunked_whole_body()
        },
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    let job = one_job(&world, "").await;
    assert_failed_with(&job, "more than the 1000 bytes expected (api size)");
    assert_eq!(job["attempts"], 1, "{job}");
    assert!(job["bytes_done"].as_u64().unwrap_or(0) <= 1000, "{job}");
    let partial = world.out.join(PARTIAL_DIR).join("1.part");
    let kept = std::fs::metadata(&partial).map_or(0, |m| m.len());
    assert!(kept <= 1000, "the partial file grew to {kept} bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_file_bytes_caps_an_unknown_length_and_refuses_a_known_one() {
    let sim = support::sim(SimConfig {
        faults: chunked_whole_body(),
        ..support::small_files()
    })
    .await;
    let world = World::new().with_sim(&sim);
    let job = one_job(&world, "max_file_bytes = 10000\n").await;
    assert_failed_with(&job, "sent more than max_file_bytes (10000 bytes)");
    assert!(job["bytes_done"].as_u64().unwrap_or(0) <= 10_000, "{job}");

    let sim = support::sim(support::small_files()).await;
    let job = one_job(&World::new().with_sim(&sim), "max_file_bytes = 10000\n").await;
    assert_failed_with(
        &job,
        "the file (65536 bytes) is larger than max_file_bytes (10000 bytes)",
    );
}

// ------------------------------------------------------------------ stalls

/// 256 bytes a second in small chunks never leaves the connection idle
/// for a whole second, but brings less than 1 KiB in one: the transfer is
/// cut as stalled, and (bringing next to nothing) counts as an attempt.
#[tokio::test(flavor = "multi_thread")]
async fn a_dripping_cdn_fails_the_transfer_after_the_read_timeout() {
    let sim = support::throttled_sim(64 * 1024, 256).await;
    let world = World::new().with_sim(&sim);
    let job = one_job(&world, "read_timeout_secs = 1\nmax_attempts = 1\n").await;
    assert_failed_with(&job, "download stalled: only");
    assert!(
        job["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("read_timeout_secs"),
        "{job}"
    );
}

// ------------------------------------------------------------ API answers

/// An "API" whose retrieve answer is 2 MiB: refused at 1 MiB, unparsed.
#[tokio::test(flavor = "multi_thread")]
async fn an_api_answer_over_1_mib_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(|| async {
        let mut body = vec![b' '; 2 << 20];
        body.extend_from_slice(b"{}");
        Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    });
    let _server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut world = World::new();
    world.api = Some((format!("http://{addr}"), TEST_KEY.to_string()));
    let job = one_job(&world, "max_attempts = 1\n").await;
    assert_failed_with(&job, "answer larger than 1048576 bytes");
}
