//! What the simulator observed of its clients (`Stats`: requests per endpoint and status, records
//! served, the string-or-number habit of request bodies, a bounded log of business requests) and
//! the fault switches (`Faults`) with their "next N requests" bookkeeping.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// How many business requests the log keeps (the oldest are dropped first).
pub const LOG_CAPACITY: usize = 10_000;

/// Fault switches; all off by default. Counters mean "the next N matching requests".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Next N business requests answer HTTP 500.
    pub http_500: u32,
    /// Next N business requests answer HTTP 429 with `Retry-After: 1` (checked before `http_500`).
    pub http_429: u32,
    /// Next N token requests answer HTTP 500.
    pub token_http_500: u32,
    /// Next N token requests answer HTTP 401 (checked after `token_http_500`).
    pub token_http_401: u32,
    /// Every response of the two documented interfaces is delayed this long (control endpoints
    /// are not, so a test can still read truth and stats).
    pub delay_ms: u64,
    /// One-shot: every token issued so far becomes invalid. Applied when set, then cleared.
    pub revoke_tokens: bool,
    /// Next N successful business responses that carry records also carry three malformed
    /// entries (`42`, a record without callSerialNo, one with `"state": "banana"`).
    pub malformed: u32,
    /// Next N business responses with HTTP 200 have their body cut in half.
    pub truncated_json: u32,
    /// Next N reads of a page past the first (offset > 0) start one record early, as an offset page
    /// over a live window does when a record joins before it: the previous page's last record comes
    /// again and this page's last record is left out of this read.
    pub shift_pages: u32,
    /// `Expires` text sent instead of the real lifetime by the next `token_expires_count` tokens (a
    /// gateway that misreports it); the token itself still lives as long as asked.
    pub token_expires_text: Option<String>,
    /// How many of the next tokens carry `token_expires_text`.
    pub token_expires_count: u32,
    /// Next N business requests answer `308 Permanent Redirect` to [`Faults::redirect_to`] (a client
    /// that follows it sends its `X-APP-Key`, bearer token and body there).
    pub redirect: u32,
    /// Next N token requests answer `307 Temporary Redirect` to [`Faults::redirect_to`] (a client
    /// that follows it posts the app_key and app_secret there).
    pub token_redirect: u32,
    /// `Location` of injected redirects; `None` is [`DEFAULT_REDIRECT_TO`].
    pub redirect_to: Option<String>,
    /// Next N business answers with HTTP 200 are padded with whitespace to [`Faults::oversized_mib`]
    /// MiB: still valid JSON with the same records, only too big for a careful client.
    pub oversized: u32,
    /// Size of an oversized body in MiB; 0 means [`DEFAULT_OVERSIZED_MIB`].
    pub oversized_mib: u32,
    /// Oversized bodies go chunked, without `Content-Length` (so only counting while reading can
    /// catch them); by default they declare their length.
    pub oversized_chunked: bool,
    /// Next N business requests answer HTTP 200 with a chunked body that never ends: the start of a
    /// page, then whitespace forever.
    pub endless: u32,
    /// Next N business reads of a window that holds records lie about `total` ([`LYING_TOTAL`]); a
    /// page past the real end, or short, is the window's first (full) page again instead.
    pub lying_total: u32,
    /// Random faults on business requests, drawn per request from a seed.
    pub chaos: Option<ChaosConfig>,
}

/// Where injected redirects point by default: a loopback port nothing serves (the discard port).
pub const DEFAULT_REDIRECT_TO: &str = "http://127.0.0.1:9/";
/// Default size of an oversized body, MiB.
pub const DEFAULT_OVERSIZED_MIB: u32 = 16;
/// The `total` of a lying answer.
pub const LYING_TOTAL: u64 = 1_000_000_000_000;

/// Random faults: each business request draws, deterministically from `seed` and the request's
/// number since the config was set, whether it gets a fault (`per_mille` in 1000) and which of
/// `kinds` (uniformly). The ground truth is untouched: faults only change answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChaosConfig {
    /// Seeds the draws; the same seed and request order give the same faults.
    pub seed: u64,
    /// Chance of a fault per business request, in thousandths (0–1000).
    pub per_mille: u32,
    /// The faults to draw from; empty means none.
    pub kinds: Vec<ChaosKind>,
    /// Delay of a [`ChaosKind::Slow`] answer, ms.
    pub slow_ms: u64,
}

