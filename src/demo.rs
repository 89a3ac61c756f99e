//! The `demo` subcommand: the simulator and the exporter together on loopback, so a newcomer sees live
//! call metrics within seconds with one command and no credentials.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::{DemoArgs, RunArgs};
use crate::config::Config;
use crate::simulate::{DEMO_APP_KEY, DEMO_APP_SECRET, DEMO_LATENCY};
use cec_sim::{SimConfig, Simulator, Traffic};

/// Where the demo's exporter listens unless `--web.listen-address` says otherwise.
pub const DEMO_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 10049));
/// How often the demo's exporter polls unless `--poll.interval` says otherwise: often, to show calls soon.
pub const DEMO_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Runs simulator and exporter until `shutdown`.
pub async fn run(
    args: DemoArgs,
    run_args: &RunArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sim_addr = args.sim_listen;
    let sim = Simulator::new(SimConfig {
        app_key: DEMO_APP_KEY.into(),
        app_secret: DEMO_APP_SECRET.into(),
        seed: 1,
        traffic: Traffic::Random {
            calls_per_minute: args.calls_per_minute,
            history: Duration::from_secs(3600),
            duration_scale: 1.0,
        },
        max_record_latency: DEMO_LATENCY,
    });
    let sim_server =
        sim.spawn_on(sim_addr).await.with_context(|| format!("--sim.listen: cannot listen on {sim_addr}"))?;
    let sim_url = sim_server.url();

    // The exporter, with the demo's defaults where the user gave no flag.
    let mut exporter_args: RunArgs = run_args.clone();
    exporter_args.cec_url = Some(sim_url.parse()?);
    exporter_args.cec_app_key = Some(DEMO_APP_KEY.into());
    exporter_args.cec_app_secret_file = None;
    exporter_args.web_listen_address.get_or_insert(DEMO_LISTEN);
    exporter_args.poll_interval.get_or_insert(DEMO_POLL_INTERVAL);
    let cfg = Config::from_args(&exporter_args, Some(DEMO_APP_SECRET.into()))?;
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| {
        format!("--web.listen-address: cannot listen on {} (is another exporter running?)", cfg.listen)
    })?;
    let local = listener.local_addr()?;
    let shown = if local.ip().is_unspecified() { format!("127.0.0.1:{}", local.port()) } else { local.to_string() };
    println!("cec-exporter demo: a simulated CEC tenant and the exporter polling it every {:?}.", cfg.poller.interval);
    println!("  simulator (CEC API):  {sim_url}");
    println!("  exporter:             http://{shown}/");
    println!("  metrics:              http://{shown}{}", cfg.telemetry_path);
    println!("  simulator's truth:    {sim_url}/sim/truth");
    println!("Press Ctrl-C to stop.");
    let result = crate::run(cfg, listener, shutdown).await;
    let _ = sim_server.shutdown().await;
    result
}
