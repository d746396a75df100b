//! What a partial download has proven, as plain data shared by the queue
//! (which stores it) and `fetch` (which extends it). Nothing here does I/O
//! or imports from the crate.

use std::str::FromStr;

use serde::Serialize;

/// Where the size a file was verified against came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeSource {
    /// retrieve reported `bytes > 0`.
    Api,
    /// retrieve said 0 (as it does for videos): the CDN's length, pinned on
    /// the first response and checked on every resume.
    Cdn,
}

impl SizeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SizeSource::Api => "api",
            SizeSource::Cdn => "cdn",
        }
    }
}

impl FromStr for SizeSource {
    type Err = String;

    fn from_str(s: &str) -> Result<SizeSource, String> {
        match s {
            "api" => Ok(SizeSource::Api),
            "cdn" => Ok(SizeSource::Cdn),
            other => Err(format!("unknown size source {other:?}")),
        }
    }
}

/// The length a file is checked against, and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedSize {
    pub bytes: u64,
    pub source: SizeSource,
}

impl ExpectedSize {
    /// The API's size when it gave one, else the CDN's pinned length.
    pub fn of(api_size: Option<u64>, pinned: Option<u64>) -> Option<ExpectedSize> {
        match (api_size, pinned) {
            (Some(bytes), _) => Some(ExpectedSize {
                bytes,
                source: SizeSource::Api,
            }),
            (None, Some(bytes)) => Some(ExpectedSize {
                bytes,
                source: SizeSource::Cdn,
            }),
            (None, None) => None,
        }
    }
}

/// What survives between attempts (it is stored in the job row).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// Length of the partial file known to be on disk (fsynced).
    pub bytes_done: u64,
    pub validator: Option<String>,
    /// The object's length as the CDN first reported it.
    pub total: Option<u64>,
    /// Segmented downloads: the complete pieces written (see
    /// `fetch::pieces`); after a reboot only those inside `bytes_done` are
    /// trusted.
    pub pieces: Option<String>,
    /// The boot in which the partial bytes were written (see
    /// `fetch::resume`).
    pub boot_id: Option<String>,
}

impl Resume {
    /// Back to byte 0 (the object changed, or the CDN ignored Range): all
    /// progress goes, the boot id stays, for it still names this boot.
    pub fn reset(&mut self) {
        *self = Resume {
            boot_id: self.boot_id.take(),
            ..Resume::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_sources_read_back_what_they_write() {
        for source in [SizeSource::Api, SizeSource::Cdn] {
            assert_eq!(source.as_str().parse::<SizeSource>(), Ok(source));
        }
        assert!("disk".parse::<SizeSource>().is_err());
    }

    #[test]
    fn the_api_size_wins_over_the_pinned_length() {
        let api = ExpectedSize::of(Some(10), Some(12)).unwrap();
        assert_eq!((api.bytes, api.source), (10, SizeSource::Api));
        let cdn = ExpectedSize::of(None, Some(12)).unwrap();
        assert_eq!((cdn.bytes, cdn.source), (12, SizeSource::Cdn));
        assert_eq!(ExpectedSize::of(None, None), None);
    }
}
