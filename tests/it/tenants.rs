//! Many tenants (`--config.file`): the real binary polling several simulators at once, each tenant's
//! series carrying `tenant="<name>"` and equal to its own simulator's truth; one gateway down leaves the
//! others polling; kill -9 keeps every tenant's counts; shards split the tenants exactly; SIGHUP adds
//! and removes tenants without touching the others; `--config.check` validates.

use std::time::Duration;

use cec_sim::{CallSpec, Faults};

use crate::harness::*;

/// A simulator holding `n` scripted calls that ended in the last minute, serials from `first`.
async fn sim_with(n: u64, first: u64) -> Sim {
    let t0 = now();
    let mut rng = Rng::new(first);
    let calls: Vec<CallSpec> =
        (0..n).map(|i| random_call(&mut rng, SERIAL0 + first + i, t0 - 60_000 + i as i64 * 200)).collect();
    Sim::scripted(calls).await
}

/// A `--config.file` with one tenant per `(name, simulator)`.
fn file(tenants: &[(&str, &Sim)]) -> String {
    let mut out = String::from(
        "global:\n  cec:\n    app_key: it-app-key\n    app_secret_file: SECRET\n  poll:\n    interval: 1s\n    backfill: 2m\n    lookback: 30s\n\
         tenants:\n",
    );
    for (name, sim) in tenants {
        out.push_str(&format!("  - name: {name}\n    cec:\n      url: {}\n", sim.url));
    }
    out
}

