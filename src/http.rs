//! What the API client and the download client share about HTTP: the
//! user agent, error text that never carries a URL, and `Retry-After`.
//! Pure: no requests are made here.

use std::time::Duration;

/// Sent with every request, API and CDN alike.
pub const USER_AGENT: &str = concat!("minimax-dl/", env!("CARGO_PKG_VERSION"));

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
pub fn describe_reqwest(error: &reqwest::Error) -> String {
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
}
