//! Simulator configuration and fault rules.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How the simulator behaves when nothing goes wrong, plus the faults to inject.
///
/// The defaults follow what the real service does (see the project's API
/// notes): `bytes` is 0 in retrieve answers, every file is `output_aigc.mp4`,
/// URLs live for an hour.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Seeds the content generator, ETags and URL signatures.
    pub seed: u64,
    /// When `Some`, retrieve calls must carry `Authorization: Bearer <key>`
    /// with exactly this key or get status 1004. `None` accepts any key.
    pub api_key: Option<String>,
    /// Size of every file id ≥ 1 not listed in `sizes`.
    pub default_file_size: u64,
    /// Per-file size overrides.
    pub sizes: HashMap<i64, u64>,
    /// Advertise the real size in `file.bytes`. Off by default because real
    /// video answers say `"bytes": 0`.
    pub report_bytes: bool,
    /// Lifetime of issued download URLs (second granularity; zero issues URLs
    /// that are already expired).
    pub url_ttl: Duration,
    /// Faults to inject; can be replaced at run time with `Simulator::set_faults`.
    pub faults: Faults,
    /// Hand out download URLs `{external_cdn}/{file_id}.bin` on another
    /// server (the benchmarks' nginx) instead of this simulator's CDN. CDN
    /// faults and counters then do not apply.
    pub external_cdn: Option<String>,
    /// Append `&security-token=TOKEN` to every download URL, as an STS-signed
    /// object-store URL carries one: a known credential in the query, for
    /// tests that look for leaks. The CDN ignores it.
    pub url_token: Option<String>,
    /// How long a task created by `POST /v1|v2/video_generation` generates.
    pub task_generation: Duration,
    /// Every n-th created task fails (1027, output rejected).
    pub task_fail_every: Option<u32>,
    /// How many times each task's final update is POSTed to its
    /// `callback_url` (MiniMax may deliver one more than once).
    pub callback_repeats: u32,
    /// Most items a page of the v2 task list serves, whatever `page_size`
    /// asks: 20, as MiniMax's documented example (no maximum is documented).
    pub list_page_max: u32,
    /// The case of the status words in v1 callbacks (lowercase, as the
    /// callback pages list them, by default).
    pub v1_callback_case: super::CallbackCase,
    /// MiniMax's clock (API `Date`, URL `Expires`, the CDN's expiry check)
    /// minus the host's, in seconds: a host whose clock is wrong by this
    /// much (±2 h in tests).
    pub clock_offset_secs: i64,
    /// A hidden rate limit, as an account has one (`sim --rpm N`): beyond
    /// `calls` answered retrieve calls in any `window`, retrieve answers
    /// 1002 with HTTP 200, as MiniMax documents. Refused calls do not count.
    pub hidden_limit: Option<HiddenLimit>,
}

/// See [`SimConfig::hidden_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HiddenLimit {
    pub calls: u32,
    /// 60 s; shorter in tests that scale the minute down.
    pub window: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            api_key: None,
            default_file_size: 1 << 20,
            sizes: HashMap::new(),
            report_bytes: false,
            url_ttl: Duration::from_secs(3600),
            faults: Faults::default(),
            external_cdn: None,
            url_token: None,
            task_generation: Duration::from_secs(20),
            task_fail_every: None,
            callback_repeats: 1,
            list_page_max: 20,
            v1_callback_case: super::CallbackCase::Lower,
            clock_offset_secs: 0,
            hidden_limit: None,
        }
    }
}

/// Switchable misbehaviour of the API and the CDN.
///
/// Every field defaults to "behave normally".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// API fault rules; the first rule whose turn it is wins.
    pub api: Vec<ApiFaultRule>,
    /// CDN fault rules; the first rule whose turn it is wins.
    pub cdn: Vec<CdnFaultRule>,
    /// File ids that do not exist (retrieve answers 2013, the CDN 404).
    pub missing: HashSet<i64>,
    /// Per-file `filename` override, to test hostile names. The CDN object
    /// path stays `/{id}/output_aigc.mp4`.
    pub filenames: HashMap<i64, String>,
    /// The API advertises this `bytes` value (even if `report_bytes` is false),
    /// to test clients that trust it.
    pub wrong_bytes: HashMap<i64, u64>,
    /// Per-connection throttle of CDN response bodies, bytes per second.
    pub bandwidth_bytes_per_sec: Option<u64>,
    /// Delay before every API answer.
    pub api_latency: Option<Duration>,
}

