//! Typed internal events, as Vector structures its own: every runtime happening worth a log line or a
//! counter is one struct here, carrying the context it needs, and its [`InternalEvent::emit`] writes its
//! one log line and moves its counters in [`Telemetry`], in one place. Callers (the poller, the run loop,
//! and the client through [`ApiObserver`]) only build events and emit them; nothing else logs a failure
//! or moves a counter, so a counter and the line explaining it cannot drift apart.
//!
//! A new runtime failure gets a struct here, an `emit` (one line, its counters), a test below asserting
//! both, and one `.emit(&telemetry)` where it happens. No field ever holds a secret: errors' `Display`
//! omits them, and phone numbers never get this far.
//!
//! This module sits between the emitters and the telemetry: it reads the vendor API's types and the
//! ledger's poll summary, and writes only [`Telemetry`].

use std::fmt;
use std::time::Duration;

use crate::cec::client::{Skipped, WindowRead};
use crate::cec::record::TaskQuery;
use crate::cec::window::Window;
use crate::cec::wire::{Field, ParsedRecord, RejectReason, Rejection};
use crate::cec::{ApiError, ApiObserver, Endpoint, Retry};
use crate::ingest::ledger::PollSummary;
use crate::ingest::plan::CatchupProgress;
use crate::ingest::poller::PollError;
use crate::metrics::telemetry::{FailureKind, LastFailure, RecordLine, Telemetry, RECORD_LINES_PER_POLL};

/// An internal event: one log line and its counters.
pub trait InternalEvent {
    /// Writes the event's log line and moves its counters.
    fn emit(&self, telemetry: &Telemetry);
}

/// The exporter's side of the client: every exchange the client reports becomes an event.
impl ApiObserver for Telemetry {
    fn request(&self, endpoint: Endpoint, status: Option<u16>) {
        ApiRequest { endpoint, status }.emit(self);
    }

    fn error(&self, error: &ApiError, retry: Option<Retry>) {
        ApiFailed { error, retry }.emit(self);
    }

    fn token_refreshed(&self, lifetime: Duration, after_401: bool) {
        TokenRefreshed { lifetime, after_401 }.emit(self);
    }

    fn page(&self, query: TaskQuery, offset: u64, entries: &[Result<ParsedRecord, Rejection>]) {
        PageParsed { query, offset, entries }.emit(self);
        // Unusable fields are reported by the poller ([`FieldInvalid`]), once the record's start is known
        // to lie in the window read: a record rejected for its start is not also flagged for its fields.
        for rejection in entries.iter().filter_map(|e| e.as_ref().err()) {
            let skipped = Skipped { rejection: rejection.clone(), page_offset: offset };
            RecordRejected { query, skipped: &skipped }.emit(self);
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One HTTP exchange with CEC ended. Counts `cec_exporter_api_requests_total{endpoint, code}` (code 0:
/// no HTTP answer); a trace line.
#[derive(Clone, Copy, Debug)]
pub struct ApiRequest {
    pub endpoint: Endpoint,
    /// `None` when no answer came (timeout, transport failure).
    pub status: Option<u16>,
}

impl InternalEvent for ApiRequest {
    fn emit(&self, t: &Telemetry) {
        let status = self.status.unwrap_or(0);
        tracing::trace!(endpoint = self.endpoint.label(), status, "API request");
        let code = code_of(self.status);
        t.update(|d| *d.api_requests.entry((self.endpoint, code)).or_default() += 1);
    }
}

/// What `cec_exporter_api_requests_total{code}` counts a status under: [`CODE_NONE`] without an answer,
/// the status itself when it is a registered HTTP status, else [`CODE_OTHER`]. The gateway picks the
/// status, and 900 made-up ones would be 900 series.
pub fn code_of(status: Option<u16>) -> u16 {
    match status {
        None => CODE_NONE,
        Some(s) if reqwest::StatusCode::from_u16(s).is_ok_and(|c| c.canonical_reason().is_some()) => s,
        Some(_) => CODE_OTHER,
    }
}

/// The `code` of a request that got no HTTP answer (`code="none"`).
pub const CODE_NONE: u16 = 0;
/// The `code` of an unregistered HTTP status (`code="other"`).
pub const CODE_OTHER: u16 = 1;

/// An API exchange failed. Counts `cec_exporter_api_errors_total{endpoint, error}`. A failure the
/// client retries is logged at info ("retrying request"); one that ends the read only at debug, because
/// the poll it fails logs it at warn ([`PollFailed`]): one visible line per failure.
#[derive(Clone, Copy, Debug)]
pub struct ApiFailed<'a> {
    pub error: &'a ApiError,
    pub retry: Option<Retry>,
}

impl InternalEvent for ApiFailed<'_> {
    fn emit(&self, t: &Telemetry) {
        let e = self.error;
        match self.retry {
            Some(r) => tracing::info!(error = %e, attempt = r.attempt, wait_ms = ms(r.wait), "retrying request"),
            None => tracing::debug!(error = %e, retryable = e.retryable(), "API request failed; the read fails"),
        }
        t.update(|d| *d.api_errors.entry((e.endpoint(), e.kind())).or_default() += 1);
    }
}

/// A new token was fetched. Counts `cec_exporter_token_refreshes_total`. A renewal ahead of expiry is
/// routine (debug); one forced by a 401 means the token was revoked or expired early (info).
#[derive(Clone, Copy, Debug)]
pub struct TokenRefreshed {
    pub lifetime: Duration,
    pub after_401: bool,
}

impl InternalEvent for TokenRefreshed {
    fn emit(&self, t: &Telemetry) {
        let lifetime_s = self.lifetime.as_secs();
        if self.after_401 {
            tracing::info!(lifetime_s, "queryCallDetailRecord answered 401: fetched a new token");
        } else {
            tracing::debug!(lifetime_s, "fetched a new token");
        }
        t.update(|d| d.token_refreshes += 1);
    }
}

/// A page of a read arrived and was parsed (reported by the client as it arrives, so a read that fails
/// on a later page still counts what it was served). Counts `cec_exporter_records_fetched_total` by
/// every entry on the page, rejected ones too; a trace line.
#[derive(Clone, Copy, Debug)]
pub struct PageParsed<'a> {
    pub query: TaskQuery,
    /// The page's `offset` in the read.
    pub offset: u64,
    pub entries: &'a [Result<ParsedRecord, Rejection>],
}

impl InternalEvent for PageParsed<'_> {
    fn emit(&self, t: &Telemetry) {
        let rejected = self.entries.iter().filter(|e| e.is_err()).count();
        tracing::trace!(
            task_query = %self.query,
            offset = self.offset,
            entries = self.entries.len(),
            rejected,
            "page parsed"
        );
        t.update(|d| d.records_fetched += self.entries.len() as u64);
    }
}

/// Every page of one read arrived (its entries were counted page by page, [`PageParsed`]); a trace line
/// with what the read cost and whether its pages covered CEC's answer.
#[derive(Clone, Copy, Debug)]
pub struct WindowFetched<'a> {
    pub query: TaskQuery,
    pub window: Window,
    pub read: &'a WindowRead,
}

impl InternalEvent for WindowFetched<'_> {
    fn emit(&self, _: &Telemetry) {
        let r = self.read;
        tracing::trace!(
            task_query = %self.query,
            start_ms = self.window.start_ms,
            end_ms = self.window.end_ms,
            records = r.served,
            rejected = r.rejected.len(),
            requests = r.requests,
            complete = r.complete(),
            "window read"
        );
    }
}

