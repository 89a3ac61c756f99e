//! The exporter's own health: poll results, API requests and errors, rejected records, token refreshes.
//! Updated live by the client and the poller (each runtime failure is counted here and logged where it
//! happens), read by the renderer and the landing page. Not persisted: these restart with the process,
//! as exporters' own counters do.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::cec::wire::{Field, RejectReason};

/// The `endpoint` label of API metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Token,
    QueryCallDetailRecord,
}

impl Endpoint {
    pub const ALL: [Endpoint; 2] = [Endpoint::Token, Endpoint::QueryCallDetailRecord];

    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Token => "token_by_ak_sk",
            Endpoint::QueryCallDetailRecord => "query_call_detail_record",
        }
    }
}

/// The `error` label of `cec_exporter_api_errors_total`: why an API exchange failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// No answer within the request timeout.
    Timeout,
    /// Connection refused or reset, DNS, TLS.
    Transport,
    /// HTTP 401/403: bad credentials, token rejected twice, source IP not allowed.
    Unauthorized,
    /// HTTP 429.
    RateLimited,
    /// HTTP 5xx.
    ServerError,
    /// Another unexpected HTTP status (400, 404, …).
    HttpStatus,
    /// The body is not the documented JSON.
    Decode,
    /// `retCode` other than "0" and "1".
    RetCode,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Timeout,
        ErrorKind::Transport,
        ErrorKind::Unauthorized,
        ErrorKind::RateLimited,
        ErrorKind::ServerError,
        ErrorKind::HttpStatus,
        ErrorKind::Decode,
        ErrorKind::RetCode,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Transport => "transport",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::ServerError => "server_error",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::Decode => "decode",
            ErrorKind::RetCode => "ret_code",
        }
    }
}

/// Everything the exporter reports about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TelemetryData {
    /// Whether the last poll succeeded (`cec_up`).
    pub up: bool,
    /// A poll has succeeded since start (`/-/ready`).
    pub ready: bool,
    pub last_success_ms: Option<i64>,
    /// Duration of the last poll, seconds.
    pub last_poll_seconds: f64,
    pub polls: u64,
    pub poll_failures: u64,
    /// `(endpoint, HTTP status)` → requests; status 0 means no HTTP answer.
    pub api_requests: BTreeMap<(Endpoint, u16), u64>,
    pub api_errors: BTreeMap<(Endpoint, ErrorKind), u64>,
    pub records_fetched: u64,
    pub records_rejected: BTreeMap<RejectReason, u64>,
    /// Optional fields dropped as unusable from records that still counted.
    pub fields_invalid: BTreeMap<Field, u64>,
    pub token_refreshes: u64,
    pub open_calls_abandoned: u64,
    /// Calls first seen after the poll whose window should have shown them (see `PollSummary::late`).
    pub late_records: u64,
    /// The largest lateness seen since start, seconds.
    pub max_lateness_seconds: f64,
    /// Polls committed to the state store, and commits that failed (the poll was undone).
    pub state_commits: u64,
    pub state_commit_failures: u64,
    /// The state store's size after the last commit, bytes.
    pub state_bytes: Option<u64>,
    /// Outage time beyond `--poll.max-catchup` that was skipped, seconds.
    pub catchup_skipped_seconds: f64,
    /// Settled windows whose pages still did not cover CEC's answer after three reads.
    pub incomplete_reads: u64,
    /// API requests the last successful poll made.
    pub last_poll_requests: u64,
    /// One line about the last failure, for the landing page (never contains a secret).
    pub last_error: Option<String>,
}

/// Shared, lock-protected telemetry. Critical sections are a few increments.
#[derive(Debug, Default)]
pub struct Telemetry(Mutex<TelemetryData>);

impl Telemetry {
    /// Runs `f` on the data under the lock.
    pub fn update<R>(&self, f: impl FnOnce(&mut TelemetryData) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn snapshot(&self) -> TelemetryData {
        self.update(|d| d.clone())
    }

    pub fn request(&self, endpoint: Endpoint, status: u16) {
        self.update(|d| *d.api_requests.entry((endpoint, status)).or_default() += 1);
    }

    pub fn error(&self, endpoint: Endpoint, kind: ErrorKind) {
        self.update(|d| *d.api_errors.entry((endpoint, kind)).or_default() += 1);
    }
}
