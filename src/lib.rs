//! cec-exporter: a Prometheus exporter for the call detail records of Huawei Cloud CEC (AICC).
//!
//! Data takes one path: [`cec::client`] fetches pages → [`cec::wire`] parses them into typed records →
//! [`ingest::ledger`] admits each call once → [`metrics::aggregate`] counts it → the poller publishes the
//! new state, which [`server`] renders on each scrape via [`metrics::expose`]. The vendor API ([`cec`])
//! imports nothing downstream; what happens on the way (requests, failures, skipped records, polls) is
//! emitted as typed [`events`], each one log line and its counters.

pub mod cec;
pub mod cli;
pub mod config;
pub mod demo;
pub mod events;
pub mod fleet;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod secret;
pub mod server;
pub mod simulate;
pub mod store;
pub mod tenants;
pub mod web_config;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use events::InternalEvent;

/// Build information shown in `cec_exporter_build_info` and on the landing page.
pub fn build_info() -> metrics::expose::BuildInfo {
    metrics::expose::BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        revision: option_env!("CEC_EXPORTER_REVISION").unwrap_or("unknown"),
    }
}

/// Runs the exporter on `listener` until `shutdown` resolves: the poller in the background, the server
/// in front. Returns after both have stopped.
pub async fn run(
    cfg: config::Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let shared = Arc::new(ingest::poller::Shared::default());
    if cfg.client.tls.insecure_skip_verify {
        tracing::warn!(
            flag = "--cec.insecure-skip-verify",
            "TLS CERTIFICATE CHECKS OF THE CEC GATEWAY ARE OFF: anyone on the network path can impersonate it and read the app secret"
        );
    }
    // The client reports its exchanges to the telemetry, which turns them into internal events.
    let client = cec::client::CecClient::new(cfg.client.clone(), shared.telemetry.clone())
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
    let (store, state) = match &cfg.state_path {
        Some(dir) => {
            let (store, restored) = store::Store::open(dir, cfg.state_reset)?;
            match &restored {
                Some(s) => tracing::info!(
                    path = %store.path().display(),
                    cursor = %s.ledger.cursor_ms().map(logging::rfc3339_ms).unwrap_or_default(),
                    remembered_calls = s.ledger.counted_len(),
                    open_calls = s.ledger.open_calls().count(),
                    counted_calls = s.aggregates.total_calls(),
                    "resuming from the state store"
                ),
                None => tracing::info!(path = %store.path().display(), "new state store; reading back --poll.backfill"),
            }
            (Some(store), restored.unwrap_or_default())
        }
        None => (None, ingest::ledger::State::default()),
    };
    let poller = ingest::poller::Poller::new(client, cfg.poller.clone(), state, shared.clone(), store);
    let (stop_tx, stop_rx) = watch::channel(false);
    let poll_task = tokio::spawn(poller.run(stop_rx));
    let telemetry = shared.telemetry.clone();
    let site = Arc::new(server::Site {
        shared,
        fleet: None,
        telemetry_path: cfg.telemetry_path.clone(),
        build: build_info(),
        ready: Default::default(),
    });
    let web = cfg.web_config.clone().map(|(path, c)| Arc::new(server::ActiveWebConfig::new(path, c)));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        tls = web.as_ref().is_some_and(|w| w.get().tls.is_some()),
        basic_auth = web.as_ref().is_some_and(|w| w.get().auth.is_some()),
        cec_url = %without_query(&cfg.client.query_url),
        interval = ?cfg.poller.interval,
        "cec-exporter started"
    );
    let mut poll_task = poll_task;
    tokio::select! {
        _ = server::serve(listener, site, cfg.limits.clone(), web, shutdown) => {}
        // The poller only returns when told to stop: ending on its own means it panicked. Serving
        // frozen numbers would hide that, so the process stops and its supervisor restarts it.
        r = &mut poll_task => {
            let why = match r {
                Err(e) if e.is_panic() => "it panicked",
                _ => "it stopped",
            };
            events::PollerStopped { why }.emit(&telemetry);
            anyhow::bail!("the poller stopped unexpectedly: {why}");
        }
    }
    let _ = stop_tx.send(true);
    let _ = poll_task.await;
    Ok(())
}

