//! Renders the call metrics and the exporter's own telemetry as OpenMetrics 1.0 (with exemplars
//! carrying a `call_serial_no`) or the classic Prometheus text format 0.0.4: one walk over the
//! [`families`](super::families) table, whose samples the [`collect`](super::collect) collectors write
//! through [`Samples`], which takes every name and label name from the table.
//!
//! Design note: why by hand and not through a metrics crate. The `prometheus` crate renders only the
//! classic text format and has no exemplars; `prometheus-client` writes OpenMetrics with exemplars but
//! not the 0.0.4 text format that `promtool`, older scrapers and `curl` users read. Both own their
//! values inside a registry of live, atomically updated metrics, while ours are plain data (the
//! [`Aggregates`](super::aggregate::Aggregates)) that a poll commits together with the ledger and a
//! restart restores: we would have to copy every counter, bucket and exemplar into a registry on every
//! scrape (or replay it after a restore), and keep the registry's view and the committed view from
//! diverging. Writing the two formats by hand is one small writer over a table, allocation-free per
//! sample, and the golden files and `promtool check metrics` in the tests hold it to the specs.

use std::io::Write as _;

use super::aggregate::{Aggregates, Exemplar, Histogram};
use super::collect::{Calls, Collector, Own, SelfTelemetry};
use super::families::{Family, Kind};
use super::telemetry::TelemetryData;
use crate::cec::record::TaskType;

use super::negotiate::Format;

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

/// Renders everything into `out`: every family of the table, in its order.
pub fn render(out: &mut Vec<u8>, format: Format, p: &Published, t: &TelemetryData, build: &BuildInfo) {
    let om = format == Format::OpenMetrics;
    write_families::<Calls>(out, om, &[(None, p)], None);
    let own = Own { telemetry: t, build, remembered_calls: p.remembered_calls };
    write_families::<SelfTelemetry>(out, om, &[(None, &own)], None);
    if om {
        out.extend_from_slice(b"# EOF\n");
    }
}

/// One tenant's published state and telemetry, for [`render_tenants`].
pub struct TenantView<'a> {
    /// The `tenant` label's value.
    pub name: &'a str,
    pub published: &'a Published,
    pub telemetry: &'a TelemetryData,
}

