//! The `simulate` subcommand: the simulator of the CEC API as a standalone server, for tests driven
//! from outside and for trying the exporter against something that answers like CEC.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::SimulateArgs;
use cec_sim::{SimConfig, Simulator, Traffic};

/// The simulator's credentials when none are given.
pub const DEMO_APP_KEY: &str = "demo-app-key";
pub const DEMO_APP_SECRET: &str = "demo-app-secret";

/// The simulator's configuration from its flags; reads the secret file, if one is given.
pub fn sim_config(args: &SimulateArgs) -> anyhow::Result<SimConfig> {
    let app_secret = match &args.app_secret_file {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("--app-secret-file: cannot read {}", p.display()))?
            .trim()
            .to_owned(),
        None => DEMO_APP_SECRET.to_owned(),
    };
    anyhow::ensure!(!app_secret.is_empty(), "--app-secret-file: the app secret is empty");
    // Rates, scales and durations arrive checked by their clap value parsers.
    let traffic = if args.calls_per_minute > 0.0 {
        Traffic::Random {
            calls_per_minute: args.calls_per_minute,
            history: args.history,
            duration_scale: args.duration_scale,
        }
    } else {
        Traffic::None
    };
    Ok(SimConfig {
        app_key: args.app_key.clone(),
        app_secret,
        seed: args.seed,
        traffic,
        max_record_latency: args.max_record_latency,
    })
}

/// Runs the simulator until `shutdown`.
pub async fn run(args: SimulateArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let cfg = sim_config(&args)?;
    let addr = args.listen;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--listen: cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, app_key = %cfg.app_key, "CEC simulator started");
    println!("CEC simulator listening on http://{local}");
    Simulator::new(cfg).serve(listener, shutdown).await?;
    Ok(())
}

/// How long the demo's simulator waits before records show up.
pub const DEMO_LATENCY: Duration = Duration::from_secs(5);
