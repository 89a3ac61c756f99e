//! End to end with the exporter in its own process, so its CPU time and memory can be read from
//! `/proc` apart from the simulator's: `cec-exporter simulate` (seeded history, its own process) and the
//! release `cec-exporter` binary against it with a fresh state store, over loopback HTTP. Each run waits
//! until the exporter has counted every call the simulator's `/sim/truth` showed ended at its start
//! (its whole history), then reads:
//!
//! - the exporter's CPU (utime + stime of `/proc/<pid>/stat`, every thread) from the moment it first
//!   answers `/metrics` until everything is counted, per record fetched and per counted call, and the
//!   simulator's CPU over the same interval;
//! - peak RSS above the start: `VmHWM` at the end minus `VmRSS` when the exporter first answered,
//!   per remembered call (`cec_exporter_remembered_calls`);
//! - API requests (queryCallDetailRecord) per 1000 records fetched, and the pages those records fill;
//! - the median time of 100 OpenMetrics scrapes of `/metrics` afterwards.
//!
//! Scenarios (fixed seeds, so runs repeat): `backfill` — 200 000 calls at 600 calls/min read by the
//! first poll's backfill; `catchup` — 10 days at 20.83 calls/min (300 000 calls), which CEC's seven-day
//! limit splits into two windows; `catchup30d` — the same calls over 30 days, for peak memory against
//! the catch-up's length. Medians of `E2E_RUNS` runs (default 3).
//!
//! `cargo bench --bench e2e_process [-- backfill|catchup|catchup30d]`; `E2E_EXPORTER=PATH` runs another build. With `E2E_PERF=DIR`, each run's exporter is
//! also recorded with `perf record -g` into `DIR/<scenario>-<run>.perf.data`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The exporter (and simulator) binary: this build's, or `E2E_EXPORTER` (to compare another build).
fn exporter_bin() -> String {
    std::env::var("E2E_EXPORTER").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cec-exporter").to_owned())
}

struct Scenario {
    name: &'static str,
    calls_per_minute: &'static str,
    history: &'static str,
    backfill: &'static str,
}

const SCENARIOS: [Scenario; 3] = [
    // 600 calls/min for 333 min 20 s: 200 000 calls expected.
    Scenario { name: "backfill", calls_per_minute: "600", history: "20000s", backfill: "6h" },
    // 300 000 calls over 10 days.
    Scenario { name: "catchup", calls_per_minute: "20.8333", history: "10d", backfill: "10d" },
    // The same 300 000 calls over 30 days (five 7-day windows and a rest): peak memory must not grow
    // with the catch-up's length.
    Scenario { name: "catchup30d", calls_per_minute: "6.9444", history: "30d", backfill: "30d" },
];

/// One run's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    calls: f64,
    /// `cec_calls_total` when the history was counted (calls that ended since may add to it).
    counted: f64,
    records: f64,
    requests: f64,
    remembered: f64,
    wall_s: f64,
    exporter_cpu_s: f64,
    sim_cpu_s: f64,
    start_rss: f64,
    peak_rss: f64,
    scrape_ms: f64,
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A plain HTTP/1.0 GET (the answer ends with the connection); `None` while nothing listens.
fn get(addr: SocketAddr, path: &str, accept: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n").ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8(out).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    // hyper answers an HTTP/1.0 request as HTTP/1.0.
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_owned())
}

/// The sum of every sample of the series starting with `name` (a family name, or a name and the start
/// of its labels).
fn value(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.split(' ').nth(1).and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// utime + stime of every thread of `pid`, in seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name and state.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    // getconf reads _SC_CLK_TCK without a libc binding here.
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}

/// A `kB` line of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line[key.len()..].trim().trim_end_matches("kB").trim().parse::<f64>().unwrap() * 1024.0
}