/// Renders the families of several tenants (`--config.file`): each family's header once, then its
/// samples for every tenant in the order given, each with `tenant="<name>"` as its first label. The
/// process-wide families ([`super::families::PROCESS`]: build, web server) come once, without a
/// tenant, from `process`. With no tenant, tenant families are headers without samples.
pub fn render_tenants(
    out: &mut Vec<u8>,
    format: Format,
    tenants: &[TenantView<'_>],
    process: &TelemetryData,
    build: &BuildInfo,
) {
    let om = format == Format::OpenMetrics;
    let calls: Vec<(Option<&str>, &Published)> = tenants.iter().map(|t| (Some(t.name), t.published)).collect();
    write_families::<Calls>(out, om, &calls, None);
    let own: Vec<Own<'_>> = tenants
        .iter()
        .map(|t| Own { telemetry: t.telemetry, build, remembered_calls: t.published.remembered_calls })
        .collect();
    let sources: Vec<(Option<&str>, &Own<'_>)> = tenants.iter().zip(&own).map(|(t, o)| (Some(t.name), o)).collect();
    let process = Own { telemetry: process, build, remembered_calls: 0 };
    write_families::<SelfTelemetry>(out, om, &sources, Some(&process));
    if om {
        out.extend_from_slice(b"# EOF\n");
    }
}

/// Writes each family of a collector: its header lines from the table, then its samples from each
/// of `sources` (with its tenant label, if any). With tenants, `process` is the source of the
/// process-wide families, written once from it instead.
fn write_families<'s, C: Collector>(
    out: &mut Vec<u8>,
    om: bool,
    sources: &[(Option<&str>, &C::Source<'s>)],
    process: Option<&C::Source<'s>>,
) {
    for &(family, produce) in C::FAMILIES {
        let name = family.header_name(om);
        let _ = write!(out, "# HELP {name} {}\n# TYPE {name} {}\n", family.help, family.kind.type_name());
        if let (true, Some(unit)) = (om, family.unit) {
            let _ = writeln!(out, "# UNIT {name} {unit}");
        }
        if let (true, Some(process)) = (super::families::is_process_wide(family), process) {
            produce(process, &mut Samples { out, om, family, tenant: None });
            continue;
        }
        for &(tenant, source) in sources {
            produce(source, &mut Samples { out, om, family, tenant });
        }
    }
}

/// A sample value: counts are written as integers, everything else as a float.
#[derive(Clone, Copy, Debug)]
pub enum Value {
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

/// The sample writer of one family: a collector gives label values, in the order of the family's
/// declared label names, and the writer pairs them with those names.
pub struct Samples<'a> {
    out: &'a mut Vec<u8>,
    om: bool,
    family: &'static Family,
    /// Written as the first label, `tenant="…"`, when several tenants are rendered.
    tenant: Option<&'a str>,
}

impl Samples<'_> {
    /// One sample of a counter or gauge.
    pub fn sample(&mut self, labels: &[&str], value: Value) {
        self.write_with("", labels, None, None, value, None);
    }

    /// One sample with an opt-in label after the declared ones (`caller`, with `--metrics.callers`).
    pub fn sample_split(&mut self, labels: &[&str], split: (&'static str, &str), value: Value) {
        self.write_with("", labels, Some(split), None, value, None);
    }

    /// One sample with the call behind it (an exemplar, written in OpenMetrics only).
    pub fn sample_with_exemplar(&mut self, labels: &[&str], value: Value, exemplar: Option<&Exemplar>) {
        self.write("", labels, None, value, exemplar);
    }

    /// One histogram series: cumulative buckets with their exemplars, then `_sum` and `_count`.
    pub fn histogram(&mut self, labels: &[&str], h: &Histogram) {
        let Kind::Histogram { buckets: bounds } = self.family.kind else {
            unreachable!("{} is not a histogram", self.family.name)
        };
        debug_assert_eq!(h.buckets.len(), bounds.len() + 1, "{}: bucket layout", self.family.name);
        let mut cumulative = 0;
        let mut le_buf = ryu::Buffer::new();
        for (i, &count) in h.buckets.iter().enumerate() {
            cumulative += count;
            let le = match bounds.get(i) {
                Some(b) => le_buf.format(*b),
                None => "+Inf",
            };
            self.write("_bucket", labels, Some(le), Value::U(cumulative), h.exemplars[i].as_ref());
        }
        self.write("_sum", labels, None, Value::F(h.sum), None);
        self.write("_count", labels, None, Value::U(h.count), None);
    }

    fn write(&mut self, suffix: &str, values: &[&str], le: Option<&str>, value: Value, ex: Option<&Exemplar>) {
        self.write_with(suffix, values, None, le, value, ex);
    }

    fn write_with(
        &mut self,
        suffix: &str,
        values: &[&str],
        split: Option<(&'static str, &str)>,
        le: Option<&str>,
        value: Value,
        ex: Option<&Exemplar>,
    ) {
        let names = self.family.labels;
        // Names come from the table; a collector that passes another number of values is a bug.
        debug_assert_eq!(values.len(), names.len(), "{}: label values for {names:?}", self.family.name);
        let out = &mut *self.out;
        out.extend_from_slice(self.family.name.as_bytes());
        out.extend_from_slice(suffix.as_bytes());
        let tenant = self.tenant.map(|t| ("tenant", t));
        let pairs = tenant
            .into_iter()
            .chain(names.iter().zip(values).map(|(n, v)| (*n, *v)))
            .chain(split)
            .chain(le.map(|le| ("le", le)));
        let mut first = true;
        for (name, v) in pairs {
            out.push(if first { b'{' } else { b',' });
            first = false;
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"=\"");
            escape(out, v);
            out.push(b'"');
        }
        if !first {
            out.push(b'}');
        }
        out.push(b' ');
        value.write(out);
        if let (true, Some(ex)) = (self.om, ex) {
            out.extend_from_slice(b" # {call_serial_no=\"");
            out.extend_from_slice(itoa::Buffer::new().format(ex.call.0).as_bytes());
            out.extend_from_slice(b"\"} ");
            Value::F(ex.value).write(out);
            if let Some(ts) = ex.ts_ms {
                out.push(b' ');
                write_ms_as_seconds(out, ts);
            }
        }
        out.push(b'\n');
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cec::record::{CallId, CallRecord, CallState};
    use crate::cec::wire::{Field, RejectReason};
    use crate::cec::{Endpoint, ErrorKind};
    use crate::metrics::aggregate::Leg;
    use crate::metrics::classify::{reason_name, Outcome};
    use crate::metrics::families;

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
        t.api_requests.insert((Endpoint::QueryCallDetailRecord, crate::events::CODE_OTHER), 2);
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
        // A second unknown code past a cap of one: counted under reason_code="other" and as folded.
        p.aggregates.set_reason_cap(1);
        p.aggregates.observe(
            CallId(45),
            TaskType::Unknown,
            &CallRecord { reason_code: Some(1000), end_ms: Some(1_700_000_300_000), ..Default::default() },
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
        t.open_calls_evicted = 1;
        t.state_commits = 2;
        t.state_commit_failures = 1;
        t.state_bytes = Some(1_572_864);
        t.catchup_skipped_seconds = 90.5;
        t.catchup_remaining_seconds = 3_600.0;
        t.incomplete_reads = 1;
        t.late_records = 5;
        t.max_lateness_seconds = 12.75;
        t.lookback_seconds = Some(300.0);
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
                let line = got.lines().zip(want.lines()).position(|(a, b)| a != b).map(|i| i + 1);
                panic!(
                    "{file} differs from the rendered exposition (first differing line {line:?}); \
                     run UPDATE_GOLDEN=1 cargo test --lib metrics::expose if the change is intended\n{got}"
                );
            }
        }
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

    /// Parses a rendered exposition into samples: the family (from the table) and the label pairs.
    /// Panics when a sample names no family of the table or its label names are not the family's
    /// declared ones in order (plus `le`, last, on a histogram's buckets).
    fn samples(text: &str) -> Vec<(&'static Family, Vec<(&str, &str)>)> {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            // OpenMetrics puts an exemplar after ` # `; its label is not a series label.
            let series = line.split(" # ").next().unwrap();
            let (series, _value) = series.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"))),
                None => (series, ""),
            };
            let (family, bucket) = families::ALL
                .iter()
                .find_map(|f| match f.kind {
                    Kind::Histogram { .. } => match name.strip_prefix(f.name) {
                        Some("_bucket") => Some((*f, true)),
                        Some("_sum" | "_count") => Some((*f, false)),
                        _ => None,
                    },
                    _ => (name == f.name).then_some((*f, false)),
                })
                .unwrap_or_else(|| panic!("sample of no family in the table: {line}"));
            let pairs: Vec<(&str, &str)> = if labels.is_empty() {
                Vec::new()
            } else {
                labels
                    .split(',')
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or_else(|| panic!("bad label in {line}"));
                        (k, v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or_else(|| panic!("{line}")))
                    })
                    .collect()
            };
            let mut want: Vec<&str> = family.labels.to_vec();
            if bucket {
                want.push("le");
            }
            let got: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
            assert_eq!(got, want, "label names of {line}");
            out.push((family, pairs));
        }
        out
    }

    /// Whether `value` is one of the fixed values the label `label` of `family` can take: enum labels,
    /// bucket bounds, numeric codes, the build. Nothing a record carries as free text or a number.
    fn allowed(family: &Family, label: &str, value: &str) -> bool {
        let decimal = |v: &str, max: u32| v.parse::<u32>().is_ok_and(|n| n <= max && n.to_string() == v);
        match label {
            "task_type" => TaskType::ALL.iter().any(|t| t.label() == value),
            "outcome" => Outcome::ALL.iter().any(|o| o.label() == value),
            "reason_code" => value == "none" || decimal(value, u16::MAX.into()),
            "reason" if std::ptr::eq(family, &families::RECORDS_REJECTED) => {
                RejectReason::ALL.iter().any(|r| r.label() == value)
            }
            "reason" => {
                value == "none" || TaskType::ALL.iter().any(|&t| (0..=u16::MAX).any(|c| reason_name(t, c) == value))
            }
            "le" => {
                let Kind::Histogram { buckets } = family.kind else { return false };
                value == "+Inf" || buckets.iter().any(|b| ryu::Buffer::new().format(*b) == value)
            }
            "leg" => Leg::ALL.iter().any(|l| l.label() == value),
            "state" => CallState::OPEN.iter().any(|s| s.label() == value),
            "version" => value == build().version,
            "revision" => value == build().revision,
            "endpoint" => Endpoint::ALL.iter().any(|e| e.label() == value),
            "code" => value == "none" || (decimal(value, 599) && value.len() == 3),
            "error" => ErrorKind::ALL.iter().any(|k| k.label() == value),
            "field" => Field::ALL.iter().any(|f| f.name() == value),
            "result" => value == "success" || value == "failure",
            _ => false,
        }
    }

    /// A page as CEC returns it, every record carrying phone numbers (`caller`, `called`, the CLIP
    /// numbers `callerPresent`/`agentPresent`, and the `callerNo`/`calleeNo` other CEC APIs use) and
    /// third-party free text in `callData`; some put a phone number where a code belongs.
    const PAGE: &str = r#"{"retCode":"0","retMsg":"Query call detail record successfully","result":{"total":7,"callInfo":[
        {"callSerialNo":"1037058396471308289","state":3,"taskType":"1","reasonCode":1,"caller":"+8613812345678","called":"13987654321","callerPresent":"4008123456","agentPresent":"95588123","callerNo":"+8613812345678","calleeNo":"13987654321","callData":"VIP customer Zhang Wei, ID 110101199003077777, asked for a refund","startTime":1621576992000,"endTime":1621577022000,"alertingTime":1621576994000,"talkingTime":1621576995000,"releaseTime":1621577022000,"talkDuration":26,"agentAlertingTime":1621576992000,"agentTalkingTime":1621576994000,"agentReleaseTime":1621577022000,"agentTalkDuration":27},
        {"callSerialNo":"1037058396471308290","state":"3","taskType":"2","reasonCode":"5","caller":"02161234567","called":"13700001111","callData":"{\"campaign\":\"renewal\",\"note\":\"call back after 6pm\"}","startTime":"1621576993000","endTime":"1621577053000","alertingTime":"1621576994000","talkDuration":"0"},
        {"callSerialNo":"1037058396471308291","state":3,"taskType":"13812345678","reasonCode":"13812345678","caller":"+8615900002222","called":"18688889999","callData":"wrong number\nsecond line \"quoted\" \\ backslash","startTime":1621576995000,"endTime":1621577000000,"talkDuration":"n/a"},
        {"callSerialNo":"1037058396471308292","state":2,"taskType":"3","caller":"+8613311112222","called":"13444445555","callerPresent":"+8613311112222","callData":"prefers Mandarin","startTime":1621577010000,"alertingTime":1621577011000,"talkingTime":1621577012000},
        {"callSerialNo":"1037058396471308293","state":1,"caller":"075512345678","called":"17712345678","callData":"x","startTime":1621577015000},
        {"callSerialNo":"+8613812345678","state":3,"caller":"+8613655556666","callData":"serial is a phone number"},
        {"state":3,"caller":"+8613977778888","called":"13500009999","callData":"no serial at all"}
    ]}}"#;

    const SECRETS: &[&str] = &[
        "13812345678",
        "13987654321",
        "4008123456",
        "95588123",
        "02161234567",
        "13700001111",
        "15900002222",
        "18688889999",
        "13311112222",
        "13444445555",
        "075512345678",
        "17712345678",
        "13655556666",
        "13977778888",
        "13500009999",
        "Zhang",
        "110101199003077777",
        "refund",
        "renewal",
        "call back",
        "wrong number",
        "quoted",
        "Mandarin",
        "no serial",
        "serial is",
    ];

    #[test]
    fn no_phone_number_or_free_text_can_reach_a_label() {
        use crate::cec::record::TaskQuery;
        use crate::cec::window::Window;
        use crate::cec::wire::parse_page;
        use crate::ingest::ledger::{PollSummary, State};
        use crate::ingest::plan::Read;

        // The real path: the vendor's page parsed and told to the exporter's observer as the client
        // does (which counts rejections and unusable fields), each record admitted by the ledger (which
        // counts ended calls into the aggregates).
        let page = parse_page(PAGE.as_bytes()).unwrap();
        assert_eq!(page.records.len(), 7);
        let read = Read {
            query: TaskQuery::ALL_BUT_ITA,
            window: Window { start_ms: 1_621_576_000_000, end_ms: 1_621_578_000_000 },
            targeted: false,
        };
        let mut state = State::default();
        let mut summary = PollSummary::default();
        let telemetry = crate::metrics::telemetry::Telemetry::default();
        crate::cec::ApiObserver::page(&telemetry, read.query, 0, &page.records);
        for rec in page.records.iter().flatten() {
            state.admit(rec, &read, &mut summary);
            // What the poller reports after the commit.
            if !rec.invalid.is_empty() {
                crate::events::InternalEvent::emit(
                    &crate::events::FieldInvalid { query: read.query, record: rec },
                    &telemetry,
                );
            }
        }
        let t = TelemetryData { up: true, polls: 1, ..telemetry.snapshot() };
        assert_eq!(t.records_fetched, 7);
        // The fixture exercises what it should: counted, open, rejected and invalid-field records.
        assert_eq!((summary.counted, summary.tracked), (3, 2));
        assert_eq!(t.records_rejected.values().sum::<u64>(), 2);
        assert!(t.fields_invalid.contains_key(&Field::ReasonCode), "{:?}", t.fields_invalid);
        let p = Published {
            aggregates: state.aggregates,
            in_progress: state.ledger.in_progress(),
            remembered_calls: state.ledger.counted_len() as u64,
        };

        for format in [Format::OpenMetrics, Format::Text] {
            let mut out = Vec::new();
            render(&mut out, format, &p, &t, &build());
            let text = String::from_utf8(out).unwrap();
            for secret in SECRETS {
                assert!(!text.contains(secret), "{format:?} exposition contains {secret:?}\n{text}");
            }
            let samples = samples(&text);
            assert!(samples.len() > 300, "{format:?}: {} samples", samples.len());
            for (family, labels) in samples {
                for (k, v) in labels {
                    assert!(allowed(family, k, v), "{format:?}: {}{{{k}=\"{v}\"}} is not a fixed value", family.name);
                }
            }
        }
    }

    /// Every family of the table has its `# TYPE` line, once, in the table's order.
    fn assert_every_family_once_in_order(text: &str, format: Format) {
        let om = format == Format::OpenMetrics;
        let typed: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        let want: Vec<String> =
            families::ALL.iter().map(|f| format!("{} {}", f.header_name(om), f.kind.type_name())).collect();
        assert_eq!(typed, want, "{format:?}");
    }

    /// Every sample of the golden state carries exactly its family's declared label names, and every
    /// family of the table appears (with `# TYPE`) in both formats, in the table's order.
    #[test]
    fn every_family_is_rendered_with_its_declared_labels() {
        let (p, t) = golden_state();
        for format in [Format::OpenMetrics, Format::Text] {
            let mut out = Vec::new();
            render(&mut out, format, &p, &t, &build());
            let text = String::from_utf8(out).unwrap();
            assert_every_family_once_in_order(&text, format);
            let samples = samples(&text);
            for f in families::ALL {
                assert!(samples.iter().any(|(g, _)| std::ptr::eq(*g, f)), "{format:?}: no sample of {}", f.name);
            }
        }
    }

    /// Several tenants: each family once, in the table's order; every sample of a tenant family
    /// carries `tenant` first and then exactly the declared labels; the process-wide families come
    /// once, without a tenant; and each tenant's numbers are its own.
    #[test]
    fn tenants_share_each_family_and_carry_their_label_first() {
        let (a, ta) = golden_state();
        let (b, mut tb) = sample_state();
        tb.up = false;
        tb.accept_errors = 99; // a tenant's copy of a process counter is never shown
        let process = TelemetryData { accept_errors: 3, web_config_reloads: 2, ..Default::default() };
        let tenants = [
            TenantView { name: "brand-a", published: &a, telemetry: &ta },
            TenantView { name: "brand-b", published: &b, telemetry: &tb },
        ];
        for format in [Format::OpenMetrics, Format::Text] {
            let mut out = Vec::new();
            render_tenants(&mut out, format, &tenants, &process, &build());
            let text = String::from_utf8(out).unwrap();
            assert_every_family_once_in_order(&text, format);
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let process_wide = families::PROCESS.iter().any(|f| line.starts_with(f.name));
                assert_eq!(line.contains("tenant="), !process_wide, "{line}");
                if !process_wide {
                    assert!(line.contains("{tenant=\"brand-a\"") || line.contains("{tenant=\"brand-b\""), "{line}");
                }
            }
            for line in [
                "cec_up{tenant=\"brand-a\"} 1",
                "cec_up{tenant=\"brand-b\"} 0",
                "cec_calls_total{tenant=\"brand-b\",task_type=\"cec_bidirectional\",outcome=\"answered\"} 1",
                "cec_exporter_remembered_calls{tenant=\"brand-b\"} 2",
                "cec_exporter_build_info{version=\"1.2.3\",revision=\"abc\"} 1",
                "cec_exporter_http_accept_errors_total 3",
            ] {
                assert!(text.lines().any(|l| l == line), "{format:?}: missing {line}\n{text}");
            }
            assert_eq!(text.matches("cec_exporter_build_info{").count(), 1);
        }
        // A replica with no tenant: headers only, and the process families.
        let mut out = Vec::new();
        render_tenants(&mut out, Format::Text, &[], &process, &build());
        let text = String::from_utf8(out).unwrap();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(samples.iter().all(|l| families::PROCESS.iter().any(|f| l.starts_with(f.name))), "{samples:?}");
        assert!(samples.contains(&"cec_exporter_build_info{version=\"1.2.3\",revision=\"abc\"} 1"), "{samples:?}");
        assert!(samples.contains(&"cec_exporter_http_accept_errors_total 3"), "{samples:?}");
    }
}