/// A `callInfo` entry without identity or state was skipped. Counts
/// `cec_exporter_records_rejected_total{reason}`; a warning naming the field and, when readable, the
/// serial number (a log field, never a label), for the first [`RECORD_LINES_PER_POLL`] of a poll only
/// (the rest are summed up by [`RecordLinesSuppressed`]).
#[derive(Clone, Copy, Debug)]
pub struct RecordRejected<'a> {
    pub query: TaskQuery,
    pub skipped: &'a Skipped,
}

impl InternalEvent for RecordRejected<'_> {
    fn emit(&self, t: &Telemetry) {
        let rej = &self.skipped.rejection;
        t.update(|d| *d.records_rejected.entry(rej.reason).or_default() += 1);
        if !t.record_line(RecordLine::Rejected) {
            return;
        }
        tracing::warn!(
            reason = rej.reason.label(),
            field = rej.field.unwrap_or(""),
            call_serial_no = %rej.serial.map(|s| s.to_string()).unwrap_or_default(),
            task_query = %self.query,
            offset = self.skipped.page_offset,
            "record rejected"
        );
    }
}

/// A record of a committed poll, whose start lies in the window that returned it, had optional fields
/// whose values were unusable (read as absent). Counts `cec_exporter_record_fields_invalid_total{field}`
/// once per field; one warning per record for the first [`RECORD_LINES_PER_POLL`] of a poll (the rest
/// are summed up by [`RecordLinesSuppressed`]). Emitted by the poller, not the page parser, so a record
/// rejected as `start_out_of_window` is not also flagged for its fields.
#[derive(Clone, Copy, Debug)]
pub struct FieldInvalid<'a> {
    pub query: TaskQuery,
    pub record: &'a ParsedRecord,
}

impl InternalEvent for FieldInvalid<'_> {
    fn emit(&self, t: &Telemetry) {
        let invalid = self.record.invalid;
        t.update(|d| {
            for f in invalid.iter() {
                *d.fields_invalid.entry(f).or_default() += 1;
            }
        });
        if !t.record_line(RecordLine::FieldInvalid) {
            return;
        }
        let fields: Vec<&str> = invalid.iter().map(|f| f.name()).collect();
        tracing::warn!(
            fields = %fields.join(","),
            call_serial_no = %self.record.id,
            task_query = %self.query,
            "record field unusable; read as absent, the call still counts"
        );
    }
}

/// A poll ended having warned about more records of one kind than [`RECORD_LINES_PER_POLL`]: one warning
/// saying how many more there were (they were all counted). No counter of its own.
#[derive(Clone, Copy, Debug)]
pub struct RecordLinesSuppressed {
    pub kind: RecordLine,
    /// Records of that kind this poll beyond those logged.
    pub more: u64,
}

impl RecordLinesSuppressed {
    /// Ends the current poll's allowance of record lines ([`Telemetry::take_record_lines`]), emitting
    /// one summary per kind that went past it.
    pub fn close_poll(t: &Telemetry) {
        let seen = t.take_record_lines();
        for (kind, n) in RecordLine::ALL.into_iter().zip(seen) {
            if n > RECORD_LINES_PER_POLL {
                RecordLinesSuppressed { kind, more: n - RECORD_LINES_PER_POLL }.emit(t);
            }
        }
    }
}

impl InternalEvent for RecordLinesSuppressed {
    fn emit(&self, _: &Telemetry) {
        let more = self.more;
        match self.kind {
            RecordLine::Rejected => {
                tracing::warn!(more, "more records rejected this poll; see cec_exporter_records_rejected_total")
            }
            RecordLine::FieldInvalid => tracing::warn!(
                more,
                "more records with unusable fields this poll; see cec_exporter_record_fields_invalid_total"
            ),
        }
    }
}

/// The settled part of a window still did not cover CEC's answer after three reads: calls may be
/// missed. Counts `cec_exporter_incomplete_reads_total`; a warning saying why the last read fell short.
#[derive(Clone, Copy, Debug)]
pub struct IncompleteRead {
    pub query: TaskQuery,
    pub window: Window,
    /// Why the last of the reads was incomplete.
    pub reason: crate::cec::client::Incomplete,
}

impl InternalEvent for IncompleteRead {
    fn emit(&self, t: &Telemetry) {
        tracing::warn!(
            task_query = %self.query,
            start_ms = self.window.start_ms,
            end_ms = self.window.end_ms,
            reason = self.reason.describe(),
            "CEC's answer could not be read completely; calls of this window may be missed"
        );
        t.update(|d| d.incomplete_reads += 1);
    }
}

/// A poll was committed to the state store. Counts `cec_exporter_state_commits_total` and sets the
/// store's size; a trace line (at debug a poll is one line, [`PollCommitted`]).
#[derive(Clone, Copy, Debug)]
pub struct StateCommitted {
    /// The store's size after the commit, when known.
    pub bytes: Option<u64>,
}

impl InternalEvent for StateCommitted {
    fn emit(&self, t: &Telemetry) {
        tracing::trace!(bytes = self.bytes, "state committed");
        t.update(|d| {
            d.state_commits += 1;
            d.state_bytes = self.bytes;
        });
    }
}

/// Committing a poll failed; the poll was undone. Counts `cec_exporter_state_commit_failures_total`. The
/// line is debug: the failed poll's warning ([`PollFailed`]) carries the store's error.
#[derive(Clone, Copy)]
pub struct StateCommitFailed<'a> {
    pub error: &'a dyn fmt::Display,
}

impl InternalEvent for StateCommitFailed<'_> {
    fn emit(&self, t: &Telemetry) {
        tracing::debug!(error = %self.error, "state commit failed; the poll is undone");
        t.update(|d| d.state_commit_failures += 1);
    }
}

/// One more main window of a catch-up (an outage or a backfill longer than a window) committed. Sets
/// `cec_exporter_catchup_remaining_seconds` to the history still to read (0 with the window that
/// reaches now); one info line per window: which of how many, its range, the records read so far and
/// their rate, and the time left at the pace so far.
#[derive(Clone, Copy, Debug)]
pub struct CatchingUp {
    pub progress: CatchupProgress,
}

impl InternalEvent for CatchingUp {
    fn emit(&self, t: &Telemetry) {
        let p = &self.progress;
        let remaining_s = p.remaining_ms as f64 / 1000.0;
        t.update(|d| d.catchup_remaining_seconds = remaining_s);
        tracing::info!(
            window = p.window,
            windows = p.windows,
            from = %crate::logging::rfc3339_ms(p.main.start_ms),
            to = %crate::logging::rfc3339_ms(p.main.end_ms),
            records = p.records,
            records_per_s = p.records_per_second.round() as u64,
            remaining_s,
            eta = %humantime::format_duration(Duration::from_secs(p.eta.as_secs())),
            "catching up"
        );
    }
}

