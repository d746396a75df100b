//! The API host's clock as its answers' `Date` header tells it. A signed
//! download URL's `Expires` is a time on the signer's clock, not ours: a
//! host whose clock is off (a VM after suspend, a container without NTP)
//! must judge a URL in use on the API's clock, and is told once that its
//! clock is wrong.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Past this difference the host's clock is worth a warning.
pub(crate) const WARN_OFFSET_SECS: i64 = 60;

/// The API's clock minus the host's, in whole seconds, from a `Date`
/// header read at `now`; `None` when the header is not an HTTP date.
/// `Date` has one-second granularity: an offset of ±1 s is noise.
pub(crate) fn offset_from_date(date: &str, now: SystemTime) -> Option<i64> {
    let api = httpdate::parse_http_date(date.trim()).ok()?;
    Some(unix_secs(api) - unix_secs(now))
}

fn unix_secs(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Should an offset be warned about? Pure.
pub(crate) fn is_off(offset: i64) -> bool {
    offset.abs() > WARN_OFFSET_SECS
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Logs an observed offset: at debug level each time, and one warning per
/// process the first time the host's clock is off by more than a minute.
pub(crate) fn observed(offset: i64) {
    tracing::debug!(
        offset_secs = offset,
        "the API's clock minus this host's (from its Date header)"
    );
    if is_off(offset) && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "this host's clock differs from the MiniMax API's by {offset} s: download URLs are \
             judged on the API's clock, but fix the host's time (NTP) anyway"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn offsets_are_read_from_http_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // Tue, 14 Nov 2023 22:13:20 GMT is 1_700_000_000.
        let cases = [
            ("Tue, 14 Nov 2023 22:13:20 GMT", Some(0)),
            ("Tue, 14 Nov 2023 23:13:20 GMT", Some(3600)),
            ("Tue, 14 Nov 2023 21:13:20 GMT", Some(-3600)),
            ("yesterday", None),
        ];
        for (date, offset) in cases {
            assert_eq!(offset_from_date(date, now), offset, "{date}");
        }
    }

    #[test]
    fn only_more_than_a_minute_is_worth_a_warning() {
        for (offset, off) in [
            (0, false),
            (60, false),
            (-60, false),
            (61, true),
            (-3600, true),
        ] {
            assert_eq!(is_off(offset), off, "{offset}");
        }
    }
}
