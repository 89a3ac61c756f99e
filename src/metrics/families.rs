//! The table of every metric family the exporter exposes: name, kind, help, unit and label names,
//! declared once. The renderer writes `# HELP`/`# TYPE`/`# UNIT` lines and every sample's label names
//! from these entries, so a call site only supplies label values and numbers. [`ALL`] is the
//! exposition order (a contract: tests parse it, dashboards and alerts query these names).

use super::aggregate::{DELAY_BUCKETS, TALK_BUCKETS};

/// What kind of metric a family is (the `# TYPE` line).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Monotonic; its [`Family::name`] ends in `_total`, which OpenMetrics leaves off the family name.
    Counter,
    Gauge,
    /// Cumulative `_bucket{le}` samples with these upper bounds (plus `+Inf`), then `_sum` and `_count`.
    Histogram {
        buckets: &'static [f64],
    },
}

impl Kind {
    /// The word of the `# TYPE` line, the same in both formats.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram { .. } => "histogram",
        }
    }
}

/// One metric family.
#[derive(Debug)]
pub struct Family {
    /// The name as queried: a counter's includes `_total`, a histogram's excludes `_bucket`/`_sum`/`_count`.
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// The OpenMetrics `# UNIT`, which the name ends with (before `_total`); not written in text 0.0.4.
    pub unit: Option<&'static str>,
    /// Label names in the order every sample writes them (a histogram's `le` comes after these).
    pub labels: &'static [&'static str],
}

impl Family {
    /// The name on `# HELP`/`# TYPE`/`# UNIT` lines: OpenMetrics names a counter family without `_total`.
    pub fn header_name(&self, openmetrics: bool) -> &'static str {
        match self.kind {
            Kind::Counter if openmetrics => self.name.strip_suffix("_total").unwrap_or(self.name),
            _ => self.name,
        }
    }
}

/// Help text of a call metric, saying where its numbers come from.
macro_rules! polled {
    ($help:literal) => {
        concat!($help, "; from the exporter's background poll of CEC queryCallDetailRecord.")
    };
}

const fn family(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    unit: Option<&'static str>,
    labels: &'static [&'static str],
) -> Family {
    Family { name, kind, help, unit, labels }
}

const SECONDS: Option<&str> = Some("seconds");

// Call metrics, from the committed aggregates and the ledger's open calls.

pub static CALLS: Family = family(
    "cec_calls_total",
    Kind::Counter,
    polled!("Ended calls, each counted once, by task type and outcome"),
    None,
    &["task_type", "outcome"],
);
pub static CALL_END_REASONS: Family = family(
    "cec_call_end_reasons_total",
    Kind::Counter,
    polled!("Ended calls by the reason code CEC gives for their end (page codes 0-6, Q.850 causes for ITA)"),
    None,
    &["task_type", "reason_code", "reason"],
);
pub static CALL_TALK_DURATION: Family = family(
    "cec_call_talk_duration_seconds",
    Kind::Histogram { buckets: TALK_BUCKETS },
    polled!("Customer talk time of ended calls that were answered (talkDuration above zero)"),
    SECONDS,
    &["task_type"],
);
pub static CALL_AGENT_TALK_DURATION: Family = family(
    "cec_call_agent_talk_duration_seconds",
    Kind::Histogram { buckets: TALK_BUCKETS },
    polled!("Agent talk time of ended calls whose agent talked (agentTalkDuration above zero)"),
    SECONDS,
    &["task_type"],
);
pub static CALL_ANSWER_DELAY: Family = family(
    "cec_call_answer_delay_seconds",
    Kind::Histogram { buckets: DELAY_BUCKETS },
    polled!("Ring time before answer of ended calls: talkingTime minus alertingTime (customer) or agentTalkingTime minus agentAlertingTime (agent)"),
    SECONDS,
    &["task_type", "leg"],
);
pub static CALLS_IN_PROGRESS: Family = family(
    "cec_calls_in_progress",
    Kind::Gauge,
    polled!("Calls seen not yet ended (state 0 to be called, 1 calling, 2 talking)"),
    None,
    &["task_type", "state"],
);
pub static LAST_CALL_END: Family = family(
    "cec_last_call_end_timestamp_seconds",
    Kind::Gauge,
    polled!("End time of the newest ended call counted, Unix seconds"),
    SECONDS,
    &["task_type"],
);

