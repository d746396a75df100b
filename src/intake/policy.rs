//! What one poll of a generation task means: poll again (when), hand the
//! result over as a download, fail the task, or pause for the account.
//! Pure: no I/O, no clock (the caller passes the task's age and whether its
//! deadline has passed).

use std::time::Duration;

use crate::api::{ErrorClass, TaskStatus};

/// Longest wait between two polls of a long generation.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);
/// How long a poll slot is held by the process that took it: past this a
/// poller that died is replaced (a second query of the same task is
/// harmless, so this is only about not polling twice in a row).
pub(crate) const POLL_SLOT: Duration = Duration::from_secs(60);

/// The wait before the next poll of a task generating for `age`: every
/// `floor` ([`MIN_POLL_INTERVAL`] but in tests) for the first minutes
/// (most videos take a few), then a tenth of its age, up to 5 minutes, so
/// a generation that takes hours costs a few dozen calls instead of
/// hundreds.
pub fn poll_interval(age: Duration, floor: Duration) -> Duration {
    (age / 10).clamp(floor, MAX_POLL_INTERVAL.max(floor))
}

/// What a poll answered, as the policy needs it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PollAnswer<'a> {
    Status(&'a TaskStatus),
    /// The call failed: its class and message.
    Error(ErrorClass, &'a str),
}

/// What to do with the task after a poll.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PollStep {
    /// Not finished: poll again after `after`. `note` says why (MiniMax's
    /// status, or what went wrong with this poll).
    Again { after: Duration, note: String },
    /// v1 finished: download this file.
    File(i64),
    /// v2 finished: download the task's video (the job queries it again
    /// for a fresh URL each attempt).
    Video,
    /// Ended without a file: the task fails with this message.
    Fail(String),
    /// An account-level answer: the task's slot goes back unused and the
    /// pool pauses until a probe succeeds (`pause`: how long the API asked).
    Pause {
        message: String,
        pause: Option<Duration>,
    },
}

/// When a poll happened, as the policy needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PollTime {
    /// How long the task has been in the queue.
    pub age: Duration,
    /// The shortest wait between polls ([`MIN_POLL_INTERVAL`]).
    pub floor: Duration,
    /// The task's deadline (its length) when it has passed.
    pub past_deadline: Option<Duration>,
    /// What is left of the rate-limit cooldown: no poll before it ends.
    pub cooldown: Duration,
}

/// The step after one poll.
pub(crate) fn after_poll(answer: PollAnswer<'_>, when: PollTime) -> PollStep {
    let next = poll_interval(when.age, when.floor);
    let (past_deadline, cooldown) = (when.past_deadline, when.cooldown);
    let step = match answer {
        PollAnswer::Status(TaskStatus::File(id)) => return PollStep::File(*id),
        PollAnswer::Status(TaskStatus::Video(_)) => return PollStep::Video,
        PollAnswer::Status(TaskStatus::Failed(reason)) => return PollStep::Fail(reason.clone()),
        PollAnswer::Status(TaskStatus::Generating(word)) => PollStep::Again {
            after: next,
            note: format!("MiniMax says {word}"),
        },
        PollAnswer::Status(TaskStatus::Unrecognised(word)) => PollStep::Again {
            after: next,
            note: format!("MiniMax says {word:?}, a status it does not document: polling on"),
        },
        PollAnswer::Error(ErrorClass::Account { pause }, message) => {
            return PollStep::Pause {
                message: message.to_string(),
                pause,
            };
        }
        PollAnswer::Error(ErrorClass::Permanent, message) => {
            return PollStep::Fail(message.to_string());
        }
        PollAnswer::Error(ErrorClass::RateLimited { .. }, message) => PollStep::Again {
            after: next.max(cooldown),
            note: message.to_string(),
        },
        PollAnswer::Error(
            ErrorClass::Transient | ErrorClass::Unknown | ErrorClass::Unreachable,
            message,
        ) => PollStep::Again {
            after: next,
            note: message.to_string(),
        },
    };
    match past_deadline {
        Some(deadline) => PollStep::Fail(deadline_message(deadline)),
        None => step,
    }
}

