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

/// A scrape with basic auth over plain HTTP, parsed (empty unless 200).
async fn scrape_plain(exp: &Exporter, password: &str) -> (u16, Metrics) {
    let r = reqwest::Client::new().get(exp.url("/metrics")).basic_auth(USER, Some(password)).send().await.unwrap();
    let code = r.status().as_u16();
    let body = r.text().await.unwrap();
    (code, Metrics::parse(if code == 200 { &body } else { "" }))
}

fn write_users(path: &Path, password: &str) {
    let hash = bcrypt::hash(password, 4).unwrap();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("basic_auth_users:\n  {USER}: '{hash}'\n")).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// A failed re-read of the web config is one error line and one increase of
/// `cec_exporter_web_config_reloads_total{result="failure"}` (not one per re-read), the last-reload gauge
/// reads 0 while the previous configuration stays in force; fixing the file counts a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_web_config_counts_one_failed_reload_and_sets_the_gauge_to_0_until_it_is_fixed() {
    let sim = Sim::start(Traffic::None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("web.yml");
    write_users(&config, PASSWORD);
    let exp = Exporter::start(&sim.url, &["--web.config.file", config.to_str().unwrap()]);
    let reloads = |m: &Metrics, result: &str| m.get("cec_exporter_web_config_reloads_total", &[("result", result)]);
    let last_ok = |m: &Metrics| m.get("cec_exporter_web_config_last_reload_successful", &[]);
    let (code, m) = scrape_plain(&exp, PASSWORD).await;
    assert_eq!(code, 200);
    assert_eq!((reloads(&m, "success"), reloads(&m, "failure"), last_ok(&m)), (Some(0.0), Some(0.0), Some(1.0)));
    assert_eq!(m.get("cec_exporter_http_accept_errors_total", &[]), Some(0.0));

    std::fs::write(&config, "basic_auth_users:\n  prometheus: not-a-hash\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let (code, m) = scrape_plain(&exp, PASSWORD).await;
        assert_eq!(code, 200, "the previous configuration stays in force: {}", exp.stderr());
        if reloads(&m, "failure") == Some(1.0) {
            break m;
        }
        assert!(Instant::now() < deadline, "no failed reload counted: {}", exp.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((reloads(&m, "success"), last_ok(&m)), (Some(0.0), Some(0.0)));
    // Re-read every 2 s: the same broken file is not counted or logged again.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let (code, m) = scrape_plain(&exp, PASSWORD).await;
    assert_eq!(code, 200);
    assert_eq!((reloads(&m, "success"), reloads(&m, "failure"), last_ok(&m)), (Some(0.0), Some(1.0), Some(0.0)));
    assert_eq!(exp.stderr().matches("web configuration not reloaded").count(), 1, "{}", exp.stderr());
    assert_eq!(scrape_plain(&exp, "wrong").await.0, 401, "users still required");

    const NEW: &str = "fixed-pw-3Zt";
    write_users(&config, NEW);
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let (code, m) = scrape_plain(&exp, NEW).await;
        if code == 200 {
            break m;
        }
        assert!(Instant::now() < deadline, "the fixed file never applied: {}", exp.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((reloads(&m, "success"), reloads(&m, "failure"), last_ok(&m)), (Some(1.0), Some(1.0), Some(1.0)));
    assert_eq!(scrape_plain(&exp, PASSWORD).await.0, 401);
}

/// A certificate authority made by rcgen.
fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// A client certificate and key signed by `issuer`, as reqwest presents it.
fn client_identity(issuer: &rcgen::Issuer<'_, rcgen::KeyPair>) -> reqwest::Identity {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, "scraper");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, issuer).unwrap();
    reqwest::Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes()).unwrap()
}

/// The exporter over TLS with `client_auth_type` and a `client_ca_file` holding `clients`' certificate;
/// no basic auth, so only the handshake decides.
fn start_with_client_auth(
    sim: &Sim,
    client_auth_type: &str,
    clients: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
) -> (WebFiles, Exporter) {
    let files = WebFiles::new();
    std::fs::write(files.dir.path().join("clients-ca.pem"), clients.pem()).unwrap();
    std::fs::write(
        files.config(),
        format!(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  \
             client_auth_type: {client_auth_type}\n  client_ca_file: clients-ca.pem\n"
        ),
    )
    .unwrap();
    let exp = Exporter::start(&sim.url, &["--web.config.file", files.config().to_str().unwrap()]);
    (files, exp)
}

/// Scrapes `/metrics` presenting `identity` (or none): the status, or the error chain when the
/// request got no HTTP answer (the TLS handshake was refused).
///
/// The client speaks TLS 1.2 unless `tls13`: in 1.2 the server judges the client's certificate
/// before its own Finished, so a refusal always reaches the client as the handshake's alert. In 1.3
/// the client's handshake is complete before the server has judged, and whether the alert or a
/// closed connection reaches the request first is a race, so only "no HTTP answer" is certain.
async fn scrape_with(
    files: &WebFiles,
    exp: &Exporter,
    identity: Option<reqwest::Identity>,
    tls13: bool,
) -> Result<u16, String> {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(files.cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5));
    if !tls13 {
        b = b.max_tls_version(reqwest::tls::Version::TLS_1_2);
    }
    if let Some(id) = identity {
        b = b.identity(id);
    }
    let client = b.build().unwrap();
    match client.get(format!("https://localhost:{}/metrics", exp.port)).send().await {
        Ok(r) => {
            let code = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert!(code != 200 || body.contains("\ncec_up "), "{body}");
            Ok(code)
        }
        Err(e) => {
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain.push_str(&format!(": {s}"));
                source = s.source();
            }
            Err(chain)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_and_verify_client_cert_admits_only_certificates_of_the_client_ca() {
    let sim = Sim::start(Traffic::None).await;
    let (clients, other) = (ca("scrapers CA"), ca("another CA"));
    let (files, exp) = start_with_client_auth(&sim, "RequireAndVerifyClientCert", &clients);
    let refused = scrape_with(&files, &exp, None, false).await.unwrap_err();
    assert!(refused.ends_with("received fatal alert: CertificateRequired"), "no client certificate: {refused}");
    assert_eq!(scrape_with(&files, &exp, Some(client_identity(&clients)), false).await, Ok(200));
    let refused = scrape_with(&files, &exp, Some(client_identity(&other)), false).await.unwrap_err();
    assert!(refused.ends_with("received fatal alert: UnknownCA"), "a certificate of another CA: {refused}");
    // TLS 1.3: the same verdicts, though the refusal's form on the client side is a race.
    assert_eq!(scrape_with(&files, &exp, Some(client_identity(&clients)), true).await, Ok(200));
    for identity in [None, Some(client_identity(&other))] {
        let refused = scrape_with(&files, &exp, identity, true).await;
        assert!(refused.is_err(), "TLS 1.3 got an HTTP answer: {refused:?}");
    }
    assert!(exp.stderr().contains("TLS handshake failed"), "{}", exp.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_client_cert_if_given_admits_no_certificate_but_refuses_a_bad_one() {
    let sim = Sim::start(Traffic::None).await;
    let (clients, other) = (ca("scrapers CA"), ca("another CA"));
    let (files, exp) = start_with_client_auth(&sim, "VerifyClientCertIfGiven", &clients);
    assert_eq!(scrape_with(&files, &exp, None, true).await, Ok(200), "no certificate is fine");
    assert_eq!(scrape_with(&files, &exp, Some(client_identity(&clients)), true).await, Ok(200));
    let refused = scrape_with(&files, &exp, Some(client_identity(&other)), false).await.unwrap_err();
    assert!(refused.ends_with("received fatal alert: UnknownCA"), "a certificate of another CA: {refused}");
    let refused = scrape_with(&files, &exp, Some(client_identity(&other)), true).await;
    assert!(refused.is_err(), "TLS 1.3 got an HTTP answer: {refused:?}");
}

/// A gateway that hands out tokens and refuses every queryCallDetailRecord with `retCode` "2" and
/// `ret_msg` (markup and a phone number, as a hostile or careless gateway may send).
async fn refusing_gateway(ret_msg: &'static str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut stream = tokio::io::BufReader::new(stream);
                let (mut first, mut length) = (String::new(), 0usize);
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if first.is_empty() {
                        first = line.clone();
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                let _ = stream.read_exact(&mut body).await;
                let answer = if first.contains("tokenByAkSk") {
                    serde_json::json!({"AccessToken": "t0k3n", "ApplyType": "Bearer", "Expires": "600"})
                } else {
                    serde_json::json!({"retCode": "2", "retMsg": ret_msg})
                };
                let answer = answer.to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.len()
                );
                let _ = stream.get_mut().write_all(format!("{head}{answer}").as_bytes()).await;
            });
        }
    });
    url
}