/// When and to which files an [`ApiFault`] applies.
///
/// Counting is per rule, over the retrieve calls that match `file_ids`
/// (whether or not another rule fired on them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiFaultRule {
    /// What to do.
    pub fault: ApiFault,
    /// 1 = every matching call, n = every n-th matching call (the n-th, 2n-th, …).
    /// 0 disables the rule.
    pub every: u32,
    /// Stop after injecting this many times; `None` = no limit.
    pub limit: Option<u32>,
    /// Only calls for these file ids count; `None` = all calls (including
    /// ones whose file_id is missing or not a number).
    pub file_ids: Option<HashSet<i64>>,
}

impl ApiFaultRule {
    /// A rule that fires on every call, for every file, without limit.
    pub fn new(fault: ApiFault) -> Self {
        ApiFaultRule {
            fault,
            every: 1,
            limit: None,
            file_ids: None,
        }
    }

    /// Fire on every n-th matching call only.
    pub fn every(mut self, n: u32) -> Self {
        self.every = n;
        self
    }

    /// Stop after injecting `n` times.
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    /// Only consider calls for these file ids.
    pub fn for_files(mut self, ids: impl IntoIterator<Item = i64>) -> Self {
        self.file_ids = Some(ids.into_iter().collect());
        self
    }
}

/// A misbehaviour of the retrieve endpoint (or the gateway in front of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiFault {
    /// HTTP 200 with only this `base_resp` code and message
    /// (e.g. 1002 rate limit, 1000 unknown error, 1004 auth).
    Code(i64, String),
    /// A gateway error with an HTML body; 429 also carries `Retry-After: 1`.
    Http(u16),
    /// This status with `Retry-After: <secs>` and an HTML body.
    HttpRetryAfter(u16, u64),
    /// HTTP 200 with an HTML page instead of JSON (a WAF or captive portal).
    Html,
    /// HTTP 200, `application/json`, but the body is cut in the middle.
    TruncatedJson,
    /// Never answer (until the client gives up or the simulator stops).
    Hang,
    /// This redirect status (301, 302, 307, 308) with `Location:` this base
    /// URL followed by the request's own path and query: an API host that
    /// moved, or an `api_base` pointing at a site that redirects. A client
    /// that follows it would send the key to whatever host it names.
    Redirect(u16, String),
}

/// When and to which files a [`CdnFault`] applies.
///
/// Counting is per rule, over the CDN requests it can apply to that match
/// `file_ids`: only requests for an existing object with a valid, unexpired
/// signature count. `Status`, `Expired` and `NotFound` apply to GET and HEAD;
/// `DropAfter`, `TruncateChunked` and `StallAfter` to GETs that would send
/// the object (200 or 206); `IgnoreRange` to GETs whose `Range` would have
/// been acted on (206 or 416; it turns both into 200 with the whole object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdnFaultRule {
    /// What to do.
    pub fault: CdnFault,
    /// 1 = every matching request, n = every n-th. 0 disables the rule.
    pub every: u32,
    /// Stop after injecting this many times; `None` = no limit.
    pub limit: Option<u32>,
    /// Only requests for these file ids count; `None` = all files.
    pub file_ids: Option<HashSet<i64>>,
}

impl CdnFaultRule {
    /// A rule that fires on every applicable request, without limit.
    pub fn new(fault: CdnFault) -> Self {
        CdnFaultRule {
            fault,
            every: 1,
            limit: None,
            file_ids: None,
        }
    }

    /// Fire on every n-th matching request only.
    pub fn every(mut self, n: u32) -> Self {
        self.every = n;
        self
    }

    /// Stop after injecting `n` times.
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    /// Only consider requests for these file ids.
    pub fn for_files(mut self, ids: impl IntoIterator<Item = i64>) -> Self {
        self.file_ids = Some(ids.into_iter().collect());
        self
    }
}

