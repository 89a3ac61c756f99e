//! Test harness: an in-process simulator on a loopback port, the real exporter binary as a child
//! process, a scraper, a parser for the text exposition, and a comparison with the simulator's truth.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cec_sim::{now_ms, CallSpec, Faults, Outcome, Running, SimConfig, Simulator, Traffic, Truth};

pub const APP_KEY: &str = "it-app-key";
pub const APP_SECRET: &str = "it-secret-Zq9vX3";

/// A simulator serving on 127.0.0.1 until dropped.
pub struct Sim {
    pub sim: Arc<Simulator>,
    pub url: String,
    _running: Running,
}

impl Sim {
    pub async fn start(traffic: Traffic) -> Sim {
        let sim = Simulator::new(SimConfig {
            app_key: APP_KEY.into(),
            app_secret: APP_SECRET.into(),
            seed: 7,
            traffic,
            max_record_latency: Duration::from_millis(500),
        });
        let running = sim.spawn_loopback().await.unwrap();
        Sim { sim, url: running.url(), _running: running }
    }

    pub async fn scripted(calls: Vec<CallSpec>) -> Sim {
        let s = Sim::start(Traffic::None).await;
        s.sim.add_calls(calls);
        s
    }

    pub fn faults(&self, f: Faults) {
        self.sim.set_faults(f);
    }
}

/// A free loopback port (bound, then released for the exporter to take).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The exporter binary running as a child process; killed when dropped.
pub struct Exporter {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cec-exporter"))
}

impl Exporter {
    /// Starts the exporter against `sim_url` with the test defaults plus `extra` flags (later flags win).
    pub fn start(sim_url: &str, extra: &[&str]) -> Exporter {
        Exporter::start_wrapped(sim_url, extra, &[])
    }

    /// Starts the exporter with `--config.file` holding `yaml` (where `SECRET` stands for the path of a
    /// file holding the simulators' app secret), the test defaults for the process, and `extra`.
    pub fn start_tenants(yaml: &str, extra: &[&str]) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, format!("{APP_SECRET}\n")).unwrap();
        let config = dir.path().join("tenants.yml");
        std::fs::write(&config, yaml.replace("SECRET", secret_file.to_str().unwrap())).unwrap();
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = bin()
            .args(["--config.file", config.to_str().unwrap(), "--web.listen-address", &listen, "--log.level", "debug"])
            .args(extra)
            .env_remove("CEC_APP_SECRET")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("exporter binary starts");
        let e = Exporter { child, port, _dir: dir, stderr_path };
        e.wait_listening();
        e
    }

    /// Replaces the `--config.file` of [`Exporter::start_tenants`] (`SECRET` as there) and sends SIGHUP.
    pub fn reload_tenants(&self, yaml: &str) {
        let secret = self._dir.path().join("secret");
        std::fs::write(self._dir.path().join("tenants.yml"), yaml.replace("SECRET", secret.to_str().unwrap())).unwrap();
        let ok = Command::new("kill").args(["-HUP", &self.pid().to_string()]).status().unwrap().success();
        assert!(ok, "SIGHUP sent");
    }

    /// Like [`Exporter::start`], the binary run by `wrap` (a command that ends by running its
    /// remaining arguments, such as `unshare … sh -c '…; exec "$@"'`).
    pub fn start_wrapped(sim_url: &str, extra: &[&str], wrap: &[&str]) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, format!("{APP_SECRET}\n")).unwrap();
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_cec-exporter"));
                c
            }
            None => bin(),
        };
        cmd.args([
            "--cec.url",
            sim_url,
            "--cec.app-key",
            APP_KEY,
            "--cec.app-secret-file",
            secret_file.to_str().unwrap(),
            "--poll.interval",
            "1s",
            "--poll.backfill",
            "2m",
            "--poll.lookback",
            "30s",
            "--web.listen-address",
            &listen,
            "--log.level",
            "debug",
        ])
        .args(extra)
        .env_remove("CEC_APP_SECRET")
        .stdout(Stdio::null())
        .stderr(stderr);
        let child = cmd.spawn().expect("exporter binary starts");
        let e = Exporter { child, port, _dir: dir, stderr_path };
        e.wait_listening();
        e
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "exporter did not listen; stderr:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn stderr(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.stderr_path).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// Scrapes the classic text format (a stalled exporter fails the test instead of hanging it).
    pub async fn metrics(&self) -> Metrics {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let body = client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        Metrics::parse(&body)
    }

    /// Waits until `cond` holds on a scrape, or panics with the last scrape and the log.
    pub async fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics().await;
            if cond(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\n--- metrics ---\n{}\n--- stderr ---\n{}", m.text, self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed text exposition: series (name plus labels, as rendered) → value.
pub struct Metrics {
    pub text: String,
    pub series: BTreeMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut series = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (k, v) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line}"));
            let v = match v {
                "+Inf" => f64::INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            assert!(series.insert(k.to_owned(), v).is_none(), "series twice: {k}");
        }
        Metrics { text: text.to_owned(), series }
    }

    /// The value of `name{labels}`, or `None` when absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series.get(&key(name, labels)).copied()
    }

    /// The value of `name{labels}`, 0 when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Sum over every series of `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .filter(|(k, _)| labels.iter().all(|(l, v)| k.contains(&format!("{l}=\"{v}\""))))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn calls_total(&self) -> u64 {
        self.sum("cec_calls_total", &[]) as u64
    }

    /// The series of one tenant, its `tenant` label removed (so [`assert_matches_truth`] reads them as a
    /// single tenant's), and nothing else.
    pub fn tenant(&self, name: &str) -> Metrics {
        let first = format!("tenant=\"{name}\"");
        let series = self
            .series
            .iter()
            .filter_map(|(k, v)| {
                let (family, labels) = k.split_once('{')?;
                let rest = labels.strip_suffix('}')?.strip_prefix(&first)?;
                let key = match rest.strip_prefix(',') {
                    Some(others) => format!("{family}{{{others}}}"),
                    None if rest.is_empty() => family.to_owned(),
                    None => return None,
                };
                Some((key, *v))
            })
            .collect();
        Metrics { text: String::new(), series }
    }

    /// The names of the tenants with a `cec_up` series.
    pub fn tenants(&self) -> Vec<String> {
        self.series
            .keys()
            .filter_map(|k| k.strip_prefix("cec_up{tenant=\"")?.strip_suffix("\"}").map(str::to_owned))
            .collect()
    }
}