/// Finding 6: the gateway's text reached `/`. The page now names the failure's kind and time only; the
/// (bounded, sanitized) retMsg excerpt stays in the log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_landing_page_shows_a_failed_polls_kind_and_time_never_the_gateways_ret_msg() {
    const RET_MSG: &str = "<script>steal()</script> caller 13800138000 hung up";
    let gateway = refusing_gateway(RET_MSG).await;
    let started = std::time::SystemTime::now();
    let exp = Exporter::start(&gateway, &[]);
    let m = exp
        .wait_for("a failed poll", Duration::from_secs(10), |m| m.value("cec_exporter_poll_failures_total", &[]) >= 1.0)
        .await;
    let refused = [("endpoint", "query_call_detail_record"), ("error", "ret_code")];
    assert!(m.value("cec_exporter_api_errors_total", &refused) >= 1.0, "{}", m.text);
    assert_eq!(m.value("cec_up", &[]), 0.0);
    let landing = reqwest::get(exp.url("/")).await.unwrap().text().await.unwrap();
    let status = landing.lines().find(|l| l.starts_with("<li>Status: ")).unwrap_or_else(|| panic!("{landing}"));
    let at = status
        .strip_prefix("<li>Status: last poll failed at ")
        .and_then(|s| s.strip_suffix(" (query_call_detail_record ret_code)</li>"))
        .unwrap_or_else(|| panic!("{status}"));
    let at = humantime::parse_rfc3339(at).unwrap();
    let now = std::time::SystemTime::now();
    assert!(at + Duration::from_secs(1) >= started && at <= now, "{at:?} not within the test's run");
    for text in ["script", "steal", "13800138000", "hung up", "retCode", "retMsg"] {
        assert!(!landing.contains(text), "{text:?} on the landing page: {landing}");
    }
    // The log line keeps what happened: the retCode and the sanitized excerpt (the number blanked).
    let log = exp.stderr();
    assert!(log.contains("retCode 2: <script>steal()</script> caller … hung up"), "{log}");
}