/// An outage longer than `--poll.max-catchup`: the stretch `[from_ms, to_ms)` was skipped with a
/// committed poll. Adds to `cec_exporter_catchup_skipped_seconds_total`; a warning.
#[derive(Clone, Copy, Debug)]
pub struct CatchupSkipped {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl InternalEvent for CatchupSkipped {
    fn emit(&self, t: &Telemetry) {
        let secs = (self.to_ms - self.from_ms) as f64 / 1000.0;
        tracing::warn!(
            from = %crate::logging::rfc3339_ms(self.from_ms),
            to = %crate::logging::rfc3339_ms(self.to_ms),
            skipped_s = secs,
            "the outage is longer than --poll.max-catchup: calls that started in this stretch are not counted"
        );
        t.update(|d| d.catchup_skipped_seconds += secs);
    }
}

/// A poll committed. Sets `cec_up` and readiness, counts `cec_exporter_polls_total`, records the poll's
/// duration, time and requests, and clears the last error. One line: info for the first poll since
/// start ("ready") and for the first after failures ("recovered"), debug otherwise.
#[derive(Clone, Copy, Debug)]
pub struct PollCommitted {
    pub summary: PollSummary,
    pub main: Window,
    pub reads: usize,
    pub requests: u64,
    pub elapsed: Duration,
    /// When it committed, epoch ms.
    pub at_ms: i64,
    /// Consecutive failed polls before this one.
    pub after_failures: u32,
}

impl InternalEvent for PollCommitted {
    fn emit(&self, t: &Telemetry) {
        let s = &self.summary;
        let first = t.update(|d| {
            let first = !d.ready;
            d.up = true;
            d.ready = true;
            d.polls += 1;
            d.last_poll_seconds = self.elapsed.as_secs_f64();
            d.last_success_ms = Some(self.at_ms);
            d.last_poll_requests = self.requests;
            d.last_failure = None;
            first
        });
        if self.after_failures > 0 {
            tracing::info!(after_failures = self.after_failures, requests = self.requests, "polling recovered");
        } else if first {
            tracing::info!(
                requests = self.requests,
                counted = s.counted,
                in_progress = s.tracked,
                "first poll committed; ready"
            );
        } else {
            tracing::debug!(
                window_start_ms = self.main.start_ms,
                window_end_ms = self.main.end_ms,
                reads = self.reads,
                requests = self.requests,
                counted = s.counted,
                tracked = s.tracked,
                already_counted = s.already_counted,
                before_floor = s.before_floor,
                late = s.late,
                duration_ms = ms(self.elapsed),
                "poll committed"
            );
        }
    }
}

/// A poll gave up open calls CEC never showed ended. Counts `cec_exporter_open_calls_abandoned_total`
/// by `count`; a warning.
#[derive(Clone, Copy, Debug)]
pub struct OpenCallsAbandoned {
    pub count: u64,
}

impl InternalEvent for OpenCallsAbandoned {
    fn emit(&self, t: &Telemetry) {
        tracing::warn!(abandoned = self.count, "gave up open calls CEC never showed ended");
        t.update(|d| d.open_calls_abandoned += self.count);
    }
}

/// A poll (or a restore) gave up the oldest open calls because more than `--poll.max-open-calls` were
/// open. Counts `cec_exporter_open_calls_abandoned_total` (they are given up like calls past
/// `--poll.max-call-duration`) and `cec_exporter_open_calls_evicted_total` by `count`; one warning per
/// poll, however many calls.
#[derive(Clone, Copy, Debug)]
pub struct OpenCallsEvicted {
    pub count: u64,
    /// `--poll.max-open-calls`.
    pub cap: usize,
}

impl InternalEvent for OpenCallsEvicted {
    fn emit(&self, t: &Telemetry) {
        tracing::warn!(
            evicted = self.count,
            max_open_calls = self.cap,
            "gave up the oldest open calls: more calls open than --poll.max-open-calls; they are not counted unless seen ended later"
        );
        t.update(|d| {
            d.open_calls_abandoned += self.count;
            d.open_calls_evicted += self.count;
        });
    }
}

/// A poll counted calls CEC returned late. Counts `cec_exporter_late_records_total` by `count` and
/// raises the largest lateness seen. Warns when the lateness used over half of `--poll.lookback` (later
/// records would be missed); otherwise a debug line.
#[derive(Clone, Copy, Debug)]
pub struct LateRecords {
    pub count: u64,
    pub max_lateness_ms: i64,
    pub lookback_ms: i64,
}

impl InternalEvent for LateRecords {
    fn emit(&self, t: &Telemetry) {
        let (late, max_lateness_ms, lookback_ms) = (self.count, self.max_lateness_ms, self.lookback_ms);
        if max_lateness_ms.saturating_mul(2) > lookback_ms {
            tracing::warn!(
                late,
                max_lateness_ms,
                lookback_ms,
                "CEC returned records late by over half of --poll.lookback; later ones would be missed: raise it"
            );
        } else {
            tracing::debug!(late, max_lateness_ms, lookback_ms, "counted records CEC returned late");
        }
        t.update(|d| {
            d.late_records += late;
            d.max_lateness_seconds = d.max_lateness_seconds.max(max_lateness_ms as f64 / 1000.0);
        });
    }
}

/// A committed poll skipped records whose `startTime` lay outside the window read by more than
/// `--poll.lookback` (a gateway answering another question, or a start in the year 2200). Counts
/// `cec_exporter_records_rejected_total{reason="start_out_of_window"}` by `count`; one warning.
#[derive(Clone, Copy, Debug)]
pub struct RecordsOutOfWindow {
    pub count: u64,
    pub lookback_ms: i64,
}

impl InternalEvent for RecordsOutOfWindow {
    fn emit(&self, t: &Telemetry) {
        let (count, lookback_ms) = (self.count, self.lookback_ms);
        tracing::warn!(
            count,
            lookback_ms,
            reason = RejectReason::StartOutOfWindow.label(),
            "records rejected: their startTime lies outside the window read by more than --poll.lookback"
        );
        t.update(|d| *d.records_rejected.entry(RejectReason::StartOutOfWindow).or_default() += count);
    }
}

/// A committed poll counted calls whose talk time was longer than `--poll.max-call-duration`; that time
/// was read as absent. Counts `cec_exporter_record_fields_invalid_total{field}` for `talkDuration` and
/// `agentTalkDuration` by their counts; one warning.
#[derive(Clone, Copy, Debug)]
pub struct DurationsTooLong {
    pub talk: u64,
    pub agent_talk: u64,
    pub max_call_ms: i64,
}

impl InternalEvent for DurationsTooLong {
    fn emit(&self, t: &Telemetry) {
        let (talk, agent_talk, max_call_ms) = (self.talk, self.agent_talk, self.max_call_ms);
        tracing::warn!(
            talk_duration = talk,
            agent_talk_duration = agent_talk,
            max_call_ms,
            "counted calls whose talk time is longer than --poll.max-call-duration; that time was read as absent"
        );
        t.update(|d| {
            for (field, n) in [(Field::TalkDuration, talk), (Field::AgentTalkDuration, agent_talk)] {
                if n > 0 {
                    *d.fields_invalid.entry(field).or_default() += n;
                }
            }
        });
    }
}

/// After a failed commit, the state was read back from the store so that memory holds exactly what the
/// file does (the failed transaction may or may not have reached the disk). One info line; no counter
/// (the failure itself was counted by [`StateCommitFailed`]).
#[derive(Clone, Copy, Debug)]
pub struct StateReloaded {
    /// Calls counted in the state read back.
    pub calls: u64,
    /// Whether the failed poll turned out to be in the file.
    pub poll_was_durable: bool,
}

impl InternalEvent for StateReloaded {
    fn emit(&self, _: &Telemetry) {
        let (calls, poll_was_durable) = (self.calls, self.poll_was_durable);
        tracing::info!(calls, poll_was_durable, "read the state back from the store after a failed commit");
    }
}

/// After a failed commit, the state could not be read back from the store: the poll goes on and its
/// commit replaces the whole file. One debug line (the commit that follows, if it fails too, is the
/// failure worth a warning); no counter.
#[derive(Clone, Copy, Debug)]
pub struct StateReloadFailed<'a> {
    pub error: &'a crate::store::StoreError,
}

