//! The ingest pipeline against a bare serde_json parse of the same page bytes: a page of 100 realistic
//! records (numbers and strings mixed, as CEC sends them), parsed into typed records, and parsed then
//! admitted and aggregated. The target is the full pipeline within 1.5x of `serde_json::Value`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use cec_exporter::cec::record::TaskQuery;
use cec_exporter::cec::window::Window;
use cec_exporter::cec::wire::parse_page;
use cec_exporter::ingest::ledger::{PollSummary, State};
use cec_exporter::ingest::plan::Read;

/// A page as CEC answers it: 100 records, times and durations alternately numbers and strings.
fn page(first_serial: u64) -> Vec<u8> {
    let mut recs = Vec::new();
    for i in 0..100u64 {
        let start = 1_700_000_000_000 + i as i64 * 1_000;
        let q = |v: i64| if i % 2 == 0 { v.to_string() } else { format!("\"{v}\"") };
        recs.push(format!(
            r#"{{"releaseTime":{rel},"called":"8888{i:04}","callerPresent":"640003","agentAlertingTime":{aa},"agentPresent":"640060","talkingTime":{tk},"alertingTime":{al},"caller":"8888905{i}","agentTalkingTime":{at},"agentReleaseTime":{rel},"agentTalkDuration":{atd},"callSerialNo":"{serial}","startTime":{st},"endTime":{rel},"talkDuration":{td},"state":{state},"reasonCode":{rc},"taskType":"{tt}","callData":"order 4711, priority normal"}}"#,
            rel = q(start + 30_000),
            aa = q(start),
            tk = q(start + 3_000),
            al = q(start + 2_000),
            at = q(start + 2_000),
            atd = q(28),
            serial = first_serial + i,
            st = q(start),
            td = q(27),
            state = q(3),
            rc = q((i % 7) as i64),
            tt = 1 + i % 3,
        ));
    }
    format!(
        r#"{{"result":{{"total":100,"callInfo":[{}]}},"retCode":"0","retMsg":"Query call detail record successfully"}}"#,
        recs.join(",")
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let bytes = page(1_037_058_396_471_308_289);
    let mut g = c.benchmark_group("page_of_100");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("serde_json_value", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(black_box(&bytes)).unwrap()))
    });
    g.bench_function("serde_json_ignored_any", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&bytes)).unwrap()))
    });
    g.bench_function("parse_page", |b| b.iter(|| black_box(parse_page(black_box(&bytes)).unwrap())));
    let read = Read {
        query: TaskQuery::ALL_BUT_ITA,
        window: Window { start_ms: 1_699_999_000_000, end_ms: 1_700_001_000_000 },
        targeted: false,
    };
    // Distinct pages of new calls, so every record takes the counting path; the ledger starts over
    // when the pages come round again (its size then stays that of a busy tenant's lookback).
    let pages: Vec<Vec<u8>> = (0..200u64).map(|p| page(1_037_058_396_471_308_289 + p * 100)).collect();
    g.bench_function("parse_admit_aggregate", |b| {
        let mut state = State::default();
        let mut i = 0;
        b.iter(|| {
            if i == pages.len() {
                i = 0;
                state = State::default();
            }
            let page = parse_page(black_box(&pages[i])).unwrap();
            i += 1;
            let mut s = PollSummary::default();
            for r in page.records.iter().flatten() {
                state.admit(r, &read, &mut s);
            }
            black_box(s)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
