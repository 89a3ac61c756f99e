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
    assert!(landing.contains("token_by_ak_sk: HTTP 401 (unauthorized: check the app key and secret)"), "{landing}");
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
