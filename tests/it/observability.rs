//! The Grafana dashboards and Prometheus rules against the exporter they are for: every query parses,
//! follows the template-variable conventions and names only metrics the exporter really exposes (taken
//! from a live run against the simulator), so a renamed metric breaks the build, not the dashboard; and
//! every query and rule evaluates on a real Prometheus scraping the exporter on its simulator. Both run
//! against a single-tenant exporter (no `tenant` label) and a multi-tenant one (`--config.file`, two
//! tenants on their own simulators), where every per-tenant query must keep the tenants apart and the
//! dashboards' tenant variable must select one. The committed dashboard JSON is what
//! `grafana/generate.py` builds with the pinned Grafana Foundation SDK.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cec_sim::{Faults, Traffic};
use promql_parser::parser::{self, Expr};

use crate::harness::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The committed dashboards, data source provisioning and rule file are, byte for byte, what
/// `grafana/generate.py` builds from `monitoring/config.yml` (dashboards with the SDK pinned in
/// `grafana/requirements.txt`): a hand edit of a generated file, or a change of the configuration or the
/// generator not regenerated, fails here.
#[test]
#[ignore = "needs python3 with the pinned Grafana Foundation SDK (scripts/test.sh installs it and runs this test)"]
fn committed_dashboards_are_what_the_sdk_generates() {
    let out = Command::new("python3")
        .args(["grafana/generate.py", "--check"])
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("python3 grafana/generate.py --check: {e} (needs python3)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python3 grafana/generate.py --check: {}\n{stdout}{stderr}", out.status);
    assert_eq!(stdout, "4 files are what grafana/generate.py generates from monitoring/config.yml\n", "{stderr}");
}

/// A query as it stands in a dashboard or a rule file, with where it comes from.
#[derive(Debug, Clone)]
struct Query {
    origin: String,
    expr: String,
    /// A raw-metric dashboard query (carries the template variables).
    dashboard: bool,
    /// May return nothing on a healthy exporter (an annotation marking rare events such as restarts, a
    /// recording rule that reads only history a new Prometheus lacks): it must still evaluate.
    may_be_empty: bool,
}

/// Every `expr` of every panel (rows included) and every variable query of the dashboards.
fn dashboard_queries() -> Vec<Query> {
    let dir = repo().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 2, "the call-traffic and exporter-health dashboards");
    let mut out = Vec::new();
    for f in files {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        fn panels(v: &serde_json::Value, name: &str, out: &mut Vec<Query>) {
            for p in v["panels"].as_array().into_iter().flatten() {
                for t in p["targets"].as_array().into_iter().flatten() {
                    if let Some(expr) = t["expr"].as_str() {
                        let title = p["title"].as_str().unwrap_or("?");
                        out.push(Query {
                            origin: format!("{name}: {title}"),
                            expr: expr.to_owned(),
                            dashboard: true,
                            may_be_empty: false,
                        });
                    }
                }
                panels(p, name, out);
            }
        }
        let before = out.len();
        panels(&v, &name, &mut out);
        assert!(out.len() - before >= 8, "{name} has {} queries", out.len() - before);
        // Annotations (firing alerts, exporter restarts): filtered like the panels, empty while all is well.
        let mut annotations = 0;
        for a in v["annotations"]["list"].as_array().into_iter().flatten() {
            if let Some(expr) = a["expr"].as_str() {
                annotations += 1;
                out.push(Query {
                    origin: format!("{name}: annotation {}", a["name"]),
                    expr: expr.to_owned(),
                    dashboard: true,
                    may_be_empty: true,
                });
            }
        }
        assert!(annotations >= 2, "{name}: alert and exporter-restart annotations");
        for var in v["templating"]["list"].as_array().into_iter().flatten() {
            let q = match &var["query"] {
                serde_json::Value::String(s) => s.clone(),
                o => o["query"].as_str().unwrap_or_default().to_owned(),
            };
            // label_values(SELECTOR, label): the selector is the query.
            if let Some(inner) = q.strip_prefix("label_values(").and_then(|r| r.rsplit_once(',')).map(|(sel, _)| sel) {
                out.push(Query {
                    origin: format!("{name}: variable {}", var["name"]),
                    expr: inner.to_owned(),
                    dashboard: false,
                    may_be_empty: false,
                });
            }
        }
    }
    out
}

