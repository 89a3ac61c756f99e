//! The live exposition checked by Prometheus' own linter: the real exporter polls the simulator while
//! calls come and go, and `promtool check metrics` reads a classic-text scrape of `/metrics`.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs promtool (scripts/test.sh installs it and runs this test)"]
async fn promtool_finds_no_problem_in_a_live_scrape() {
    let t0 = now();
    let mut rng = Rng::new(11);
    let mut serial = SERIAL0;
    // Ended calls for the backfill, and calls still ringing or talking while the scrape happens, so
    // that every family has samples: counters, histograms with exemplars, open-call gauges.
    let mut calls = Vec::new();
    for i in 0..60 {
        serial += 1 + rng.below(1_000);
        let start = if i < 40 { t0 - rng.range(5_000, 90_000) } else { t0 + rng.range(0, 3_000) };
        calls.push(random_call(&mut rng, serial, start));
    }
    let sim = Sim::scripted(calls).await;
    let exp = Exporter::start(&sim.url, &["--cec.page-size", "9"]);
    let m = exp
        .wait_for("calls counted", Duration::from_secs(30), |m| m.calls_total() >= 40 && m.value("cec_up", &[]) == 1.0)
        .await;
    assert!(m.sum("cec_call_talk_duration_seconds_count", &[]) > 0.0, "{}", m.text);

    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let resp = client
        .get(exp.url("/metrics"))
        .header("Accept", "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let body = resp.text().await.unwrap();
    assert!(body.contains("\ncec_calls_total{task_type=\""), "{body}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (install Prometheus' promtool to run this test)");
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Lint problems are printed one per line (and make promtool exit non-zero); none is accepted.
    assert!(out.status.success(), "promtool exited {:?}\n{stdout}{stderr}\n--- scrape ---\n{body}", out.status);
    assert_eq!(format!("{stdout}{stderr}"), "", "promtool reported problems\n--- scrape ---\n{body}");
}