impl InternalEvent for StateReloadFailed<'_> {
    fn emit(&self, _: &Telemetry) {
        tracing::debug!(error = %self.error, "cannot read the state back after a failed commit; the next commit rewrites it whole");
    }
}

/// A poll failed and left no trace. Sets `cec_up` to 0, counts `cec_exporter_polls_total` and
/// `cec_exporter_poll_failures_total`, records the duration and, for the landing page, the failure's
/// kind and time only (never its text, which may quote the gateway); one warning with the error, which
/// names what failed (never a secret, and bounded where it is made).
#[derive(Clone, Copy)]
pub struct PollFailed<'a> {
    pub error: &'a PollError,
    pub retryable: bool,
    pub elapsed: Duration,
    pub consecutive_failures: u32,
    pub retry_in: Duration,
    /// When it failed, epoch ms.
    pub at_ms: i64,
}

/// The fixed-set kind of a poll's failure.
fn failure_kind(e: &PollError) -> FailureKind {
    match e {
        PollError::Api(e) => FailureKind::Api(e.endpoint(), e.kind()),
        PollError::Store(_) => FailureKind::Store,
        PollError::Deadline(_) => FailureKind::Deadline,
        PollError::TooManyCalls(_) => FailureKind::TooManyCalls,
    }
}

impl InternalEvent for PollFailed<'_> {
    fn emit(&self, t: &Telemetry) {
        tracing::warn!(
            error = %self.error,
            retryable = self.retryable,
            consecutive_failures = self.consecutive_failures,
            retry_in_ms = ms(self.retry_in),
            "poll failed; nothing committed"
        );
        t.update(|d| {
            d.up = false;
            d.polls += 1;
            d.poll_failures += 1;
            d.last_poll_seconds = self.elapsed.as_secs_f64();
            d.last_failure = Some(LastFailure { kind: failure_kind(self.error), at_ms: self.at_ms });
        });
    }
}

/// A committed poll counted `calls` calls under `reason_code="other"`: their codes are in no known table
/// and `cap` other codes of their task type already have a series. At most one line per poll: a warning
/// the first time since start, info after (it repeats while CEC keeps sending such codes). The counter,
/// `cec_exporter_reason_codes_folded_total`, is read from the aggregates (it persists with them).
#[derive(Clone, Copy, Debug)]
pub struct ReasonCodesFolded {
    pub calls: u64,
    pub cap: usize,
    pub first: bool,
}

impl InternalEvent for ReasonCodesFolded {
    fn emit(&self, _: &Telemetry) {
        let msg = "calls with reason codes beyond --metrics.max-unknown-reason-codes were counted under \
                   reason_code=\"other\"";
        if self.first {
            tracing::warn!(calls = self.calls, cap = self.cap, "{msg}");
        } else {
            tracing::info!(calls = self.calls, cap = self.cap, "{msg}");
        }
    }
}

/// At start, the restored state had more codes outside the known tables than the cap (the flag was
/// lowered): `codes` of them now count under `reason_code="other"`. A warning; no counter of its own (their
/// calls moved into the `other` series, hence into `cec_exporter_reason_codes_folded_total`).
#[derive(Clone, Copy, Debug)]
pub struct ReasonCodesRefolded {
    pub codes: usize,
    pub cap: usize,
}

impl InternalEvent for ReasonCodesRefolded {
    fn emit(&self, _: &Telemetry) {
        tracing::warn!(
            codes = self.codes,
            cap = self.cap,
            "the restored state has more unknown reason codes than --metrics.max-unknown-reason-codes: their \
             calls now count under reason_code=\"other\""
        );
    }
}

/// The poller ended without being told to (it panicked): the process exits so its supervisor restarts
/// it. An error line; no counter (the process is about to end).
#[derive(Clone, Copy, Debug)]
pub struct PollerStopped {
    pub why: &'static str,
}

impl InternalEvent for PollerStopped {
    fn emit(&self, _: &Telemetry) {
        tracing::error!("the poller stopped: {}; exiting", self.why);
    }
}

/// Accepting a connection failed (typically: out of file descriptors). Emitted for every failed accept:
/// counts `cec_exporter_http_accept_errors_total`; the line is a warning at most once a second (the
/// server decides, [`AcceptFailed::warn_for`]) and debug otherwise, so a failure repeating as fast as
/// the accept loop turns cannot flood the log while the counter still sees each one.
#[derive(Clone, Copy, Debug)]
pub struct AcceptFailed<'a> {
    pub error: &'a std::io::Error,
    /// `Some(n)`: this failure writes the warning, standing for `n` failed accepts (this one and those
    /// only logged at debug since the last warning); `None`: a debug line.
    pub warn_for: Option<u64>,
}

impl InternalEvent for AcceptFailed<'_> {
    fn emit(&self, t: &Telemetry) {
        t.update(|d| d.accept_errors += 1);
        match self.warn_for {
            Some(failures) => tracing::warn!(error = %self.error, failures, "accepting connections failed"),
            None => tracing::debug!(error = %self.error, "accepting a connection failed"),
        }
    }
}

/// The `--web.config.file` was re-read and is in force for new connections and requests: it changed,
/// or it is usable again after a failed re-read. Counts `cec_exporter_web_config_reloads_total{result="success"}`
/// and sets `cec_exporter_web_config_last_reload_successful` to 1. An info line.
#[derive(Clone, Copy, Debug)]
pub struct WebConfigReloaded<'a> {
    pub path: &'a std::path::Path,
}

impl InternalEvent for WebConfigReloaded<'_> {
    fn emit(&self, t: &Telemetry) {
        t.update(|d| {
            d.web_config_reloads += 1;
            d.web_config_last_reload_failed = false;
        });
        tracing::info!(path = %self.path.display(), "web configuration reloaded");
    }
}

/// The `--web.config.file` changed but cannot be used; the previous configuration stays in force.
/// Counts `cec_exporter_web_config_reloads_total{result="failure"}` and sets
/// `cec_exporter_web_config_last_reload_successful` to 0 (until a re-read succeeds). An error line.
/// Emitted once per distinct failure (the server does not repeat it every re-read of the same broken
/// file): the gauge, not a stream of lines, says it is still broken.
#[derive(Clone, Copy, Debug)]
pub struct WebConfigReloadFailed<'a> {
    /// What is wrong, naming the file and key ([`crate::web_config::WebConfigError`]'s text).
    pub error: &'a str,
}

impl InternalEvent for WebConfigReloadFailed<'_> {
    fn emit(&self, t: &Telemetry) {
        t.update(|d| {
            d.web_config_reload_failures += 1;
            d.web_config_last_reload_failed = true;
        });
        tracing::error!(error = %self.error, "web configuration not reloaded; keeping the previous one");
    }
}

/// A tenant of `--config.file` could not start (its state store locked or unreadable, its HTTP client
/// not built). The others run; this one is retried at every reload and every 30 s. Counted as one of
/// its failed polls (`cec_exporter_poll_failures_total{tenant}`, `cec_up{tenant}` 0, the landing page's
/// `state_store` kind), with an error line naming the tenant and the problem (a path, never a secret).
#[derive(Clone, Copy, Debug)]
pub struct TenantStartFailed<'a> {
    pub tenant: &'a str,
    pub error: &'a str,
    /// Whether the store refused (else the client).
    pub store: bool,
    pub at_ms: i64,
}