/// Recording rules and alerts of every rule file: `(record name or None, query)`.
fn rule_queries() -> Vec<(Option<String>, Query)> {
    let dir = repo().join("prometheus/rules");
    let mut out = Vec::new();
    for f in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
        let y: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for g in y["groups"].as_sequence().unwrap() {
            for r in g["rules"].as_sequence().unwrap() {
                let expr = r["expr"].as_str().unwrap().to_owned();
                let (record, origin) = match (r["record"].as_str(), r["alert"].as_str()) {
                    (Some(rec), _) => (Some(rec.to_owned()), format!("record {rec}")),
                    (_, Some(alert)) => (None, format!("alert {alert}")),
                    _ => panic!("a rule that is neither: {r:?}"),
                };
                // A recording rule whose every selector has an `offset` reads only history (the same time
                // yesterday or last week): nothing on a Prometheus started a minute ago.
                let e = parser::parse(&expr).unwrap_or_else(|err| panic!("{origin}: {err}"));
                let mut sel = Vec::new();
                selectors(&e, &mut sel);
                let history_only = record.is_some() && sel.iter().all(|v| v.offset.is_some());
                out.push((record, Query { origin, expr, dashboard: false, may_be_empty: history_only }));
            }
        }
    }
    assert!(out.iter().filter(|(r, _)| r.is_some()).count() >= 5, "the recording rules");
    assert!(out.iter().filter(|(r, _)| r.is_none()).count() >= 6, "the alerts");
    out
}

/// The dashboards' template variables, by name.
#[derive(Clone, Copy)]
struct Vars<'a> {
    job: &'a str,
    instance: &'a str,
    tenant: &'a str,
    task_type: &'a str,
}

/// Every variable at All (`.*`, the dashboards' allValue).
const ALL: Vars<'static> = Vars { job: ".*", instance: ".*", tenant: ".*", task_type: ".*" };

/// Grafana's variables and macros replaced.
fn substitute(expr: &str, vars: Vars<'_>) -> String {
    expr.replace("${job}", "$job")
        .replace("${instance}", "$instance")
        .replace("${tenant}", "$tenant")
        .replace("${task_type}", "$task_type")
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("$job", vars.job)
        .replace("$instance", vars.instance)
        .replace("$tenant", vars.tenant)
        .replace("$task_type", vars.task_type)
}

fn parse(q: &Query, vars: Vars<'_>) -> Expr {
    let e = substitute(&q.expr, vars);
    parser::parse(&e).unwrap_or_else(|err| panic!("{}: {e}: {err}", q.origin))
}

/// Every vector selector in `e` (matrix selectors' included).
fn selectors<'a>(e: &'a Expr, out: &mut Vec<&'a parser::VectorSelector>) {
    match e {
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Subquery(s) => selectors(&s.expr, out),
        Expr::VectorSelector(v) => out.push(v),
        Expr::MatrixSelector(m) => out.push(&m.vs),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn name_of(v: &parser::VectorSelector) -> Option<String> {
    v.name.clone().or_else(|| v.matchers.matchers.iter().find(|m| m.name == "__name__").map(|m| m.value.clone()))
}

fn has(v: &parser::VectorSelector, label: &str, value: &str) -> bool {
    v.matchers.matchers.iter().any(|m| m.name == label && m.value == value)
}

/// Whether any matcher of `v` names `label`.
fn names_label(v: &parser::VectorSelector, label: &str) -> bool {
    v.matchers.matchers.iter().any(|m| m.name == label)
}

/// The series no tenant owns, in a multi-tenant exposition: the families it writes without a `tenant`
/// label (build, web server, configuration reloads), Prometheus' `up`, and the recorded target list
/// built from them. Every other series of the exporter and of the rules is per tenant.
fn process_wide(multi_tenant_exposition: &str) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = ["up", "job_instance:cec_exporter_build_info:known"].map(String::from).into();
    for l in multi_tenant_exposition.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let name = l.split(['{', ' ']).next().unwrap();
        if !l.starts_with(&format!("{name}{{tenant=\"")) {
            out.insert(name.to_owned());
        }
    }
    out
}

