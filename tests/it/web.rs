//! `--web.config.file`: the real binary serving over TLS (a self-signed certificate made by rcgen) with
//! basic auth, re-reading the file while running, refusing a bad file at start-up; and a real Prometheus
//! scraping it with `scheme: https`, `tls_config` and `basic_auth`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cec_sim::Traffic;

use crate::harness::{bin, free_port, Exporter, Metrics, Sim};

const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-pw-4Kq";

/// A directory holding a self-signed certificate for localhost/127.0.0.1 and a web config using it.
struct WebFiles {
    dir: tempfile::TempDir,
    cert_pem: String,
}

impl WebFiles {
    fn new() -> WebFiles {
        let dir = tempfile::tempdir().unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), c.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), c.signing_key.serialize_pem()).unwrap();
        let files = WebFiles { dir, cert_pem: c.cert.pem() };
        files.write_config(PASSWORD);
        files
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("web.yml")
    }

    /// Writes a config with TLS (relative file names: resolved against the file's directory) and one
    /// user whose password is `password`.
    fn write_config(&self, password: &str) {
        let hash = bcrypt::hash(password, 4).unwrap();
        let text = format!(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS12\n\
             basic_auth_users:\n  {USER}: '{hash}'\n"
        );
        // Write then rename, so the exporter never reads half a file.
        let tmp = self.dir.path().join("web.yml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.config()).unwrap();
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }
}

async fn status(client: &reqwest::Client, url: &str, auth: Option<(&str, &str)>) -> (u16, Option<String>, String) {
    let mut req = client.get(url);
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.unwrap();
    let code = r.status().as_u16();
    let www = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    (code, www, r.text().await.unwrap())
}