impl InternalEvent for TenantStartFailed<'_> {
    fn emit(&self, t: &Telemetry) {
        t.update(|d| {
            d.up = false;
            d.polls += 1;
            d.poll_failures += 1;
            let kind = if self.store {
                FailureKind::Store
            } else {
                FailureKind::Api(crate::cec::Endpoint::QueryCallDetailRecord, crate::cec::ErrorKind::Transport)
            };
            d.last_failure = Some(LastFailure { kind, at_ms: self.at_ms });
        });
        tracing::error!(tenant = self.tenant, error = %self.error, "tenant not started; the other tenants run, and it is retried");
    }
}

/// SIGHUP re-read `--config.file` and its tenants are in force: the added started, the removed
/// stopped (their state kept on disk), the changed restarted, the rest left polling. Counts
/// `cec_exporter_config_reloads_total{result="success"}` and sets
/// `cec_exporter_config_last_reload_successful` to 1. An info line.
#[derive(Clone, Copy, Debug)]
pub struct ConfigReloaded<'a> {
    pub path: &'a std::path::Path,
    pub applied: &'a crate::fleet::Applied,
}

impl InternalEvent for ConfigReloaded<'_> {
    fn emit(&self, t: &Telemetry) {
        t.update(|d| {
            d.config_reloads += 1;
            d.config_last_reload_failed = false;
        });
        let a = self.applied;
        tracing::info!(
            path = %self.path.display(),
            added = %a.added.join(","),
            removed = %a.removed.join(","),
            restarted = %a.restarted.join(","),
            kept = a.kept,
            "configuration reloaded"
        );
    }
}

/// SIGHUP found `--config.file` invalid (the previous tenants stay in force), or a tenant of the new
/// file could not start (the others are in force). Counts
/// `cec_exporter_config_reloads_total{result="failure"}` and sets
/// `cec_exporter_config_last_reload_successful` to 0 until a reload succeeds. An error line naming the
/// problem ([`crate::tenants::TenantsError`]'s or [`crate::fleet::StartError`]'s text).
#[derive(Clone, Copy, Debug)]
pub struct ConfigReloadFailed<'a> {
    pub error: &'a str,
    /// Whether the previous configuration stays whole (the file was refused) or the new one is in
    /// force but for the tenant named in the error.
    pub kept_previous: bool,
}