/// A misbehaviour of the object store / CDN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CdnFault {
    /// This status with an OSS-style XML error body (e.g. 500, 503).
    Status(u16),
    /// This status (429, 503) with `Retry-After: <secs>`.
    StatusRetryAfter(u16, u64),
    /// The 403 "Request has expired." XML, whatever the URL says.
    Expired,
    /// 404 XML `NoSuchKey`.
    NotFound,
    /// Send this many body bytes (with the full `Content-Length` announced),
    /// make sure they reached the socket, then abort the connection.
    DropAfter(u64),
    /// Send no `Content-Length` (chunked) and end the body cleanly after this
    /// many bytes: only a client that checks the size notices.
    TruncateChunked(u64),
    /// Answer 200 with the whole object even though a `Range` was asked.
    IgnoreRange,
    /// Send this many body bytes, then stall forever (the client's idle
    /// timeout must fire).
    StallAfter(u64),
}

impl CdnFault {
    /// Faults that answer with an error instead of the object.
    pub(crate) fn is_status_like(&self) -> bool {
        matches!(
            self,
            CdnFault::Status(_)
                | CdnFault::StatusRetryAfter(..)
                | CdnFault::Expired
                | CdnFault::NotFound
        )
    }
}

/// How many times each fault rule fired, in the order of [`Faults::api`]
/// and [`Faults::cdn`]: lets a caller check that a fault it switched on
/// actually happened, which the total in `SimStats` cannot tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub api: Vec<u64>,
    pub cdn: Vec<u64>,
}

/// Per-rule counters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RuleCounter {
    seen: u64,
    injected: u64,
}

/// The live fault configuration plus its rules' counters.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub(crate) faults: Faults,
    api_counters: Vec<RuleCounter>,
    cdn_counters: Vec<RuleCounter>,
}

impl FaultState {
    pub(crate) fn new(faults: Faults) -> Self {
        FaultState {
            api_counters: vec![RuleCounter::default(); faults.api.len()],
            cdn_counters: vec![RuleCounter::default(); faults.cdn.len()],
            faults,
        }
    }

    /// How many times each rule fired so far, in rule order.
    pub(crate) fn injected(&self) -> FaultCounts {
        let count = |c: &[RuleCounter]| c.iter().map(|c| c.injected).collect();
        FaultCounts {
            api: count(&self.api_counters),
            cdn: count(&self.cdn_counters),
        }
    }

    /// Counts a retrieve call against the API rules and returns the fault to
    /// inject, if any.
    pub(crate) fn pick_api(&mut self, file_id: Option<i64>) -> Option<ApiFault> {
        let rules = &self.faults.api;
        let index = pick(
            rules
                .iter()
                .map(|r| (r.every, r.limit, r.file_ids.as_ref(), true)),
            &mut self.api_counters,
            file_id,
        )?;
        Some(rules[index].fault.clone())
    }

    /// Counts a CDN request against the rules that can apply to it and
    /// returns the fault to inject, if any.
    pub(crate) fn pick_cdn(
        &mut self,
        file_id: i64,
        is_get: bool,
        has_range: bool,
        sends_object: bool,
    ) -> Option<CdnFault> {
        let rules = &self.faults.cdn;
        let index = pick(
            rules.iter().map(|r| {
                let applies = match r.fault {
                    CdnFault::Status(_)
                    | CdnFault::StatusRetryAfter(..)
                    | CdnFault::Expired
                    | CdnFault::NotFound => true,
                    CdnFault::IgnoreRange => is_get && has_range,
                    CdnFault::DropAfter(_)
                    | CdnFault::TruncateChunked(_)
                    | CdnFault::StallAfter(_) => is_get && sends_object,
                };
                (r.every, r.limit, r.file_ids.as_ref(), applies)
            }),
            &mut self.cdn_counters,
            Some(file_id),
        )?;
        Some(rules[index].fault.clone())
    }
}