/// Runs the tenants of `--config.file` on `listener` until `shutdown` resolves: one poller per tenant
/// of this shard (`serving.shard`), the server in front rendering them all with a `tenant` label. Each
/// message on `reload` (a SIGHUP) re-reads `path` with the command line `argv`: a valid file is applied (added
/// tenants start, removed ones stop and their series go, changed ones restart, the rest keep polling);
/// an invalid one is refused with a line and a counter, the tenants in force staying. `tenants` is the
/// file as read at start-up; a tenant of it that cannot start (its state store locked or unreadable)
/// is reported (`cec_up` 0, an error line) and retried every 30 s and at every reload, the others
/// running meanwhile.
#[allow(clippy::too_many_arguments)]
pub async fn run_tenants(
    serving: config::Serving,
    path: std::path::PathBuf,
    argv: Vec<std::ffi::OsString>,
    tenants: Vec<tenants::Tenant>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut reload: tokio::sync::mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    let (count, index) = serving.shard;
    let mine = move |all: Vec<tenants::Tenant>| -> Vec<tenants::Tenant> {
        all.into_iter().filter(|t| tenants::shard_of(&t.name, count) == index).collect()
    };
    let process = Arc::new(ingest::poller::Shared::default());
    let fleet = Arc::new(fleet::Fleet::default());
    let total = tenants.len();
    let mut wanted = mine(tenants);
    // A tenant that cannot start (its store locked or unreadable) is reported and retried; the others run.
    fleet.apply(&wanted).await;
    // --state.reset is for start-up: a tenant started later (a retry, a reload) opens its store as it is.
    wanted.iter_mut().for_each(|t| t.config.state_reset = false);
    let site = Arc::new(server::Site {
        shared: process.clone(),
        fleet: Some(fleet.clone()),
        telemetry_path: serving.telemetry_path.clone(),
        build: build_info(),
        ready: Default::default(),
    });
    let web = serving.web_config.clone().map(|(path, c)| Arc::new(server::ActiveWebConfig::new(path, c)));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        tls = web.as_ref().is_some_and(|w| w.get().tls.is_some()),
        basic_auth = web.as_ref().is_some_and(|w| w.get().auth.is_some()),
        config_file = %path.display(),
        tenants = fleet.tenants().len(),
        tenants_in_file = total,
        shard = %format!("{index}/{count}"),
        "cec-exporter started"
    );
    // The server in its own task: a reload (reading the file, stopping and starting pollers, opening
    // stores) never holds up a scrape or the shutdown.
    let mut serve = tokio::spawn(server::serve(listener, site, serving.limits.clone(), web, shutdown));
    let mut check = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut last_retry = tokio::time::Instant::now();
    let result = loop {
        tokio::select! {
            _ = &mut serve => break Ok(()),
            Some(()) = reload.recv() => {
                let telemetry = &process.telemetry;
                // Reading and parsing the file is blocking work (a pathological YAML nesting takes
                // seconds): off the runtime's workers, which poll the tenants.
                let (p, a) = (path.clone(), argv.clone());
                let loaded = tokio::task::spawn_blocking(move || tenants::load(&p, &a))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                match loaded {
                    Err(e) => events::ConfigReloadFailed { error: &e.to_string(), kept_previous: true }.emit(telemetry),
                    Ok(mut all) => {
                        all.iter_mut().for_each(|t| t.config.state_reset = false);
                        wanted = mine(all);
                        let (applied, errors) = fleet.apply(&wanted).await;
                        match errors.first() {
                            None => events::ConfigReloaded { path: &path, applied: &applied }.emit(telemetry),
                            Some(_) => {
                                for e in &errors {
                                    events::ConfigReloadFailed { error: &e.to_string(), kept_previous: false }.emit(telemetry);
                                }
                            }
                        }
                    }
                }
            }
            _ = check.tick() => {
                // A poller ends on its own only when it panicked: stop, so the supervisor restarts us.
                if let Some(tenant) = fleet.crashed() {
                    events::PollerStopped { why: "it panicked" }.emit(&process.telemetry);
                    break Err(anyhow::anyhow!("the poller of tenant {tenant:?} stopped unexpectedly"));
                }
                // A tenant that could not start is tried again every 30 s (each try is one error line).
                if fleet.has_failed() && last_retry.elapsed() >= std::time::Duration::from_secs(30) {
                    last_retry = tokio::time::Instant::now();
                    fleet.apply(&wanted).await;
                }
            }
        }
    };
    fleet.stop_all().await;
    if !serve.is_finished() {
        serve.abort();
    }
    result
}

/// `url` without its query and fragment, for the log: a gateway's URL may carry a signed query.
fn without_query(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let had = url.query().is_some() || url.fragment().is_some();
    url.set_query(None);
    url.set_fragment(None);
    if had {
        format!("{url}?…")
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod url_log_tests {
    #[test]
    fn a_logged_url_drops_its_query() {
        let u = |s: &str| super::without_query(&s.parse().unwrap());
        assert_eq!(u("https://gw.example:8443/a/b?sig=s3cr3t#x"), "https://gw.example:8443/a/b?…");
        assert_eq!(u("http://127.0.0.1:9/q"), "http://127.0.0.1:9/q");
    }
}
