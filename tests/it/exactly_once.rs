//! Exactly-once counting against the simulator's ground truth: many pages, both task-type queries,
//! calls changing state across polls, late records, long calls, and what a steady-state poll costs.

use std::time::Duration;

use cec_sim::{CallSpec, Outcome, Traffic};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_equal_the_truth_across_pages_polls_and_state_changes() {
    let t0 = now();
    let mut rng = Rng::new(1);
    let mut calls = Vec::new();
    let mut serial = SERIAL0;
    // Calls that ended before the exporter starts (the backfill finds them)…
    for _ in 0..60 {
        serial += 1 + rng.below(1_000);
        let start = t0 - rng.range(5_000, 90_000);
        calls.push(random_call(&mut rng, serial, start));
    }
    // …calls that start and end while it polls every second (seen in states 0-2 first)…
    for _ in 0..60 {
        serial += 1 + rng.below(1_000);
        let start = t0 + rng.range(0, 4_000);
        calls.push(random_call(&mut rng, serial, start));
    }
    // …and late records: started 20 s ago, returned by CEC only in a few seconds.
    for _ in 0..10 {
        serial += 1 + rng.below(1_000);
        let late = CallSpec::builder(serial, 1 + rng.below(4) as u8, t0 - 20_000).latency_ms(24_000, 0).build();
        calls.push(late);
    }
    let n = calls.len() as u64;
    let sim = Sim::scripted(calls).await;
    let exp = Exporter::start(&sim.url, &["--cec.page-size", "7"]);

    let mut max_in_progress = 0.0_f64;
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    let m = loop {
        let m = exp.metrics().await;
        max_in_progress = max_in_progress.max(m.sum("cec_calls_in_progress", &[]));
        if m.calls_total() >= n || std::time::Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Two more polls: nothing more may be counted.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let m2 = exp.metrics().await;
    let truth = sim.sim.truth();
    assert_eq!(truth.ended_calls, n, "every scripted call has ended and is visible");
    assert_eq!(m.calls_total(), n, "{}", exp.stderr());
    assert_matches_truth(&m2, &truth);
    assert!(max_in_progress > 0.0, "some calls were seen in progress before they ended");
    assert_eq!(m2.sum("cec_calls_in_progress", &[]), 0.0);
    assert_eq!(m2.value("cec_up", &[]), 1.0);
    assert_eq!(m2.value("cec_exporter_poll_failures_total", &[]), 0.0);
    // The ten late records were noticed as late, by about the 20 s they started before they showed.
    assert!(m2.value("cec_exporter_late_records_total", &[]) >= 10.0, "{}", m2.text);
    let lateness = m2.value("cec_exporter_max_record_lateness_seconds", &[]);
    assert!((20.0..30.0).contains(&lateness), "lateness {lateness}");

    let stats = sim.sim.stats();
    assert!(stats.all_values_strings, "every request value is sent as a JSON string");
    assert!(stats.log.iter().all(|e| e.limit == Some(7)), "page size 7 on every request");
    let queried: std::collections::BTreeSet<Option<String>> = stats.log.iter().map(|e| e.task_type.clone()).collect();
    assert_eq!(queried, [Some("0".to_owned()), Some("4".to_owned())].into_iter().collect());
    assert!(stats.log.iter().any(|e| e.offset.unwrap_or(0) >= 14), "read past the second page");
    assert!(stats.requests_of("query", 200) > 0);
    assert_eq!(stats.requests_of("query", 401), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_call_is_counted_once_through_a_small_targeted_window() {
    let t0 = now();
    let long = CallSpec::builder(SERIAL0 + 1, 4, t0).ring_ms(500).talk_ms(9_000).build();
    let neighbour = CallSpec::builder(SERIAL0 + 2, 4, t0 + 300).outcome(Outcome::Busy).build();
    let sim = Sim::scripted(vec![long, neighbour]).await;
    // A 2 s lookback: the long call's start leaves the main window long before it ends.
    let exp = Exporter::start(&sim.url, &["--poll.lookback", "2s"]);
    let m = exp
        .wait_for("the long call", Duration::from_secs(30), |m| {
            m.value("cec_calls_total", &[("task_type", "ita_bidirectional"), ("outcome", "answered")]) == 1.0
        })
        .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let m2 = exp.metrics().await;
    assert_eq!(m2.calls_total(), 2, "{}", m.text);
    assert_matches_truth(&m2, &sim.sim.truth());
    let stats = sim.sim.stats();
    let targeted: Vec<_> = stats
        .log
        .iter()
        .filter(|e| e.task_type.as_deref() == Some("4"))
        .filter(|e| e.end.unwrap() - e.start.unwrap() <= 2_000 && e.start.unwrap() <= t0 && e.end.unwrap() >= t0)
        .collect();
    assert!(!targeted.is_empty(), "the open call was re-read with a window of at most 2 s around its start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_state_poll_costs_one_request_per_page() {
    let t0 = now();
    let mut calls = Vec::new();
    // 250 ended calls of types 1-3 and 30 ITA calls in the last minute.
    for i in 0..280u64 {
        let tt = if i < 250 { 1 + (i % 3) as u8 } else { 4 };
        calls.push(CallSpec::builder(SERIAL0 + i, tt, t0 - 60_000 + i as i64 * 100).talk_ms(1_000).build());
    }
    let sim = Sim::scripted(calls).await;
    let exp = Exporter::start(&sim.url, &["--poll.lookback", "10m"]);
    let m = exp.wait_for("all 280 calls", Duration::from_secs(20), |m| m.calls_total() == 280).await;
    let polls = m.value("cec_exporter_polls_total", &[]);
    let m = exp
        .wait_for("two more polls", Duration::from_secs(10), |m| {
            m.value("cec_exporter_polls_total", &[]) >= polls + 2.0
        })
        .await;
    // ceil(250 / 100) + ceil(30 / 100): no empty trailing page, no repeated page.
    assert_eq!(m.value("cec_exporter_last_poll_api_requests", &[]), 4.0);
    assert_eq!(m.calls_total(), 280);
    let stats = sim.sim.stats();
    let offsets: std::collections::BTreeSet<i64> = stats.log.iter().filter_map(|e| e.offset).collect();
    assert_eq!(offsets, [0, 100, 200].into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_longer_than_seven_days_is_read_in_windows_of_at_most_seven_days() {
    let t0 = now();
    let day = 24 * 3_600_000;
    let calls = vec![
        CallSpec::builder(SERIAL0 + 1, 2, t0 - 9 * day).build(),
        CallSpec::builder(SERIAL0 + 2, 4, t0 - 5 * day).build(),
        CallSpec::builder(SERIAL0 + 3, 3, t0 - 60_000).build(),
    ];
    let sim = Sim::scripted(calls).await;
    let exp = Exporter::start(&sim.url, &["--poll.backfill", "10d"]);
    let m = exp.wait_for("three calls", Duration::from_secs(20), |m| m.calls_total() == 3).await;
    assert_matches_truth(&m, &sim.sim.truth());
    let stats = sim.sim.stats();
    let mut windows: Vec<(i64, i64)> = stats.log.iter().map(|e| (e.start.unwrap(), e.end.unwrap())).collect();
    assert!(windows.iter().all(|(s, e)| e - s <= 7 * day), "no window longer than 7 days");
    assert!(stats.log.iter().all(|e| e.ret_code.as_deref() != Some("2")), "CEC never refused a window");
    // No gap: sorted by start, each window starts no later than the furthest end so far.
    windows.sort();
    let mut reach = windows[0].1;
    for (s, e) in &windows[1..] {
        assert!(*s <= reach, "gap between {reach} and {s}");
        reach = reach.max(*e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_traffic_over_many_polls_matches_the_truth() {
    let sim =
        Sim::start(Traffic::Random { calls_per_minute: 60.0, history: Duration::from_secs(600), duration_scale: 0.01 })
            .await;
    let exp = Exporter::start(&sim.url, &["--cec.page-size", "50", "--poll.backfill", "20m"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Traffic never stops: compare when the truth stood still around a scrape (no call ended
    // between the exporter's last poll and the scrape), which happens within seconds at one call a
    // second. Until then the exporter may lag the truth, but never exceed it.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let before = sim.sim.truth();
        let m = exp.metrics().await;
        let after = sim.sim.truth();
        assert!(m.calls_total() <= after.ended_calls, "never more than the truth");
        if before.ended_calls == after.ended_calls && m.calls_total() == after.ended_calls {
            assert_matches_truth(&m, &after);
            assert!(after.ended_calls > 500, "{} calls", after.ended_calls);
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never caught up with the truth:\n{}", exp.stderr());
        tokio::time::sleep(Duration::from_millis(37)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_repeated_on_two_pages_or_skipped_by_one_read_counts_once() {
    let t0 = now();
    let mut rng = Rng::new(5);
    let calls: Vec<CallSpec> =
        (0..40).map(|i| random_call(&mut rng, SERIAL0 + i, t0 - 20_000 + i as i64 * 100)).collect();
    let sim = Sim::scripted(calls).await;
    // Every page past the first of the first polls starts one record early.
    sim.faults(cec_sim::Faults { shift_pages: 8, ..Default::default() });
    let exp = Exporter::start(&sim.url, &["--cec.page-size", "7"]);
    let m = exp.wait_for("all 40 calls", Duration::from_secs(15), |m| m.calls_total() == 40).await;
    let m = exp
        .wait_for("two more polls", Duration::from_secs(10), |mm| {
            mm.value("cec_exporter_polls_total", &[]) >= m.value("cec_exporter_polls_total", &[]) + 2.0
        })
        .await;
    assert_matches_truth(&m, &sim.sim.truth());
    let stats = sim.sim.stats();
    assert_eq!(stats.log.iter().filter(|e| e.fault.as_deref() == Some("shift_pages")).count(), 8);
    assert_eq!(m.value("cec_exporter_poll_failures_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_skipped_by_a_shifting_page_of_a_window_no_later_poll_rereads_is_still_counted() {
    let t0 = now();
    // 150 calls well before the lookback: only the first poll's main window reads them.
    let calls: Vec<CallSpec> = (0..150u64)
        .map(|i| CallSpec::builder(SERIAL0 + i, 1 + (i % 4) as u8, t0 - 100_000 + i as i64 * 500).build())
        .collect();
    let sim = Sim::scripted(calls).await;
    // Ten pages of that first read start one record early (as when CEC's order changes under a reader):
    // ten records are repeated and ten are skipped, with the same total.
    sim.faults(cec_sim::Faults { shift_pages: 10, ..Default::default() });
    let exp = Exporter::start(&sim.url, &["--cec.page-size", "5", "--poll.lookback", "5s"]);
    let m = exp.wait_for("all 150 calls", Duration::from_secs(20), |m| m.calls_total() == 150).await;
    let m = exp
        .wait_for("two more polls", Duration::from_secs(10), |mm| {
            mm.value("cec_exporter_polls_total", &[]) >= m.value("cec_exporter_polls_total", &[]) + 2.0
        })
        .await;
    assert_matches_truth(&m, &sim.sim.truth());
    assert_eq!(m.value("cec_exporter_incomplete_reads_total", &[]), 0.0);
    let stats = sim.sim.stats();
    assert_eq!(stats.log.iter().filter(|e| e.fault.as_deref() == Some("shift_pages")).count(), 10);
}
