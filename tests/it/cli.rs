//! The binary's command line and lifecycle: bad flags stop start-up with a message naming the flag,
//! SIGTERM stops it gracefully, OpenMetrics is served with exemplars when asked for.

use std::time::Duration;

use cec_sim::CallSpec;

use crate::harness::*;

fn start_error(args: &[&str], env_secret: Option<&str>) -> (i32, String) {
    let mut cmd = bin();
    cmd.args(args).env_remove("CEC_APP_SECRET");
    if let Some(s) = env_secret {
        cmd.env("CEC_APP_SECRET", s);
    }
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// clap's whole message for a value its parser refused.
fn clap_refused(value: &str, flag: &str, why: &str) -> String {
    format!("error: invalid value '{value}' for '{flag}': {why}\n\nFor more information, try '--help'.\n")
}

/// The message for a refused URL, which names the flag and never the value.
fn url_refused(flag: &str, why: &str) -> String {
    format!(
        "error: invalid value for '{flag}': {why} (the value is not repeated: it may hold a secret)\n\n\
         For more information, try '--help'.\n"
    )
}

#[test]
fn a_bad_flag_value_is_refused_by_clap_naming_the_flag() {
    let base = ["--cec.url", "http://127.0.0.1:9", "--cec.app-key", "k"];
    let cases: &[(&[&str], String)] = &[
        (
            &["--cec.page-size", "500"],
            clap_refused("500", "--cec.page-size <N>", "must be a whole number from 1 to 100"),
        ),
        (
            &["--cec.token-expire", "7200"],
            clap_refused("7200", "--cec.token-expire <SECONDS>", "must be a whole number from 1 to 3600"),
        ),
        (
            &["--poll.interval", "often"],
            clap_refused("often", "--poll.interval <DURATION>", "not a duration like 30s or 1h (expected number at 0)"),
        ),
        (&["--poll.interval", "0s"], clap_refused("0s", "--poll.interval <DURATION>", "must be at least 1s")),
        (&["--poll.backfill", "91d"], clap_refused("91d", "--poll.backfill <DURATION>", "must be at most 90d")),
        (&["--poll.lookback", "2d"], clap_refused("2d", "--poll.lookback <DURATION>", "must be from 1s to 24h")),
        (&["--cec.timeout", "10ms"], clap_refused("10ms", "--cec.timeout <DURATION>", "must be at least 100ms")),
        (
            &["--poll.max-open-calls", "0"],
            clap_refused("0", "--poll.max-open-calls <N>", "must be a whole number from 1 to 10000000"),
        ),
        (
            &["--cec.task-types", "0,2"],
            clap_refused(
                "0,2",
                "--cec.task-types <TYPES>",
                "0 already includes task types 1-3; list either 0 or some of 1, 2, 3",
            ),
        ),
        (&["--cec.url", "ftp://x"], url_refused("--cec.url <URL>", "not an http:// or https:// URL")),
        // The password must not be echoed (clap's own message quotes a refused value).
        (
            &["--cec.token-url", "https://user:top-secret-value@gw.example"],
            url_refused(
                "--cec.token-url <URL>",
                "credentials do not belong in the URL; use --cec.app-key and the secret file",
            ),
        ),
        (
            &["--web.listen-address", "nowhere"],
            clap_refused("nowhere", "--web.listen-address <ADDRESS>", "not an address like :10049 or 127.0.0.1:10049"),
        ),
        (
            &["--web.telemetry-path", "/-/metrics"],
            clap_refused("/-/metrics", "--web.telemetry-path <PATH>", "must start with / and not be / or under /-/"),
        ),
        (
            &["--log.format", "yaml"],
            "error: invalid value 'yaml' for '--log.format <FORMAT>'\n  [possible values: logfmt, json]\n\n\
             For more information, try '--help'.\n"
                .into(),
        ),
    ];
    for (extra, want) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let (code, stderr) = start_error(&args, Some("top-secret-value"));
        assert_eq!((code, stderr.as_str()), (2, want.as_str()), "{extra:?}");
    }
    // The subcommands' flags too.
    let (code, stderr) = start_error(&["simulate", "--calls-per-minute=-1"], None);
    assert_eq!(
        (code, stderr.as_str()),
        (2, clap_refused("-1", "--calls-per-minute <RATE>", "must be a number of at least 0").as_str())
    );
    let (code, stderr) = start_error(&["demo", "--sim.listen", "somewhere"], None);
    assert_eq!(
        (code, stderr.as_str()),
        (
            2,
            clap_refused("somewhere", "--sim.listen <ADDRESS>", "not an address like :10049 or 127.0.0.1:10049")
                .as_str()
        )
    );
    let (code, stderr) = start_error(&["--no-such-flag"], None);
    assert_eq!(code, 2, "clap's own usage error");
    assert!(stderr.starts_with("error: unexpected argument '--no-such-flag' found\n"), "{stderr}");
}

