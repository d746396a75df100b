//! Where a bucket archive is (pure): `s3://BUCKET/PREFIX` parsed and
//! checked once at config load, and the object keys and URLs of files in it.

use std::fmt;

/// A bucket and the prefix every key of this archive starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketLocation {
    pub bucket: String,
    /// Empty, or `a/b` without a leading or trailing slash.
    pub prefix: String,
}

/// Why an `output_dir` that names a bucket is not one we can use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error(
        "{url:?} names an object store this build does not archive to; use a directory or s3://BUCKET/PREFIX (S3 and S3-compatible stores: OSS, R2, MinIO, SeaweedFS)"
    )]
    UnknownScheme { url: String },
    #[error(
        "{url:?} names {store}, which this build does not archive to yet: no test here runs a local {store} server to hold it to the guarantees of an s3:// archive; use a directory or s3://BUCKET/PREFIX"
    )]
    UntestedStore { url: String, store: &'static str },
    #[error("{url:?} names no bucket; write s3://BUCKET or s3://BUCKET/PREFIX")]
    NoBucket { url: String },
    #[error(
        "{bucket:?} is not a valid bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
    )]
    BadBucket { bucket: String },
    #[error("the prefix in {url:?} {why}")]
    BadPrefix { url: String, why: &'static str },
}

/// Does `text` name an object store (`scheme://…`) rather than a directory?
/// A directory path never contains `://` in its first component.
pub(crate) fn names_object_store(text: &str) -> bool {
    match text.split_once("://") {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// The bucket URL a text almost is (`s3:/videos`, `S3:videos`, `gs:/b`):
/// an object store's scheme and a colon, without the `://`. Taken as a
/// path it would quietly become a local directory named `s3:`; `None`
/// for anything else (write `./s3:videos` for such a directory).
pub(crate) fn mistyped_store_url(text: &str) -> Option<String> {
    const SCHEMES: &[&str] = &[
        "s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss", "oss", "r2",
    ];
    let (scheme, rest) = text.split_once(':')?;
    if rest.starts_with("//") || !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return None;
    }
    Some(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        rest.trim_start_matches('/')
    ))
}

/// The store a URL names that object_store could reach but no test here
/// covers (`gs://`, `az://` and their aliases), for a refusal that says so.
fn untested_store(url: &str) -> Option<&'static str> {
    let scheme = url.split_once("://")?.0.to_ascii_lowercase();
    match scheme.as_str() {
        "gs" | "gcs" => Some("Google Cloud Storage"),
        "az" | "azure" | "abfs" | "abfss" | "adl" => Some("Azure Blob Storage"),
        _ => None,
    }
}

