//! End to end against the simulator, in one process: a tenant with an hour of history at a given rate,
//! the real exporter (client, poller, server) backfilling it over loopback HTTP, then a steady-state
//! poll. Reports, as medians over runs: the time from start to every historical call counted, the API
//! requests of the backfill and of a steady-state poll, and the time to scrape `/metrics`.
//! Run with `cargo bench --bench e2e`.

use std::time::{Duration, Instant};

use cec_exporter::cli::Cli;
use cec_exporter::config::Config;
use cec_sim::{SimConfig, Simulator, Traffic};
use clap::Parser;

fn value(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn once(calls_per_minute: f64) -> (f64, f64, f64, f64, u64) {
    let sim = Simulator::new(SimConfig {
        app_key: "k".into(),
        app_secret: "s".into(),
        seed: 11,
        traffic: Traffic::Random { calls_per_minute, history: Duration::from_secs(3600), duration_scale: 0.01 },
        max_record_latency: Duration::from_millis(200),
    });
    let running = sim.spawn_loopback().await.unwrap();
    let sim_url = running.url();
    let truth = sim.truth().ended_calls;
    let el = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", el.local_addr().unwrap());
    let args = Cli::parse_from([
        "cec-exporter",
        "--cec.url",
        &sim_url,
        "--cec.app-key",
        "k",
        "--poll.interval",
        "1s",
        "--poll.backfill",
        "1h",
        "--log.level",
        "error",
    ])
    .run;
    let cfg = Config::from_args(&args, Some("s".into())).unwrap();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let exporter = tokio::spawn(cec_exporter::run(cfg, el, async move {
        let _ = done_rx.await;
    }));
    let started = Instant::now();
    let client = reqwest::Client::new();
    let (mut backfill_s, mut backfill_requests) = (0.0, 0.0);
    loop {
        let body = client.get(&url).send().await.unwrap().text().await.unwrap();
        if value(&body, "cec_calls_total{") >= truth as f64 {
            backfill_s = started.elapsed().as_secs_f64();
            backfill_requests = value(&body, "cec_exporter_api_requests_total{endpoint=\"query_call_detail_record\"");
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Two more polls, then the steady-state cost of the last one.
    let polls = |b: &str| value(b, "cec_exporter_polls_total");
    let p0 = polls(&client.get(&url).send().await.unwrap().text().await.unwrap());
    let mut body;
    loop {
        body = client.get(&url).send().await.unwrap().text().await.unwrap();
        if polls(&body) >= p0 + 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let steady = value(&body, "cec_exporter_last_poll_api_requests");
    let t = Instant::now();
    for _ in 0..100 {
        let _ = client.get(&url).header("Accept", "application/openmetrics-text").send().await.unwrap().bytes().await;
    }
    let scrape_ms = t.elapsed().as_secs_f64() * 1000.0 / 100.0;
    let _ = done_tx.send(());
    let _ = exporter.await;
    let _ = running.shutdown().await;
    (backfill_s, backfill_requests, steady, scrape_ms, truth)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    for rate in [60.0, 600.0] {
        let runs: Vec<_> = (0..5).map(|_| rt.block_on(once(rate))).collect();
        let calls = runs[0].4;
        println!(
            "{rate} calls/min, {calls} calls in the hour of history: backfill {:.3} s (median of 5), {} requests; steady-state poll {} requests; scrape {:.3} ms",
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect()),
            median(runs.iter().map(|r| r.2).collect()),
            median(runs.iter().map(|r| r.3).collect()),
        );
    }
}
