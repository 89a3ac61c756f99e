//! Renders the aggregates and the exporter's telemetry as OpenMetrics 1.0 (with exemplars carrying a
//! `call_serial_no`) or the classic Prometheus text format 0.0.4, picked from the scraper's `Accept`
//! header. Written by hand over plain data rather than through a metrics registry: the aggregates must
//! be plain data to be committed with the ledger, and both formats come from one walk over them.

use std::io::Write as _;

use super::aggregate::{Aggregates, Exemplar, Histogram, Leg, DELAY_BUCKETS, NO_REASON, TALK_BUCKETS};
use super::classify::{reason_name, Outcome};
use super::telemetry::{Endpoint, ErrorKind, TelemetryData};
use crate::cec::record::{CallState, TaskType};
use crate::cec::wire::{Field, RejectReason};

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    /// OpenMetrics when the scraper accepts it (Prometheus asks for it), the classic text otherwise.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Version and revision for `cec_exporter_build_info`.
#[derive(Clone, Debug)]
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
}

/// What the poller publishes after each committed poll.
#[derive(Clone, Debug, Default)]
pub struct Published {
    pub aggregates: Aggregates,
    /// Open calls by task type and state (0–2).
    pub in_progress: [[u64; 3]; TaskType::COUNT],
    /// Counted calls the ledger still remembers.
    pub remembered_calls: u64,
}

const POLLED: &str = "; from the exporter's background poll of CEC queryCallDetailRecord";

struct W<'a> {
    out: &'a mut Vec<u8>,
    om: bool,
}

impl W<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str, unit: Option<&str>) {
        // OpenMetrics names a counter family without its `_total` suffix.
        let fam = if self.om && kind == "counter" { name.strip_suffix("_total").unwrap_or(name) } else { name };
        let _ = write!(self.out, "# HELP {fam} {help}\n# TYPE {fam} {kind}\n");
        if let (true, Some(u)) = (self.om, unit) {
            let _ = writeln!(self.out, "# UNIT {fam} {u}");
        }
    }

    fn sample(&mut self, name: &str, suffix: &str, labels: &[(&str, &str)], value: Value, ex: Option<&Exemplar>) {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(suffix.as_bytes());
        if !labels.is_empty() {
            self.out.push(b'{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                self.out.extend_from_slice(k.as_bytes());
                self.out.extend_from_slice(b"=\"");
                escape(self.out, v);
                self.out.push(b'"');
            }
            self.out.push(b'}');
        }
        self.out.push(b' ');
        value.write(self.out);
        if let (true, Some(ex)) = (self.om, ex) {
            self.out.extend_from_slice(b" # {call_serial_no=\"");
            self.out.extend_from_slice(itoa::Buffer::new().format(ex.call.0).as_bytes());
            self.out.extend_from_slice(b"\"} ");
            Value::F(ex.value).write(self.out);
            if let Some(ts) = ex.ts_ms {
                self.out.push(b' ');
                write_ms_as_seconds(self.out, ts);
            }
        }
        self.out.push(b'\n');
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], bounds: &[f64], h: &Histogram) {
        let mut cumulative = 0;
        let n = labels.len();
        for (i, &count) in h.buckets.iter().enumerate() {
            cumulative += count;
            let mut le_buf = ryu::Buffer::new();
            let le = match bounds.get(i) {
                Some(b) => le_buf.format(*b),
                None => "+Inf",
            };
            let mut all = [("", ""); 4];
            all[..n].copy_from_slice(labels);
            all[n] = ("le", le);
            self.sample(name, "_bucket", &all[..=n], Value::U(cumulative), h.exemplars[i].as_ref());
        }
        self.sample(name, "_sum", labels, Value::F(h.sum), None);
        self.sample(name, "_count", labels, Value::U(h.count), None);
    }
}

#[derive(Clone, Copy)]
enum Value {
    U(u64),
    F(f64),
}

impl Value {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Value::U(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
            Value::F(f) if f.is_nan() => out.extend_from_slice(b"NaN"),
            Value::F(f) if f.is_infinite() => out.extend_from_slice(if f > 0.0 { b"+Inf" } else { b"-Inf" }),
            Value::F(f) => out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes()),
        }
    }
}

