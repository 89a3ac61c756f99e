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
    /// `truncated_json`.
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
    }
}