pub fn key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", l.join(","))
}

pub const TASK_TYPES: [&str; 5] =
    ["cec_bidirectional", "anonymous_outbound", "voice_notification", "ita_bidirectional", "unknown"];

/// Asserts that every call metric equals the simulator's truth, exactly (sums of delays to 1 µs, as
/// they are sums of millisecond differences).
pub fn assert_matches_truth(m: &Metrics, t: &Truth) {
    assert_eq!(m.calls_total(), t.ended_calls, "ended calls");
    for tt in TASK_TYPES {
        // By label only: the simulator keeps its own Outcome, whose variants need not match the exporter's.
        for o in Outcome::ALL {
            let got = m.value("cec_calls_total", &[("task_type", tt), ("outcome", o.label())]);
            assert_eq!(got as u64, t.calls_of(tt, o.label()), "cec_calls_total{{{tt},{}}}", o.label());
        }
    }
    for r in &t.end_reasons {
        let got = m.sum("cec_call_end_reasons_total", &[("task_type", &r.task_type), ("reason_code", &r.reason_code)]);
        assert_eq!(got as u64, r.count, "end reason {} {}", r.task_type, r.reason_code);
    }
    assert_eq!(m.sum("cec_call_end_reasons_total", &[]) as u64, t.ended_calls, "end reasons add up to the calls");
    for tt in TASK_TYPES {
        let labels = [("task_type", tt)];
        for (metric, rows) in [
            ("cec_call_talk_duration_seconds", &t.talk_duration),
            ("cec_call_agent_talk_duration_seconds", &t.agent_talk_duration),
        ] {
            let want = rows.iter().find(|d| d.task_type == tt);
            let count = m.value(&format!("{metric}_count"), &labels) as u64;
            assert_eq!(count, want.map_or(0, |d| d.count), "{metric}_count {tt}");
            let sum = m.value(&format!("{metric}_sum"), &labels) as u64;
            assert_eq!(sum, want.map_or(0, |d| d.sum), "{metric}_sum {tt}");
        }
        for leg in ["customer", "agent"] {
            let d = t.answer_delay.iter().find(|d| d.task_type == tt && d.leg == leg);
            let labels = [("task_type", tt), ("leg", leg)];
            assert_eq!(
                m.value("cec_call_answer_delay_seconds_count", &labels) as u64,
                d.map_or(0, |d| d.count),
                "delay count {tt} {leg}"
            );
            let sum = m.value("cec_call_answer_delay_seconds_sum", &labels);
            let want = d.map_or(0.0, |d| d.sum);
            assert!((sum - want).abs() < 1e-6, "delay sum {tt} {leg}: {sum} != {want}");
        }
        let last = t.last_call_end_ms.iter().find(|l| l.task_type == tt);
        let got = m.get("cec_last_call_end_timestamp_seconds", &labels);
        assert_eq!(got.map(|s| (s * 1000.0).round() as i64), last.map(|l| l.value), "last call end {tt}");
    }
}

/// A small deterministic generator for scripted scenarios.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64 + 1) as i64
    }
}

/// A varied call: random task type and an outcome that exists for it, with short ring and talk times.
pub fn random_call(rng: &mut Rng, serial: u64, start_ms: i64) -> CallSpec {
    let task_type = 1 + rng.below(4) as u8;
    let outcomes: &[Outcome] = if task_type == 4 {
        &Outcome::ALL
    } else {
        &[Outcome::Answered, Outcome::NoAnswer, Outcome::Cancelled, Outcome::Failed, Outcome::Unknown]
    };
    // Answered most of the time, as in a real contact center.
    let outcome =
        if rng.below(2) == 0 { Outcome::Answered } else { outcomes[rng.below(outcomes.len() as u64) as usize] };
    CallSpec::builder(serial, task_type, start_ms)
        .outcome(outcome)
        .queue_ms(rng.range(0, 300))
        .agent_ring_ms(rng.range(100, 900))
        .ring_ms(rng.range(100, 1_500))
        .talk_ms(rng.range(1_000, 3_000))
        .latency_ms(rng.range(0, 800) as u64, rng.range(0, 800) as u64)
        .build()
}

pub fn now() -> i64 {
    now_ms()
}

pub const SERIAL0: u64 = 1_037_058_396_471_308_289;
