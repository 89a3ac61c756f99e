//! Entry point: parse the command line, validate the configuration, run. The only place where errors
//! become exit codes (`anyhow` lives here and nowhere else): clap exits with 2 on a bad flag, and a
//! configuration error or a failed start exits with 2 here, after a message naming the flag.

use anyhow::Context as _;
use clap::Parser;

use cec_exporter::cli::{Cli, Command};
use cec_exporter::config::{Config, Serving};
use cec_exporter::{demo, logging, simulate};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cec-exporter: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cec-exporter: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    logging::init(cli.run.log_level.into(), cli.run.log_format);
    match cli.command {
        None | Some(Command::Run) => {
            // First: until a handler is installed, a SIGHUP (a `systemctl reload` just after a start)
            // would end the process while it reads its tenants or restores their stores.
            let hups = (!cli.run.config_check).then(hangups);
            run_command(cli, hups).await
        }
        Some(Command::Simulate(args)) => simulate::run(args, shutdown_signal()).await,
        Some(Command::Demo(args)) => demo::run(args, &cli.run, shutdown_signal()).await,
    }
}

/// The exporter itself (`run`, the default command), with the SIGHUPs received from its start.
async fn run_command(cli: Cli, hups: Option<tokio::sync::mpsc::Receiver<()>>) -> anyhow::Result<()> {
    let hups = hups.unwrap_or_else(|| tokio::sync::mpsc::channel(1).1);
    match cli.run.config_file.clone() {
        Some(path) => {
            let serving = Serving::from_args(&cli.run)?;
            let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
            let tenants = cec_exporter::tenants::load(&path, &argv)?;
            if cli.run.config_check {
                let names: Vec<&str> = tenants.iter().map(|t| t.name.as_str()).collect();
                println!("{}: valid, {} tenants: {}", path.display(), names.len(), names.join(", "));
                return Ok(());
            }
            let listener = bind(serving.listen).await?;
            cec_exporter::run_tenants(serving, path, argv, tenants, listener, shutdown_signal(), hups).await
        }
        None => {
            let cfg = Config::from_args(&cli.run, std::env::var("CEC_APP_SECRET").ok())?;
            if cli.run.config_check {
                println!("the command line is a valid configuration");
                return Ok(());
            }
            run_exporter(cfg, hups).await
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

async fn bind(listen: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--web.listen-address: cannot listen on {listen}"))
}

async fn run_exporter(cfg: Config, mut hups: tokio::sync::mpsc::Receiver<()>) -> anyhow::Result<()> {
    let listener = bind(cfg.listen).await?;
    // SIGHUP would otherwise end the process (a closed terminal, a `systemctl reload`): without
    // --config.file there is nothing to re-read, so it is only logged.
    tokio::spawn(async move {
        while hups.recv().await.is_some() {
            tracing::info!("SIGHUP: nothing to reload without --config.file (the flags are read at start-up)");
        }
    });
    cec_exporter::run(cfg, listener, shutdown_signal()).await
}

/// A message for every SIGHUP (none off Unix, or when the handler cannot be installed).
fn hangups() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    // A reload already waiting covers this one too.
                    let _ = tx.try_send(());
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot install a SIGHUP handler; --config.file is read at start-up only"),
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}