/// Why a task that never finished was given up.
pub(crate) fn deadline_message(deadline: Duration) -> String {
    format!(
        "still not finished {} after it was enqueued: given up (task_deadline); \
         MiniMax keeps tasks queryable for about 7 days",
        humantime::format_duration(deadline)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MIN_TASK_POLL_INTERVAL as MIN_POLL_INTERVAL;
    use reqwest::Url;

    const MIN: Duration = Duration::from_secs(60);

    fn at(age: Duration, past_deadline: Option<Duration>, cooldown: Duration) -> PollTime {
        PollTime {
            age,
            floor: MIN_POLL_INTERVAL,
            past_deadline,
            cooldown,
        }
    }

    #[test]
    fn polls_come_every_ten_seconds_then_back_off_to_five_minutes() {
        assert_eq!(
            poll_interval(Duration::ZERO, MIN_POLL_INTERVAL),
            MIN_POLL_INTERVAL
        );
        assert_eq!(poll_interval(MIN, MIN_POLL_INTERVAL), MIN_POLL_INTERVAL);
        assert_eq!(
            poll_interval(2 * MIN, MIN_POLL_INTERVAL),
            Duration::from_secs(12)
        );
        assert_eq!(poll_interval(10 * MIN, MIN_POLL_INTERVAL), MIN);
        assert_eq!(
            poll_interval(50 * MIN, MIN_POLL_INTERVAL),
            MAX_POLL_INTERVAL
        );
        assert_eq!(
            poll_interval(24 * 60 * MIN, MIN_POLL_INTERVAL),
            MAX_POLL_INTERVAL
        );
        // Never more often than every 10 s, and monotonic in the age.
        let mut last = Duration::ZERO;
        for minutes in 0..2000 {
            let wait = poll_interval(MIN * minutes, MIN_POLL_INTERVAL);
            assert!(wait >= MIN_POLL_INTERVAL && wait >= last);
            last = wait;
        }
    }

    #[test]
    fn a_long_generation_costs_few_polls() {
        // Polls of a task that generates for 6 hours.
        let (mut age, mut polls) = (Duration::ZERO, 0);
        while age < 360 * MIN {
            age += poll_interval(age, MIN_POLL_INTERVAL);
            polls += 1;
        }
        assert!(polls < 120, "{polls} polls");
    }

    #[test]
    fn a_test_floor_shortens_the_first_polls_only() {
        let floor = Duration::from_millis(50);
        assert_eq!(poll_interval(Duration::ZERO, floor), floor);
        assert_eq!(poll_interval(50 * MIN, floor), MAX_POLL_INTERVAL);
    }

    #[test]
    fn finished_tasks_hand_over_or_fail() {
        let file = TaskStatus::File(9);
        assert_eq!(
            after_poll(PollAnswer::Status(&file), at(MIN, None, Duration::ZERO)),
            PollStep::File(9)
        );
        let video = TaskStatus::Video(Url::parse("https://c/v.mp4").unwrap());
        assert_eq!(
            after_poll(
                PollAnswer::Status(&video),
                at(MIN, Some(MIN), Duration::ZERO)
            ),
            PollStep::Video,
            "a result that came in time past the deadline is still taken"
        );
        let failed = TaskStatus::Failed("sensitive content".into());
        assert_eq!(
            after_poll(PollAnswer::Status(&failed), at(MIN, None, Duration::ZERO)),
            PollStep::Fail("sensitive content".into())
        );
    }

    #[test]
    fn unknown_statuses_and_passing_errors_are_polled_again() {
        let odd = TaskStatus::Unrecognised("Unknown".into());
        let step = after_poll(PollAnswer::Status(&odd), at(MIN, None, Duration::ZERO));
        assert!(matches!(step, PollStep::Again { after, .. } if after == MIN_POLL_INTERVAL));
        for class in [ErrorClass::Transient, ErrorClass::Unknown] {
            let step = after_poll(
                PollAnswer::Error(class, "502"),
                at(MIN, None, Duration::ZERO),
            );
            assert!(matches!(step, PollStep::Again { note, .. } if note == "502"));
        }
        let limited = ErrorClass::RateLimited { retry_after: None };
        let step = after_poll(PollAnswer::Error(limited, "1002"), at(MIN, None, 5 * MIN));
        assert!(matches!(step, PollStep::Again { after, .. } if after == 5 * MIN));
    }

    #[test]
    fn account_errors_pause_and_permanent_ones_fail() {
        let account = ErrorClass::Account { pause: None };
        assert_eq!(
            after_poll(
                PollAnswer::Error(account, "1004"),
                at(MIN, None, Duration::ZERO)
            ),
            PollStep::Pause {
                message: "1004".into(),
                pause: None
            }
        );
        assert_eq!(
            after_poll(
                PollAnswer::Error(ErrorClass::Permanent, "invalid task_id"),
                at(MIN, None, Duration::ZERO)
            ),
            PollStep::Fail("invalid task_id".into())
        );
    }

    #[test]
    fn past_its_deadline_an_unfinished_task_fails_clearly() {
        let running = TaskStatus::Generating("running".into());
        let deadline = 24 * 60 * MIN;
        let PollStep::Fail(message) = after_poll(
            PollAnswer::Status(&running),
            at(deadline, Some(deadline), Duration::ZERO),
        ) else {
            panic!("past the deadline");
        };
        assert!(
            message.contains("1day") && message.contains("task_deadline"),
            "{message}"
        );
        let step = after_poll(
            PollAnswer::Error(ErrorClass::Transient, "502"),
            at(deadline, Some(deadline), Duration::ZERO),
        );
        assert!(matches!(step, PollStep::Fail(_)));
    }
}