/// Metric names the exposition declares (`# TYPE` lines), with the sample names of histograms.
fn exposed(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.insert(name.to_owned());
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{s}"));
                }
            }
        }
    }
    out
}

async fn exporter_with_traffic() -> (Sim, Exporter, tempfile::TempDir) {
    let sim = Sim::start(Traffic::Random {
        calls_per_minute: 600.0,
        history: Duration::from_secs(600),
        duration_scale: 0.01,
    })
    .await;
    // A few faults, so the error and rejection series exist too.
    sim.faults(Faults { http_500: 1, truncated_json: 1, malformed: 2, ..Faults::default() });
    let state = tempfile::tempdir().unwrap();
    let exp = Exporter::start(
        &sim.url,
        &["--state.path", state.path().to_str().unwrap(), "--poll.lookback", "10s", "--poll.backfill", "10m"],
    );
    exp.wait_for("a poll with calls", Duration::from_secs(20), |m| m.calls_total() > 100).await;
    (sim, exp, state)
}

/// The tenants of [`tenants_with_traffic`].
const TENANTS: [&str; 2] = ["brand-a", "brand-b"];

/// A multi-tenant exporter (`--config.file`): [`TENANTS`], each on its own simulator with the traffic
/// and faults of [`exporter_with_traffic`] (brand-b at half the rate), until both have counted calls.
async fn tenants_with_traffic() -> (Vec<Sim>, Exporter, tempfile::TempDir) {
    let mut sims = Vec::new();
    for calls_per_minute in [600.0, 300.0] {
        let sim =
            Sim::start(Traffic::Random { calls_per_minute, history: Duration::from_secs(600), duration_scale: 0.01 })
                .await;
        sim.faults(Faults { http_500: 1, truncated_json: 1, malformed: 2, ..Faults::default() });
        sims.push(sim);
    }
    let mut yaml = format!(
        "global:\n  cec:\n    app_key: {APP_KEY}\n    app_secret_file: SECRET\n  poll:\n    interval: 1s\n    backfill: 10m\n    lookback: 10s\ntenants:\n"
    );
    for (name, sim) in TENANTS.iter().zip(&sims) {
        yaml.push_str(&format!("  - name: {name}\n    cec:\n      url: {}\n", sim.url));
    }
    let state = tempfile::tempdir().unwrap();
    let exp = Exporter::start_tenants(&yaml, &["--state.path", state.path().to_str().unwrap()]);
    exp.wait_for("a poll with calls for every tenant", Duration::from_secs(20), |m| {
        TENANTS.iter().all(|t| m.tenant(t).calls_total() > 50)
    })
    .await;
    (sims, exp, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_rule_query_names_only_metrics_the_exporter_exposes() {
    let (_sim, exp, _state) = exporter_with_traffic().await;
    let text = reqwest::get(exp.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(!text.contains("tenant=\""), "a single-tenant exporter has no tenant label");
    names_only_exposed_metrics(&text, None);
}

/// With `--config.file`, the same, and every dashboard selector of a per-tenant series carries
/// `tenant=~"$tenant"` while those of the process-wide families (and `up`) carry no tenant matcher: a
/// tenant selection must not hide the build info or the scrape status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_rule_query_names_only_metrics_a_multi_tenant_exporter_exposes() {
    let (_sims, exp, _state) = tenants_with_traffic().await;
    let text = reqwest::get(exp.url("/metrics")).await.unwrap().text().await.unwrap();
    let process = process_wide(&text);
    // The process-wide families of the exposition: written once, without a tenant.
    for family in [
        "cec_exporter_build_info",
        "cec_exporter_http_accept_errors_total",
        "cec_exporter_web_config_last_reload_successful",
        "cec_exporter_config_last_reload_successful",
        "cec_exporter_config_reloads_total",
    ] {
        assert!(process.contains(family), "{family} is process-wide: {process:?}");
    }
    for family in ["cec_up", "cec_calls_total", "cec_exporter_polls_total", "cec_exporter_api_errors_total"] {
        assert!(!process.contains(family), "{family} is per tenant");
    }
    names_only_exposed_metrics(&text, Some(&process));
}

/// Every selector of every dashboard and rule query names a metric of `text` (or a recorded one), and
/// the dashboards follow the variable conventions. `process`: the process-wide series of a multi-tenant
/// exposition, to check the tenant matchers (None: a single-tenant exposition).
fn names_only_exposed_metrics(text: &str, process: Option<&BTreeSet<String>>) {
    let mut known = exposed(text);
    let rules = rule_queries();
    for (record, _) in &rules {
        if let Some(r) = record {
            known.insert(r.clone());
        }
    }
    // Series Prometheus itself makes.
    known.extend(["up", "ALERTS", "ALERTS_FOR_STATE"].map(String::from));
    let mut unknown = Vec::new();
    let mut checked = 0;
    let sentinels = Vars { job: "JOBVAR", instance: "INSTANCEVAR", tenant: "TENANTVAR", task_type: "TASKTYPEVAR" };
    let mut tenant_checked = 0;
    for q in dashboard_queries().iter().chain(rules.iter().map(|(_, q)| q)) {
        let e = parse(q, sentinels);
        let mut sel = Vec::new();
        selectors(&e, &mut sel);
        assert!(!sel.is_empty(), "{}: no metric in {}", q.origin, q.expr);
        for v in sel {
            let name = name_of(v).unwrap_or_else(|| panic!("{}: a selector without a metric name", q.origin));
            checked += 1;
            if !known.contains(&name) {
                unknown.push(format!("{}: {name}", q.origin));
            }
            if q.dashboard && q.origin.contains(".json") {
                // Dashboards: no offset (the rules' baselines hold the history), and every series is
                // filtered by the dashboard's variables, recorded ones included: the rules keep the
                // instance label, so the Instance selection applies to every panel.
                assert!(v.offset.is_none(), "{}: offset in a dashboard query", q.origin);
                assert!(has(v, "job", "JOBVAR"), "{}: {name} lacks job=~\"$job\"", q.origin);
                assert!(has(v, "instance", "INSTANCEVAR"), "{}: {name} lacks instance=~\"$instance\"", q.origin);
                let with_task_type = text.lines().any(|l| l.starts_with(&name) && l.contains("task_type=\""))
                    || name.starts_with("instance_task_type");
                if with_task_type && q.origin.contains("cec-calls") {
                    assert!(has(v, "task_type", "TASKTYPEVAR"), "{}: {name} lacks task_type=~\"$task_type\"", q.origin);
                }
                if let Some(process) = process {
                    tenant_checked += 1;
                    if name == "ALERTS" {
                        // The selected tenants' alerts, and those without a tenant (a down target).
                        assert!(has(v, "tenant", "TENANTVAR|"), "{}: ALERTS lacks tenant=~\"${{tenant}}|\"", q.origin);
                    } else if process.contains(&name) {
                        assert!(!names_label(v, "tenant"), "{}: {name} has no tenant, yet is filtered by it", q.origin);
                    } else {
                        assert!(has(v, "tenant", "TENANTVAR"), "{}: {name} lacks tenant=~\"$tenant\"", q.origin);
                    }
                }
            }
        }
    }
    assert!(unknown.is_empty(), "queries name metrics the exporter does not expose:\n{}", unknown.join("\n"));
    assert!(checked > 40, "{checked} selectors checked");
    assert!(process.is_none() || tenant_checked > 40, "{tenant_checked} dashboard selectors checked for tenant");
}

/// Debian's Prometheus, started on loopback with the project's rules, scraping `target` every second.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Fails the test when there is no `prometheus` binary: the test is `#[ignore]`d, and whoever runs
    /// it asked for it (scripts/test.sh installs Debian's package first).
    fn start(target: &str) -> Prometheus {
        let found = Command::new("prometheus").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        assert!(
            found.as_ref().is_ok_and(|s| s.success()),
            "prometheus --version: {found:?} (scripts/test.sh installs Debian's prometheus package)"
        );
        let dir = tempfile::tempdir().unwrap();
        let rules = repo().join("prometheus/rules/cec-exporter.rules.yml");
        let cfg = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}']\nscrape_configs:\n  - job_name: cec\n    static_configs: [{{targets: ['{target}']}}]\n",
            rules.display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus { child, port, _dir: dir }
    }

    /// Waits until Prometheus answers `/-/ready`.
    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://127.0.0.1:{}/-/ready", self.port);
        loop {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(self.child.try_wait().unwrap().is_none(), "prometheus exited");
            assert!(Instant::now() < deadline, "prometheus never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn query(&self, q: &str) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let r = reqwest::Client::new().get(url).query(&[("query", q)]).send().await.unwrap();
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn result_len(v: &serde_json::Value) -> usize {
    v["data"]["result"].as_array().map_or(0, Vec::len)
}

/// The labels of each series of a query's answer.
fn result_series(v: &serde_json::Value) -> Vec<&serde_json::Map<String, serde_json::Value>> {
    v["data"]["result"].as_array().into_iter().flatten().filter_map(|r| r["metric"].as_object()).collect()
}

/// The metric names `expr` reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let e = parser::parse(expr).unwrap_or_else(|err| panic!("{expr}: {err}"));
    let mut sel = Vec::new();
    selectors(&e, &mut sel);
    sel.into_iter().filter_map(name_of).collect()
}

/// A multi-tenant answer keeps the tenants apart: wherever a series of a query that reads per-tenant
/// series keeps `instance`, it keeps `tenant` too, and the answer has exactly the tenants `want`; a
/// query of process-wide series only (`up`, build info, reloads) has no tenant. Problems go to `bad`.
fn check_tenants(
    origin: &str,
    expr: &str,
    v: &serde_json::Value,
    process: &BTreeSet<String>,
    want: &[&str],
    bad: &mut Vec<String>,
) {
    let per_tenant = metric_names(expr).iter().any(|n| !process.contains(n));
    let series = result_series(v);
    let mut tenants = BTreeSet::new();
    let mut keeps_instance = false;
    for m in &series {
        let tenant = m.get("tenant").and_then(|t| t.as_str());
        if !per_tenant && tenant.is_some() {
            bad.push(format!("{origin}: a tenant on a process-wide series {m:?}: {expr}"));
        }
        if m.contains_key("instance") && per_tenant {
            keeps_instance = true;
            match tenant {
                Some(t) => {
                    tenants.insert(t);
                }
                None => bad.push(format!("{origin}: keeps instance, drops tenant {m:?}: {expr}")),
            }
        }
    }
    let want: BTreeSet<&str> = want.iter().copied().collect();
    if keeps_instance && tenants != want {
        bad.push(format!("{origin}: tenants {tenants:?}, expected {want:?}: {expr}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (scripts/test.sh installs it and runs this test)"]
async fn every_dashboard_query_and_rule_evaluates_on_a_real_prometheus_scraping_the_exporter() {
    let (_sim, exp, _state) = exporter_with_traffic().await;
    evaluates_on_prometheus(&exp, None).await;
}

/// The same with a multi-tenant exporter (two tenants behind one target): every query that keeps the
/// instance answers for both tenants, each series with its tenant; with the dashboards' tenant variable
/// set to one tenant, every panel still has data and per-tenant series of that tenant only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (scripts/test.sh installs it and runs this test)"]
async fn every_dashboard_query_and_rule_evaluates_per_tenant_on_a_real_prometheus_scraping_a_multi_tenant_exporter() {
    let (_sims, exp, _state) = tenants_with_traffic().await;
    let text = reqwest::get(exp.url("/metrics")).await.unwrap().text().await.unwrap();
    evaluates_on_prometheus(&exp, Some(&process_wide(&text))).await;
}

/// Every dashboard query (variables at All) and every rule on a Prometheus scraping `exp`: each
/// evaluates and has data. `process`: the process-wide series of a multi-tenant `exp` (see
/// [`check_tenants`]); None for a single-tenant one.
async fn evaluates_on_prometheus(exp: &Exporter, process: Option<&BTreeSet<String>>) {
    let mut prom = Prometheus::start(&format!("127.0.0.1:{}", exp.port));
    prom.ready().await;
    // Enough scrapes for rate() over a minute and for the recording rules to have run (for every tenant).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = prom.query("instance_task_type:cec_calls:increase5m > 0").await;
        let tenants: BTreeSet<&str> =
            result_series(&ready).iter().filter_map(|m| m.get("tenant").and_then(|t| t.as_str())).collect();
        let every_tenant = process.is_none() || tenants.len() == TENANTS.len();
        if result_len(&ready) > 0 && every_tenant && Instant::now() > deadline - Duration::from_secs(45) {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus never had the recorded call count: {ready}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut empty = Vec::new();
    let mut mixed = Vec::new();
    for q in dashboard_queries() {
        let e = substitute(&q.expr, ALL);
        let v = prom.query(&e).await;
        assert_eq!(v["status"], "success", "{}: {e}: {v}", q.origin);
        if result_len(&v) == 0 && !q.may_be_empty {
            empty.push(format!("{}: {e}", q.origin));
        }
        let Some(process) = process else { continue };
        check_tenants(&q.origin, &e, &v, process, &TENANTS, &mut mixed);
        // The job, instance and tenant variables list every tenant's values whatever is selected.
        if !q.dashboard && !q.expr.contains("$tenant") {
            continue;
        }
        // One tenant selected: its series only, and still data (process-wide series are not filtered).
        let one = substitute(&q.expr, Vars { tenant: TENANTS[1], ..ALL });
        let v = prom.query(&one).await;
        assert_eq!(v["status"], "success", "{}: {one}: {v}", q.origin);
        if result_len(&v) == 0 && !q.may_be_empty {
            empty.push(format!("{} (tenant {}): {one}", q.origin, TENANTS[1]));
        }
        check_tenants(&q.origin, &one, &v, process, &TENANTS[1..], &mut mixed);
    }
    for (record, q) in rule_queries() {
        let v = prom.query(&q.expr).await;
        assert_eq!(v["status"], "success", "{}: {v}", q.origin);
        match record {
            // Recording rules: data, and the recorded series exists in Prometheus.
            Some(name) => {
                if q.may_be_empty {
                    continue;
                }
                if result_len(&v) == 0 {
                    empty.push(format!("{}: {}", q.origin, q.expr));
                }
                if let Some(process) = process {
                    check_tenants(&q.origin, &q.expr, &v, process, &TENANTS, &mut mixed);
                }
                assert!(result_len(&prom.query(&name).await) > 0, "{name} was never recorded");
            }
            // Alerts stay quiet on this normal traffic; what they compare must have data.
            None => {
                let e = parser::parse(&q.expr).unwrap();
                let mut sides = vec![&e];
                while let Some(Expr::Binary(b)) = sides.last().copied() {
                    if b.op.is_comparison_operator() || b.op.is_set_operator() {
                        sides.pop();
                        sides.push(&b.lhs);
                    } else {
                        break;
                    }
                }
                let lhs = sides[0].to_string();
                let l = prom.query(&lhs).await;
                assert_eq!(l["status"], "success", "{}: {lhs}: {l}", q.origin);
                if result_len(&l) == 0 && !lhs.starts_with("absent") {
                    empty.push(format!("{} (what it compares): {lhs}", q.origin));
                }
                if let Some(process) = process {
                    check_tenants(&format!("{} (what it compares)", q.origin), &lhs, &l, process, &TENANTS, &mut mixed);
                }
            }
        }
    }
    assert!(
        empty.is_empty() && mixed.is_empty(),
        "queries returned no data although the simulator produced some:\n{}\nqueries that do not keep the tenants apart:\n{}",
        empty.join("\n"),
        mixed.join("\n")
    );
}