/// Shared rule logic: every applicable, matching rule counts the request;
/// the first one whose turn it is (and whose limit is not reached) fires.
fn pick<'a>(
    rules: impl Iterator<Item = (u32, Option<u32>, Option<&'a HashSet<i64>>, bool)>,
    counters: &mut [RuleCounter],
    file_id: Option<i64>,
) -> Option<usize> {
    let mut fired = None;
    for (index, ((every, limit, ids, applies), counter)) in
        rules.zip(counters.iter_mut()).enumerate()
    {
        if !applies || every == 0 {
            continue;
        }
        let matches = match (ids, file_id) {
            (None, _) => true,
            (Some(ids), Some(id)) => ids.contains(&id),
            (Some(_), None) => false,
        };
        if !matches {
            continue;
        }
        counter.seen += 1;
        let turn = counter.seen % u64::from(every) == 0;
        let allowed = limit.is_none_or(|l| counter.injected < u64::from(l));
        if fired.is_none() && turn && allowed {
            counter.injected += 1;
            fired = Some(index);
        }
    }
    fired
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fires(state: &mut FaultState, file: Option<i64>, n: usize) -> Vec<bool> {
        (0..n).map(|_| state.pick_api(file).is_some()).collect()
    }

    #[test]
    fn every_and_limit() {
        let mut st = FaultState::new(Faults {
            api: vec![ApiFaultRule::new(ApiFault::Html).every(3).limit(2)],
            ..Faults::default()
        });
        assert_eq!(
            fires(&mut st, Some(1), 10),
            [
                false, false, true, false, false, true, false, false, false, false
            ]
        );
        assert_eq!(
            st.injected(),
            FaultCounts {
                api: vec![2],
                cdn: vec![]
            }
        );
    }

    #[test]
    fn zero_every_disables() {
        let mut st = FaultState::new(Faults {
            api: vec![ApiFaultRule::new(ApiFault::Html).every(0)],
            ..Faults::default()
        });
        assert_eq!(fires(&mut st, Some(1), 3), [false, false, false]);
    }

    #[test]
    fn file_filter_counts_only_matching() {
        let mut st = FaultState::new(Faults {
            api: vec![ApiFaultRule::new(ApiFault::Html).every(2).for_files([7])],
            ..Faults::default()
        });
        assert!(st.pick_api(Some(8)).is_none());
        assert!(st.pick_api(None).is_none());
        assert!(st.pick_api(Some(7)).is_none());
        assert!(st.pick_api(Some(8)).is_none());
        assert!(st.pick_api(Some(7)).is_some());
    }

    #[test]
    fn first_rule_wins_but_all_count() {
        let mut st = FaultState::new(Faults {
            api: vec![
                ApiFaultRule::new(ApiFault::Html).limit(1),
                ApiFaultRule::new(ApiFault::TruncatedJson).every(2),
            ],
            ..Faults::default()
        });
        assert_eq!(st.pick_api(Some(1)), Some(ApiFault::Html));
        // Rule 2 saw call 1 as well, so call 2 is its turn.
        assert_eq!(st.pick_api(Some(1)), Some(ApiFault::TruncatedJson));
        assert_eq!(st.pick_api(Some(1)), None);
        assert_eq!(st.pick_api(Some(1)), Some(ApiFault::TruncatedJson));
    }

    #[test]
    fn cdn_applicability() {
        let mut st = FaultState::new(Faults {
            cdn: vec![
                CdnFaultRule::new(CdnFault::IgnoreRange),
                CdnFaultRule::new(CdnFault::DropAfter(5)),
            ],
            ..Faults::default()
        });
        // HEAD: neither applies.
        assert_eq!(st.pick_cdn(1, false, true, true), None);
        // GET without range: only DropAfter.
        assert_eq!(
            st.pick_cdn(1, true, false, true),
            Some(CdnFault::DropAfter(5))
        );
        // GET with range: IgnoreRange first.
        assert_eq!(
            st.pick_cdn(1, true, true, true),
            Some(CdnFault::IgnoreRange)
        );
        // GET that would not send the object (416): only IgnoreRange.
        assert_eq!(
            st.pick_cdn(1, true, true, false),
            Some(CdnFault::IgnoreRange)
        );
    }
}
