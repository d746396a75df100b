//! What the API client and the download client share about HTTP: the
//! user agent, error text that never carries a URL, `Retry-After`, and the
//! checks of hosts and URLs taken from the configuration (loopback, plain
//! http, a `cdn_allow` entry, the API base). Pure: no requests are made
//! here, and nothing of the crate is imported but `ids`.

use std::time::Duration;

use reqwest::Url;

/// The API of mainland China accounts (the default `api_base`).
pub(crate) const MAINLAND_API_BASE: &str = "https://api.minimaxi.com";
/// The API of international accounts.
pub(crate) const INTERNATIONAL_API_BASE: &str = "https://api.minimax.io";

/// Sent with every request, API and CDN alike.
pub(crate) const USER_AGENT: &str = concat!("minimax-dl/", env!("CARGO_PKG_VERSION"));

/// Parses `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(24 * 3600)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(24 * 3600)),
    )
}

/// What went wrong with a request, with its cause chain, and without the
/// URL: reqwest's own Display appends it, and a signed download URL is a
/// credential that must not end up in logs or in the queue's history.
pub(crate) fn describe_reqwest(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() {
        "the body was cut short"
    } else if error.is_decode() {
        "the body could not be decoded"
    } else if error.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    }
    .to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = plain_tls(cause.to_string());
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// rustls's words for the usual TLS mistakes, in the user's: an `https://`
/// URL to a server that answers plain http gets "received corrupt message
/// of type InvalidContentType", which names neither the cause nor the fix.
fn plain_tls(text: String) -> String {
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        return "the server does not speak TLS: it may serve plain http (use an http:// URL only \
                for a loopback server, or the server's https port)"
            .to_string();
    }
    text
}

/// The API base must be an http(s) URL with a host. Plain http is allowed
/// only for loopback hosts (the simulator): the key must not cross a network
/// in clear text.
pub(crate) fn parse_api_base(raw: &str) -> Result<Url, String> {
    let q = crate::ids::quoted(raw.trim());
    let url = Url::parse(raw.trim()).map_err(|e| format!("{q} is not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return Err(format!(
            "{} (shown without them) has a user name or password in it: they would be sent \
             to the host and written to logs. Remove them; the API key is set with \
             MINIMAX_API_KEY or api_key_file",
            crate::ids::quoted(shown.as_str())
        ));
    }
    let host = url.host_str().ok_or_else(|| format!("{q} has no host"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(host) => {}
        "http" => {
            return Err(format!(
                "{q} uses plain http: the API key would cross the network unencrypted; use https \
                 ({MAINLAND_API_BASE} or {INTERNATIONAL_API_BASE})"
            ));
        }
        other => return Err(format!("{q} has scheme \"{other}\"; expected https")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{q} must not carry a query or fragment"));
    }
    // A base with a path (a proxy prefix) must end in '/', or joining
    // "v1/files/retrieve" would replace its last segment.
    let mut url = url;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A `cdn_allow` entry as it is compared: a host name or IP address alone
/// (no scheme, port, path or wildcard), in the form URLs carry it (lower
/// case, punycode), without a leading or trailing dot.
pub(crate) fn normalise_allowed_host(raw: &str) -> Result<String, String> {
    let entry = raw.trim().trim_start_matches('.').trim_end_matches('.');
    let refuse = |why: &str| {
        Err(format!(
            "cdn_allow entry {raw:?} {why}: give a host name such as \"aliyuncs.com\" \
             (it also allows its subdomains)"
        ))
    };
    if entry.is_empty() {
        return refuse("is empty");
    }
    if entry.contains(['/', ':', '@', '*', '?', '#']) && !entry.starts_with('[') {
        return refuse("is not a plain host name");
    }
    let Ok(url) = Url::parse(&format!("http://{entry}/")) else {
        return refuse("is not a host name");
    };
    match url.host_str() {
        Some(host) if url.port().is_none() && url.path() == "/" => {
            Ok(host.trim_end_matches('.').to_string())
        }
        _ => refuse("is not a plain host name"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transport_errors_never_carry_the_url() {
        // Nothing listens on port 9 of loopback: the connection is refused.
        let url =
            "http://127.0.0.1:9/x/output_aigc.mp4?Expires=1&OSSAccessKeyId=k&Signature=SECRETSIG";
        let error = reqwest::get(url).await.unwrap_err();
        let text = describe_reqwest(&error);
        assert!(text.starts_with("connection failed"), "{text}");
        assert!(
            !text.contains("SECRETSIG") && !text.contains("127.0.0.1:9/x"),
            "{text}"
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("5", now), Some(Duration::from_secs(5)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("99999999", now),
            Some(Duration::from_secs(24 * 3600))
        );
    }

    #[test]
    fn api_base_must_be_https_unless_loopback() {
        assert!(parse_api_base("https://api.minimax.io").is_ok());
        assert!(parse_api_base("http://127.0.0.1:8380").is_ok());
        assert!(parse_api_base("http://localhost:1").is_ok());
        assert!(
            parse_api_base("http://api.minimax.io")
                .unwrap_err()
                .contains("unencrypted")
        );
        assert!(parse_api_base("ftp://x").is_err());
        assert_eq!(
            parse_api_base("https://proxy.example/minimax")
                .unwrap()
                .join("v1/files/retrieve")
                .unwrap()
                .as_str(),
            "https://proxy.example/minimax/v1/files/retrieve"
        );
        assert!(parse_api_base("not a url").is_err());
    }

    #[test]
    fn an_api_base_with_credentials_is_refused_without_showing_them() {
        for raw in [
            "https://user:hunter2@api.minimax.io",
            "http://user:hunter2@127.0.0.1:8380",
            "https://hunter2@api.minimax.io",
        ] {
            let err = parse_api_base(raw).unwrap_err();
            assert!(err.contains("password"), "{raw}: {err}");
            assert!(!err.contains("hunter2"), "{raw}: {err}");
        }
    }
}