pub static REASON_CODES_FOLDED: Family = family(
    "cec_exporter_reason_codes_folded_total",
    Kind::Counter,
    "Ended calls counted under reason_code=\"other\" because their code is in no known table and --metrics.max-unknown-reason-codes other codes of their task type already have a series.",
    None,
    &["task_type"],
);

// The exporter's own health, from its telemetry and build.

pub static UP: Family = family(
    "cec_up",
    Kind::Gauge,
    "1 when the exporter's last background poll of CEC succeeded and the next one is not overdue, 0 otherwise.",
    None,
    &[],
);
pub static BUILD_INFO: Family = family(
    "cec_exporter_build_info",
    Kind::Gauge,
    "Version and revision of the running cec-exporter, which polls CEC in the background; always 1.",
    None,
    &["version", "revision"],
);
pub static LAST_SUCCESSFUL_POLL: Family = family(
    "cec_exporter_last_successful_poll_timestamp_seconds",
    Kind::Gauge,
    "When the exporter's last successful background poll of CEC finished, Unix seconds.",
    SECONDS,
    &[],
);
pub static POLL_DURATION: Family = family(
    "cec_exporter_poll_duration_seconds",
    Kind::Gauge,
    "How long the exporter's last background poll of CEC took.",
    SECONDS,
    &[],
);
pub static POLLS: Family =
    family("cec_exporter_polls_total", Kind::Counter, "Background polls of CEC the exporter attempted.", None, &[]);
pub static POLL_FAILURES: Family = family(
    "cec_exporter_poll_failures_total",
    Kind::Counter,
    "Background polls of CEC that failed and were left without trace (retried later).",
    None,
    &[],
);
pub static LAST_POLL_API_REQUESTS: Family = family(
    "cec_exporter_last_poll_api_requests",
    Kind::Gauge,
    "queryCallDetailRecord requests the exporter's last successful background poll made.",
    None,
    &[],
);
pub static API_REQUESTS: Family = family(
    "cec_exporter_api_requests_total",
    Kind::Counter,
    "HTTP requests the exporter's background poll made to CEC, by endpoint and HTTP status code (none: no answer).",
    None,
    &["endpoint", "code"],
);
pub static API_ERRORS: Family = family(
    "cec_exporter_api_errors_total",
    Kind::Counter,
    "Failed CEC API exchanges of the exporter's background poll, by endpoint and kind of error.",
    None,
    &["endpoint", "error"],
);
pub static RECORDS_FETCHED: Family = family(
    "cec_exporter_records_fetched_total",
    Kind::Counter,
    "Call records (callInfo entries) the exporter's background poll fetched from CEC, re-reads included.",
    None,
    &[],
);
pub static RECORDS_REJECTED: Family = family(
    "cec_exporter_records_rejected_total",
    Kind::Counter,
    "Call records the exporter's background poll skipped because they cannot be counted (no usable callSerialNo or state), by reason; each fetch of a bad record counts.",
    None,
    &["reason"],
);
pub static RECORD_FIELDS_INVALID: Family = family(
    "cec_exporter_record_fields_invalid_total",
    Kind::Counter,
    "Optional record fields the exporter's background poll could not use (read as absent; the call still counts), by field.",
    None,
    &["field"],
);
pub static TOKEN_REFRESHES: Family = family(
    "cec_exporter_token_refreshes_total",
    Kind::Counter,
    "Bearer tokens the exporter's background poll fetched from tokenByAkSk (the first one included).",
    None,
    &[],
);
pub static OPEN_CALLS_ABANDONED: Family = family(
    "cec_exporter_open_calls_abandoned_total",
    Kind::Counter,
    "Calls the exporter's background poll stopped waiting for because CEC never showed them ended within --poll.max-call-duration.",
    None,
    &[],
);
pub static OPEN_CALLS_EVICTED: Family = family(
    "cec_exporter_open_calls_evicted_total",
    Kind::Counter,
    "Calls the exporter's background poll stopped waiting for because more than --poll.max-open-calls were open (the oldest first; also counted in cec_exporter_open_calls_abandoned_total).",
    None,
    &[],
);
pub static STATE_COMMITS: Family = family(
    "cec_exporter_state_commits_total",
    Kind::Counter,
    "Polls the exporter's background poll committed to the --state.path store.",
    None,
    &[],
);
pub static STATE_COMMIT_FAILURES: Family = family(
    "cec_exporter_state_commit_failures_total",
    Kind::Counter,
    "Commits to the --state.path store that failed (disk full, read-only); the poll was undone and is retried.",
    None,
    &[],
);
pub static STATE_BYTES: Family = family(
    "cec_exporter_state_bytes",
    Kind::Gauge,
    "Size of the --state.path store after the background poll's last commit.",
    Some("bytes"),
    &[],
);
pub static CATCHUP_SKIPPED: Family = family(
    "cec_exporter_catchup_skipped_seconds_total",
    Kind::Counter,
    "Outage time beyond --poll.max-catchup that the background poll skipped: calls that started then are not counted.",
    SECONDS,
    &[],
);
pub static INCOMPLETE_READS: Family = family(
    "cec_exporter_incomplete_reads_total",
    Kind::Counter,
    "Windows whose pages the exporter's background poll could not make cover CEC's answer (it kept changing while paged, paging brought nothing new, or hit the page limit; the warning says which); calls there may be missed.",
    None,
    &[],
);
pub static LATE_RECORDS: Family = family(
    "cec_exporter_late_records_total",
    Kind::Counter,
    "Calls the exporter's background poll first saw although they started before the previous poll's window end (CEC returned them late).",
    None,
    &[],
);
pub static MAX_RECORD_LATENESS: Family = family(
    "cec_exporter_max_record_lateness_seconds",
    Kind::Gauge,
    "Largest lateness of a late record seen since start: how much of --poll.lookback the background poll needed.",
    SECONDS,
    &[],
);
pub static REMEMBERED_CALLS: Family = family(
    "cec_exporter_remembered_calls",
    Kind::Gauge,
    "Counted calls the exporter's background poll still remembers so that re-reads do not count them twice.",
    None,
    &[],
);

