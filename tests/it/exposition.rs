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

    let body = text_scrape(&exp).await;
    assert!(body.contains("\ncec_calls_total{task_type=\""), "{body}");
    promtool_check(&body);
}

/// The same with two tenants (`--config.file`): every family once, each tenant's samples labelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs promtool (scripts/test.sh installs it and runs this test)"]
async fn promtool_finds_no_problem_in_a_live_multi_tenant_scrape() {
    let t0 = now();
    let mut rng = Rng::new(12);
    let a =
        Sim::scripted((0..30).map(|i| random_call(&mut rng, SERIAL0 + 1 + i, t0 - 60_000 + i as i64 * 500)).collect())
            .await;
    let b = Sim::scripted(
        (0..20).map(|i| random_call(&mut rng, SERIAL0 + 100 + i, t0 - 60_000 + i as i64 * 500)).collect(),
    )
    .await;
    let yaml = format!(
        "global:\n  cec: {{app_key: it-app-key, app_secret_file: SECRET}}\n  poll: {{interval: 1s, backfill: 2m, lookback: 30s}}\n\
         tenants:\n  - name: brand-a\n    cec: {{url: '{}'}}\n  - name: brand-b\n    cec: {{url: '{}'}}\n",
        a.url, b.url
    );
    let exp = Exporter::start_tenants(&yaml, &[]);
    exp.wait_for("both tenants counted", Duration::from_secs(30), |m| {
        m.tenant("brand-a").calls_total() == 30 && m.tenant("brand-b").calls_total() == 20
    })
    .await;
    let body = text_scrape(&exp).await;
    assert!(body.contains("\ncec_calls_total{tenant=\"brand-a\",task_type=\""), "{body}");
    assert_eq!(body.matches("# TYPE cec_calls_total counter").count(), 1, "{body}");
    promtool_check(&body);
}

/// A classic-text scrape of `/metrics`.
async fn text_scrape(exp: &Exporter) -> String {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let resp = client
        .get(exp.url("/metrics"))
        .header("Accept", "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    resp.text().await.unwrap()
}

/// `promtool check metrics` on `body`: no problem reported.
fn promtool_check(body: &str) {
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
