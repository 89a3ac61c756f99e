//! The exporter's own health: poll results, API requests and errors, rejected records, token refreshes.
//! Plain data behind a lock: only the internal events of [`crate::events`] move it (each runtime
//! failure is one event: one log line and its counters, in one place); the renderer and the landing page
//! read snapshots. Not persisted: these restart with the process, as exporters' own counters do.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::cec::wire::{Field, RejectReason};

use crate::cec::{Endpoint, ErrorKind};

/// Everything the exporter reports about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TelemetryData {
    /// Whether the last poll succeeded (`cec_up`, unless a poll is overdue: see `overdue_after_ms`).
    pub up: bool,
    /// How long after the last success a poll is overdue (interval plus `--poll.deadline`), ms: past
    /// it `cec_up` reads 0 at scrape time, whatever `up` says, so a wedged poll shows as down.
    pub overdue_after_ms: Option<i64>,
    /// `--poll.lookback` in seconds (`cec_exporter_lookback_seconds`), set when the poller starts.
    pub lookback_seconds: Option<f64>,
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
    /// Open calls given up, for either reason (too old, or beyond `--poll.max-open-calls`).
    pub open_calls_abandoned: u64,
    /// Of those, the ones given up because more than `--poll.max-open-calls` were open.
    pub open_calls_evicted: u64,
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
    /// History a catch-up still has to read, seconds (`cec_exporter_catchup_remaining_seconds`); 0
    /// when caught up.
    pub catchup_remaining_seconds: f64,
    /// Settled windows whose pages still did not cover CEC's answer after three reads.
    pub incomplete_reads: u64,
    /// API requests the last successful poll made.
    pub last_poll_requests: u64,
    /// What kind of failure the last poll was and when, for the landing page: typed, so no text the
    /// gateway sent can reach the page (the full message is in the failure's log line).
    pub last_failure: Option<LastFailure>,
    /// Failed accepts of the web server (`cec_exporter_http_accept_errors_total`).
    pub accept_errors: u64,
    /// Re-reads of `--web.config.file` that put a changed file in force, and those that found a changed
    /// file unusable (`cec_exporter_web_config_reloads_total{result}`).
    pub web_config_reloads: u64,
    pub web_config_reload_failures: u64,
    /// The last re-read of `--web.config.file` found it unusable (the gauge reads 0 while this holds).
    /// Stored inverted so that the default, with no file or no failure, is "successful".
    pub web_config_last_reload_failed: bool,
    /// Re-reads of `--config.file` put in force, and those refused or with a tenant that could not start
    /// (`cec_exporter_config_reloads_total{result}`).
    pub config_reloads: u64,
    pub config_reload_failures: u64,
    /// The last re-read of `--config.file` failed (the gauge reads 0 while this holds).
    pub config_last_reload_failed: bool,
}

/// The last failed poll, as the landing page shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LastFailure {
    pub kind: FailureKind,
    /// When the poll failed, epoch ms.
    pub at_ms: i64,
}

/// What made a poll fail, from a fixed set: never carries text from the gateway or a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// An exchange with the CEC API failed.
    Api(Endpoint, ErrorKind),
    /// The state store refused the commit.
    Store,
    /// The reads took longer than `--poll.deadline`.
    Deadline,
    /// The reads brought more new calls than one poll takes on.
    TooManyCalls,
}

impl std::fmt::Display for FailureKind {
    /// Label values only: `query_call_detail_record ret_code`, `state_store`, `deadline`, `too_many_calls`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureKind::Api(endpoint, kind) => write!(f, "{} {}", endpoint.label(), kind.label()),
            FailureKind::Store => f.write_str("state_store"),
            FailureKind::Deadline => f.write_str("deadline"),
            FailureKind::TooManyCalls => f.write_str("too_many_calls"),
        }
    }
}

/// Kinds of per-record warning whose lines are limited per poll ([`RECORD_LINES_PER_POLL`]): the gateway
/// decides how many records are bad, and one line each made 560 MB of log in 20 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordLine {
    /// A record skipped as unusable (`RecordRejected`).
    Rejected,
    /// A record with unusable optional fields (`FieldInvalid`).
    FieldInvalid,
}

impl RecordLine {
    pub const ALL: [RecordLine; 2] = [RecordLine::Rejected, RecordLine::FieldInvalid];
}

/// Per-record warning lines of each [`RecordLine`] kind a poll writes; further records of that kind are
/// counted but not logged, and one summary line at the poll's end says how many.
pub const RECORD_LINES_PER_POLL: u64 = 5;

/// Shared, lock-protected telemetry. Critical sections are a few increments.
#[derive(Debug, Default)]
pub struct Telemetry {
    data: Mutex<TelemetryData>,
    /// Records of each [`RecordLine`] kind warned about in the current poll (logged or not). Kept apart
    /// from [`TelemetryData`]: it is log bookkeeping, not a metric.
    record_lines: Mutex<[u64; 2]>,
}

impl Telemetry {
    /// Runs `f` on the data under the lock.
    pub fn update<R>(&self, f: impl FnOnce(&mut TelemetryData) -> R) -> R {
        f(&mut self.data.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Notes one more record of `kind` this poll; whether its line is still within
    /// [`RECORD_LINES_PER_POLL`].
    pub fn record_line(&self, kind: RecordLine) -> bool {
        let mut seen = self.record_lines.lock().unwrap_or_else(|p| p.into_inner());
        seen[kind as usize] += 1;
        seen[kind as usize] <= RECORD_LINES_PER_POLL
    }

    /// The records of each kind noted since the last call, in [`RecordLine::ALL`] order; starts the
    /// next poll's allowance.
    pub fn take_record_lines(&self) -> [u64; 2] {
        std::mem::take(&mut *self.record_lines.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn snapshot(&self) -> TelemetryData {
        self.update(|d| d.clone())
    }
}