pub static HTTP_ACCEPT_ERRORS: Family = family(
    "cec_exporter_http_accept_errors_total",
    Kind::Counter,
    "Connections the exporter's web server failed to accept (typically: out of file descriptors).",
    None,
    &[],
);
pub static WEB_CONFIG_RELOADS: Family = family(
    "cec_exporter_web_config_reloads_total",
    Kind::Counter,
    "Re-reads of a changed --web.config.file, by result: success (in force) or failure (the previous configuration stays).",
    None,
    &["result"],
);
pub static WEB_CONFIG_LAST_RELOAD_SUCCESSFUL: Family = family(
    "cec_exporter_web_config_last_reload_successful",
    Kind::Gauge,
    "Whether the last re-read of --web.config.file succeeded (1 without a file or before any change).",
    None,
    &[],
);
pub static CONFIG_RELOADS: Family = family(
    "cec_exporter_config_reloads_total",
    Kind::Counter,
    "Re-reads of --config.file on SIGHUP, by result: success (in force) or failure (the previous tenants stay, or a tenant could not start).",
    None,
    &["result"],
);
pub static CONFIG_LAST_RELOAD_SUCCESSFUL: Family = family(
    "cec_exporter_config_last_reload_successful",
    Kind::Gauge,
    "Whether the last re-read of --config.file succeeded (1 without a file or before any SIGHUP).",
    None,
    &[],
);
pub static CATCHUP_REMAINING: Family = family(
    "cec_exporter_catchup_remaining_seconds",
    Kind::Gauge,
    "History a catch-up (after an outage or for a backfill longer than one window) still has to read, from the last committed window's end to now; 0 when caught up.",
    SECONDS,
    &[],
);
pub static LOOKBACK: Family = family(
    "cec_exporter_lookback_seconds",
    Kind::Gauge,
    "The --poll.lookback each background poll re-reads before the previous poll's window end: a record later than this is not counted.",
    SECONDS,
    &[],
);

