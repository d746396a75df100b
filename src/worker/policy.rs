//! What a failure means for the job: retry (counted or not), fail, or
//! pause the host. Pure: no I/O, no clock.

use std::time::Duration;

use crate::api::ErrorClass;
use crate::fetch::FetchError;
use crate::queue::RetryPolicy;
use crate::queue::state::UNKNOWN_ERROR_ATTEMPT_CAP;

/// What to do with a job after a failure. Pure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Decision {
    Fail,
    /// Counted: the next attempt waits this long.
    RetryAfter(Duration),
    /// Not counted: back to the queue, due after this long.
    Requeue(Duration),
    /// Not counted: the job goes back at once and the pool pauses.
    PauseHost,
}

/// After a transfer that made progress, try again this soon.
pub(crate) const PROGRESS_REQUEUE_DELAY: Duration = Duration::from_secs(1);

pub(crate) fn decide(
    class: ErrorClass,
    attempts_before: u32,
    policy: &RetryPolicy,
    progressed: bool,
    cooldown: Duration,
    jitter_unit: f64,
) -> Decision {
    match class {
        ErrorClass::Permanent => Decision::Fail,
        ErrorClass::RateLimited { .. } => Decision::Requeue(cooldown),
        ErrorClass::Account { .. } | ErrorClass::Unreachable => Decision::PauseHost,
        ErrorClass::Transient | ErrorClass::Unknown if progressed => {
            Decision::Requeue(PROGRESS_REQUEUE_DELAY)
        }
        ErrorClass::Transient | ErrorClass::Unknown => {
            let attempts = attempts_before + 1;
            let cap = (class == ErrorClass::Unknown).then_some(UNKNOWN_ERROR_ATTEMPT_CAP);
            if policy.exhausted(attempts, cap) {
                Decision::Fail
            } else {
                Decision::RetryAfter(policy.delay_for(attempts, jitter_unit))
            }
        }
    }
}

/// Longest wait a CDN's `Retry-After` can impose: past it the signed URL has
/// expired anyway, and the next attempt asks the API for a fresh one.
pub(crate) const MAX_CDN_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A CDN that said when to come back (`Retry-After` on a 429 or 503) is not
/// asked again sooner, up to [`MAX_CDN_RETRY_AFTER`]; never sooner than the
/// retry schedule says either.
pub(crate) fn honour_retry_after(decision: Decision, retry_after: Option<Duration>) -> Decision {
    let Some(wait) = retry_after.map(|w| w.min(MAX_CDN_RETRY_AFTER)) else {
        return decision;
    };
    match decision {
        Decision::RetryAfter(delay) => Decision::RetryAfter(delay.max(wait)),
        Decision::Requeue(delay) => Decision::Requeue(delay.max(wait)),
        other => other,
    }
}

/// How the worker classifies a download failure.
pub(crate) fn classify_fetch(error: &FetchError) -> ErrorClass {
    match error {
        FetchError::SizeMismatch { .. }
        | FetchError::Oversized { .. }
        | FetchError::OverCap { .. }
        | FetchError::UrlPolicy(_)
        | FetchError::TooLarge { .. } => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_COOLDOWN: Duration = Duration::ZERO;

    #[test]
    fn a_cdn_retry_after_delays_the_next_attempt_but_never_shortens_it() {
        let minute = Duration::from_secs(60);
        assert_eq!(
            honour_retry_after(Decision::RetryAfter(Duration::from_secs(15)), Some(minute)),
            Decision::RetryAfter(minute)
        );
        assert_eq!(
            honour_retry_after(Decision::RetryAfter(minute * 10), Some(minute)),
            Decision::RetryAfter(minute * 10),
            "the retry schedule's longer delay stands"
        );
        assert_eq!(
            honour_retry_after(Decision::Requeue(PROGRESS_REQUEUE_DELAY), Some(minute)),
            Decision::Requeue(minute)
        );
        assert_eq!(
            honour_retry_after(
                Decision::RetryAfter(minute),
                Some(Duration::from_secs(86_400))
            ),
            Decision::RetryAfter(MAX_CDN_RETRY_AFTER),
            "capped: the URL would have expired by then"
        );
        assert_eq!(
            honour_retry_after(Decision::Fail, Some(minute)),
            Decision::Fail
        );
        assert_eq!(
            honour_retry_after(Decision::RetryAfter(minute), None),
            Decision::RetryAfter(minute)
        );
    }

    #[test]
    fn permanent_errors_fail_at_once() {
        let p = RetryPolicy::default();
        assert_eq!(
            decide(ErrorClass::Permanent, 0, &p, false, NO_COOLDOWN, 0.5),
            Decision::Fail
        );
        assert_eq!(
            decide(ErrorClass::Permanent, 0, &p, true, NO_COOLDOWN, 0.5),
            Decision::Fail
        );
    }

    #[test]
    fn transient_errors_back_off_until_the_budget_is_spent() {
        let p = RetryPolicy::default();
        assert_eq!(
            decide(ErrorClass::Transient, 0, &p, false, NO_COOLDOWN, 0.5),
            Decision::RetryAfter(p.delay_for(1, 0.5))
        );
        assert_eq!(
            decide(ErrorClass::Transient, 23, &p, false, NO_COOLDOWN, 0.5),
            Decision::RetryAfter(p.delay_for(24, 0.5))
        );
        assert_eq!(
            decide(ErrorClass::Transient, 24, &p, false, NO_COOLDOWN, 0.5),
            Decision::Fail
        );
    }

    #[test]
    fn unknown_errors_get_a_smaller_budget() {
        let p = RetryPolicy::default();
        assert!(matches!(
            decide(
                ErrorClass::Unknown,
                UNKNOWN_ERROR_ATTEMPT_CAP - 2,
                &p,
                false,
                NO_COOLDOWN,
                0.5
            ),
            Decision::RetryAfter(_)
        ));
        assert_eq!(
            decide(
                ErrorClass::Unknown,
                UNKNOWN_ERROR_ATTEMPT_CAP - 1,
                &p,
                false,
                NO_COOLDOWN,
                0.5
            ),
            Decision::Fail
        );
    }

    #[test]
    fn progress_rate_limits_and_account_errors_never_burn_attempts() {
        let p = RetryPolicy::default();
        assert_eq!(
            decide(ErrorClass::Transient, 24, &p, true, NO_COOLDOWN, 0.5),
            Decision::Requeue(PROGRESS_REQUEUE_DELAY)
        );
        let cooldown = Duration::from_secs(20);
        assert_eq!(
            decide(
                ErrorClass::RateLimited { retry_after: None },
                24,
                &p,
                false,
                cooldown,
                0.5
            ),
            Decision::Requeue(cooldown)
        );
        assert_eq!(
            decide(
                ErrorClass::Account { pause: None },
                24,
                &p,
                false,
                NO_COOLDOWN,
                0.5
            ),
            Decision::PauseHost
        );
    }

    #[test]
    fn size_mismatch_is_permanent_and_network_trouble_is_not() {
        let mismatch = FetchError::SizeMismatch {
            expected: 1,
            actual: 2,
            source_name: "api",
        };
        assert_eq!(classify_fetch(&mismatch), ErrorClass::Permanent);
        assert_eq!(
            classify_fetch(&FetchError::Network("reset".into())),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_fetch(&FetchError::UrlRejected { status: 403 }),
            ErrorClass::Transient
        );
    }
}
