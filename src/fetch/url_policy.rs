//! Which URLs the download client fetches and which redirects it follows.
//! Pure: the rules are unit- and property-tested without a server; the
//! reqwest side only asks them (see `Fetcher::new`).
//!
//! - Only `http` and `https`: a `file:`, `ftp:` or `data:` URL from the API
//!   is refused, naming its scheme.
//! - Plain `http` to a host that is not loopback is upgraded to `https`
//!   (MiniMax sometimes hands out `http://` object-store URLs, and the
//!   object store serves the same signed URL over TLS): the signature never
//!   crosses a network in clear text, and what arrives was not changed on
//!   the way. Loopback stays plain (the simulator, the tests).
//! - `cdn_allow`: when set, the host must be one of these names or end in
//!   `.name` (a label boundary: `evilexample.com` is not `example.com`).
//! - Redirects: at most [`MAX_REDIRECTS`], never to another scheme than
//!   http(s), never from https to http, never to plain http beyond
//!   loopback (a redirect cannot be upgraded: its target is the server's
//!   word), and every target host passes `cdn_allow`.
//!
//! Refusals name a scheme or a host, never the URL: its query is the
//! signature, a credential.

use reqwest::Url;

use crate::http::{is_loopback_host, normalise_allowed_host};

/// Redirects followed for one request before it is refused.
pub const MAX_REDIRECTS: usize = 5;

/// The rules for one download client. `Default` allows any host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Host names, normalised by [`normalise_allowed_host`](crate::http::normalise_allowed_host); empty: any host.
    cdn_allow: Vec<String>,
}

/// Why a URL or a redirect is not fetched. Permanent for the job: the next
/// URL from the API would be refused the same way.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("the download URL has scheme {scheme:?}: only http and https URLs are fetched")]
    Scheme { scheme: String },
    #[error("the download URL has no host")]
    NoHost,
    #[error(
        "the download host {host} is not allowed by cdn_allow ({allowed}): add it to cdn_allow \
         in the config if it is a CDN you trust"
    )]
    HostNotAllowed { host: String, allowed: String },
    #[error("a redirect to scheme {scheme:?} was refused: only http and https are followed")]
    RedirectScheme { scheme: String },
    #[error("a redirect from https to plain http (host {host}) was refused")]
    Downgrade { host: String },
    #[error(
        "a redirect to plain http on {host} was refused: only loopback hosts are fetched over \
         plain http"
    )]
    PlainHttp { host: String },
    #[error("more than {max} redirects")]
    TooManyRedirects { max: usize },
}