impl InternalEvent for ConfigReloadFailed<'_> {
    fn emit(&self, t: &Telemetry) {
        t.update(|d| {
            d.config_reload_failures += 1;
            d.config_last_reload_failed = true;
        });
        if self.kept_previous {
            tracing::error!(error = %self.error, "configuration not reloaded; the previous tenants stay in force");
        } else {
            tracing::error!(error = %self.error, "configuration reloaded, but a tenant could not start");
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::cec::record::{CallId, CallState};
    use crate::cec::wire::{Field, RejectReason, Rejection};
    use crate::cec::ErrorKind;
    use crate::metrics::telemetry::TelemetryData;

    /// Emits `event` on fresh telemetry under a subscriber that captures every line (all levels, in the
    /// production logfmt); returns the telemetry and the lines without their timestamp.
    fn emit(event: &dyn InternalEvent) -> (TelemetryData, Vec<String>) {
        emit_on(Telemetry::default(), event)
    }

    fn emit_on(t: Telemetry, event: &dyn InternalEvent) -> (TelemetryData, Vec<String>) {
        let ((), lines) = crate::logging::capture(tracing::Level::TRACE, || event.emit(&t));
        (t.snapshot(), lines)
    }

    /// Asserts that exactly one line was written, at `level`, with message `msg`, and returns it.
    fn one_line(lines: &[String], level: &str) -> String {
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with(&format!("level={level} msg=")), "{lines:?}");
        lines[0].clone()
    }

    const W: Window = Window { start_ms: 1_000, end_ms: 2_000 };

    #[test]
    fn api_request_counts_by_endpoint_and_status_zero_for_no_answer() {
        let t = Telemetry::default();
        ApiRequest { endpoint: Endpoint::QueryCallDetailRecord, status: Some(200) }.emit(&t);
        ApiRequest { endpoint: Endpoint::QueryCallDetailRecord, status: Some(200) }.emit(&t);
        let (d, lines) = emit_on(t, &ApiRequest { endpoint: Endpoint::Token, status: None });
        let want = [((Endpoint::Token, 0), 1), ((Endpoint::QueryCallDetailRecord, 200), 2)];
        assert_eq!(d, TelemetryData { api_requests: want.into(), ..Default::default() });
        assert_eq!(one_line(&lines, "trace"), "level=trace msg=\"API request\" endpoint=token_by_ak_sk status=0");
    }

    #[test]
    fn api_failed_counts_by_endpoint_and_kind_and_says_info_only_when_retrying() {
        let e = ApiError::Status { endpoint: Endpoint::QueryCallDetailRecord, status: 503, retry_after: None };
        let retry = Some(Retry { attempt: 2, wait: Duration::from_millis(800) });
        let (d, lines) = emit(&ApiFailed { error: &e, retry });
        let want = [((Endpoint::QueryCallDetailRecord, ErrorKind::ServerError), 1)];
        assert_eq!(d, TelemetryData { api_errors: want.into(), ..Default::default() });
        assert_eq!(
            one_line(&lines, "info"),
            "level=info msg=\"retrying request\" error=\"query_call_detail_record: HTTP 503\" attempt=2 wait_ms=800"
        );
        let e = ApiError::Timeout { endpoint: Endpoint::Token, timeout: Duration::from_secs(1) };
        let (d, lines) = emit(&ApiFailed { error: &e, retry: None });
        assert_eq!(d.api_errors, [((Endpoint::Token, ErrorKind::Timeout), 1)].into());
        assert_eq!(
            one_line(&lines, "debug"),
            "level=debug msg=\"API request failed; the read fails\" error=\"token_by_ak_sk: no answer within 1s\" retryable=true"
        );
    }

    #[test]
    fn token_refreshed_counts_one_and_is_visible_only_after_a_401() {
        let (d, lines) = emit(&TokenRefreshed { lifetime: Duration::from_secs(600), after_401: false });
        assert_eq!(d, TelemetryData { token_refreshes: 1, ..Default::default() });
        assert_eq!(one_line(&lines, "debug"), "level=debug msg=\"fetched a new token\" lifetime_s=600");
        let (d, lines) = emit(&TokenRefreshed { lifetime: Duration::from_secs(60), after_401: true });
        assert_eq!(d.token_refreshes, 1);
        one_line(&lines, "info");
    }

    fn skipped(reason: RejectReason, field: Option<&'static str>, serial: Option<u64>) -> Skipped {
        Skipped { rejection: Rejection { reason, field, serial: serial.map(CallId) }, page_offset: 200 }
    }

    fn record(id: u64, invalid: &[Field]) -> ParsedRecord {
        let mut r = ParsedRecord {
            id: CallId(id),
            state: CallState::Ended,
            record: Default::default(),
            invalid: Default::default(),
        };
        invalid.iter().for_each(|&f| r.invalid.insert(f));
        r
    }

    /// A gateway answering made-up statuses (223, 295, 999) made a series of each.
    #[test]
    fn api_requests_count_unregistered_statuses_as_other() {
        let t = Telemetry::default();
        let q = Endpoint::QueryCallDetailRecord;
        for status in [Some(200), Some(999), Some(223), Some(429), None, Some(295), Some(599)] {
            ApiRequest { endpoint: q, status }.emit(&t);
        }
        let want = [((q, CODE_NONE), 1), ((q, CODE_OTHER), 4), ((q, 200), 1), ((q, 429), 1)];
        assert_eq!(t.snapshot().api_requests, want.into());
        assert_eq!((code_of(Some(511)), code_of(Some(418)), code_of(Some(103))), (511, 418, 103));
    }

    #[test]
    fn window_fetched_is_a_trace_line_and_no_counter() {
        let read = WindowRead {
            records: vec![record(1, &[]), record(2, &[]), record(1, &[])],
            rejected: vec![skipped(RejectReason::NotAnObject, None, None)],
            requests: 2,
            total: Some(4),
            total_unchanged: true,
            stopped: None,
            ..WindowRead::default()
        }
        .counted();
        let (d, lines) = emit(&WindowFetched { query: TaskQuery::ITA, window: W, read: &read });
        assert_eq!(d, TelemetryData::default());
        assert_eq!(
            one_line(&lines, "trace"),
            "level=trace msg=\"window read\" task_query=4 start_ms=1000 end_ms=2000 records=3 rejected=1 requests=2 complete=false"
        );
    }

    #[test]
    fn page_parsed_counts_every_entry_served() {
        let entries = [Ok(record(1, &[])), Err(skipped(RejectReason::NotAnObject, None, None).rejection)];
        let (d, lines) = emit(&PageParsed { query: TaskQuery::ITA, offset: 100, entries: &entries });
        assert_eq!(d, TelemetryData { records_fetched: 2, ..Default::default() });
        assert_eq!(
            one_line(&lines, "trace"),
            "level=trace msg=\"page parsed\" task_query=4 offset=100 entries=2 rejected=1"
        );
    }

    #[test]
    fn the_observer_counts_a_page_and_its_rejections_and_leaves_unusable_fields_to_the_poller() {
        let t = Telemetry::default();
        let entries = [
            Ok(record(1, &[])),
            Ok(record(2, &[Field::TalkDuration])),
            Err(skipped(RejectReason::MissingState, Some("state"), Some(3)).rejection),
        ];
        (&t as &dyn ApiObserver).page(TaskQuery::ITA, 0, &entries);
        let d = t.snapshot();
        assert_eq!(d.records_fetched, 3);
        assert_eq!(d.records_rejected, [(RejectReason::MissingState, 1)].into());
        assert_eq!(d.fields_invalid, [].into(), "the poller counts them once the window check passed");
    }

    /// A gateway serving millions of bad records made one warning each: 560 MB of log in 20 s.
    #[test]
    fn record_warnings_are_five_lines_per_kind_per_poll_then_one_summary_and_every_record_counts() {
        let t = Telemetry::default();
        let ((), lines) = crate::logging::capture(tracing::Level::WARN, || {
            let entries: Vec<_> =
                (1..=12).map(|i| Err(skipped(RejectReason::InvalidState, Some("state"), Some(i)).rejection)).collect();
            (&t as &dyn ApiObserver).page(TaskQuery::ITA, 0, &entries);
            for i in 1..=8 {
                FieldInvalid { query: TaskQuery::ITA, record: &record(100 + i, &[Field::TalkDuration]) }.emit(&t);
            }
            RecordLinesSuppressed::close_poll(&t);
        });
        let rejected = |i: u64| {
            format!("level=warn msg=\"record rejected\" reason=invalid_state field=state call_serial_no={i} task_query=4 offset=0")
        };
        let invalid = |i: u64| {
            format!("level=warn msg=\"record field unusable; read as absent, the call still counts\" fields=talkDuration call_serial_no={i} task_query=4")
        };
        let mut want: Vec<String> = (1..=5).map(rejected).collect();
        want.extend((101..=105).map(invalid));
        want.push(
            "level=warn msg=\"more records rejected this poll; see cec_exporter_records_rejected_total\" more=7".into(),
        );
        want.push("level=warn msg=\"more records with unusable fields this poll; see cec_exporter_record_fields_invalid_total\" more=3".into());
        assert_eq!(lines, want);
        let d = t.snapshot();
        assert_eq!(d.records_rejected, [(RejectReason::InvalidState, 12)].into());
        assert_eq!(d.fields_invalid, [(Field::TalkDuration, 8)].into());
        // The next poll starts a new allowance; at or under it, no summary.
        let ((), lines) = crate::logging::capture(tracing::Level::WARN, || {
            for i in 1..=5 {
                FieldInvalid { query: TaskQuery::ITA, record: &record(200 + i, &[Field::TalkDuration]) }.emit(&t);
            }
            RecordLinesSuppressed::close_poll(&t);
        });
        assert_eq!(lines, (201..=205).map(invalid).collect::<Vec<_>>());
        assert_eq!(t.snapshot().fields_invalid, [(Field::TalkDuration, 13)].into());
    }

    #[test]
    fn record_rejected_counts_its_reason_and_logs_the_field_and_serial() {
        let s = skipped(RejectReason::InvalidState, Some("state"), Some(7));
        let (d, lines) = emit(&RecordRejected { query: TaskQuery::ALL_BUT_ITA, skipped: &s });
        assert_eq!(
            d,
            TelemetryData { records_rejected: [(RejectReason::InvalidState, 1)].into(), ..Default::default() }
        );
        assert_eq!(
            one_line(&lines, "warn"),
            "level=warn msg=\"record rejected\" reason=invalid_state field=state call_serial_no=7 task_query=0 offset=200"
        );
        let s = skipped(RejectReason::NotAnObject, None, None);
        let (_, lines) = emit(&RecordRejected { query: TaskQuery::ITA, skipped: &s });
        assert_eq!(
            one_line(&lines, "warn"),
            "level=warn msg=\"record rejected\" reason=not_an_object field=\"\" call_serial_no=\"\" task_query=4 offset=200"
        );
    }

    #[test]
    fn field_invalid_counts_each_field_once_in_one_line() {
        let r = record(9, &[Field::EndTime, Field::TalkDuration]);
        let (d, lines) = emit(&FieldInvalid { query: TaskQuery::ITA, record: &r });
        let want = [(Field::EndTime, 1), (Field::TalkDuration, 1)];
        assert_eq!(d, TelemetryData { fields_invalid: want.into(), ..Default::default() });
        assert_eq!(
            one_line(&lines, "warn"),
            "level=warn msg=\"record field unusable; read as absent, the call still counts\" fields=endTime,talkDuration call_serial_no=9 task_query=4"
        );
    }

    #[test]
    fn incomplete_read_counts_one() {
        let reason = crate::cec::client::Incomplete::NoProgress;
        let (d, lines) = emit(&IncompleteRead { query: TaskQuery::ITA, window: W, reason });
        assert_eq!(d, TelemetryData { incomplete_reads: 1, ..Default::default() });
        assert_eq!(
            one_line(&lines, "warn"),
            "level=warn msg=\"CEC's answer could not be read completely; calls of this window may be missed\" task_query=4 start_ms=1000 end_ms=2000 reason=\"a page brought no new call while total claimed more\""
        );
    }

    #[test]
    fn state_commits_count_and_set_the_size_failures_count_apart() {
        let (d, lines) = emit(&StateCommitted { bytes: Some(4096) });
        assert_eq!(d, TelemetryData { state_commits: 1, state_bytes: Some(4096), ..Default::default() });
        assert_eq!(one_line(&lines, "trace"), "level=trace msg=\"state committed\" bytes=4096");
        let (d, lines) = emit(&StateCommitFailed { error: &"state store /x: commit failed: disk full" });
        assert_eq!(d, TelemetryData { state_commit_failures: 1, ..Default::default() });
        assert_eq!(
            one_line(&lines, "debug"),
            "level=debug msg=\"state commit failed; the poll is undone\" error=\"state store /x: commit failed: disk full\""
        );
    }

    #[test]
    fn catchup_skipped_adds_the_seconds_skipped() {
        let t = Telemetry::default();
        CatchupSkipped { from_ms: 0, to_ms: 1_500 }.emit(&t);
        let (d, lines) = emit_on(t, &CatchupSkipped { from_ms: 10_000, to_ms: 3_610_000 });
        assert_eq!(d, TelemetryData { catchup_skipped_seconds: 3_601.5, ..Default::default() });
        assert_eq!(
            one_line(&lines, "warn"),
            "level=warn msg=\"the outage is longer than --poll.max-catchup: calls that started in this stretch are not counted\" \
             from=1970-01-01T00:00:10.000Z to=1970-01-01T01:00:10.000Z skipped_s=3600.0"
        );
    }

    #[test]
    fn catching_up_is_one_line_per_window_and_sets_the_history_left() {
        let day = 86_400_000;
        let progress = CatchupProgress {
            window: 1,
            windows: 2,
            main: Window { start_ms: 0, end_ms: 7 * day - 60_000 },
            records: 600_000,
            records_per_second: 9_999.6,
            remaining_ms: 3 * day + 60_000,
            eta: Duration::from_millis(3_725_900),
        };
        let (d, lines) = emit(&CatchingUp { progress });
        assert_eq!(d, TelemetryData { catchup_remaining_seconds: 259_260.0, ..Default::default() });
        assert_eq!(
            one_line(&lines, "info"),
            "level=info msg=\"catching up\" window=1 windows=2 from=1970-01-01T00:00:00.000Z \
             to=1970-01-07T23:59:00.000Z records=600000 records_per_s=10000 remaining_s=259260.0 eta=\"1h 2m 5s\""
        );
        // The window that reaches now: nothing left.
        let last = CatchupProgress { window: 2, remaining_ms: 0, eta: Duration::ZERO, ..progress };
        let t = Telemetry::default();
        t.update(|d| d.catchup_remaining_seconds = 259_260.0);
        let (d, lines) = emit_on(t, &CatchingUp { progress: last });
        assert_eq!(d.catchup_remaining_seconds, 0.0);
        assert!(one_line(&lines, "info").ends_with(" remaining_s=0.0 eta=0s"), "{lines:?}");
    }

    #[test]
    fn reason_codes_folded_warns_once_then_informs_and_moves_no_telemetry() {
        let (d, lines) = emit(&ReasonCodesFolded { calls: 3, cap: 32, first: true });
        assert_eq!(d, TelemetryData::default(), "the counter is read from the aggregates");
        assert_eq!(
            one_line(&lines, "warn"),
            "level=warn msg=\"calls with reason codes beyond --metrics.max-unknown-reason-codes were counted under \
             reason_code=\\\"other\\\"\" calls=3 cap=32"
        );
        let (_, lines) = emit(&ReasonCodesFolded { calls: 1, cap: 32, first: false });
        assert!(one_line(&lines, "info").ends_with(" calls=1 cap=32"), "{lines:?}");
        let (d, lines) = emit(&ReasonCodesRefolded { codes: 7, cap: 2 });
        assert_eq!(d, TelemetryData::default());
        assert!(one_line(&lines, "warn").ends_with(" codes=7 cap=2"), "{lines:?}");
    }

    fn committed(after_failures: u32) -> PollCommitted {
        PollCommitted {
            summary: PollSummary { counted: 5, tracked: 2, ..Default::default() },
            main: W,
            reads: 2,
            requests: 3,
            elapsed: Duration::from_millis(250),
            at_ms: 1_234,
            after_failures,
        }
    }

    #[test]
    fn poll_committed_sets_up_ready_and_the_poll_and_says_ready_once() {
        let t = Telemetry::default();
        t.update(|d| d.last_failure = Some(LastFailure { kind: FailureKind::Deadline, at_ms: 1 }));
        let (d, lines) = emit_on(t, &committed(0));
        let want = TelemetryData {
            up: true,
            ready: true,
            polls: 1,
            last_poll_seconds: 0.25,
            last_success_ms: Some(1_234),
            last_poll_requests: 3,
            last_failure: None,
            ..Default::default()
        };
        assert_eq!(d, want);
        assert_eq!(
            one_line(&lines, "info"),
            "level=info msg=\"first poll committed; ready\" requests=3 counted=5 in_progress=2"
        );
        // Later polls are routine; the first after failures says it recovered.
        let t = Telemetry::default();
        committed(0).emit(&t);
        let (d, lines) = emit_on(t, &committed(0));
        assert_eq!(d.polls, 2);
        assert!(one_line(&lines, "debug").starts_with("level=debug msg=\"poll committed\""));
        let t = Telemetry::default();
        committed(0).emit(&t);
        let (_, lines) = emit_on(t, &committed(3));
        assert_eq!(one_line(&lines, "info"), "level=info msg=\"polling recovered\" after_failures=3 requests=3");
    }

    #[test]
    fn open_calls_abandoned_adds_the_count() {
        let (d, lines) = emit(&OpenCallsAbandoned { count: 4 });
        assert_eq!(d, TelemetryData { open_calls_abandoned: 4, ..Default::default() });
        assert_eq!(
            one_line(&lines, "warn"),
            "level=warn msg=\"gave up open calls CEC never showed ended\" abandoned=4"
        );
    }

    #[test]
    fn open_calls_evicted_counts_as_abandoned_and_evicted_in_one_line() {
        let (d, lines) = emit(&OpenCallsEvicted { count: 800_000, cap: 250_000 });
        assert_eq!(
            d,
            TelemetryData { open_calls_abandoned: 800_000, open_calls_evicted: 800_000, ..Default::default() }
        );
        assert_eq!(
            one_line(&lines, "warn"),
            "level=warn msg=\"gave up the oldest open calls: more calls open than --poll.max-open-calls; they are not counted unless seen ended later\" evicted=800000 max_open_calls=250000"
        );
    }

    #[test]
    fn late_records_add_the_count_keep_the_maximum_and_warn_past_half_the_lookback() {
        let t = Telemetry::default();
        LateRecords { count: 2, max_lateness_ms: 90_000, lookback_ms: 120_000 }.emit(&t);
        let (d, lines) = emit_on(t, &LateRecords { count: 1, max_lateness_ms: 30_000, lookback_ms: 120_000 });
        assert_eq!(d, TelemetryData { late_records: 3, max_lateness_seconds: 90.0, ..Default::default() });
        one_line(&lines, "debug");
        let (_, lines) = emit(&LateRecords { count: 1, max_lateness_ms: 60_001, lookback_ms: 120_000 });
        one_line(&lines, "warn");
    }

    #[test]
    fn records_out_of_window_count_as_their_own_rejection_reason() {
        let (d, lines) = emit(&RecordsOutOfWindow { count: 2, lookback_ms: 120_000 });
        assert_eq!(
            d,
            TelemetryData { records_rejected: [(RejectReason::StartOutOfWindow, 2)].into(), ..Default::default() }
        );
        assert_eq!(
            one_line(&lines, "warn"),
            "level=warn msg=\"records rejected: their startTime lies outside the window read by more than --poll.lookback\" count=2 lookback_ms=120000 reason=start_out_of_window"
        );
    }

    #[test]
    fn durations_too_long_count_as_invalid_fields() {
        let (d, lines) = emit(&DurationsTooLong { talk: 3, agent_talk: 0, max_call_ms: 86_400_000 });
        assert_eq!(d, TelemetryData { fields_invalid: [(Field::TalkDuration, 3)].into(), ..Default::default() });
        assert_eq!(
            one_line(&lines, "warn"),
            "level=warn msg=\"counted calls whose talk time is longer than --poll.max-call-duration; that time was read as absent\" talk_duration=3 agent_talk_duration=0 max_call_ms=86400000"
        );
        let (d, _) = emit(&DurationsTooLong { talk: 1, agent_talk: 2, max_call_ms: 86_400_000 });
        let want = [(Field::TalkDuration, 1), (Field::AgentTalkDuration, 2)];
        assert_eq!(d, TelemetryData { fields_invalid: want.into(), ..Default::default() });
    }

    #[test]
    fn state_reloaded_is_one_info_line_and_no_counter() {
        let (d, lines) = emit(&StateReloaded { calls: 7, poll_was_durable: true });
        assert_eq!(d, TelemetryData::default());
        assert_eq!(
            one_line(&lines, "info"),
            "level=info msg=\"read the state back from the store after a failed commit\" calls=7 poll_was_durable=true"
        );
    }

    #[test]
    fn state_reload_failed_is_one_debug_line_and_no_counter() {
        let e = crate::store::StoreError::Commit { path: "/s/f".into(), detail: "cannot read".into() };
        let (d, lines) = emit(&StateReloadFailed { error: &e });
        assert_eq!(d, TelemetryData::default());
        assert_eq!(
            one_line(&lines, "debug"),
            "level=debug msg=\"cannot read the state back after a failed commit; the next commit rewrites it whole\" error=\"state store /s/f: commit failed: cannot read\""
        );
    }

    #[test]
    fn poll_failed_sets_down_counts_the_poll_and_its_failure() {
        let e = PollError::Api(ApiError::Status {
            endpoint: Endpoint::QueryCallDetailRecord,
            status: 500,
            retry_after: None,
        });
        let t = Telemetry::default();
        committed(0).emit(&t);
        let failed = PollFailed {
            error: &e,
            retryable: true,
            elapsed: Duration::from_millis(500),
            consecutive_failures: 1,
            retry_in: Duration::from_secs(30),
            at_ms: 5_000,
        };
        let (d, lines) = emit_on(t, &failed);
        let want = TelemetryData {
            up: false,
            ready: true,
            polls: 2,
            poll_failures: 1,
            last_poll_seconds: 0.5,
            last_success_ms: Some(1_234),
            last_poll_requests: 3,
            last_failure: Some(LastFailure {
                kind: FailureKind::Api(Endpoint::QueryCallDetailRecord, ErrorKind::ServerError),
                at_ms: 5_000,
            }),
            ..Default::default()
        };
        assert_eq!(d, want);
        assert_eq!(
            one_line(&lines, "warn"),
            "level=warn msg=\"poll failed; nothing committed\" error=\"query_call_detail_record: HTTP 500\" \
             retryable=true consecutive_failures=1 retry_in_ms=30000"
        );
    }

    #[test]
    fn poller_stopped_is_an_error_line_and_no_counter() {
        let (d, lines) = emit(&PollerStopped { why: "it panicked" });
        assert_eq!(d, TelemetryData::default());
        assert_eq!(one_line(&lines, "error"), "level=error msg=\"the poller stopped: it panicked; exiting\"");
    }

    #[test]
    fn the_observer_turns_each_report_into_its_event() {
        let t = Telemetry::default();
        let o: &dyn ApiObserver = &t;
        o.request(Endpoint::Token, Some(401));
        o.error(&ApiError::Status { endpoint: Endpoint::Token, status: 401, retry_after: None }, None);
        o.token_refreshed(Duration::from_secs(5), false);
        let d = t.snapshot();
        assert_eq!(d.api_requests, [((Endpoint::Token, 401), 1)].into());
        assert_eq!(d.api_errors, [((Endpoint::Token, ErrorKind::Unauthorized), 1)].into());
        assert_eq!(d.token_refreshes, 1);
    }

    #[test]
    fn poll_failed_records_the_kind_of_each_failure_never_its_text() {
        let api = PollError::Api(ApiError::RetCode {
            query: TaskQuery::ALL_BUT_ITA,
            window: W,
            code: "2".into(),
            message: "secret-ish gateway text".into(),
        });
        let store = PollError::Store(crate::store::StoreError::Commit { path: "/s".into(), detail: "full".into() });
        let deadline = PollError::Deadline(Duration::from_secs(1));
        let kinds: Vec<(Option<LastFailure>, String)> = [&api, &store, &deadline]
            .into_iter()
            .map(|error| {
                let failed = PollFailed {
                    error,
                    retryable: false,
                    elapsed: Duration::ZERO,
                    consecutive_failures: 1,
                    retry_in: Duration::ZERO,
                    at_ms: 42,
                };
                let d = emit(&failed).0;
                (d.last_failure, d.last_failure.map(|f| f.kind.to_string()).unwrap_or_default())
            })
            .collect();
        let failure = |kind| Some(LastFailure { kind, at_ms: 42 });
        assert_eq!(
            kinds,
            [
                (
                    failure(FailureKind::Api(Endpoint::QueryCallDetailRecord, ErrorKind::RetCode)),
                    "query_call_detail_record ret_code".to_owned()
                ),
                (failure(FailureKind::Store), "state_store".to_owned()),
                (failure(FailureKind::Deadline), "deadline".to_owned()),
            ]
        );
    }

    #[test]
    fn accept_failures_count_each_one_and_warn_only_when_told() {
        let e = std::io::Error::from_raw_os_error(24);
        let t = Telemetry::default();
        let (d, lines) = emit_on(t, &AcceptFailed { error: &e, warn_for: Some(7) });
        assert_eq!(d, TelemetryData { accept_errors: 1, ..Default::default() });
        assert_eq!(
            one_line(&lines, "warn"),
            "level=warn msg=\"accepting connections failed\" error=\"Too many open files (os error 24)\" failures=7"
        );
        let t = Telemetry::default();
        t.update(|d| d.accept_errors = 7);
        let (d, lines) = emit_on(t, &AcceptFailed { error: &e, warn_for: None });
        assert_eq!(d, TelemetryData { accept_errors: 8, ..Default::default() });
        assert_eq!(
            one_line(&lines, "debug"),
            "level=debug msg=\"accepting a connection failed\" error=\"Too many open files (os error 24)\""
        );
    }

    #[test]
    fn web_config_reloads_count_by_result_and_set_the_last_reload_gauge() {
        let (d, lines) = emit(&WebConfigReloadFailed { error: "/etc/web.yml: bad" });
        let failed =
            TelemetryData { web_config_reload_failures: 1, web_config_last_reload_failed: true, ..Default::default() };
        assert_eq!(d, failed);
        assert_eq!(
            one_line(&lines, "error"),
            "level=error msg=\"web configuration not reloaded; keeping the previous one\" error=\"/etc/web.yml: bad\""
        );
        let t = Telemetry::default();
        t.update(|d| *d = failed.clone());
        let (d, lines) = emit_on(t, &WebConfigReloaded { path: std::path::Path::new("/etc/web.yml") });
        assert_eq!(
            d,
            TelemetryData {
                web_config_reloads: 1,
                web_config_reload_failures: 1,
                web_config_last_reload_failed: false,
                ..Default::default()
            }
        );
        assert_eq!(one_line(&lines, "info"), "level=info msg=\"web configuration reloaded\" path=/etc/web.yml");
    }
}