/// Every family, in exposition order: the call metrics, then the exporter's own.
pub static ALL: [&Family; 38] = [
    &CALLS,
    &CALL_END_REASONS,
    &CALL_TALK_DURATION,
    &CALL_AGENT_TALK_DURATION,
    &CALL_ANSWER_DELAY,
    &CALLS_IN_PROGRESS,
    &LAST_CALL_END,
    &REASON_CODES_FOLDED,
    &UP,
    &BUILD_INFO,
    &LAST_SUCCESSFUL_POLL,
    &POLL_DURATION,
    &POLLS,
    &POLL_FAILURES,
    &LAST_POLL_API_REQUESTS,
    &API_REQUESTS,
    &API_ERRORS,
    &RECORDS_FETCHED,
    &RECORDS_REJECTED,
    &RECORD_FIELDS_INVALID,
    &TOKEN_REFRESHES,
    &OPEN_CALLS_ABANDONED,
    &OPEN_CALLS_EVICTED,
    &STATE_COMMITS,
    &STATE_COMMIT_FAILURES,
    &STATE_BYTES,
    &CATCHUP_SKIPPED,
    &CATCHUP_REMAINING,
    &INCOMPLETE_READS,
    &LATE_RECORDS,
    &MAX_RECORD_LATENESS,
    &REMEMBERED_CALLS,
    &HTTP_ACCEPT_ERRORS,
    &WEB_CONFIG_RELOADS,
    &WEB_CONFIG_LAST_RELOAD_SUCCESSFUL,
    &LOOKBACK,
    &CONFIG_RELOADS,
    &CONFIG_LAST_RELOAD_SUCCESSFUL,
];

/// The families that describe the process rather than a tenant: with `--config.file` they are written
/// once, without a `tenant` label; every other family is written per tenant with one.
pub static PROCESS: [&Family; 6] = [
    &BUILD_INFO,
    &HTTP_ACCEPT_ERRORS,
    &WEB_CONFIG_RELOADS,
    &WEB_CONFIG_LAST_RELOAD_SUCCESSFUL,
    &CONFIG_RELOADS,
    &CONFIG_LAST_RELOAD_SUCCESSFUL,
];

/// Whether `family` is one of [`PROCESS`].
pub fn is_process_wide(family: &Family) -> bool {
    PROCESS.iter().any(|p| std::ptr::eq(*p, family))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }

    #[test]
    fn names_are_unique_and_follow_the_conventions() {
        let mut names: Vec<&str> = ALL.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a family is listed twice");
        for f in ALL {
            assert!(f.name.starts_with("cec_"), "{}", f.name);
            assert!(valid_name(f.name), "{}", f.name);
            assert_eq!(f.kind == Kind::Counter, f.name.ends_with("_total"), "{}: only counters end in _total", f.name);
            if let Some(unit) = f.unit {
                // OpenMetrics: the family name (a counter's without `_total`) ends with its unit.
                assert!(f.header_name(true).ends_with(&format!("_{unit}")), "{} does not end in its unit", f.name);
            }
            assert!(f.help.ends_with('.') && !f.help.contains('\n') && !f.help.contains('\\'), "{}", f.name);
            for l in f.labels {
                assert!(valid_name(l) && !l.starts_with("__") && *l != "le", "{}: label {l}", f.name);
            }
            let mut labels = f.labels.to_vec();
            labels.sort_unstable();
            labels.dedup();
            assert_eq!(labels.len(), f.labels.len(), "{}: a label twice", f.name);
        }
    }

    #[test]
    fn openmetrics_names_counters_without_total() {
        assert_eq!(CALLS.header_name(true), "cec_calls");
        assert_eq!(CALLS.header_name(false), "cec_calls_total");
        assert_eq!(CATCHUP_SKIPPED.header_name(true), "cec_exporter_catchup_skipped_seconds");
        assert_eq!(UP.header_name(true), "cec_up");
        assert_eq!(CALL_TALK_DURATION.kind.type_name(), "histogram");
    }
}