fn unauthorized() -> (u16, Option<String>, String) {
    (401, Some("Basic".into()), "Unauthorized\n".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_basic_auth_guards_every_endpoint_and_reloads_without_dropping_counts() {
    let sim =
        Sim::start(Traffic::Random { calls_per_minute: 60.0, history: Duration::from_secs(120), duration_scale: 0.01 })
            .await;
    let files = WebFiles::new();
    let exp = Exporter::start(&sim.url, &["--web.config.file", files.config().to_str().unwrap()]);
    let client = files.client();
    let url = |path: &str| format!("https://localhost:{}{path}", exp.port);
    for path in ["/metrics", "/", "/-/healthy", "/-/ready", "/nope"] {
        assert_eq!(status(&client, &url(path), None).await, unauthorized(), "{path} without credentials");
        assert_eq!(status(&client, &url(path), Some((USER, "wrong"))).await, unauthorized(), "{path}");
        assert_eq!(status(&client, &url(path), Some(("nobody", PASSWORD))).await, unauthorized(), "{path}");
    }
    let (code, _, body) = status(&client, &url("/metrics"), Some((USER, PASSWORD))).await;
    assert_eq!(code, 200);
    assert!(body.contains("\ncec_up "), "{body}");
    assert_eq!(status(&client, &url("/-/healthy"), Some((USER, PASSWORD))).await.0, 200);
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(reqwest::get(exp.url("/metrics")).await.is_err());

    // Wait for some polls, then change the password: the old one stops working, the new one works, and
    // the counters went on from where they were (the process and its state were not restarted).
    let polls = |m: &Metrics| m.value("cec_exporter_polls_total", &[]);
    let scrape = |password: &'static str| {
        let client = client.clone();
        let url = url("/metrics");
        async move {
            let (code, _, body) = status(&client, &url, Some((USER, password))).await;
            (code, Metrics::parse(if code == 200 { &body } else { "" }))
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        let (_, m) = scrape(PASSWORD).await;
        if polls(&m) >= 2.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "no polls: {}", exp.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    const NEW: &str = "rotated-pw-8Lm";
    files.write_config(NEW);
    let deadline = Instant::now() + Duration::from_secs(10);
    while scrape(PASSWORD).await.0 != 401 {
        assert!(Instant::now() < deadline, "the old password still works: {}", exp.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, after) = scrape(NEW).await;
    assert_eq!(code, 200);
    assert!(polls(&after) >= polls(&before), "{} < {}", polls(&after), polls(&before));
    assert!(after.calls_total() >= before.calls_total());
    assert!(exp.stderr().contains("web configuration reloaded"), "{}", exp.stderr());

    // A broken file keeps the configuration in force and says why.
    std::fs::write(files.config(), "basic_auth_users:\n  x: not-a-hash\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exp.stderr().contains("web configuration not reloaded; keeping the previous one") {
        assert!(Instant::now() < deadline, "no error logged: {}", exp.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(exp.stderr().contains("basic_auth_users: x: not a bcrypt hash"), "{}", exp.stderr());
    assert_eq!(scrape(NEW).await.0, 200, "the previous configuration is still in force");
}

fn start_error(config: &Path) -> (i32, String) {
    let out = bin()
        .args(["--cec.url", "http://127.0.0.1:9", "--cec.app-key", "k", "--web.config.file"])
        .arg(config)
        .env("CEC_APP_SECRET", "s")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_bad_web_config_stops_start_up_naming_the_file_and_key() {
    let files = WebFiles::new();
    let path = files.config();
    std::fs::write(&path, "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  cert_fiel: x\n").unwrap();
    let (code, stderr) = start_error(&path);
    assert_eq!(code, 2);
    let want =
        format!("cec-exporter: --web.config.file: {}: tls_server_config: unknown field `cert_fiel`", path.display());
    assert!(stderr.starts_with(&want), "{stderr}");
    let missing = files.dir.path().join("missing.yml");
    let (code, stderr) = start_error(&missing);
    assert_eq!(
        (code, stderr),
        (
            2,
            format!(
                "cec-exporter: --web.config.file: cannot read {}: No such file or directory (os error 2)\n",
                missing.display()
            )
        )
    );
    // From the environment too.
    let out = bin()
        .args(["--cec.url", "http://127.0.0.1:9", "--cec.app-key", "k"])
        .env("CEC_APP_SECRET", "s")
        .env("CEC_WEB_CONFIG_FILE", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("cec-exporter: --web.config.file: cannot read "));
    std::fs::write(&path, "tls_server_config:\n  cert_file: gone.pem\n  key_file: key.pem\n").unwrap();
    let (code, stderr) = start_error(&path);
    assert_eq!(code, 2);
    assert!(stderr.contains(&format!("cannot read {}", files.dir.path().join("gone.pem").display())), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (scripts/test.sh installs it and runs this test)"]
async fn a_real_prometheus_scrapes_over_tls_with_basic_auth() {
    let found = Command::new("prometheus").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(found.as_ref().is_ok_and(|s| s.success()), "prometheus --version: {found:?}");
    let sim =
        Sim::start(Traffic::Random { calls_per_minute: 60.0, history: Duration::from_secs(120), duration_scale: 0.01 })
            .await;
    let files = WebFiles::new();
    let exp = Exporter::start(&sim.url, &["--web.config.file", files.config().to_str().unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &files.cert_pem).unwrap();
    let cfg = format!(
        "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: cec\n    scheme: https\n    \
         tls_config: {{ca_file: '{ca}', server_name: localhost}}\n    \
         basic_auth: {{username: {USER}, password: {PASSWORD}}}\n    \
         static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
        ca = dir.path().join("ca.pem").display(),
        port = exp.port,
    );
    std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
    let prom_port = free_port();
    let mut child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{prom_port}/api/v1/targets");
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        let target = match client.get(&api).send().await {
            Ok(r) => r
                .text()
                .await
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .map(|v| v["data"]["activeTargets"][0].clone()),
            Err(_) => None,
        };
        if let Some(t) = target.clone().filter(|t| t["health"] == "up") {
            break Ok(t);
        }
        if Instant::now() > deadline {
            break Err(format!("target never up; last: {target:?}"));
        }
        assert!(child.try_wait().unwrap().is_none(), "prometheus exited");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let q = format!("http://127.0.0.1:{prom_port}/api/v1/query");
    let up = client.get(&q).query(&[("query", "cec_up")]).send().await.unwrap().text().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let target = result.unwrap();
    assert_eq!(target["scrapeUrl"], format!("https://127.0.0.1:{}/metrics", exp.port));
    assert_eq!(target["lastError"], "");
    assert!(up.contains("\"__name__\":\"cec_up\""), "a series scraped over TLS with basic auth: {up}");
}

/// Finding 5: half-sent requests held their connections forever and a scrape timed out behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_answers_while_200_half_sent_requests_are_open_and_those_are_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = Sim::start(Traffic::None).await;
    let exp = Exporter::start(&sim.url, &[]);
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", exp.port)).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        stalled.push(s);
    }
    let opened = Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let r = client.get(exp.url("/metrics")).send().await.expect("a scrape within 1s");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("\ncec_up "));
    // Every stalled connection is closed: the oldest at once by the cap (64), the rest by the 10s header
    // timeout.
    for s in &mut stalled {
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await {
                Err(_) => panic!("a half-sent connection still open after {:?}", opened.elapsed()),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {} // hyper may answer 408 first
            }
        }
    }
    let took = opened.elapsed();
    assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(13), "{took:?}");
}
