//! Rendering `/metrics` with every label in use: every task type, outcome, histogram bucket and leg
//! observed, 40 reason codes per task type, exemplars everywhere, both formats.

use criterion::{black_box, criterion_group, criterion_main, Criterion};

use cec_exporter::cec::record::{CallId, CallRecord, TaskType};
use cec_exporter::cec::{Endpoint, ErrorKind};
use cec_exporter::metrics::expose::{render, BuildInfo, Published};
use cec_exporter::metrics::negotiate::Format;
use cec_exporter::metrics::telemetry::TelemetryData;

fn full() -> (Published, TelemetryData) {
    let mut p = Published::default();
    let mut id = 1_037_058_396_471_308_289;
    for t in TaskType::ALL {
        for code in 0..40u16 {
            for talk in [0.0, 3.0, 7.0, 20.0, 45.0, 90.0, 200.0, 400.0, 700.0, 1000.0, 2000.0, 3000.0, 3500.0, 9000.0] {
                id += 1;
                let rec = CallRecord {
                    reason_code: Some(code),
                    talk_s: Some(talk),
                    agent_talk_s: Some(talk + 1.0),
                    alerting_ms: Some(1_000),
                    talking_ms: Some(1_000 + (talk * 10.0) as i64),
                    agent_alerting_ms: Some(0),
                    agent_talking_ms: Some((talk * 40.0) as i64),
                    end_ms: Some(1_700_000_000_000),
                    ..Default::default()
                };
                p.aggregates.observe(CallId(id), t, &rec);
            }
        }
        p.in_progress[t.index()] = [1, 2, 3];
    }
    let mut d = TelemetryData {
        up: true,
        ready: true,
        polls: 1000,
        last_success_ms: Some(1_700_000_000_000),
        ..Default::default()
    };
    for code in [0, 200, 401, 403, 429, 500, 502, 503] {
        d.api_requests.insert((Endpoint::QueryCallDetailRecord, code), 10);
        d.api_requests.insert((Endpoint::Token, code), 1);
    }
    for k in [ErrorKind::Timeout, ErrorKind::Transport, ErrorKind::ServerError, ErrorKind::Decode] {
        d.api_errors.insert((Endpoint::QueryCallDetailRecord, k), 3);
    }
    (p, d)
}

fn bench(c: &mut Criterion) {
    let (p, d) = full();
    let build = BuildInfo { version: "0.1.0", revision: "abc" };
    let mut out = Vec::with_capacity(256 * 1024);
    render(&mut out, Format::OpenMetrics, &p, &d, &build);
    println!("exposition: {} bytes, {} lines (OpenMetrics)", out.len(), out.iter().filter(|&&b| b == b'\n').count());
    let mut g = c.benchmark_group("render_all_labels");
    for (name, f) in [("openmetrics", Format::OpenMetrics), ("text", Format::Text)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                render(&mut out, f, black_box(&p), black_box(&d), &build);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