/// Waits until every tenant of `tenants` equals its simulator's truth, exactly, and returns the scrape.
async fn wait_exact(exp: &Exporter, tenants: &[(&str, &Sim)]) -> Metrics {
    let mut truths = Vec::new();
    for (name, sim) in tenants {
        truths.push((name.to_string(), sim.sim.truth()));
    }
    let m = exp
        .wait_for("every tenant's truth", Duration::from_secs(20), |m| {
            truths.iter().all(|(name, t)| m.tenant(name).calls_total() == t.ended_calls)
        })
        .await;
    for (name, t) in &truths {
        assert_matches_truth(&m.tenant(name), t);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_counts_its_own_calls_exactly_and_a_dead_gateway_stops_only_its_own() {
    let (a, b, c) = (sim_with(40, 1_000).await, sim_with(25, 2_000).await, sim_with(10, 3_000).await);
    // c's gateway refuses every request from the start.
    c.faults(Faults { http_500: u32::MAX, token_http_500: u32::MAX, ..Faults::default() });
    let exp = Exporter::start_tenants(&file(&[("brand-a", &a), ("brand-b", &b), ("brand-c", &c)]), &[]);
    wait_exact(&exp, &[("brand-a", &a), ("brand-b", &b)]).await;
    let m = exp
        .wait_for("c's first poll failed", Duration::from_secs(20), |m| {
            m.value("cec_exporter_poll_failures_total", &[("tenant", "brand-c")]) >= 1.0
        })
        .await;
    assert_eq!(m.tenants(), ["brand-a", "brand-b", "brand-c"]);
    assert_eq!((m.tenant("brand-a").calls_total(), m.tenant("brand-b").calls_total()), (40, 25));
    assert_eq!(m.value("cec_up", &[("tenant", "brand-a")]), 1.0);
    assert_eq!(m.value("cec_up", &[("tenant", "brand-b")]), 1.0);
    assert_eq!(m.value("cec_up", &[("tenant", "brand-c")]), 0.0);
    assert_eq!(m.tenant("brand-c").calls_total(), 0);
    assert_eq!(m.value("cec_exporter_poll_failures_total", &[("tenant", "brand-a")]), 0.0);
    // The process's own families come once, without a tenant.
    assert_eq!(m.series.keys().filter(|k| k.starts_with("cec_exporter_build_info")).count(), 1);
    assert!(m.get("cec_exporter_http_accept_errors_total", &[]).is_some());
    // Every failing line of c's poller says whose it is; none of a's and b's fail.
    let log = exp.stderr();
    assert!(log.lines().any(|l| l.contains("poll failed") && l.ends_with("tenant=brand-c")), "{log}");
    assert!(!log.lines().any(|l| l.contains("poll failed") && !l.ends_with("tenant=brand-c")), "{log}");
    // Ready: every tenant has finished a poll, even the failing one.
    assert_eq!(reqwest::get(exp.url("/-/ready")).await.unwrap().status(), 200);
    // c comes back: its calls are counted, a's and b's stay exact.
    c.faults(Faults::default());
    let m = wait_exact(&exp, &[("brand-a", &a), ("brand-b", &b), ("brand-c", &c)]).await;
    assert_eq!(m.value("cec_up", &[("tenant", "brand-c")]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_a_restart_keep_every_tenants_counts() {
    let (a, b) = (sim_with(30, 4_000).await, sim_with(12, 5_000).await);
    let dir = tempfile::tempdir().unwrap();
    let state = ["--state.path", dir.path().to_str().unwrap()];
    let yaml = file(&[("brand-a", &a), ("brand-b", &b)]);
    let exp = Exporter::start_tenants(&yaml, &state);
    wait_exact(&exp, &[("brand-a", &a), ("brand-b", &b)]).await;
    exp.kill9();
    assert!(dir.path().join("tenants/brand-a/cec-exporter.redb").exists());
    assert!(dir.path().join("tenants/brand-b/cec-exporter.redb").exists());
    // More calls while it is down, for one tenant only.
    let t1 = now();
    let mut rng = Rng::new(9);
    a.sim.add_calls((0..7).map(|i| random_call(&mut rng, SERIAL0 + 4_500 + i, t1 - 5_000 + i as i64 * 100)).collect());
    let exp = Exporter::start_tenants(&yaml, &state);
    let restored = exp.metrics().await;
    assert_eq!(restored.tenant("brand-b").calls_total(), 12, "restored before any poll");
    let m = wait_exact(&exp, &[("brand-a", &a), ("brand-b", &b)]).await;
    assert_eq!((m.tenant("brand-a").calls_total(), m.tenant("brand-b").calls_total()), (37, 12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_the_tenants_exactly_once() {
    let names = ["brand-a", "brand-b", "brand-c", "brand-d", "brand-e"];
    let mut sims = Vec::new();
    for (i, _) in names.iter().enumerate() {
        sims.push(sim_with(5 + i as u64, 10_000 * (i as u64 + 1)).await);
    }
    let tenants: Vec<(&str, &Sim)> = names.iter().copied().zip(sims.iter()).collect();
    let yaml = file(&tenants);
    let shard0 = Exporter::start_tenants(&yaml, &["--shard.count", "2", "--shard.index", "0"]);
    let shard1 = Exporter::start_tenants(&yaml, &["--shard.count", "2", "--shard.index", "1"]);
    // FNV-1a 64 of the name, modulo 2 (the README's table of this example).
    let (want0, want1): (Vec<_>, Vec<_>) =
        tenants.iter().partition(|(n, _)| ["brand-a", "brand-c", "brand-e"].contains(n));
    let m0 = wait_exact(&shard0, &want0).await;
    let m1 = wait_exact(&shard1, &want1).await;
    assert_eq!(m0.tenants(), ["brand-a", "brand-c", "brand-e"]);
    assert_eq!(m1.tenants(), ["brand-b", "brand-d"]);
    // A tenant polled here has series here only.
    assert!(!m0.text.contains("tenant=\"brand-b\"") && !m1.text.contains("tenant=\"brand-a\""));
    // A replica left with no tenant still runs and serves.
    let empty = Exporter::start_tenants(&file(&tenants[1..2]), &["--shard.count", "2", "--shard.index", "0"]);
    let m = empty.metrics().await;
    assert!(m.tenants().is_empty());
    assert_eq!(m.sum("cec_exporter_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0, "{}", m.text);
    assert_eq!(reqwest::get(empty.url("/-/ready")).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_and_removes_tenants_and_refuses_a_bad_file_keeping_the_others() {
    let (a, b, c) = (sim_with(20, 20_000).await, sim_with(8, 21_000).await, sim_with(3, 22_000).await);
    let exp = Exporter::start_tenants(&file(&[("brand-a", &a), ("brand-b", &b)]), &[]);
    wait_exact(&exp, &[("brand-a", &a), ("brand-b", &b)]).await;
    let polls_a = exp.metrics().await.value("cec_exporter_polls_total", &[("tenant", "brand-a")]);
    // b goes, c comes; a stays as it is.
    exp.reload_tenants(&file(&[("brand-a", &a), ("brand-c", &c)]));
    let m = exp
        .wait_for("c in, b out", Duration::from_secs(15), |m| {
            m.tenants() == ["brand-a", "brand-c"] && m.tenant("brand-c").calls_total() == 3
        })
        .await;
    assert_eq!(m.value("cec_exporter_config_reloads_total", &[("result", "success")]), 1.0);
    assert_eq!(m.value("cec_exporter_config_last_reload_successful", &[]), 1.0);
    assert!(!m.text.contains("tenant=\"brand-b\""), "a removed tenant's series go");
    assert!(m.value("cec_exporter_polls_total", &[("tenant", "brand-a")]) >= polls_a, "a's counters never reset");
    let log = exp.stderr();
    assert_eq!(
        log.lines().filter(|l| l.contains("tenant started") && l.ends_with("tenant=brand-a")).count(),
        1,
        "a was not restarted"
    );
    assert!(
        log.contains("msg=\"configuration reloaded\" path=")
            && log.contains("added=brand-c removed=brand-b restarted=\"\" kept=1"),
        "{log}"
    );
    wait_exact(&exp, &[("brand-a", &a), ("brand-c", &c)]).await;
    // A broken file: refused, counted, and everything stays as it was.
    exp.reload_tenants("tenants:\n  - name: brand-a\n    cec: {urll: x}\n");
    let m = exp
        .wait_for("the failed reload counted", Duration::from_secs(10), |m| {
            m.value("cec_exporter_config_reloads_total", &[("result", "failure")]) == 1.0
        })
        .await;
    assert_eq!(m.value("cec_exporter_config_last_reload_successful", &[]), 0.0);
    assert_eq!(m.tenants(), ["brand-a", "brand-c"]);
    let log = exp.stderr();
    assert!(
        log.contains("configuration not reloaded; the previous tenants stay in force")
            && log.contains("unknown field `urll`"),
        "{log}"
    );
}

#[test]
fn config_check_says_valid_or_exits_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("s");
    std::fs::write(&secret, "x\n").unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        format!(
            "tenants:\n  - name: brand-a\n    cec: {{url: http://127.0.0.1:9, app_key: k, app_secret_file: {}}}\n",
            secret.display()
        ),
    )
    .unwrap();
    let out = bin().args(["--config.file", good.to_str().unwrap(), "--config.check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}: valid, 1 tenants: brand-a\n", good.display()));
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "tenants:\n  - name: brand-a\n  - name: brand-a\n").unwrap();
    let out = bin().args(["--config.file", bad.to_str().unwrap(), "--config.check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "cec-exporter: --config.file {}: tenant name \"brand-a\" is given twice (tenants 1 and 2); names must be unique\n",
            bad.display()
        )
    );
    let out = bin()
        .args(["--config.file", good.to_str().unwrap(), "--shard.count", "2", "--shard.index", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cec-exporter: --shard.index: must be less than --shard.count (2)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_callers_split_a_tenants_calls_exactly_and_add_up_to_the_truth() {
    let t0 = now();
    let mut rng = Rng::new(77);
    let callers = ["4001", "+86-4002", "", "4003"];
    let calls: Vec<CallSpec> = (0..40)
        .map(|i| {
            let mut c = random_call(&mut rng, SERIAL0 + 30_000 + i, t0 - 60_000 + i as i64 * 200);
            c.caller = callers[i as usize % 4].to_owned();
            c
        })
        .collect();
    let sim = Sim::scripted(calls.clone()).await;
    // 4003 is not listed: its calls, and those without a caller, are "other".
    let yaml = file(&[("brand-a", &sim)]) + "    callers: [\"4001\", \"+86-4002\"]\n";
    let exp = Exporter::start_tenants(&yaml, &[]);
    let m = exp.wait_for("40 calls", Duration::from_secs(20), |m| m.tenant("brand-a").calls_total() == 40).await;
    let m = m.tenant("brand-a");
    let task = ["", "cec_bidirectional", "anonymous_outbound", "voice_notification", "ita_bidirectional"];
    for (caller, listed) in [("4001", vec!["4001"]), ("+86-4002", vec!["+86-4002"]), ("other", vec!["", "4003"])] {
        let mine: Vec<&CallSpec> = calls.iter().filter(|c| listed.contains(&c.caller.as_str())).collect();
        assert_eq!(m.sum("cec_calls_total", &[("caller", caller)]) as usize, mine.len(), "caller {caller}");
        for c in &mine {
            let labels =
                [("task_type", task[c.task_type as usize]), ("outcome", c.outcome().label()), ("caller", caller)];
            let want = mine.iter().filter(|d| d.task_type == c.task_type && d.outcome() == c.outcome()).count();
            assert_eq!(m.value("cec_calls_total", &labels) as usize, want, "{labels:?}");
        }
    }
    // No series without a caller: summed over callers they are the truth.
    assert!(m.series.keys().filter(|k| k.starts_with("cec_calls_total{")).all(|k| k.contains(",caller=\"")));
    let t = sim.sim.truth();
    for tt in TASK_TYPES {
        for o in cec_sim::Outcome::ALL {
            let got = m.sum("cec_calls_total", &[("task_type", tt), ("outcome", o.label())]);
            assert_eq!(got as u64, t.calls_of(tt, o.label()), "{tt} {}", o.label());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_file_sighup_is_logged_and_the_exporter_keeps_counting() {
    let sim = sim_with(5, 40_000).await;
    let exp = Exporter::start(&sim.url, &[]);
    exp.wait_for("5 calls", Duration::from_secs(10), |m| m.calls_total() == 5).await;
    let ok = std::process::Command::new("kill").args(["-HUP", &exp.pid().to_string()]).status().unwrap().success();
    assert!(ok);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !exp.stderr().contains("SIGHUP: nothing to reload without --config.file") {
        assert!(std::time::Instant::now() < deadline, "{}", exp.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut rng = Rng::new(5);
    sim.sim.add_calls(vec![random_call(&mut rng, SERIAL0 + 40_100, now() - 2_000)]);
    exp.wait_for("6 calls after SIGHUP", Duration::from_secs(10), |m| m.calls_total() == 6).await;
}