fn stop(child: &mut Child) {
    // SIGINT: a graceful stop, so perf writes its file and the exporter closes its store.
    let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
    let _ = child.wait();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn run(sc: &Scenario, seed: u64, perf: Option<&Path>, run: usize) -> Figures {
    let sim_addr = free_port();
    let mut sim = Command::new(exporter_bin())
        .args(["simulate", "--listen", &sim_addr.to_string(), "--app-key", "k"])
        .args(["--seed", &seed.to_string(), "--calls-per-minute", sc.calls_per_minute, "--history", sc.history])
        .args(["--duration-scale", "0.01", "--max-record-latency", "200ms", "--log.level", "error"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let truth = loop {
        if let Some(t) = get(sim_addr, "/sim/truth", "*/*") {
            break t;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let truth_calls = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap()["ended_calls"].as_f64().unwrap();
    let calls = truth_calls(&truth);
    let state = tempfile::tempdir().unwrap();
    let addr = free_port();
    let mut exporter = Command::new(exporter_bin())
        .args(["--cec.url", &format!("http://{sim_addr}"), "--cec.app-key", "k"])
        .args(["--web.listen-address", &addr.to_string(), "--state.path", state.path().to_str().unwrap()])
        .args(["--poll.interval", "2s", "--poll.backfill", sc.backfill, "--log.level", "error"])
        .env("CEC_APP_SECRET", "demo-app-secret")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = exporter.id();
    let mut recorder = perf.map(|dir| {
        Command::new("perf")
            .args(["record", "-q", "-g", "-F", "1999", "-p", &pid.to_string(), "-o"])
            .arg(dir.join(format!("{}-{run}.perf.data", sc.name)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    // Start-up: the first answer of /metrics; what the process holds then is its baseline.
    let started = Instant::now();
    while get(addr, "/metrics", "text/plain").is_none() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let start_rss = status_bytes(pid, "VmRSS:");
    let (cpu0, sim_cpu0) = (cpu_s(pid), cpu_s(sim.id()));
    // Every call of the history counted. The truth is read once: computing it over a few hundred
    // thousand calls costs the simulator tens of milliseconds, and the checks are spaced for the same
    // reason (each scrape costs the exporter some 60 µs), so neither side's figure is the harness's.
    let body = loop {
        let body = get(addr, "/metrics", "text/plain").unwrap();
        if value(&body, "cec_calls_total{") >= calls {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "{}: not every call counted in 15 min", sc.name);
        std::thread::sleep(Duration::from_millis(250));
    };
    let wall_s = started.elapsed().as_secs_f64();
    let counted = value(&body, "cec_calls_total{");
    let (cpu1, sim_cpu1) = (cpu_s(pid), cpu_s(sim.id()));
    let peak_rss = status_bytes(pid, "VmHWM:");
    if let Some(r) = recorder.as_mut() {
        stop(r);
    }
    let mut scrapes: Vec<f64> = (0..100)
        .map(|_| {
            let t = Instant::now();
            get(addr, "/metrics", "application/openmetrics-text").unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    scrapes.sort_by(|a, b| a.partial_cmp(b).unwrap());
    stop(&mut exporter);
    stop(&mut sim);
    Figures {
        calls,
        counted,
        records: value(&body, "cec_exporter_records_fetched_total"),
        requests: value(&body, "cec_exporter_api_requests_total{endpoint=\"query_call_detail_record\""),
        remembered: value(&body, "cec_exporter_remembered_calls"),
        wall_s,
        exporter_cpu_s: cpu1 - cpu0,
        sim_cpu_s: sim_cpu1 - sim_cpu0,
        start_rss,
        peak_rss,
        scrape_ms: scrapes[50],
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a bare word picks scenarios.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let runs: usize = std::env::var("E2E_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let perf = std::env::var_os("E2E_PERF").map(std::path::PathBuf::from);
    for sc in SCENARIOS.iter().filter(|s| only.is_empty() || only.iter().any(|o| o == s.name)) {
        let all: Vec<Figures> = (0..runs)
            .map(|i| {
                let f = run(sc, 11, perf.as_deref(), i);
                eprintln!("{} run {i}: {f:?}", sc.name);
                f
            })
            .collect();
        let m = |f: &dyn Fn(&Figures) -> f64| median(all.iter().map(f).collect());
        let per_record_us = m(&|f| f.exporter_cpu_s / f.records * 1e6);
        println!(
            "{name}: {calls} calls ({counted} counted when they were), {records} records fetched, {requests} requests ({rpk:.2} per 1000 records, \
             {pages} pages of 100), {remembered} remembered; medians of {runs}: counted in {wall:.2} s; exporter CPU \
             {cpu:.2} s = {per_record_us:.2} µs per record ({per_call:.2} µs per call), simulator CPU {sim:.2} s = \
             {sim_per:.2} µs per record; RSS at start {rss0:.1} MiB, peak {rss1:.1} MiB, {per_remembered:.0} B above \
             the start per remembered call ({per_counted:.0} B per counted call); /metrics (OpenMetrics) {scrape:.3} ms",
            name = sc.name,
            calls = m(&|f| f.calls),
            counted = m(&|f| f.counted),
            records = m(&|f| f.records),
            requests = m(&|f| f.requests),
            rpk = m(&|f| f.requests / f.records * 1000.0),
            pages = m(&|f| (f.records / 100.0).ceil()),
            remembered = m(&|f| f.remembered),
            wall = m(&|f| f.wall_s),
            cpu = m(&|f| f.exporter_cpu_s),
            per_call = m(&|f| f.exporter_cpu_s / f.calls * 1e6),
            sim = m(&|f| f.sim_cpu_s),
            sim_per = m(&|f| f.sim_cpu_s / f.records * 1e6),
            rss0 = m(&|f| f.start_rss) / 1048576.0,
            rss1 = m(&|f| f.peak_rss) / 1048576.0,
            per_remembered = m(&|f| (f.peak_rss - f.start_rss) / f.remembered),
            per_counted = m(&|f| (f.peak_rss - f.start_rss) / f.calls),
            scrape = m(&|f| f.scrape_ms),
        );
    }
}