#[test]
fn a_configuration_that_does_not_hold_together_stops_start_up_naming_the_flag() {
    let base = ["--cec.url", "http://127.0.0.1:9", "--cec.app-key", "k"];
    let cases: &[(&[&str], &str)] = &[
        (
            &["--poll.max-call-duration", "5m30s"],
            "cec-exporter: --poll.max-call-duration: must be longer than --poll.lookback plus --poll.interval (5m 30s)\n",
        ),
        (
            &["--poll.interval", "1m", "--poll.max-catchup", "5m"],
            "cec-exporter: --poll.max-catchup: must be at least --poll.lookback plus --poll.interval (6m)\n",
        ),
        (&["--state.reset"], "cec-exporter: --state.reset: needs --state.path: there is no store to reset\n"),
    ];
    for (extra, want) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let (code, stderr) = start_error(&args, Some("top-secret-value"));
        assert_eq!((code, stderr.as_str()), (2, *want), "{extra:?}");
    }
    let (code, stderr) = start_error(&base, None);
    assert_eq!((code, stderr.as_str()), (2, "cec-exporter: --cec.app-secret-file is required: give a file holding the app secret, or set CEC_APP_SECRET\n"));
    let (code, stderr) = start_error(&["--cec.app-key", "k"], Some("s"));
    assert_eq!(
        (code, stderr.as_str()),
        (2, "cec-exporter: --cec.url is required: the base URL of the CEC API gateway, e.g. https://service.besclouds.com\n")
    );
}

