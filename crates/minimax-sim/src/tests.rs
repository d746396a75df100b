//! End-to-end tests of the simulator over real loopback HTTP.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::*;

const SEED: u64 = 42;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

fn bytes_of(id: i64, version: u64, start: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    fill_content(SEED, id, version, start, &mut buf);
    buf
}

async fn start(config: SimConfig) -> Simulator {
    Simulator::start(config).await.expect("simulator starts")
}

async fn start_sized(size: u64) -> Simulator {
    start(SimConfig {
        default_file_size: size,
        ..SimConfig::default()
    })
    .await
}

/// Calls retrieve; returns status, headers and body text.
async fn retrieve_raw(
    c: &reqwest::Client,
    sim: &Simulator,
    query: &str,
    key: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let mut req = c.get(format!("{}/v1/files/retrieve?{query}", sim.api_base()));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.expect("retrieve answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("retrieve body"))
}

async fn retrieve(c: &reqwest::Client, sim: &Simulator, id: i64) -> Value {
    let (status, _, body) = retrieve_raw(c, sim, &format!("file_id={id}"), Some("k")).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_str(&body).expect("retrieve JSON")
}

async fn url_for(c: &reqwest::Client, sim: &Simulator, id: i64) -> String {
    let v = retrieve(c, sim, id).await;
    v["file"]["download_url"]
        .as_str()
        .expect("download_url")
        .to_string()
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .expect("ascii header")
}

/// Reads a body chunk by chunk; returns the bytes received and whether it
/// ended with an error.
async fn read_all(mut resp: reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut got = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => return (got, None),
            Err(e) => return (got, Some(e)),
        }
    }
}

async fn get_range(c: &reqwest::Client, url: &str, range: &str) -> reqwest::Response {
    c.get(url)
        .header(header::RANGE, range)
        .send()
        .await
        .expect("range answers")
}

#[tokio::test]
async fn full_get_matches_expected_sha256() {
    let size = 300_001;
    let sim = start_sized(size).await;
    let c = client();
    let url = url_for(&c, &sim, 7).await;
    assert!(url.starts_with(&format!("{}/7/output_aigc.mp4?Expires=", sim.cdn_base())));
    assert!(url.contains("&OSSAccessKeyId=minimax-sim&Signature="));

    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert_eq!(header_str(&h, "content-length"), "300001");
    assert_eq!(header_str(&h, "content-type"), "video/mp4");
    assert_eq!(header_str(&h, "accept-ranges"), "bytes");
    assert_eq!(header_str(&h, "etag"), sim.etag(7));
    assert!(httpdate::parse_http_date(header_str(&h, "last-modified")).is_ok());
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len() as u64, size);
    assert_eq!(hex::encode(Sha256::digest(&body)), sim.expected_sha256(7));
    assert_eq!(
        sim.expected_sha256(7),
        content_sha256(SEED, 7, 0, size),
        "expected_sha256 is of version 0"
    );
    let st = sim.stats();
    assert_eq!(st.cdn_requests, 1);
    assert_eq!(st.cdn_bytes_sent, size);
    assert_eq!(st.cdn_bytes_by_file.get(&7), Some(&size));
    assert_eq!(st.faults_injected, 0);
}