/// A fault [`ChaosConfig`] can inject; each acts like the [`Faults`] switch of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChaosKind {
    /// HTTP 500.
    #[serde(rename = "http_500")]
    Http500,
    /// HTTP 429 with `Retry-After: 1`.
    #[serde(rename = "http_429")]
    Http429,
    /// The answer comes `slow_ms` late (on top of [`Faults::delay_ms`]). A client that gives up
    /// first leaves no log entry: the request ends with its connection.
    Slow,
    /// 308 to [`Faults::redirect_to`].
    Redirect,
    /// A 200 answer's body cut in half.
    Truncated,
    /// A 200 answer padded to [`Faults::oversized_mib`] MiB.
    Oversized,
    /// A 200 answer that never ends.
    Endless,
    /// `total` far above the records, full pages repeating.
    LyingTotal,
}

impl ChaosKind {
    /// Every kind.
    pub const ALL: [ChaosKind; 8] = [
        ChaosKind::Http500,
        ChaosKind::Http429,
        ChaosKind::Slow,
        ChaosKind::Redirect,
        ChaosKind::Truncated,
        ChaosKind::Oversized,
        ChaosKind::Endless,
        ChaosKind::LyingTotal,
    ];
}

impl ChaosConfig {
    /// The fault for draw number `n`, if any.
    pub(crate) fn draw(&self, n: u64) -> Option<ChaosKind> {
        if self.kinds.is_empty() {
            return None;
        }
        let x = crate::model::mix(self.seed, n, 0xC4A0);
        if x % 1_000 >= u64::from(self.per_mille) {
            return None;
        }
        let i = usize::try_from((x >> 32) % self.kinds.len() as u64).unwrap_or(0);
        Some(self.kinds[i])
    }
}

/// Consumes one unit of a "next N" counter; `true` when the fault applies to this request.
pub(crate) fn take(counter: &mut u32) -> bool {
    if *counter > 0 {
        *counter -= 1;
        true
    } else {
        false
    }
}

/// Requests to one endpoint answered with one HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCount {
    /// `token`, `query`, `control` or `other`.
    pub endpoint: String,
    /// HTTP status.
    pub status: u16,
    /// Number of requests.
    pub count: u64,
}

/// One business (queryCallDetailRecord) request as received and answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryLogEntry {
    /// When it was answered, epoch ms.
    pub at_ms: i64,
    /// taskType as sent (a number's text for a JSON number); `None` when absent.
    pub task_type: Option<String>,
    /// startTime, when it parsed as an integer.
    pub start: Option<i64>,
    /// endTime, when it parsed as an integer.
    pub end: Option<i64>,
    /// offset as sent, when it parsed as an integer; `None` when absent or not numeric.
    pub offset: Option<i64>,
    /// limit as sent (before defaulting or clamping), when it parsed as an integer.
    pub limit: Option<i64>,
    /// HTTP status.
    pub status: u16,
    /// retCode, for HTTP 200 answers.
    pub ret_code: Option<String>,
    /// Good records in the body (malformed entries not counted).
    pub records: u64,
    /// `total` of a retCode-"0" answer.
    pub total: Option<u64>,
    /// The fault injected into this answer, if any: `http_429`, `http_500`, `malformed`,
    /// `truncated_json`, `shift_pages`, `redirect`, `oversized`, `endless`, `lying_total`, `slow`
    /// (a random one is prefixed `chaos:`, e.g. `chaos:http_500`).
    pub fault: Option<String>,
}

/// What the simulator observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests per endpoint and HTTP status, sorted.
    pub requests: Vec<RequestCount>,
    /// Good records delivered in readable retCode-"0" bodies (truncated bodies not counted).
    pub records_served: u64,
    /// Requests to queryCallDetailRecord.
    pub business_requests: u64,
    /// True while every value of every business request body was a JSON string.
    pub all_values_strings: bool,
    /// Business request bodies with at least one non-string value.
    pub non_string_bodies: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Business requests logged since the start (including those dropped from `log`).
    pub logged_total: u64,
    /// The last [`LOG_CAPACITY`] business requests, oldest first.
    pub log: Vec<QueryLogEntry>,
}

impl Stats {
    /// Requests to `endpoint` answered with `status`.
    pub fn requests_of(&self, endpoint: &str, status: u16) -> u64 {
        self.requests.iter().find(|r| r.endpoint == endpoint && r.status == status).map_or(0, |r| r.count)
    }
}

/// The mutable side of [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct StatsState {
    requests: BTreeMap<(&'static str, u16), u64>,
    records_served: u64,
    business_requests: u64,
    non_string_bodies: u64,
    tokens_issued: u64,
    logged_total: u64,
    log: VecDeque<QueryLogEntry>,
}