#[test]
fn the_demo_polls_every_5s_unless_given_an_interval() {
    // The demo's own default, and a user's --poll.interval kept even when it equals the exporter's default.
    for (extra, want) in [(None, "every 5s."), (Some("30s"), "every 30s.")] {
        let mut cmd = bin();
        cmd.args(["demo", "--web.listen-address", "127.0.0.1:0"]).env_remove("CEC_POLL_INTERVAL");
        if let Some(i) = extra {
            cmd.args(["--poll.interval", i]);
        }
        let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(first.starts_with("cec-exporter demo: ") && first.trim_end().ends_with(want), "{first:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flag_can_come_from_its_environment_variable() {
    let t0 = now();
    let sim = Sim::scripted(vec![CallSpec::builder(SERIAL0 + 1, 4, t0 - 5_000).build()]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = bin()
        .env("CEC_URL", &sim.url)
        .env("CEC_APP_KEY", APP_KEY)
        .env("CEC_APP_SECRET", APP_SECRET)
        .env("CEC_TASK_TYPES", "4")
        .env("CEC_PAGE_SIZE", "10")
        .env("CEC_POLL_INTERVAL", "1s")
        .env("CEC_POLL_LOOKBACK", "10s")
        .env("CEC_STATE_PATH", dir.path().join("state"))
        .env("CEC_WEB_LISTEN_ADDRESS", format!("127.0.0.1:{port}"))
        .env("CEC_WEB_TELEMETRY_PATH", "/cec-metrics")
        .env("CEC_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/cec-metrics");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        if let Ok(r) = reqwest::get(&url).await {
            let body = r.text().await.unwrap();
            if Metrics::parse(&body).calls_total() == 1 {
                break body;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no call counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("cec_calls_total{task_type=\"ita_bidirectional\",outcome=\"answered\"} 1"));
    assert!(dir.path().join("state").is_dir(), "--state.path is created when the store opens");
    let stats = sim.sim.stats();
    assert!(stats.log.iter().all(|e| e.task_type.as_deref() == Some("4") && e.limit == Some(10)));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(lines.iter().any(|v| v["message"] == "cec-exporter started"), "{log}");
    assert!(lines.iter().any(|v| v["message"] == "new state store; reading back --poll.backfill"), "{log}");
    let out = bin()
        .env("CEC_URL", "http://127.0.0.1:9")
        .env("CEC_APP_KEY", "k")
        .env("CEC_APP_SECRET", "s")
        .env("CEC_POLL_LOOKBACK", "0s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: invalid value '0s' for '--poll.lookback <DURATION>': must be from 1s to 24h\n\n\
         For more information, try '--help'.\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_exporter_gracefully() {
    let sim = Sim::scripted(Vec::new()).await;
    let exp = Exporter::start(&sim.url, &[]);
    exp.wait_for("a poll", Duration::from_secs(10), |m| m.value("cec_exporter_polls_total", &[]) >= 1.0).await;
    let status = exp.terminate(Duration::from_secs(8)).expect("exited within 8 s");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_is_served_with_exemplars_naming_a_call() {
    let t0 = now();
    let serial = SERIAL0 + 42;
    let sim = Sim::scripted(vec![CallSpec::builder(serial, 4, t0 - 10_000).talk_ms(12_000).build()]).await;
    let exp = Exporter::start(&sim.url, &[]);
    exp.wait_for("the call", Duration::from_secs(10), |m| m.calls_total() == 1).await;
    let client = reqwest::Client::new();
    let resp = client
        .get(exp.url("/metrics"))
        .header("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let body = resp.text().await.unwrap();
    assert!(body.ends_with("# EOF\n"));
    let exemplar = format!("# {{call_serial_no=\"{serial}\"}}");
    let reason_line = body.lines().find(|l| l.starts_with("cec_call_end_reasons_total{task_type=\"ita_bidirectional\",reason_code=\"16\",reason=\"normal_clearing\"} 1 ")).expect(&body);
    assert!(reason_line.contains(&exemplar), "{reason_line}");
    assert!(body.lines().any(|l| l.starts_with(
        "cec_call_talk_duration_seconds_bucket{task_type=\"ita_bidirectional\",le=\"30.0\"} 1 # {call_serial_no="
    )));
    let resp = reqwest::get(exp.url("/metrics")).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = resp.text().await.unwrap();
    assert!(!text.contains("call_serial_no"), "no serial number outside exemplars");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_first_successful_poll_but_always_healthy() {
    // Nothing listens on the CEC URL: polls fail, the server still answers.
    let port = free_port();
    let exp = Exporter::start(&format!("http://127.0.0.1:{port}"), &["--cec.timeout", "500ms"]);
    let m = exp
        .wait_for("a failed poll", Duration::from_secs(10), |m| m.value("cec_exporter_poll_failures_total", &[]) >= 1.0)
        .await;
    assert_eq!(m.value("cec_up", &[]), 0.0);
    assert!(m.value("cec_exporter_api_errors_total", &[("endpoint", "token_by_ak_sk"), ("error", "transport")]) >= 1.0);
    assert_eq!(reqwest::get(exp.url("/-/ready")).await.unwrap().status(), 503);
    assert_eq!(reqwest::get(exp.url("/-/healthy")).await.unwrap().status(), 200);
    let landing = reqwest::get(exp.url("/")).await.unwrap().text().await.unwrap();
    assert!(landing.contains("<a href=\"/metrics\">Metrics</a>"));
}
