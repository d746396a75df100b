//! What to do about each way a MiniMax call can fail. One pure function per
//! source of failure, so the whole policy is one table and its tests.

use std::time::Duration;

/// How the worker should treat a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later; counts as an attempt.
    Transient,
    /// Not understood: retried, but only up to a small cap of attempts.
    Unknown,
    /// The API wants fewer calls: the whole client cools down; does not
    /// count as an attempt.
    RateLimited { retry_after: Option<Duration> },
    /// The account cannot proceed until its operator acts (key, balance,
    /// quota, verification): stop claiming work; jobs keep their attempts.
    /// `pause` is how long to wait before probing again when the API says.
    Account { pause: Option<Duration> },
    /// This file will never download: fail the job now.
    Permanent,
    /// The API host could not be connected to (a closed port, no route, a
    /// name that does not resolve): this host's network or `api_base`, not
    /// the file. Pauses this host alone; not an attempt.
    Unreachable,
}

impl ErrorClass {
    pub fn counts_as_attempt(self) -> bool {
        matches!(
            self,
            ErrorClass::Transient | ErrorClass::Unknown | ErrorClass::Permanent
        )
    }
}

/// Pause after 2056 (usage window exhausted): the window is hours long.
pub(crate) const USAGE_WINDOW_PAUSE: Duration = Duration::from_secs(3600);

/// Classifies a non-zero `base_resp.status_code`.
pub(crate) fn classify_status_code(code: i64) -> ErrorClass {
    match code {
        1000 | 1001 | 1013 | 1024 | 1033 => ErrorClass::Transient,
        1002 | 1039 | 1041 | 2045 => ErrorClass::RateLimited { retry_after: None },
        1004 | 2049 | 1008 | 1028 | 1030 | 2061 | 2038 => ErrorClass::Account { pause: None },
        2056 => ErrorClass::Account {
            pause: Some(USAGE_WINDOW_PAUSE),
        },
        1026 | 1027 | 1042 | 2013 => ErrorClass::Permanent,
        _ => ErrorClass::Unknown,
    }
}

/// Classifies an HTTP status from the API host (gateways answer these
/// before MiniMax's own JSON errors).
/// MiniMax reports its own errors as HTTP 200 with a `base_resp` code, so
/// an HTTP error status comes from the host itself: a redirect, 400, 404 or
/// 405 means `api_base` does not point at the MiniMax API, which no retry of
/// any job can fix: the operator must act, like for a bad key.
pub(crate) fn classify_api_http(status: u16, retry_after: Option<Duration>) -> ErrorClass {
    match status {
        429 => ErrorClass::RateLimited { retry_after },
        300..=399 | 400 | 401 | 403 | 404 | 405 => ErrorClass::Account { pause: None },
        408 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_has_its_class() {
        let table: &[(i64, ErrorClass)] = &[
            (1000, ErrorClass::Transient),
            (1001, ErrorClass::Transient),
            (1013, ErrorClass::Transient),
            (1024, ErrorClass::Transient),
            (1033, ErrorClass::Transient),
            (1002, ErrorClass::RateLimited { retry_after: None }),
            (1039, ErrorClass::RateLimited { retry_after: None }),
            (1041, ErrorClass::RateLimited { retry_after: None }),
            (2045, ErrorClass::RateLimited { retry_after: None }),
            (1004, ErrorClass::Account { pause: None }),
            (2049, ErrorClass::Account { pause: None }),
            (1008, ErrorClass::Account { pause: None }),
            (1028, ErrorClass::Account { pause: None }),
            (1030, ErrorClass::Account { pause: None }),
            (2061, ErrorClass::Account { pause: None }),
            (2038, ErrorClass::Account { pause: None }),
            (
                2056,
                ErrorClass::Account {
                    pause: Some(USAGE_WINDOW_PAUSE),
                },
            ),
            (1026, ErrorClass::Permanent),
            (1027, ErrorClass::Permanent),
            (1042, ErrorClass::Permanent),
            (2013, ErrorClass::Permanent),
            (4242, ErrorClass::Unknown),
            (-1, ErrorClass::Unknown),
        ];
        for &(code, class) in table {
            assert_eq!(classify_status_code(code), class, "code {code}");
        }
    }

    #[test]
    fn only_job_level_failures_burn_attempts() {
        assert!(ErrorClass::Transient.counts_as_attempt());
        assert!(ErrorClass::Unknown.counts_as_attempt());
        assert!(ErrorClass::Permanent.counts_as_attempt());
        assert!(!ErrorClass::RateLimited { retry_after: None }.counts_as_attempt());
        assert!(!ErrorClass::Account { pause: None }.counts_as_attempt());
    }

    #[test]
    fn http_statuses_from_the_api_host() {
        let ra = Some(Duration::from_secs(7));
        assert_eq!(
            classify_api_http(429, ra),
            ErrorClass::RateLimited { retry_after: ra }
        );
        assert_eq!(classify_api_http(502, None), ErrorClass::Transient);
        assert_eq!(classify_api_http(503, None), ErrorClass::Transient);
        assert_eq!(
            classify_api_http(401, None),
            ErrorClass::Account { pause: None }
        );
        assert_eq!(classify_api_http(418, None), ErrorClass::Unknown);
    }
}