impl StatsState {
    pub(crate) fn request(&mut self, endpoint: &'static str, status: u16) {
        *self.requests.entry((endpoint, status)).or_default() += 1;
    }

    pub(crate) fn token_issued(&mut self) {
        self.tokens_issued += 1;
    }

    /// Records one business request; `delivered` is the number of good records the client could
    /// read (0 for a truncated body).
    pub(crate) fn business(&mut self, entry: QueryLogEntry, all_strings: bool, delivered: u64) {
        self.business_requests += 1;
        if !all_strings {
            self.non_string_bodies += 1;
        }
        self.records_served += delivered;
        self.logged_total += 1;
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            requests: self
                .requests
                .iter()
                .map(|(&(endpoint, status), &count)| RequestCount { endpoint: endpoint.to_string(), status, count })
                .collect(),
            records_served: self.records_served,
            business_requests: self.business_requests,
            all_values_strings: self.non_string_bodies == 0,
            non_string_bodies: self.non_string_bodies,
            tokens_issued: self.tokens_issued,
            logged_total: self.logged_total,
            log: self.log.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: i64) -> QueryLogEntry {
        QueryLogEntry {
            at_ms: i,
            task_type: Some("0".into()),
            start: Some(0),
            end: Some(1),
            offset: Some(0),
            limit: Some(100),
            status: 200,
            ret_code: Some("1".into()),
            records: 0,
            total: None,
            fault: None,
        }
    }

    #[test]
    fn log_is_bounded_and_counters_add_up() {
        let mut s = StatsState::default();
        for i in 0..(LOG_CAPACITY as i64 + 5) {
            s.business(entry(i), i != 3, 2);
            s.request("query", 200);
        }
        let snap = s.snapshot();
        assert_eq!(snap.log.len(), LOG_CAPACITY);
        assert_eq!(snap.log[0].at_ms, 5);
        assert_eq!(snap.logged_total, LOG_CAPACITY as u64 + 5);
        assert_eq!(snap.records_served, 2 * (LOG_CAPACITY as u64 + 5));
        assert!(!snap.all_values_strings);
        assert_eq!(snap.non_string_bodies, 1);
        assert_eq!(snap.requests_of("query", 200), LOG_CAPACITY as u64 + 5);
        assert_eq!(snap.requests_of("token", 200), 0);
    }

    #[test]
    fn faults_default_off_and_partial_json() {
        let f: Faults = serde_json::from_str(r#"{"http_500": 2}"#).unwrap();
        assert_eq!(f, Faults { http_500: 2, ..Faults::default() });
        let mut n = 1;
        assert!(take(&mut n));
        assert!(!take(&mut n));
        let f: Faults =
            serde_json::from_str(r#"{"chaos": {"seed": 3, "per_mille": 500, "kinds": ["http_429", "lying_total"]}}"#)
                .unwrap();
        let chaos = f.chaos.unwrap();
        assert_eq!(chaos.kinds, vec![ChaosKind::Http429, ChaosKind::LyingTotal]);
        assert_eq!(chaos.slow_ms, 0);
        let names = serde_json::to_string(&ChaosKind::ALL).unwrap();
        assert_eq!(
            names,
            r#"["http_500","http_429","slow","redirect","truncated","oversized","endless","lying_total"]"#
        );
    }

    #[test]
    fn chaos_draws_are_seeded_and_near_the_probability() {
        let c = ChaosConfig { seed: 7, per_mille: 300, kinds: ChaosKind::ALL.to_vec(), slow_ms: 0 };
        let draws: Vec<_> = (0..10_000).map(|n| c.draw(n)).collect();
        let again: Vec<_> = (0..10_000).map(|n| c.draw(n)).collect();
        assert_eq!(draws, again, "same seed, same faults");
        let faults = draws.iter().flatten().count();
        assert!((2_700..3_300).contains(&faults), "{faults} faults in 10000 draws at 30%");
        for k in ChaosKind::ALL {
            let n = draws.iter().filter(|d| **d == Some(k)).count();
            assert!((250..500).contains(&n), "{k:?} drawn {n} times");
        }
        let other = ChaosConfig { seed: 8, ..c.clone() };
        assert_ne!((0..100).map(|n| other.draw(n)).collect::<Vec<_>>(), draws[..100].to_vec());
        assert!((0..1_000).all(|n| ChaosConfig { per_mille: 0, ..c.clone() }.draw(n).is_none()));
        assert!((0..1_000).all(|n| ChaosConfig { per_mille: 1_000, ..c.clone() }.draw(n).is_some()));
        assert!((0..1_000).all(|n| ChaosConfig { kinds: vec![], ..c.clone() }.draw(n).is_none()));
    }
}