impl UrlPolicy {
    /// A policy allowing only these hosts and their subdomains; an empty
    /// list allows any host. Entries are checked with
    /// [`normalise_allowed_host`](crate::http::normalise_allowed_host).
    pub fn new<S: AsRef<str>>(cdn_allow: impl IntoIterator<Item = S>) -> Result<UrlPolicy, String> {
        let cdn_allow = cdn_allow
            .into_iter()
            .map(|entry| normalise_allowed_host(entry.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UrlPolicy { cdn_allow })
    }

    /// The allowed host names, normalised (empty: any host).
    pub fn cdn_allow(&self) -> &[String] {
        &self.cdn_allow
    }

    /// The URL to request for a `download_url` from the API: the same URL,
    /// or its https form when it is plain http to a host beyond loopback.
    pub fn first(&self, url: &Url) -> Result<Url, UrlRefusal> {
        if !is_http(url) {
            return Err(UrlRefusal::Scheme {
                scheme: url.scheme().to_string(),
            });
        }
        let host = host_of(url)?;
        self.check_host(url, host)?;
        if url.scheme() == "http" && !is_loopback_host(host) {
            let mut upgraded = url.clone();
            // http → https is always a valid scheme change for a URL with a host.
            let _ = upgraded.set_scheme("https");
            return Ok(upgraded);
        }
        Ok(url.clone())
    }

    /// May a request that went through `previous` (the first URL first,
    /// as reqwest lists them) follow a redirect to `next`?
    pub fn redirect(&self, previous: &[Url], next: &Url) -> Result<(), UrlRefusal> {
        if previous.len() > MAX_REDIRECTS {
            return Err(UrlRefusal::TooManyRedirects { max: MAX_REDIRECTS });
        }
        if !is_http(next) {
            return Err(UrlRefusal::RedirectScheme {
                scheme: next.scheme().to_string(),
            });
        }
        let host = host_of(next)?;
        let from_https = previous.last().is_some_and(|p| p.scheme() == "https");
        if next.scheme() == "http" && from_https {
            return Err(UrlRefusal::Downgrade {
                host: host.to_string(),
            });
        }
        if next.scheme() == "http" && !is_loopback_host(host) {
            return Err(UrlRefusal::PlainHttp {
                host: host.to_string(),
            });
        }
        self.check_host(next, host)
    }

    fn check_host(&self, url: &Url, host: &str) -> Result<(), UrlRefusal> {
        if self.cdn_allow.is_empty() {
            return Ok(());
        }
        let is_domain = url.domain().is_some();
        if self
            .cdn_allow
            .iter()
            .any(|allowed| host_matches(host, allowed, is_domain))
        {
            return Ok(());
        }
        Err(UrlRefusal::HostNotAllowed {
            host: host.to_string(),
            allowed: self.cdn_allow.join(", "),
        })
    }
}

fn is_http(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

fn host_of(url: &Url) -> Result<&str, UrlRefusal> {
    url.host_str()
        .filter(|h| !h.is_empty())
        .ok_or(UrlRefusal::NoHost)
}

/// Is `host` the allowed name or a subdomain of it? A label boundary is
/// required (`evilexample.com` is not under `example.com`), and an IP
/// address matches only itself. Both sides are compared without a
/// trailing dot and in lower case.
pub fn host_matches(host: &str, allowed: &str, host_is_domain: bool) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let allowed = allowed.trim_end_matches('.').to_ascii_lowercase();
    if allowed.is_empty() {
        return false;
    }
    host == allowed
        || (host_is_domain
            && host
                .strip_suffix(allowed.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn allow(hosts: &[&str]) -> UrlPolicy {
        UrlPolicy::new(hosts).unwrap()
    }

    #[test]
    fn only_http_and_https_are_fetched_and_the_refusal_names_only_the_scheme() {
        let any = UrlPolicy::default();
        for raw in [
            "ftp://cdn.example/x?Signature=SECRET",
            "file:///etc/passwd",
            "data:text/plain,SECRET",
            "gopher://cdn.example/SECRET",
        ] {
            let refusal = any.first(&url(raw)).unwrap_err();
            let scheme = raw.split(':').next().unwrap();
            assert_eq!(
                refusal,
                UrlRefusal::Scheme {
                    scheme: scheme.into()
                }
            );
            let text = refusal.to_string();
            assert!(text.contains(scheme) && !text.contains("SECRET"), "{text}");
        }
    }

    #[test]
    fn plain_http_is_upgraded_beyond_loopback_and_kept_on_loopback() {
        let any = UrlPolicy::default();
        let upgraded = any
            .first(&url(
                "http://bucket.oss-cn-hangzhou.aliyuncs.com/v.mp4?Expires=1",
            ))
            .unwrap();
        assert_eq!(
            upgraded.as_str(),
            "https://bucket.oss-cn-hangzhou.aliyuncs.com/v.mp4?Expires=1"
        );
        assert_eq!(
            any.first(&url("http://cdn.example:80/x")).unwrap().as_str(),
            "https://cdn.example/x",
            "the default port follows the scheme"
        );
        for raw in [
            "http://127.0.0.1:8381/1/x",
            "http://localhost:9/x",
            "http://[::1]:9/x",
            "https://cdn.example/x",
        ] {
            assert_eq!(any.first(&url(raw)).unwrap().as_str(), url(raw).as_str());
        }
    }

    #[test]
    fn cdn_allow_matches_whole_labels_only() {
        let policy = allow(&["example.com", "127.0.0.1"]);
        for ok in [
            "https://example.com/x",
            "https://cdn.example.com/x",
            "https://a.b.EXAMPLE.com./x",
            "http://127.0.0.1:5/x",
        ] {
            assert!(policy.first(&url(ok)).is_ok(), "{ok}");
        }
        for refused in [
            "https://evilexample.com/x",
            "https://example.com.evil.net/x",
            "https://example.co/x",
            "http://127.0.0.2/x",
            "http://localhost/x",
        ] {
            let refusal = policy.first(&url(refused)).unwrap_err();
            assert!(
                matches!(refusal, UrlRefusal::HostNotAllowed { .. }),
                "{refused}: {refusal}"
            );
            assert!(refusal.to_string().contains("cdn_allow"), "{refusal}");
        }
        assert!(
            UrlPolicy::default()
                .first(&url("https://anything.example/x"))
                .is_ok(),
            "no list: any host"
        );
    }

    #[test]
    fn an_ip_address_matches_only_itself() {
        assert!(host_matches("10.0.0.1", "10.0.0.1", false));
        assert!(!host_matches("10.0.0.1", "0.0.1", false));
        assert!(!host_matches("x.example", "", true));
    }

    #[test]
    fn redirects_keep_to_http_s_never_downgrade_and_are_counted() {
        let any = UrlPolicy::default();
        let https = url("https://cdn.example/a?Signature=S");
        let loopback = url("http://127.0.0.1:9/a");
        assert_eq!(
            any.redirect(
                std::slice::from_ref(&https),
                &url("https://other.example/b")
            ),
            Ok(())
        );
        assert_eq!(
            any.redirect(
                std::slice::from_ref(&loopback),
                &url("http://localhost:9/b")
            ),
            Ok(())
        );
        assert!(matches!(
            any.redirect(std::slice::from_ref(&https), &url("ftp://cdn.example/b")),
            Err(UrlRefusal::RedirectScheme { .. })
        ));
        assert!(matches!(
            any.redirect(std::slice::from_ref(&https), &url("http://127.0.0.1:9/b")),
            Err(UrlRefusal::Downgrade { .. })
        ));
        assert!(matches!(
            any.redirect(
                std::slice::from_ref(&loopback),
                &url("http://cdn.example/b")
            ),
            Err(UrlRefusal::PlainHttp { .. })
        ));
        let chain = vec![https.clone(); MAX_REDIRECTS];
        assert_eq!(any.redirect(&chain, &https), Ok(()));
        let chain = vec![https.clone(); MAX_REDIRECTS + 1];
        assert_eq!(
            any.redirect(&chain, &https),
            Err(UrlRefusal::TooManyRedirects { max: MAX_REDIRECTS })
        );
        let policy = allow(&["cdn.example"]);
        assert!(matches!(
            policy.redirect(std::slice::from_ref(&https), &url("https://evil.example/b")),
            Err(UrlRefusal::HostNotAllowed { .. })
        ));
    }
}