#[tokio::test]
async fn retrieve_success_shape() {
    let mut config = SimConfig::default();
    config.sizes.insert(5, 1234);
    config
        .faults
        .filenames
        .insert(6, "../../etc/passwd\"\n.mp4".into());
    config.faults.wrong_bytes.insert(8, 99);
    let sim = start(config).await;
    let c = client();

    let (status, h, body) = retrieve_raw(&c, &sim, "file_id=5", Some("key")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(header_str(&h, "content-type").starts_with("application/json"));
    let trace1 = header_str(&h, "trace-id").to_string();
    assert!(trace1.len() >= 16 && trace1.bytes().all(|b| b.is_ascii_hexdigit()));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["base_resp"]["status_code"], 0);
    assert_eq!(v["base_resp"]["status_msg"], "success");
    let f = &v["file"];
    assert_eq!(f["file_id"], 5, "file_id is a JSON number");
    assert_eq!(f["bytes"], 0, "real video answers say 0");
    assert_eq!(f["created_at"], 1_700_469_398);
    assert_eq!(f["filename"], "output_aigc.mp4");
    assert_eq!(f["purpose"], "video_generation");
    assert_eq!(sim.file_size(5), 1234);
    assert_eq!(sim.file_size(77), 1 << 20);

    let (_, h2, _) = retrieve_raw(&c, &sim, "file_id=5", Some("key")).await;
    assert_ne!(header_str(&h2, "trace-id"), trace1, "trace ids are unique");

    // Hostile filename comes back verbatim (JSON-escaped), URL path unchanged.
    let v = retrieve(&c, &sim, 6).await;
    assert_eq!(v["file"]["filename"], "../../etc/passwd\"\n.mp4");
    assert!(
        v["file"]["download_url"]
            .as_str()
            .unwrap()
            .contains("/6/output_aigc.mp4?")
    );
    // Wrong bytes advertised even though report_bytes is off.
    assert_eq!(retrieve(&c, &sim, 8).await["file"]["bytes"], 99);

    // report_bytes.
    let sim2 = start(SimConfig {
        report_bytes: true,
        default_file_size: 4321,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(retrieve(&c, &sim2, 3).await["file"]["bytes"], 4321);
    // Big ids (about 15 digits in the wild) work.
    let big = 301_234_567_890_123_i64;
    assert_eq!(retrieve(&c, &sim2, big).await["file"]["file_id"], big);
}

#[tokio::test]
async fn retrieve_errors_and_keys() {
    let mut config = SimConfig {
        api_key: Some("secret".into()),
        ..SimConfig::default()
    };
    config.faults.missing.insert(9);
    let sim = start(config).await;
    let c = client();

    let code = |body: &str| -> (i64, String, Value) {
        let v: Value = serde_json::from_str(body).expect("JSON");
        (
            v["base_resp"]["status_code"].as_i64().expect("code"),
            v["base_resp"]["status_msg"]
                .as_str()
                .expect("msg")
                .to_string(),
            v.get("file").cloned().unwrap_or(Value::Null),
        )
    };

    let (s, _, b) = retrieve_raw(&c, &sim, "file_id=1", Some("wrong")).await;
    assert_eq!(s, StatusCode::OK);
    let (c1, m1, f1) = code(&b);
    assert_eq!((c1, m1.as_str()), (1004, "invalid api key"));
    assert!(f1.is_null());
    let (_, _, b) = retrieve_raw(&c, &sim, "file_id=1", None).await;
    assert_eq!(code(&b).0, 1004);
    let (_, _, b) = retrieve_raw(&c, &sim, "file_id=1", Some("secret")).await;
    assert_eq!(code(&b).0, 0);

    let (_, _, b) = retrieve_raw(&c, &sim, "file_id=9", Some("secret")).await;
    let (c2, m2, f2) = code(&b);
    assert_eq!((c2, m2.as_str()), (2013, "file not found"));
    assert!(f2.is_null());
    for q in ["file_id=0", "file_id=-3"] {
        let (_, _, b) = retrieve_raw(&c, &sim, q, Some("secret")).await;
        assert_eq!(code(&b).1, "file not found", "{q}");
    }
    for q in [
        "file_id=abc",
        "file_id=",
        "",
        "file_id=99999999999999999999",
    ] {
        let (s, _, b) = retrieve_raw(&c, &sim, q, Some("secret")).await;
        assert_eq!(s, StatusCode::OK, "{q}");
        let (c3, m3, _) = code(&b);
        assert_eq!((c3, m3.as_str()), (2013, "invalid params"), "{q}");
    }

    let st = sim.stats();
    assert_eq!(st.api_requests, 10);
    assert_eq!(st.api_requests_without_valid_key, 2);
    assert_eq!(st.api_request_times.len(), 10);
    assert_eq!(st.api_requests_by_file.get(&1), Some(&3));
    assert_eq!(st.api_requests_by_file.get(&9), Some(&1));

    // Any key once the requirement is lifted; a missing token still counts.
    sim.set_api_key(None);
    let (_, _, b) = retrieve_raw(&c, &sim, "file_id=1", Some("whatever")).await;
    assert_eq!(code(&b).0, 0);
    let (_, _, b) = retrieve_raw(&c, &sim, "file_id=1", None).await;
    assert_eq!(code(&b).0, 0);
    assert_eq!(sim.stats().api_requests_without_valid_key, 3);

    // Unknown API paths.
    let r = c
        .get(format!("{}/v1/nope", sim.api_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn single_ranges() {
    let size = 200_000u64;
    let sim = start_sized(size).await;
    let c = client();
    let url = url_for(&c, &sim, 3).await;
    for (range, start, end) in [
        ("bytes=0-0", 0u64, 0u64),
        ("bytes=1000-70000", 1000, 70000),
        ("bytes=150000-", 150_000, size - 1),
        ("bytes=-777", size - 777, size - 1),
        ("bytes=-999999", 0, size - 1),
        ("bytes=199990-300000", 199_990, size - 1),
    ] {
        let resp = get_range(&c, &url, range).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let h = resp.headers().clone();
        assert_eq!(
            header_str(&h, "content-range"),
            format!("bytes {start}-{end}/{size}"),
            "{range}"
        );
        let len = end - start + 1;
        assert_eq!(header_str(&h, "content-length"), len.to_string());
        let body = resp.bytes().await.unwrap();
        assert_eq!(
            body.as_ref(),
            bytes_of(3, 0, start, len as usize),
            "{range}"
        );
    }
    // Multi-range and garbage: the whole object.
    for range in ["bytes=0-1,5-6", "pages=1-2", "bytes=9-3"] {
        let resp = get_range(&c, &url, range).await;
        assert_eq!(resp.status(), StatusCode::OK, "{range}");
        assert_eq!(resp.bytes().await.unwrap().len() as u64, size);
    }
    let st = sim.stats();
    assert_eq!(st.cdn_requests, 9);
    assert_eq!(st.cdn_range_requests, 9);
}

#[tokio::test]
async fn unsatisfiable_range_is_416() {
    let sim = start_sized(1000).await;
    let c = client();
    let url = url_for(&c, &sim, 3).await;
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
        let resp = get_range(&c, &url, range).await;
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(header_str(resp.headers(), "content-range"), "bytes */1000");
        let body = resp.text().await.unwrap();
        assert!(body.contains("<Code>InvalidRange</Code>"), "{body}");
    }
    assert_eq!(sim.stats().cdn_bytes_sent, 0);
}

#[tokio::test]
async fn if_range_and_versions() {
    let size = 100_000u64;
    let sim = start_sized(size).await;
    let c = client();
    let url = url_for(&c, &sim, 4).await;
    let etag0 = sim.etag(4);
    let sha0 = sim.expected_sha256(4);

    let resp = c
        .get(&url)
        .header(header::RANGE, "bytes=10-19")
        .header(header::IF_RANGE, &etag0)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes_of(4, 0, 10, 10));

    // A Last-Modified date works as a validator too.
    let lm = header_str(
        c.head(&url).send().await.unwrap().headers(),
        "last-modified",
    )
    .to_string();
    let resp = c
        .get(&url)
        .header(header::RANGE, "bytes=10-19")
        .header(header::IF_RANGE, &lm)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);

    // The object changes.
    sim.bump_version(4);
    assert_eq!(sim.version(4), 1);
    let etag1 = sim.etag(4);
    assert_ne!(etag0, etag1);
    let sha1 = sim.expected_sha256(4);
    assert_ne!(sha0, sha1);

    for validator in [etag0.as_str(), lm.as_str(), "W/\"weak\""] {
        let resp = c
            .get(&url)
            .header(header::RANGE, "bytes=10-19")
            .header(header::IF_RANGE, validator)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{validator}");
        assert_eq!(header_str(resp.headers(), "etag"), etag1);
        assert_eq!(
            header_str(resp.headers(), "content-length"),
            size.to_string()
        );
        let body = resp.bytes().await.unwrap();
        assert_eq!(hex::encode(Sha256::digest(&body)), sha1, "whole new object");
    }
    // Other files are unaffected.
    assert_eq!(sim.version(5), 0);

    // If-Match / If-None-Match.
    let resp = c
        .get(&url)
        .header(header::IF_MATCH, &etag0)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    let resp = c
        .get(&url)
        .header(header::IF_NONE_MATCH, &etag1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn head_has_length_and_no_body() {
    let sim = start_sized(123_456).await;
    let c = client();
    let url = url_for(&c, &sim, 2).await;
    let resp = c.head(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_str(resp.headers(), "content-length"), "123456");
    assert_eq!(header_str(resp.headers(), "etag"), sim.etag(2));
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = c
        .head(&url)
        .header(header::RANGE, "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header_str(resp.headers(), "content-length"), "123356");
    assert_eq!(sim.stats().cdn_bytes_sent, 0);
}

#[tokio::test]
async fn expired_and_bad_signatures_are_403_xml() {
    let sim = start_sized(1000).await;
    let c = client();

    let past = super::now_unix() - 10;
    let resp = c
        .get(sim.download_url_expiring(1, past))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        header_str(resp.headers(), "content-type"),
        "application/xml"
    );
    let body = resp.text().await.unwrap();
    assert!(body.starts_with("<?xml"), "{body}");
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    assert!(
        body.contains("<Message>Request has expired.</Message>"),
        "{body}"
    );

    let good = sim.download_url(1);
    assert_eq!(c.get(&good).send().await.unwrap().status(), StatusCode::OK);
    let tampered = good.replace("/1/output_aigc.mp4", "/2/output_aigc.mp4");
    let resp = c.get(&tampered).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("<Code>SignatureDoesNotMatch</Code>")
    );
    // Moving Expires forward breaks the signature too.
    let (base, _) = good.split_once("?").unwrap();
    let forged = format!(
        "{base}?Expires={}&OSSAccessKeyId=minimax-sim&Signature={}",
        super::now_unix() + 99_999,
        "0".repeat(40)
    );
    assert_eq!(
        c.get(&forged).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // No signature at all.
    let resp = c.get(base).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Wrong object name or path.
    let resp = c
        .get(good.replace("output_aigc.mp4", "other.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // A zero TTL issues URLs that are already expired.
    let sim0 = start(SimConfig {
        url_ttl: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let url = url_for(&c, &sim0, 1).await;
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.unwrap().contains("Request has expired."));
    assert_eq!(sim.stats().cdn_bytes_sent, 1000);
}

#[tokio::test]
async fn authorization_at_cdn_is_rejected_and_counted() {
    let sim = start_sized(1000).await;
    let c = client();
    let url = url_for(&c, &sim, 1).await;
    let resp = c.get(&url).bearer_auth("leaked").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = resp.text().await.unwrap();
    assert!(body.contains("<Code>InvalidArgument</Code>"), "{body}");
    assert!(body.contains("Unsupported Authorization Type"), "{body}");
    assert!(!body.contains("leaked"), "the key is not echoed");
    let resp = c
        .head(&url)
        .header(header::AUTHORIZATION, "x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    c.get(&url).send().await.unwrap();
    let st = sim.stats();
    assert_eq!(st.cdn_requests_with_authorization, 2);
    assert_eq!(st.cdn_requests, 3);
}

#[tokio::test]
async fn missing_file_is_404_at_cdn() {
    let sim = start_sized(1000).await;
    let c = client();
    let url = sim.download_url(11);
    sim.set_faults(Faults {
        missing: HashSet::from([11]),
        ..Faults::default()
    });
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("<Code>NoSuchKey</Code>")
    );
    assert_eq!(sim.faults().missing, HashSet::from([11]));
}

#[tokio::test]
async fn api_faults_are_injected() {
    let sim = start_sized(1000).await;
    let c = client();
    let get = |q: &'static str| {
        let c = c.clone();
        let base = sim.api_base();
        async move {
            c.get(format!("{base}/v1/files/retrieve?{q}"))
                .bearer_auth("k")
                .send()
                .await
                .unwrap()
        }
    };

    // Code, every 2nd call, at most twice.
    sim.set_faults(Faults {
        api: vec![
            ApiFaultRule::new(ApiFault::Code(1002, "rate limit exceeded(RPM)".into()))
                .every(2)
                .limit(2),
        ],
        ..Faults::default()
    });
    let mut codes = Vec::new();
    for _ in 0..7 {
        let v: Value = serde_json::from_str(&get("file_id=1").await.text().await.unwrap()).unwrap();
        codes.push(v["base_resp"]["status_code"].as_i64().unwrap());
    }
    assert_eq!(codes, [0, 1002, 0, 1002, 0, 0, 0]);
    assert_eq!(sim.stats().faults_injected, 2);

    // Http(429) carries Retry-After: 1; Http(502) an HTML page.
    sim.set_faults(Faults {
        api: vec![ApiFaultRule::new(ApiFault::Http(429)).limit(1)],
        ..Faults::default()
    });
    let r = get("file_id=1").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header_str(r.headers(), "retry-after"), "1");
    assert_eq!(get("file_id=1").await.status(), StatusCode::OK);
    sim.set_faults(Faults {
        api: vec![ApiFaultRule::new(ApiFault::Http(502))],
        ..Faults::default()
    });
    let r = get("file_id=1").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(header_str(r.headers(), "content-type").starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("502 Bad Gateway"));

    // HttpRetryAfter.
    sim.set_faults(Faults {
        api: vec![ApiFaultRule::new(ApiFault::HttpRetryAfter(503, 7))],
        ..Faults::default()
    });
    let r = get("file_id=1").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header_str(r.headers(), "retry-after"), "7");

    // Html with 200.
    sim.set_faults(Faults {
        api: vec![ApiFaultRule::new(ApiFault::Html)],
        ..Faults::default()
    });
    let r = get("file_id=1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header_str(r.headers(), "content-type").starts_with("text/html"));
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());

    // Truncated JSON.
    sim.set_faults(Faults {
        api: vec![ApiFaultRule::new(ApiFault::TruncatedJson)],
        ..Faults::default()
    });
    let r = get("file_id=1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("{\"") && text.len() > 20, "{text}");
    let err = serde_json::from_str::<Value>(&text).unwrap_err();
    assert!(err.is_eof(), "{err}");

    // Redirect: the status and a Location on the other base, same path and query.
    sim.set_faults(Faults {
        api: vec![
            ApiFaultRule::new(ApiFault::Redirect(307, "http://127.0.0.1:9/".into())).limit(1),
        ],
        ..Faults::default()
    });
    let no_follow = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow
        .get(format!("{}/v1/files/retrieve?file_id=1", sim.api_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        header_str(r.headers(), "location"),
        "http://127.0.0.1:9/v1/files/retrieve?file_id=1"
    );

    // File filter: only file 2 is affected, and only its calls count.
    sim.set_faults(Faults {
        api: vec![
            ApiFaultRule::new(ApiFault::Code(1000, "unknown error".into()))
                .every(2)
                .for_files([2]),
        ],
        ..Faults::default()
    });
    let mut seen = Vec::new();
    for q in [
        "file_id=1",
        "file_id=2",
        "file_id=1",
        "file_id=2",
        "file_id=x",
    ] {
        let v: Value = serde_json::from_str(&get(q).await.text().await.unwrap()).unwrap();
        seen.push(v["base_resp"]["status_code"].as_i64().unwrap());
    }
    assert_eq!(seen, [0, 0, 0, 1000, 2013]);

    // Hang: the client's timeout fires.
    sim.set_faults(Faults {
        api: vec![ApiFaultRule::new(ApiFault::Hang).limit(1)],
        ..Faults::default()
    });
    let t0 = Instant::now();
    let err = c
        .get(format!("{}/v1/files/retrieve?file_id=1", sim.api_base()))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(get("file_id=1").await.status(), StatusCode::OK);

    // Latency.
    sim.set_faults(Faults {
        api_latency: Some(Duration::from_millis(200)),
        ..Faults::default()
    });
    let t0 = Instant::now();
    assert_eq!(get("file_id=1").await.status(), StatusCode::OK);
    assert!(t0.elapsed() >= Duration::from_millis(200));

    // 2 + 1 + 1 + 1 + 1 + 1 + 1 (redirect) + 1 (file filter) + 1 (hang)
    assert_eq!(sim.stats().faults_injected, 10);
}

#[tokio::test]
async fn cdn_status_faults_every_and_limit() {
    let sim = start_sized(1000).await;
    let c = client();
    let url1 = sim.download_url(1);
    let url2 = sim.download_url(2);
    sim.set_faults(Faults {
        cdn: vec![
            CdnFaultRule::new(CdnFault::Status(503))
                .every(2)
                .limit(2)
                .for_files([1]),
        ],
        ..Faults::default()
    });
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(c.get(&url1).send().await.unwrap().status().as_u16());
        // Other files are neither affected nor counted.
        assert_eq!(c.get(&url2).send().await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(statuses, [200, 503, 200, 503, 200, 200]);
    assert_eq!(sim.stats().faults_injected, 2);

    // set_faults resets the counters.
    sim.set_faults(Faults {
        cdn: vec![CdnFaultRule::new(CdnFault::Status(500)).limit(1)],
        ..Faults::default()
    });
    let r = c.get(&url1).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("<Code>InternalError</Code>")
    );
    assert_eq!(c.get(&url1).send().await.unwrap().status(), StatusCode::OK);

    // Expired whatever the URL says; NotFound; both apply to HEAD too.
    sim.set_faults(Faults {
        cdn: vec![
            CdnFaultRule::new(CdnFault::Expired).limit(1),
            CdnFaultRule::new(CdnFault::NotFound).limit(1),
        ],
        ..Faults::default()
    });
    let r = c.get(&url1).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("Request has expired."));
    let r = c.head(&url1).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(c.get(&url1).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(sim.stats().faults_injected, 5);
}

#[tokio::test]
async fn drop_after_gives_exactly_n_bytes_then_an_error() {
    let size = 1 << 20;
    let sim = start_sized(size).await;
    let c = client();
    let url = url_for(&c, &sim, 3).await;
    sim.set_faults(Faults {
        cdn: vec![CdnFaultRule::new(CdnFault::DropAfter(300_007)).limit(2)],
        ..Faults::default()
    });
    for _ in 0..2 {
        let resp = c.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.content_length(), Some(size), "full length announced");
        let (got, err) = read_all(resp).await;
        assert!(err.is_some(), "the client sees an error");
        assert_eq!(got.len(), 300_007);
        assert_eq!(got, bytes_of(3, 0, 0, 300_007));
    }
    // Limit reached: the next GET completes.
    let body = c.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(body.len() as u64, size);

    // Applies to ranges too, and counts from the range start; n = 0 works.
    sim.set_faults(Faults {
        cdn: vec![
            CdnFaultRule::new(CdnFault::DropAfter(10)).limit(1),
            CdnFaultRule::new(CdnFault::DropAfter(0)).limit(1),
        ],
        ..Faults::default()
    });
    let (got, err) = read_all(get_range(&c, &url, "bytes=1000-").await).await;
    assert!(err.is_some());
    assert_eq!(got, bytes_of(3, 0, 1000, 10));
    let resp = get_range(&c, &url, "bytes=5-").await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let (got, err) = read_all(resp).await;
    assert!(err.is_some());
    assert!(got.is_empty());
    assert_eq!(sim.stats().faults_injected, 4);
}

#[tokio::test]
async fn truncate_chunked_ends_cleanly_without_length() {
    let sim = start_sized(500_000).await;
    let c = client();
    let url = url_for(&c, &sim, 4).await;
    sim.set_faults(Faults {
        cdn: vec![CdnFaultRule::new(CdnFault::TruncateChunked(123_457)).limit(1)],
        ..Faults::default()
    });
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get(header::CONTENT_LENGTH).is_none());
    assert_eq!(header_str(resp.headers(), "transfer-encoding"), "chunked");
    let (got, err) = read_all(resp).await;
    assert!(err.is_none(), "ends cleanly: {err:?}");
    assert_eq!(got, bytes_of(4, 0, 0, 123_457));
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.content_length(), Some(500_000));
    assert_eq!(sim.stats().cdn_bytes_sent, 123_457 + 500_000);
}

#[tokio::test]
async fn ignore_range_answers_whole_object() {
    let sim = start_sized(70_000).await;
    let c = client();
    let url = url_for(&c, &sim, 5).await;
    sim.set_faults(Faults {
        cdn: vec![CdnFaultRule::new(CdnFault::IgnoreRange).limit(1)],
        ..Faults::default()
    });
    // A plain GET neither triggers nor consumes it.
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(sim.stats().faults_injected, 0);
    let resp = get_range(&c, &url, "bytes=100-199").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get(header::CONTENT_RANGE).is_none());
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.as_ref(), bytes_of(5, 0, 0, 70_000));
    assert_eq!(
        get_range(&c, &url, "bytes=100-199").await.status(),
        StatusCode::PARTIAL_CONTENT
    );
    // An unsatisfiable range becomes 200 too (as OSS may answer).
    sim.set_faults(Faults {
        cdn: vec![CdnFaultRule::new(CdnFault::IgnoreRange)],
        ..Faults::default()
    });
    let resp = get_range(&c, &url, "bytes=99999-").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sim.stats().faults_injected, 2);
}

