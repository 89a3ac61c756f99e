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
}
