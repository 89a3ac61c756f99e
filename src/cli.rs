//! The command line, as clap parses it: raw values only. Every flag can also come from an environment
//! variable; the app secret comes from a file or `CEC_APP_SECRET`, never from a flag. Validation lives in
//! [`crate::config`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Prometheus exporter for Huawei Cloud CEC (AICC) call detail records: polls queryCallDetailRecord in
/// the background and counts every call exactly once.
#[derive(Debug, Parser)]
#[command(name = "cec-exporter", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the exporter (the default when no subcommand is given).
    Run,
    /// Serve a simulator of the CEC API (tokenByAkSk and queryCallDetailRecord) with seeded traffic.
    Simulate(SimulateArgs),
    /// Run the simulator and the exporter together on loopback and print their URLs.
    Demo(DemoArgs),
}

/// Flags of the exporter.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Base URL of the CEC API gateway; the documented paths are appended (plain http:// works).
    #[arg(long = "cec.url", env = "CEC_URL", global = true)]
    pub cec_url: Option<String>,
    /// URL of tokenByAkSk: a base URL (the documented path is appended) or the full URL. Default: from --cec.url.
    #[arg(long = "cec.token-url", env = "CEC_TOKEN_URL", global = true)]
    pub cec_token_url: Option<String>,
    /// App key (X-APP-Key), issued by the tenant's operations admin.
    #[arg(long = "cec.app-key", env = "CEC_APP_KEY", global = true)]
    pub cec_app_key: Option<String>,
    /// File holding the app secret (surrounding whitespace ignored). Or set CEC_APP_SECRET.
    #[arg(long = "cec.app-secret-file", env = "CEC_APP_SECRET_FILE", global = true)]
    pub cec_app_secret_file: Option<PathBuf>,
    /// taskType filters to query each window with, comma separated (0 = every type except ITA, 4 = ITA).
    #[arg(long = "cec.task-types", env = "CEC_TASK_TYPES", default_value = "0,4", global = true)]
    pub cec_task_types: String,
    /// Records per page (at most 100).
    #[arg(long = "cec.page-size", env = "CEC_PAGE_SIZE", default_value = "100", global = true)]
    pub cec_page_size: String,
    /// Token lifetime asked for with X-Token-Expire, in seconds (at most 3600).
    #[arg(long = "cec.token-expire", env = "CEC_TOKEN_EXPIRE", default_value = "600", global = true)]
    pub cec_token_expire: String,
    /// Timeout of each API request.
    #[arg(long = "cec.timeout", env = "CEC_TIMEOUT", default_value = "10s", global = true)]
    pub cec_timeout: String,
    /// Time between polls.
    #[arg(long = "poll.interval", env = "CEC_POLL_INTERVAL", default_value = "30s", global = true)]
    pub poll_interval: String,
    /// How far back the first poll reads when there is no state.
    #[arg(long = "poll.backfill", env = "CEC_POLL_BACKFILL", default_value = "1h", global = true)]
    pub poll_backfill: String,
    /// How far before the previous poll's window end each poll re-reads, for records that show up late.
    #[arg(long = "poll.lookback", env = "CEC_POLL_LOOKBACK", default_value = "5m", global = true)]
    pub poll_lookback: String,
    /// Give up on a call CEC has not shown ended this long after its start.
    #[arg(long = "poll.max-call-duration", env = "CEC_POLL_MAX_CALL_DURATION", default_value = "24h", global = true)]
    pub poll_max_call_duration: String,
    /// Directory for the exporter's durable state (created when missing). Without it, state is in memory only.
    #[arg(long = "state.path", env = "CEC_STATE_PATH", global = true)]
    pub state_path: Option<PathBuf>,
    /// Move an existing (for instance unreadable) state store aside and start afresh. Use once.
    #[arg(long = "state.reset", env = "CEC_STATE_RESET", global = true)]
    pub state_reset: bool,
    /// After an outage, catch up at most this far back; the older part is skipped and reported.
    #[arg(long = "poll.max-catchup", env = "CEC_POLL_MAX_CATCHUP", default_value = "30d", global = true)]
    pub poll_max_catchup: String,
    /// Address to serve /metrics on; ":PORT" listens on every interface [default: :10049; demo: 127.0.0.1:10049]
    #[arg(long = "web.listen-address", env = "CEC_WEB_LISTEN_ADDRESS", global = true)]
    pub web_listen_address: Option<String>,
    /// Path of the metrics endpoint.
    #[arg(long = "web.telemetry-path", env = "CEC_WEB_TELEMETRY_PATH", default_value = "/metrics", global = true)]
    pub web_telemetry_path: String,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log.level", env = "CEC_LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,
    /// Log format: logfmt or json.
    #[arg(long = "log.format", env = "CEC_LOG_FORMAT", default_value = "logfmt", global = true)]
    pub log_format: String,
}

/// Flags of the simulator.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, env = "CEC_SIM_LISTEN", default_value = "127.0.0.1:10050")]
    pub listen: String,
    /// App key the simulator accepts.
    #[arg(long = "app-key", env = "CEC_SIM_APP_KEY", default_value = "demo-app-key")]
    pub app_key: String,
    /// File holding the app secret the simulator accepts (default: "demo-app-secret").
    #[arg(long = "app-secret-file", env = "CEC_SIM_APP_SECRET_FILE")]
    pub app_secret_file: Option<PathBuf>,
    /// Seed of the generated traffic.
    #[arg(long, env = "CEC_SIM_SEED", default_value = "1")]
    pub seed: u64,
    /// Generated calls per minute (0 for none).
    #[arg(long = "calls-per-minute", env = "CEC_SIM_CALLS_PER_MINUTE", default_value = "120")]
    pub calls_per_minute: f64,
    /// Traffic generated before the simulator started.
    #[arg(long, env = "CEC_SIM_HISTORY", default_value = "1h")]
    pub history: String,
    /// Factor on every call duration (1 realistic; 0.01 for fast tests).
    #[arg(long = "duration-scale", env = "CEC_SIM_DURATION_SCALE", default_value = "1")]
    pub duration_scale: f64,
    /// Largest delay before a record (or its ended state) shows up.
    #[arg(long = "max-record-latency", env = "CEC_SIM_MAX_RECORD_LATENCY", default_value = "5s")]
    pub max_record_latency: String,
}

/// Flags of the demo.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the simulator (port 0 picks a free one).
    #[arg(long = "sim.listen", default_value = "127.0.0.1:0")]
    pub sim_listen: String,
    /// Generated calls per minute.
    #[arg(long = "sim.calls-per-minute", default_value = "120")]
    pub calls_per_minute: f64,
}