impl BucketLocation {
    /// `s3://BUCKET[/PREFIX[/]]`. Other schemes (`gs://`, `az://`, …) are
    /// refused: this build has no credentials chain for them and no test
    /// that covers them.
    pub fn parse(url: &str) -> Result<BucketLocation, LocationError> {
        let Some(rest) = url.strip_prefix("s3://") else {
            let url = url.to_string();
            return Err(match untested_store(&url) {
                Some(store) => LocationError::UntestedStore { url, store },
                None => LocationError::UnknownScheme { url },
            });
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(LocationError::NoBucket {
                url: url.to_string(),
            });
        }
        if !valid_bucket(bucket) {
            return Err(LocationError::BadBucket {
                bucket: bucket.to_string(),
            });
        }
        let prefix = prefix.trim_end_matches('/');
        let bad = |why| LocationError::BadPrefix {
            url: url.to_string(),
            why,
        };
        if prefix.starts_with('/') || prefix.split('/').any(str::is_empty) && !prefix.is_empty() {
            return Err(bad("has an empty path segment (`//`)"));
        }
        if prefix.split('/').any(|part| part == "." || part == "..") {
            return Err(bad("may not contain `.` or `..` segments"));
        }
        if prefix.chars().any(char::is_control) {
            return Err(bad("may not contain control characters"));
        }
        Ok(BucketLocation {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The key of a file whose archive-relative path is `rel` (components
    /// joined with `/`, as the path template made them).
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// `s3://BUCKET/KEY`: what the queue records as the file's place.
    pub fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// The key inside this bucket that a recorded `s3://` URL names, if it
    /// names one in this bucket.
    pub fn key_of<'a>(&self, url: &'a str) -> Option<&'a str> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/')?;
        (bucket == self.bucket && !key.is_empty()).then_some(key)
    }
}

impl fmt::Display for BucketLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// S3's rules for bucket names (the ones every S3-compatible store keeps).
fn valid_bucket(name: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge_ok(name.chars().next())
        && edge_ok(name.chars().last())
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls_parse_to_a_bucket_and_a_clean_prefix() {
        let cases = [
            ("s3://videos", "videos", ""),
            ("s3://videos/", "videos", ""),
            ("s3://videos/minimax", "videos", "minimax"),
            ("s3://videos/minimax/2026/", "videos", "minimax/2026"),
            ("s3://my.bucket-1/a", "my.bucket-1", "a"),
        ];
        for (url, bucket, prefix) in cases {
            let loc = BucketLocation::parse(url).unwrap();
            assert_eq!(
                (loc.bucket.as_str(), loc.prefix.as_str()),
                (bucket, prefix),
                "{url}"
            );
        }
    }

    #[test]
    fn bad_bucket_urls_say_what_is_wrong() {
        let cases: [(&str, &str); 10] = [
            (
                "gs://videos",
                "names Google Cloud Storage, which this build",
            ),
            ("az://videos", "names Azure Blob Storage, which this build"),
            ("ftp://videos", "names an object store this build does not"),
            ("s3://", "names no bucket"),
            ("s3:///prefix", "names no bucket"),
            ("s3://Videos", "not a valid bucket name"),
            ("s3://ab", "not a valid bucket name"),
            ("s3://-ab", "not a valid bucket name"),
            ("s3://videos/a//b", "empty path segment"),
            ("s3://videos/a/../b", "`..`"),
        ];
        for (url, said) in cases {
            let e = BucketLocation::parse(url).unwrap_err().to_string();
            assert!(e.contains(said), "{url}: {e}");
        }
    }

    #[test]
    fn keys_and_urls_round_trip_inside_the_bucket_only() {
        let loc = BucketLocation::parse("s3://videos/mm").unwrap();
        assert_eq!(loc.key("7-output_aigc.mp4"), "mm/7-output_aigc.mp4");
        let url = loc.url_of(&loc.key("7-output_aigc.mp4"));
        assert_eq!(url, "s3://videos/mm/7-output_aigc.mp4");
        assert_eq!(loc.key_of(&url), Some("mm/7-output_aigc.mp4"));
        assert_eq!(loc.key_of("s3://other/mm/7.mp4"), None);
        assert_eq!(loc.key_of("/srv/videos/7.mp4"), None);
        let bare = BucketLocation::parse("s3://videos").unwrap();
        assert_eq!(bare.key("a/b.mp4"), "a/b.mp4");
        assert_eq!(bare.to_string(), "s3://videos");
    }

    #[test]
    fn only_scheme_urls_name_an_object_store() {
        assert!(names_object_store("s3://b/p"));
        assert!(names_object_store("gs://b"));
        assert!(!names_object_store("/srv/videos"));
        assert!(!names_object_store("videos/s3:/x"));
        assert!(!names_object_store("./a://b"));
    }

    #[test]
    fn a_bucket_url_short_of_its_slashes_is_caught_with_the_url_meant() {
        assert_eq!(
            mistyped_store_url("s3:/videos/x").as_deref(),
            Some("s3://videos/x")
        );
        assert_eq!(
            mistyped_store_url("S3:videos").as_deref(),
            Some("s3://videos")
        );
        assert_eq!(mistyped_store_url("gs:/b").as_deref(), Some("gs://b"));
        assert_eq!(mistyped_store_url("s3://videos"), None);
        assert_eq!(mistyped_store_url("/srv/s3:/x"), None);
        assert_eq!(mistyped_store_url("./s3:videos"), None);
        assert_eq!(mistyped_store_url("videos"), None);
    }
}