#[tokio::test]
async fn stall_after_trips_the_client_idle_timeout() {
    let sim = start_sized(1 << 20).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = sim.download_url(6);
    sim.set_faults(Faults {
        cdn: vec![CdnFaultRule::new(CdnFault::StallAfter(100_000)).limit(1)],
        ..Faults::default()
    });
    let t0 = Instant::now();
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.content_length(), Some(1 << 20));
    let (got, err) = read_all(resp).await;
    let err = err.expect("stalled body errors");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(got, bytes_of(6, 0, 0, 100_000));
    assert!(t0.elapsed() >= Duration::from_millis(300));
    // Limit 1: the next one completes.
    let body = c.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(body.len(), 1 << 20);
}

#[tokio::test]
async fn bandwidth_is_throttled() {
    let sim = start_sized(100_000).await;
    let c = client();
    let url = sim.download_url(1);
    sim.set_faults(Faults {
        bandwidth_bytes_per_sec: Some(400_000),
        ..Faults::default()
    });
    let t0 = Instant::now();
    let body = c.get(&url).send().await.unwrap().bytes().await.unwrap();
    let elapsed = t0.elapsed();
    assert_eq!(body.as_ref(), bytes_of(1, 0, 0, 100_000));
    // 100 kB at 400 kB/s = 250 ms.
    assert!(elapsed >= Duration::from_millis(240), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn other_methods_are_refused() {
    let sim = start_sized(10).await;
    let c = client();
    let r = c.post(sim.download_url(1)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(sim.stats().cdn_requests, 1);
}

#[tokio::test]
async fn zero_size_file() {
    let mut config = SimConfig::default();
    config.sizes.insert(1, 0);
    let sim = start(config).await;
    let c = client();
    let resp = c.get(sim.download_url(1)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.content_length(), Some(0));
    assert!(resp.bytes().await.unwrap().is_empty());
    assert_eq!(
        sim.expected_sha256(1),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let resp = get_range(&c, &sim.download_url(1), "bytes=0-").await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn stats_reset_and_concurrent_downloads() {
    let sim = start_sized(256 * 1024).await;
    let c = client();
    let urls: Vec<String> = (1..=4).map(|id| sim.download_url(id)).collect();
    let bodies = futures_util::future::join_all(urls.iter().map(|u| {
        let c = c.clone();
        async move { c.get(u).send().await.unwrap().bytes().await.unwrap() }
    }))
    .await;
    for (i, body) in bodies.iter().enumerate() {
        let id = i as i64 + 1;
        assert_eq!(hex::encode(Sha256::digest(body)), sim.expected_sha256(id));
    }
    let st = sim.stats();
    assert_eq!(st.cdn_requests, 4);
    assert_eq!(st.cdn_bytes_sent, 4 * 256 * 1024);
    assert_eq!(st.cdn_bytes_by_file.len(), 4);
    sim.reset_stats();
    assert_eq!(sim.stats(), SimStats::default());
}

#[tokio::test]
async fn shutdown_releases_hung_requests_and_stops_listening() {
    let sim = start_sized(10).await;
    sim.set_faults(Faults {
        api: vec![ApiFaultRule::new(ApiFault::Hang)],
        ..Faults::default()
    });
    let c = client();
    let api = sim.api_base();
    let hung = tokio::spawn({
        let c = c.clone();
        let api = api.clone();
        async move {
            c.get(format!("{api}/v1/files/retrieve?file_id=1"))
                .send()
                .await
        }
    });
    // The request is hanging in the simulator before it shuts down.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.stats().api_requests == 0 {
        assert!(Instant::now() < deadline, "the request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.stats().api_requests, 1);
    sim.shutdown_and_wait(Duration::from_secs(5)).await;
    let res = tokio::time::timeout(Duration::from_secs(5), hung)
        .await
        .expect("hung request released")
        .unwrap();
    // Either a 503 or a closed connection, but not a hang.
    if let Ok(r) = res {
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let fresh = client();
    assert!(
        fresh
            .get(format!("{api}/v1/files/retrieve?file_id=1"))
            .send()
            .await
            .is_err(),
        "listener closed"
    );

    // Plain drop also stops it.
    let sim = start_sized(10).await;
    let api = sim.api_base();
    drop(sim);
    let deadline = Instant::now() + Duration::from_secs(10);
    while client()
        .get(format!("{api}/v1/files/retrieve?file_id=1"))
        .send()
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "still listening after drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn only_loopback() {
    let config = SimConfig::default();
    let public = "0.0.0.0:0".parse().unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let err = Simulator::start_on(config.clone(), public, local)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("loopback"), "{err}");
    assert!(Simulator::start_on(config, local, public).await.is_err());
}