/// Epoch ms as an RFC 3339 time with milliseconds, for log lines.
pub fn rfc3339_ms(ms: i64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

fn write_ms_as_seconds(out: &mut Vec<u8>, ms: i64) {
    let _ = write!(out, "{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
}

fn escape(out: &mut Vec<u8>, v: &str) {
    for b in v.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// Renders everything into `out`.
pub fn render(out: &mut Vec<u8>, format: Format, p: &Published, t: &TelemetryData, build: &BuildInfo) {
    let mut w = W { out, om: format == Format::OpenMetrics };
    let a = &p.aggregates;

    w.family(
        "cec_calls_total",
        "counter",
        &format!("Ended calls, each counted once, by task type and outcome{POLLED}."),
        None,
    );
    for t in TaskType::ALL {
        for o in Outcome::ALL {
            let labels = [("task_type", t.label()), ("outcome", o.label())];
            w.sample("cec_calls", "_total", &labels, Value::U(a.calls[t.index()][o.index()]), None);
        }
    }

    w.family(
        "cec_call_end_reasons_total",
        "counter",
        &format!(
            "Ended calls by the reason code CEC gives for their end (page codes 0-6, Q.850 causes for ITA){POLLED}."
        ),
        None,
    );
    let mut code_buf = itoa::Buffer::new();
    for t in TaskType::ALL {
        for (&code, c) in &a.end_reasons[t.index()] {
            let (code_s, name) =
                if code == NO_REASON { ("none", "none") } else { (code_buf.format(code), reason_name(t, code as u16)) };
            let labels = [("task_type", t.label()), ("reason_code", code_s), ("reason", name)];
            w.sample("cec_call_end_reasons", "_total", &labels, Value::U(c.count), c.exemplar.as_ref());
        }
    }

    for (name, help, hs) in [
        (
            "cec_call_talk_duration_seconds",
            "Customer talk time of ended calls that were answered (talkDuration above zero)",
            &a.talk,
        ),
        (
            "cec_call_agent_talk_duration_seconds",
            "Agent talk time of ended calls whose agent talked (agentTalkDuration above zero)",
            &a.agent_talk,
        ),
    ] {
        w.family(name, "histogram", &format!("{help}{POLLED}."), Some("seconds"));
        for t in TaskType::ALL {
            w.histogram(name, &[("task_type", t.label())], TALK_BUCKETS, &hs[t.index()]);
        }
    }

    w.family(
        "cec_call_answer_delay_seconds",
        "histogram",
        &format!("Ring time before answer of ended calls: talkingTime minus alertingTime (customer) or agentTalkingTime minus agentAlertingTime (agent){POLLED}."),
        Some("seconds"),
    );
    for t in TaskType::ALL {
        for leg in Leg::ALL {
            let labels = [("task_type", t.label()), ("leg", leg.label())];
            w.histogram(
                "cec_call_answer_delay_seconds",
                &labels,
                DELAY_BUCKETS,
                &a.answer_delay[t.index()][leg as usize],
            );
        }
    }

    w.family(
        "cec_calls_in_progress",
        "gauge",
        &format!("Calls seen not yet ended (state 0 to be called, 1 calling, 2 talking){POLLED}."),
        None,
    );
    for t in TaskType::ALL {
        for s in CallState::OPEN {
            let labels = [("task_type", t.label()), ("state", s.label())];
            w.sample("cec_calls_in_progress", "", &labels, Value::U(p.in_progress[t.index()][s as usize]), None);
        }
    }

    w.family(
        "cec_last_call_end_timestamp_seconds",
        "gauge",
        &format!("End time of the newest ended call counted, Unix seconds{POLLED}."),
        Some("seconds"),
    );
    for t in TaskType::ALL {
        if let Some(ms) = a.last_call_end_ms[t.index()] {
            w.sample(
                "cec_last_call_end_timestamp_seconds",
                "",
                &[("task_type", t.label())],
                Value::F(ms as f64 / 1000.0),
                None,
            );
        }
    }

    // The exporter's own health.
    w.family("cec_up", "gauge", "1 when the exporter's last background poll of CEC succeeded, 0 otherwise.", None);
    w.sample("cec_up", "", &[], Value::U(u64::from(t.up)), None);
    w.family(
        "cec_exporter_build_info",
        "gauge",
        "Version and revision of the running cec-exporter, which polls CEC in the background; always 1.",
        None,
    );
    w.sample(
        "cec_exporter_build_info",
        "",
        &[("version", build.version), ("revision", build.revision)],
        Value::U(1),
        None,
    );
    w.family(
        "cec_exporter_last_successful_poll_timestamp_seconds",
        "gauge",
        "When the exporter's last successful background poll of CEC finished, Unix seconds.",
        Some("seconds"),
    );
    if let Some(ms) = t.last_success_ms {
        w.sample("cec_exporter_last_successful_poll_timestamp_seconds", "", &[], Value::F(ms as f64 / 1000.0), None);
    }
    w.family(
        "cec_exporter_poll_duration_seconds",
        "gauge",
        "How long the exporter's last background poll of CEC took.",
        Some("seconds"),
    );
    w.sample("cec_exporter_poll_duration_seconds", "", &[], Value::F(t.last_poll_seconds), None);
    w.family("cec_exporter_polls_total", "counter", "Background polls of CEC the exporter attempted.", None);
    w.sample("cec_exporter_polls", "_total", &[], Value::U(t.polls), None);
    w.family(
        "cec_exporter_poll_failures_total",
        "counter",
        "Background polls of CEC that failed and were left without trace (retried later).",
        None,
    );
    w.sample("cec_exporter_poll_failures", "_total", &[], Value::U(t.poll_failures), None);
    w.family(
        "cec_exporter_last_poll_api_requests",
        "gauge",
        "queryCallDetailRecord requests the exporter's last successful background poll made.",
        None,
    );
    w.sample("cec_exporter_last_poll_api_requests", "", &[], Value::U(t.last_poll_requests), None);

    w.family(
        "cec_exporter_api_requests_total",
        "counter",
        "HTTP requests the exporter's background poll made to CEC, by endpoint and HTTP status code (none: no answer).",
        None,
    );
    let mut status_buf = itoa::Buffer::new();
    for (&(ep, status), &n) in &t.api_requests {
        let code = if status == 0 { "none" } else { status_buf.format(status) };
        w.sample("cec_exporter_api_requests", "_total", &[("endpoint", ep.label()), ("code", code)], Value::U(n), None);
    }
    w.family(
        "cec_exporter_api_errors_total",
        "counter",
        "Failed CEC API exchanges of the exporter's background poll, by endpoint and kind of error.",
        None,
    );
    // Every combination from zero, so the first error is an increase Prometheus can see.
    for (ep, kind) in Endpoint::ALL.into_iter().flat_map(|ep| ErrorKind::ALL.map(|k| (ep, k))) {
        let n = t.api_errors.get(&(ep, kind)).copied().unwrap_or(0);
        w.sample(
            "cec_exporter_api_errors",
            "_total",
            &[("endpoint", ep.label()), ("error", kind.label())],
            Value::U(n),
            None,
        );
    }
    w.family(
        "cec_exporter_records_fetched_total",
        "counter",
        "Call records (callInfo entries) the exporter's background poll fetched from CEC, re-reads included.",
        None,
    );
    w.sample("cec_exporter_records_fetched", "_total", &[], Value::U(t.records_fetched), None);
    w.family(
        "cec_exporter_records_rejected_total",
        "counter",
        "Call records the exporter's background poll skipped because they cannot be counted (no usable callSerialNo or state), by reason; each fetch of a bad record counts.",
        None,
    );
    for r in RejectReason::ALL {
        let n = t.records_rejected.get(&r).copied().unwrap_or(0);
        w.sample("cec_exporter_records_rejected", "_total", &[("reason", r.label())], Value::U(n), None);
    }
    w.family(
        "cec_exporter_record_fields_invalid_total",
        "counter",
        "Optional record fields the exporter's background poll could not use (read as absent; the call still counts), by field.",
        None,
    );
    for f in Field::ALL {
        let n = t.fields_invalid.get(&f).copied().unwrap_or(0);
        w.sample("cec_exporter_record_fields_invalid", "_total", &[("field", f.name())], Value::U(n), None);
    }
    w.family(
        "cec_exporter_token_refreshes_total",
        "counter",
        "Bearer tokens the exporter's background poll fetched from tokenByAkSk (the first one included).",
        None,
    );
    w.sample("cec_exporter_token_refreshes", "_total", &[], Value::U(t.token_refreshes), None);
    w.family(
        "cec_exporter_open_calls_abandoned_total",
        "counter",
        "Calls the exporter's background poll stopped waiting for because CEC never showed them ended within --poll.max-call-duration.",
        None,
    );
    w.sample("cec_exporter_open_calls_abandoned", "_total", &[], Value::U(t.open_calls_abandoned), None);
    w.family(
        "cec_exporter_state_commits_total",
        "counter",
        "Polls the exporter's background poll committed to the --state.path store.",
        None,
    );
    w.sample("cec_exporter_state_commits", "_total", &[], Value::U(t.state_commits), None);
    w.family(
        "cec_exporter_state_commit_failures_total",
        "counter",
        "Commits to the --state.path store that failed (disk full, read-only); the poll was undone and is retried.",
        None,
    );
    w.sample("cec_exporter_state_commit_failures", "_total", &[], Value::U(t.state_commit_failures), None);
    w.family(
        "cec_exporter_state_bytes",
        "gauge",
        "Size of the --state.path store after the background poll's last commit.",
        Some("bytes"),
    );
    if let Some(b) = t.state_bytes {
        w.sample("cec_exporter_state_bytes", "", &[], Value::U(b), None);
    }
    w.family(
        "cec_exporter_catchup_skipped_seconds_total",
        "counter",
        "Outage time beyond --poll.max-catchup that the background poll skipped: calls that started then are not counted.",
        Some("seconds"),
    );
    w.sample("cec_exporter_catchup_skipped_seconds", "_total", &[], Value::F(t.catchup_skipped_seconds), None);
    w.family(
        "cec_exporter_incomplete_reads_total",
        "counter",
        "Windows whose pages the exporter's background poll could not make cover CEC's answer (it kept changing while paged); calls there may be missed.",
        None,
    );
    w.sample("cec_exporter_incomplete_reads", "_total", &[], Value::U(t.incomplete_reads), None);
    w.family(
        "cec_exporter_late_records_total",
        "counter",
        "Calls the exporter's background poll first saw although they started before the previous poll's window end (CEC returned them late).",
        None,
    );
    w.sample("cec_exporter_late_records", "_total", &[], Value::U(t.late_records), None);
    w.family(
        "cec_exporter_max_record_lateness_seconds",
        "gauge",
        "Largest lateness of a late record seen since start: how much of --poll.lookback the background poll needed.",
        Some("seconds"),
    );
    w.sample("cec_exporter_max_record_lateness_seconds", "", &[], Value::F(t.max_lateness_seconds), None);
    w.family(
        "cec_exporter_remembered_calls",
        "gauge",
        "Counted calls the exporter's background poll still remembers so that re-reads do not count them twice.",
        None,
    );
    w.sample("cec_exporter_remembered_calls", "", &[], Value::U(p.remembered_calls), None);
    if w.om {
        w.out.extend_from_slice(b"# EOF\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cec::record::{CallId, CallRecord};

    fn build() -> BuildInfo {
        BuildInfo { version: "1.2.3", revision: "abc" }
    }

    fn sample_state() -> (Published, TelemetryData) {
        let mut p = Published::default();
        let rec = CallRecord {
            reason_code: Some(17),
            talk_s: Some(0.0),
            alerting_ms: Some(1_700_000_000_000),
            end_ms: Some(1_700_000_012_345),
            ..Default::default()
        };
        p.aggregates.observe(CallId(1_037_058_396_471_308_289), TaskType::ItaBidirectional, &rec);
        let answered = CallRecord {
            reason_code: Some(1),
            talk_s: Some(26.0),
            alerting_ms: Some(1_000),
            talking_ms: Some(3_500),
            end_ms: Some(30_000),
            ..Default::default()
        };
        p.aggregates.observe(CallId(9_007_199_254_740_993), TaskType::CecBidirectional, &answered);
        p.in_progress[TaskType::VoiceNotification.index()][2] = 4;
        p.remembered_calls = 2;
        let mut t =
            TelemetryData { up: true, polls: 3, last_success_ms: Some(1_700_000_100_000), ..Default::default() };
        t.api_requests.insert((Endpoint::QueryCallDetailRecord, 200), 6);
        t.api_requests.insert((Endpoint::Token, 0), 1);
        t.api_errors.insert((Endpoint::Token, ErrorKind::Transport), 1);
        (p, t)
    }

    fn text(format: Format) -> String {
        let (p, t) = sample_state();
        let mut out = Vec::new();
        render(&mut out, format, &p, &t, &build());
        String::from_utf8(out).unwrap()
    }

    /// A fixed state where every family has samples: exemplars with and without a timestamp, a reason
    /// code without a name, every optional gauge present, non-zero self-telemetry everywhere.
    fn golden_state() -> (Published, TelemetryData) {
        let (mut p, mut t) = sample_state();
        let no_end =
            CallRecord { reason_code: Some(4), talk_s: Some(3_700.0), agent_talk_s: Some(12.5), ..Default::default() };
        p.aggregates.observe(CallId(42), TaskType::CecBidirectional, &no_end);
        let agent = CallRecord {
            task_type: Some(TaskType::VoiceNotification),
            agent_alerting_ms: Some(1_700_000_200_000),
            agent_talking_ms: Some(1_700_000_200_750),
            agent_talk_s: Some(61.0),
            end_ms: Some(1_700_000_261_999),
            ..Default::default()
        };
        p.aggregates.observe(CallId(43), TaskType::VoiceNotification, &agent);
        p.aggregates.observe(
            CallId(44),
            TaskType::Unknown,
            &CallRecord { reason_code: Some(999), ..Default::default() },
        );
        p.in_progress[TaskType::ItaBidirectional.index()] = [1, 0, 7];
        t.poll_failures = 1;
        t.last_poll_seconds = 0.25;
        t.last_poll_requests = 4;
        t.records_fetched = 120;
        t.records_rejected.insert(RejectReason::InvalidState, 2);
        t.fields_invalid.insert(Field::TalkDuration, 3);
        t.token_refreshes = 2;
        t.open_calls_abandoned = 1;
        t.state_commits = 2;
        t.state_commit_failures = 1;
        t.state_bytes = Some(1_572_864);
        t.catchup_skipped_seconds = 90.5;
        t.incomplete_reads = 1;
        t.late_records = 5;
        t.max_lateness_seconds = 12.75;
        (p, t)
    }

    /// The whole exposition of [`golden_state`] in both formats, compared byte for byte with the files
    /// under `src/metrics/testdata/`: names, help texts, label order and value formatting are a contract.
    /// `UPDATE_GOLDEN=1 cargo test --lib metrics::expose` rewrites them (review the diff!).
    #[test]
    fn golden_files() {
        let (p, t) = golden_state();
        for (format, file) in [(Format::OpenMetrics, "exposition.om.txt"), (Format::Text, "exposition.prom.txt")] {
            let mut out = Vec::new();
            render(&mut out, format, &p, &t, &build());
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics/testdata").join(file);
            if std::env::var_os("UPDATE_GOLDEN").is_some() {
                std::fs::write(&path, &out).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let got = String::from_utf8(out).unwrap();
            if got != want {
                let line = got.lines().zip(want.lines()).position(|(a, b)| a != b);
                panic!(
                    "{file} differs from the rendered exposition (first differing line {line:?}); \
                     run UPDATE_GOLDEN=1 cargo test --lib metrics::expose if the change is intended\n{got}"
                );
            }
        }
    }

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
    }

    #[test]
    fn text_format_lines() {
        let s = text(Format::Text);
        for line in [
            "# TYPE cec_calls_total counter",
            "cec_calls_total{task_type=\"ita_bidirectional\",outcome=\"busy\"} 1",
            "cec_calls_total{task_type=\"cec_bidirectional\",outcome=\"answered\"} 1",
            "cec_calls_total{task_type=\"unknown\",outcome=\"failed\"} 0",
            "cec_call_end_reasons_total{task_type=\"ita_bidirectional\",reason_code=\"17\",reason=\"user_busy\"} 1",
            "cec_call_end_reasons_total{task_type=\"cec_bidirectional\",reason_code=\"1\",reason=\"calling_party_hung_up\"} 1",
            "cec_call_talk_duration_seconds_bucket{task_type=\"cec_bidirectional\",le=\"10.0\"} 0",
            "cec_call_talk_duration_seconds_bucket{task_type=\"cec_bidirectional\",le=\"30.0\"} 1",
            "cec_call_talk_duration_seconds_bucket{task_type=\"cec_bidirectional\",le=\"+Inf\"} 1",
            "cec_call_talk_duration_seconds_sum{task_type=\"cec_bidirectional\"} 26.0",
            "cec_call_talk_duration_seconds_count{task_type=\"cec_bidirectional\"} 1",
            "cec_call_answer_delay_seconds_bucket{task_type=\"cec_bidirectional\",leg=\"customer\",le=\"3.0\"} 1",
            "cec_calls_in_progress{task_type=\"voice_notification\",state=\"2\"} 4",
            "cec_last_call_end_timestamp_seconds{task_type=\"ita_bidirectional\"} 1700000012.345",
            "cec_up 1",
            "cec_exporter_build_info{version=\"1.2.3\",revision=\"abc\"} 1",
            "cec_exporter_api_requests_total{endpoint=\"query_call_detail_record\",code=\"200\"} 6",
            "cec_exporter_api_requests_total{endpoint=\"token_by_ak_sk\",code=\"none\"} 1",
            "cec_exporter_api_errors_total{endpoint=\"token_by_ak_sk\",error=\"transport\"} 1",
            "cec_exporter_api_errors_total{endpoint=\"query_call_detail_record\",error=\"unauthorized\"} 0",
            "cec_exporter_records_rejected_total{reason=\"invalid_state\"} 0",
            "cec_exporter_polls_total 3",
            "cec_exporter_remembered_calls 2",
        ] {
            assert!(s.lines().any(|l| l == line), "missing line: {line}\n{s}");
        }
        assert!(!s.contains(" # {"), "no exemplars in the classic format");
        assert!(!s.contains("# EOF"));
        assert!(!s.contains("# UNIT"));
    }

    #[test]
    fn openmetrics_has_exemplars_and_eof() {
        let s = text(Format::OpenMetrics);
        for line in [
            "# TYPE cec_calls counter",
            "# HELP cec_calls Ended calls, each counted once, by task type and outcome; from the exporter's background poll of CEC queryCallDetailRecord.",
            "# UNIT cec_call_talk_duration_seconds seconds",
            "cec_call_end_reasons_total{task_type=\"ita_bidirectional\",reason_code=\"17\",reason=\"user_busy\"} 1 # {call_serial_no=\"1037058396471308289\"} 1.0 1700000012.345",
            "cec_call_talk_duration_seconds_bucket{task_type=\"cec_bidirectional\",le=\"30.0\"} 1 # {call_serial_no=\"9007199254740993\"} 26.0 30.000",
            "cec_call_answer_delay_seconds_bucket{task_type=\"cec_bidirectional\",leg=\"customer\",le=\"3.0\"} 1 # {call_serial_no=\"9007199254740993\"} 2.5 30.000",
        ] {
            assert!(s.lines().any(|l| l == line), "missing line: {line}\n{s}");
        }
        assert!(s.ends_with("# EOF\n"));
        // Each family is described once, and every sample follows its family's header.
        let types: Vec<&str> = s.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let mut uniq = types.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(types.len(), uniq.len());
    }

    #[test]
    fn no_phone_number_or_free_text_can_reach_a_label() {
        // Label values are drawn only from enums, numbers and the build info.
        let s = text(Format::Text);
        for line in s.lines().filter(|l| !l.starts_with('#')) {
            if let Some(labels) = line.split_once('{').and_then(|(_, r)| r.split_once('}')).map(|(l, _)| l) {
                for pair in labels.split(',') {
                    let (k, _) = pair.split_once('=').unwrap();
                    assert!(
                        [
                            "task_type",
                            "outcome",
                            "reason_code",
                            "reason",
                            "le",
                            "leg",
                            "state",
                            "version",
                            "revision",
                            "endpoint",
                            "code",
                            "error",
                            "field"
                        ]
                        .contains(&k),
                        "unexpected label {k}"
                    );
                }
            }
        }
    }
}
