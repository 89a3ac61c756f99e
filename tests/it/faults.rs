//! Faults from the simulator's switches: server errors, rate limits, slow answers, token expiry and
//! revocation, malformed records, broken bodies, empty results. Each is one log line and one counter,
//! and the counts still end equal to the truth.

use std::time::Duration;

use cec_sim::{CallSpec, Faults};

use crate::harness::*;

fn few_calls() -> Vec<CallSpec> {
    let t0 = now();
    let mut rng = Rng::new(9);
    (0..20).map(|i| random_call(&mut rng, SERIAL0 + i, t0 - 30_000 + i as i64 * 500)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_500_fails_the_poll_without_trace_then_recovers() {
    let sim = Sim::scripted(few_calls()).await;
    // Three 500s: the first try and both retries of the first request.
    sim.faults(Faults { http_500: 3, ..Faults::default() });
    let exp = Exporter::start(&sim.url, &[]);
    let m = exp
        .wait_for("a failed poll", Duration::from_secs(10), |m| m.value("cec_exporter_poll_failures_total", &[]) == 1.0)
        .await;
    assert_eq!(m.calls_total(), 0, "a failed poll commits nothing");
    let m = exp
        .wait_for("recovery", Duration::from_secs(10), |m| m.value("cec_up", &[]) == 1.0 && m.calls_total() == 20)
        .await;
    assert_matches_truth(&m, &sim.sim.truth());
    assert_eq!(m.value("cec_exporter_poll_failures_total", &[]), 1.0);
    assert_eq!(
        m.value("cec_exporter_api_requests_total", &[("endpoint", "query_call_detail_record"), ("code", "500")]),
        3.0
    );
    assert_eq!(
        m.value(
            "cec_exporter_api_errors_total",
            &[("endpoint", "query_call_detail_record"), ("error", "server_error")]
        ),
        3.0
    );
    let log = exp.stderr();
    assert_eq!(log.matches("msg=\"poll failed; nothing committed\"").count(), 1, "{log}");
    assert!(log.contains("error=\"query_call_detail_record: HTTP 500\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_within_the_poll_after_retry_after() {
    let sim = Sim::scripted(few_calls()).await;
    sim.faults(Faults { http_429: 1, ..Faults::default() });
    let exp = Exporter::start(&sim.url, &[]);
    let m = exp.wait_for("all calls", Duration::from_secs(10), |m| m.calls_total() == 20).await;
    assert_eq!(m.value("cec_exporter_poll_failures_total", &[]), 0.0);
    assert_eq!(
        m.value("cec_exporter_api_requests_total", &[("endpoint", "query_call_detail_record"), ("code", "429")]),
        1.0
    );
    assert_eq!(
        m.value(
            "cec_exporter_api_errors_total",
            &[("endpoint", "query_call_detail_record"), ("error", "rate_limited")]
        ),
        1.0
    );
    assert_matches_truth(&m, &sim.sim.truth());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_mid_run_is_refreshed_ahead_of_expiry() {
    let sim = Sim::scripted(few_calls()).await;
    let exp = Exporter::start(&sim.url, &["--cec.token-expire", "2"]);
    let m = exp
        .wait_for("three token refreshes", Duration::from_secs(15), |m| {
            m.value("cec_exporter_token_refreshes_total", &[]) >= 3.0
        })
        .await;
    assert_eq!(m.value("cec_exporter_poll_failures_total", &[]), 0.0);
    let stats = sim.sim.stats();
    assert!(stats.requests_of("query", 200) > 0);
    assert_eq!(stats.requests_of("query", 401), 0, "never used an expired token");
    assert_matches_truth(&m, &sim.sim.truth());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_gets_one_reauthentication_and_the_request_is_retried() {
    let sim = Sim::scripted(few_calls()).await;
    let exp = Exporter::start(&sim.url, &[]);
    exp.wait_for("first poll", Duration::from_secs(10), |m| m.calls_total() == 20).await;
    sim.faults(Faults { revoke_tokens: true, ..Faults::default() });
    let m = exp
        .wait_for("a 401 answered", Duration::from_secs(10), |m| {
            m.value("cec_exporter_api_requests_total", &[("endpoint", "query_call_detail_record"), ("code", "401")])
                == 1.0
                && m.value("cec_exporter_token_refreshes_total", &[]) == 2.0
        })
        .await;
    assert_eq!(m.value("cec_exporter_poll_failures_total", &[]), 0.0);
    let m = exp
        .wait_for("a later poll", Duration::from_secs(5), |mm| {
            mm.value("cec_exporter_polls_total", &[]) > m.value("cec_exporter_polls_total", &[])
        })
        .await;
    assert_eq!(m.value("cec_up", &[]), 1.0);
    assert_eq!(m.calls_total(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_fail_polls_with_an_unauthorized_error_and_never_log_the_secret() {
    let sim = Sim::scripted(few_calls()).await;
    let exp = Exporter::start(&sim.url, &["--cec.app-key", "wrong-key"]);
    let m = exp
        .wait_for("an unauthorized token request", Duration::from_secs(10), |m| {
            m.value("cec_exporter_api_errors_total", &[("endpoint", "token_by_ak_sk"), ("error", "unauthorized")])
                >= 1.0
        })
        .await;
    assert_eq!(m.value("cec_up", &[]), 0.0);
    assert_eq!(
        m.value("cec_exporter_api_requests_total", &[("endpoint", "token_by_ak_sk"), ("code", "401")]),
        m.value("cec_exporter_api_errors_total", &[("endpoint", "token_by_ak_sk"), ("error", "unauthorized")])
    );
    let ready = reqwest::get(exp.url("/-/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let landing = reqwest::get(exp.url("/")).await.unwrap().text().await.unwrap();
    // The kind and time only; the hint is in the log line.
    assert!(landing.contains(" (token_by_ak_sk unauthorized)</li>"), "{landing}");
    assert!(exp.stderr().contains("token_by_ak_sk: HTTP 401 (unauthorized: check the app key and secret)"));
    for text in [exp.stderr(), m.text.clone(), landing] {
        assert!(!text.contains(APP_SECRET), "the secret leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_skipped_counted_and_logged_while_the_rest_of_the_page_counts() {
    let sim = Sim::scripted(few_calls()).await;
    sim.faults(Faults { malformed: 2, ..Faults::default() });
    let exp = Exporter::start(&sim.url, &[]);
    let m = exp.wait_for("all calls", Duration::from_secs(10), |m| m.calls_total() == 20).await;
    assert_matches_truth(&m, &sim.sim.truth());
    for reason in ["not_an_object", "missing_serial_no", "invalid_state"] {
        assert_eq!(m.value("cec_exporter_records_rejected_total", &[("reason", reason)]), 2.0, "{reason}");
    }
    assert_eq!(m.value("cec_exporter_poll_failures_total", &[]), 0.0);
    let log = exp.stderr();
    assert_eq!(log.matches("msg=\"record rejected\" reason=invalid_state field=state").count(), 2, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_body_is_a_decode_error_retried_within_the_poll() {
    let sim = Sim::scripted(few_calls()).await;
    sim.faults(Faults { truncated_json: 1, ..Faults::default() });
    let exp = Exporter::start(&sim.url, &[]);
    let m = exp.wait_for("all calls", Duration::from_secs(10), |m| m.calls_total() == 20).await;
    assert_eq!(
        m.value("cec_exporter_api_errors_total", &[("endpoint", "query_call_detail_record"), ("error", "decode")]),
        1.0
    );
    assert_eq!(m.value("cec_exporter_poll_failures_total", &[]), 0.0);
    assert_matches_truth(&m, &sim.sim.truth());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_time_out_and_polling_recovers_when_they_speed_up() {
    let sim = Sim::scripted(few_calls()).await;
    sim.faults(Faults { delay_ms: 1_500, ..Faults::default() });
    let exp = Exporter::start(&sim.url, &["--cec.timeout", "300ms"]);
    let m = exp
        .wait_for("a timeout", Duration::from_secs(15), |m| {
            m.value("cec_exporter_api_errors_total", &[("endpoint", "token_by_ak_sk"), ("error", "timeout")]) >= 1.0
        })
        .await;
    assert_eq!(m.value("cec_up", &[]), 0.0);
    sim.faults(Faults::default());
    let m = exp
        .wait_for("recovery", Duration::from_secs(20), |m| m.value("cec_up", &[]) == 1.0 && m.calls_total() == 20)
        .await;
    assert_matches_truth(&m, &sim.sim.truth());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_tenant_answers_ret_code_1_and_the_exporter_is_up_with_zero_calls() {
    let sim = Sim::scripted(Vec::new()).await;
    let exp = Exporter::start(&sim.url, &[]);
    let m =
        exp.wait_for("two polls", Duration::from_secs(10), |m| m.value("cec_exporter_polls_total", &[]) >= 2.0).await;
    assert_eq!(m.value("cec_up", &[]), 1.0);
    assert_eq!(m.calls_total(), 0);
    assert_eq!(m.value("cec_exporter_poll_failures_total", &[]), 0.0);
    assert_eq!(m.value("cec_exporter_last_poll_api_requests", &[]), 2.0, "one request per task-type query");
    let stats = sim.sim.stats();
    assert!(stats.log.iter().all(|e| e.ret_code.as_deref() == Some("1")));
    assert_eq!(reqwest::get(exp.url("/-/ready")).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_answer_claiming_an_absurd_lifetime_is_not_trusted() {
    let sim = Sim::scripted(few_calls()).await;
    // The gateway claims u64::MAX seconds; the token really lives the 2 s asked for.
    sim.faults(Faults { token_expires_text: Some(u64::MAX.to_string()), token_expires_count: 1, ..Faults::default() });
    let exp = Exporter::start(&sim.url, &["--cec.token-expire", "2"]);
    let m = exp
        .wait_for("a second token", Duration::from_secs(10), |m| {
            m.value("cec_exporter_token_refreshes_total", &[]) >= 2.0
        })
        .await;
    assert_eq!(m.value("cec_up", &[]), 1.0);
    assert_eq!(m.value("cec_exporter_poll_failures_total", &[]), 0.0);
    assert_eq!(m.calls_total(), 20);
}

/// A loopback "proxy" that writes down the first line of every request it gets and answers 502.
async fn proxy_witness() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let mut stream = tokio::io::BufReader::new(stream);
                let mut line = String::new();
                if stream.read_line(&mut line).await.is_ok() {
                    s.lock().unwrap().push(line.trim_end().to_owned());
                }
                let _ = stream.get_mut().write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_is_honoured_and_no_proxy_bypasses_it() {
    // HTTPS_PROXY: the gateway is reached through a CONNECT tunnel to the proxy (its name is never
    // resolved here).
    let (proxy, seen) = proxy_witness().await;
    let https_proxy = format!("HTTPS_PROXY={proxy}");
    let wrap = ["env", "-u", "NO_PROXY", "-u", "no_proxy", "-u", "https_proxy", https_proxy.as_str()];
    let exp = Exporter::start_wrapped("https://cec.invalid", &[], &wrap);
    exp.wait_for("a failed poll", Duration::from_secs(10), |m| m.value("cec_exporter_poll_failures_total", &[]) >= 1.0)
        .await;
    let lines = seen.lock().unwrap().clone();
    assert!(!lines.is_empty() && lines.iter().all(|l| l == "CONNECT cec.invalid:443 HTTP/1.1"), "{lines:?}");
    drop(exp);
    // NO_PROXY: the simulator on loopback is reached directly, the proxy sees nothing.
    let sim = Sim::scripted(few_calls()).await;
    let (proxy, seen) = proxy_witness().await;
    let http_proxy = format!("HTTP_PROXY={proxy}");
    let wrap = ["env", "-u", "http_proxy", "-u", "no_proxy", http_proxy.as_str(), "NO_PROXY=127.0.0.1"];
    let exp = Exporter::start_wrapped(&sim.url, &[], &wrap);
    let m = exp.wait_for("all calls", Duration::from_secs(10), |m| m.calls_total() == 20).await;
    assert_matches_truth(&m, &sim.sim.truth());
    assert_eq!(*seen.lock().unwrap(), Vec::<String>::new());
}

#[test]
fn a_bad_ca_file_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("ca.pem");
    std::fs::write(&junk, "-----BEGIN NOTHING-----\n").unwrap();
    let out = bin()
        .args(["--cec.url", "https://cec.invalid", "--cec.app-key", "k", "--cec.ca-file", junk.to_str().unwrap()])
        .env("CEC_APP_SECRET", "s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("--cec.ca-file: {}: not a readable PEM certificate bundle", junk.display())),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_certificate_checks_is_warned_about_at_start_up() {
    let sim = Sim::scripted(few_calls()).await;
    let exp = Exporter::start(&sim.url, &["--cec.insecure-skip-verify"]);
    exp.wait_for("all calls", Duration::from_secs(10), |m| m.calls_total() == 20).await;
    let log = exp.stderr();
    let warnings: Vec<_> =
        log.lines().filter(|l| l.contains("TLS CERTIFICATE CHECKS OF THE CEC GATEWAY ARE OFF")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("level=warn") && warnings[0].contains("flag=--cec.insecure-skip-verify"), "{log}");
    let exp = Exporter::start(&sim.url, &[]);
    exp.wait_for("a poll", Duration::from_secs(10), |m| m.value("cec_up", &[]) == 1.0).await;
    assert!(!exp.stderr().contains("CERTIFICATE CHECKS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_too_big_for_the_poll_deadline_shrinks_its_window_and_completes_exactly() {
    // 120 calls over the last two hours, two per page, 100 ms per answer: the two-hour backfill takes
    // about 60 requests (6 s), three times --poll.deadline. Retrying that same window would fail forever;
    // halving it after each deadline failure gets to windows that fit, and the counts equal the truth.
    let t0 = now();
    let mut rng = Rng::new(11);
    let calls: Vec<CallSpec> =
        (0..120).map(|i| random_call(&mut rng, SERIAL0 + i, t0 - 7_140_000 + i as i64 * 59_000)).collect();
    let sim = Sim::scripted(calls).await;
    sim.faults(Faults { delay_ms: 100, ..Faults::default() });
    let exp = Exporter::start(
        &sim.url,
        &[
            "--poll.backfill",
            "2h",
            "--poll.lookback",
            "1s",
            "--cec.page-size",
            "2",
            "--cec.timeout",
            "1s",
            "--poll.deadline",
            "2s",
        ],
    );
    let m = exp
        .wait_for("the catch-up to complete", Duration::from_secs(90), |m| {
            m.value("cec_up", &[]) == 1.0 && m.calls_total() == 120
        })
        .await;
    assert_matches_truth(&m, &sim.sim.truth());
    let failures = m.value("cec_exporter_poll_failures_total", &[]);
    assert!((1.0..=3.0).contains(&failures), "{failures} deadline failures before the window fit");
    let log = exp.stderr();
    assert!(log.contains("poll deadline exceeded: the reads took longer than --poll.deadline (2s)"), "{log}");
}
