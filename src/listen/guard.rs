//! The listener's rules as pure functions: which addresses it may bind,
//! which `Host` it answers, which requests may act, whose token matches.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

/// The first address of `resolved` that is not loopback, when that is not
/// allowed.
pub(crate) fn first_not_loopback(resolved: &[SocketAddr], public: bool) -> Option<SocketAddr> {
    if public {
        return None;
    }
    resolved.iter().copied().find(|a| !a.ip().is_loopback())
}

/// The host part of a `Host` header: `name`, `name:port`, `[v6]:port`.
fn host_of(header: &str) -> &str {
    if let Some(rest) = header.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match header.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => header,
    }
}

/// Whether a loopback-only listener answers a request for `host`: only
/// names of this machine, so a web page whose name an attacker points at
/// 127.0.0.1 (DNS rebinding) cannot read the answers. A public listener
/// answers any name.
pub(crate) fn host_allowed(host: Option<&str>, public: bool) -> bool {
    if public {
        return true;
    }
    host.map(host_of)
        .is_some_and(|h| h.eq_ignore_ascii_case("localhost") || crate::http::is_loopback_host(h))
}

/// Whether a browser says the request comes from another site: its
/// `Sec-Fetch-Site`, or an `Origin` whose host differs from `Host`.
/// Requests without either (curl, scripts) are not cross-site.
pub(crate) fn cross_site(
    origin: Option<&str>,
    fetch_site: Option<&str>,
    host: Option<&str>,
) -> bool {
    if let Some(site) = fetch_site
        && !matches!(site, "same-origin" | "none")
    {
        return true;
    }
    match origin {
        None => false,
        Some(origin) => {
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            authority.is_none_or(|a| Some(a) != host)
        }
    }
}

/// Compares a presented token with the configured one without an early
/// exit on the first differing byte: both are hashed, then every byte of
/// the digests is compared.
pub(crate) fn token_matches(presented: &str, configured: &str) -> bool {
    let (a, b) = (Sha256::digest(presented), Sha256::digest(configured));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_bound_unless_public() {
        let local: SocketAddr = "127.0.0.1:9898".parse().unwrap();
        let v6: SocketAddr = "[::1]:9898".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9898".parse().unwrap();
        let lan: SocketAddr = "192.0.2.7:9898".parse().unwrap();
        assert_eq!(first_not_loopback(&[local, v6], false), None);
        assert_eq!(first_not_loopback(&[local, any], false), Some(any));
        assert_eq!(first_not_loopback(&[lan], false), Some(lan));
        assert_eq!(first_not_loopback(&[any, lan], true), None);
    }

    #[test]
    fn a_loopback_listener_answers_only_names_of_this_machine() {
        for host in [
            "127.0.0.1:9898",
            "localhost:1",
            "LOCALHOST",
            "[::1]:9898",
            "127.1.2.3",
        ] {
            assert!(host_allowed(Some(host), false), "{host}");
        }
        for host in [
            "evil.example:9898",
            "192.0.2.7",
            "[2001:db8::1]:80",
            "localhost.evil.example",
        ] {
            assert!(!host_allowed(Some(host), false), "{host}");
        }
        assert!(!host_allowed(None, false), "HTTP/1.1 requires Host");
        assert!(host_allowed(Some("evil.example"), true));
    }

    #[test]
    fn cross_site_requests_are_told_apart_from_the_page_and_from_scripts() {
        let host = Some("127.0.0.1:9898");
        assert!(!cross_site(None, None, host), "curl");
        assert!(!cross_site(
            Some("http://127.0.0.1:9898"),
            Some("same-origin"),
            host
        ));
        assert!(cross_site(Some("http://evil.example"), None, host));
        assert!(cross_site(Some("null"), None, host));
        assert!(cross_site(None, Some("cross-site"), host));
        assert!(cross_site(None, Some("same-site"), host));
    }

    #[test]
    fn tokens_match_only_exactly() {
        assert!(token_matches("s3cret-token-0123", "s3cret-token-0123"));
        assert!(!token_matches("s3cret-token-0124", "s3cret-token-0123"));
        assert!(!token_matches("", "s3cret-token-0123"));
    }
}
