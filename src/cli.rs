//! The command line, typed where clap parses it: every flag's value parser checks the value and its
//! range, so a bad flag stops start-up with clap's message naming it (exit code 2). Every flag can also
//! come from an environment variable; the app secret comes from a file or `CEC_APP_SECRET`, never from a
//! flag. Rules that relate two flags live in [`crate::config`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cec::record::TaskQuery;
use crate::logging::{LogFormat, LogLevel};

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

/// The longest backfill and catch-up: CEC documents no history limit, and a first start should not page
/// through months of records.
pub const MAX_BACKFILL: Duration = Duration::from_secs(90 * 24 * 3600);
const SECOND: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Flags of the exporter.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Base URL of the CEC API gateway; the documented paths are appended (plain http:// works).
    #[arg(long = "cec.url", env = "CEC_URL", global = true, value_name = "URL", value_parser = HttpUrlParser)]
    pub cec_url: Option<reqwest::Url>,
    /// URL of tokenByAkSk: a base URL (the documented path is appended) or the full URL. Default: from --cec.url.
    #[arg(long = "cec.token-url", env = "CEC_TOKEN_URL", global = true, value_name = "URL", value_parser = HttpUrlParser)]
    pub cec_token_url: Option<reqwest::Url>,
    /// App key (X-APP-Key), issued by the tenant's operations admin.
    #[arg(long = "cec.app-key", env = "CEC_APP_KEY", global = true, value_name = "KEY")]
    pub cec_app_key: Option<String>,
    /// File holding the app secret (surrounding whitespace ignored). Or set CEC_APP_SECRET.
    #[arg(long = "cec.app-secret-file", env = "CEC_APP_SECRET_FILE", global = true, value_name = "FILE")]
    pub cec_app_secret_file: Option<PathBuf>,
    /// taskType filters to query each window with, comma separated (0 = every type except ITA, 4 = ITA).
    #[arg(long = "cec.task-types", env = "CEC_TASK_TYPES", global = true)]
    #[arg(default_value = "0,4", value_name = "TYPES", value_parser = task_types)]
    pub cec_task_types: TaskTypes,
    /// Records per page (at most 100).
    #[arg(long = "cec.page-size", env = "CEC_PAGE_SIZE", global = true)]
    #[arg(default_value = "100", value_name = "N", value_parser = whole_number_in(1, 100))]
    pub cec_page_size: u32,
    /// Token lifetime asked for with X-Token-Expire, in seconds (at most 3600).
    #[arg(long = "cec.token-expire", env = "CEC_TOKEN_EXPIRE", global = true)]
    #[arg(default_value = "600", value_name = "SECONDS", value_parser = whole_number_in(1, 3600))]
    pub cec_token_expire: u32,
    /// Timeout of each API request (at least 100ms).
    #[arg(long = "cec.timeout", env = "CEC_TIMEOUT", global = true)]
    #[arg(default_value = "10s", value_name = "DURATION")]
    #[arg(value_parser = duration_in(Duration::from_millis(100), Duration::MAX, "must be at least 100ms"))]
    pub cec_timeout: Duration,
    /// Largest API answer read, in bytes, KiB or MiB (e.g. 8MiB; 1KiB to 1GiB); a larger one is an error.
    #[arg(long = "cec.max-body-size", env = "CEC_MAX_BODY_SIZE", global = true)]
    #[arg(default_value = "8MiB", value_name = "SIZE", value_parser = byte_size_in(1 << 10, 1 << 30))]
    pub cec_max_body_size: u64,
    /// Most pages one window read requests; a read that needs more stops and is re-read later as incomplete.
    #[arg(long = "cec.max-pages-per-window", env = "CEC_MAX_PAGES_PER_WINDOW", global = true)]
    #[arg(default_value = "1000", value_name = "N", value_parser = whole_number_in(1, 100_000))]
    pub cec_max_pages_per_window: u32,
    /// PEM file of CA certificates trusted for the gateway, besides the system's (for a private CA).
    #[arg(long = "cec.ca-file", env = "CEC_CA_FILE", global = true, value_name = "FILE")]
    pub cec_ca_file: Option<PathBuf>,
    /// Do not check the gateway's TLS certificate at all (tests only: anyone on the path can then read the secret).
    #[arg(long = "cec.insecure-skip-verify", env = "CEC_INSECURE_SKIP_VERIFY", global = true)]
    pub cec_insecure_skip_verify: bool,
    /// Time between polls, at least 1s [default: 30s; demo: 5s]
    #[arg(long = "poll.interval", env = "CEC_POLL_INTERVAL", global = true)]
    #[arg(value_name = "DURATION", value_parser = duration_in(SECOND, Duration::MAX, "must be at least 1s"))]
    pub poll_interval: Option<Duration>,
    /// How far back the first poll reads when there is no state (at most 90d).
    #[arg(long = "poll.backfill", env = "CEC_POLL_BACKFILL", global = true)]
    #[arg(default_value = "1h", value_name = "DURATION")]
    #[arg(value_parser = duration_in(Duration::ZERO, MAX_BACKFILL, "must be at most 90d"))]
    pub poll_backfill: Duration,
    /// How far before the previous poll's window end each poll re-reads, for records that show up late (1s to 24h).
    #[arg(long = "poll.lookback", env = "CEC_POLL_LOOKBACK", global = true)]
    #[arg(default_value = "5m", value_name = "DURATION")]
    #[arg(value_parser = duration_in(SECOND, DAY, "must be from 1s to 24h"))]
    pub poll_lookback: Duration,
    /// Give up on a call CEC has not shown ended this long after its start (longer than lookback plus interval).
    #[arg(long = "poll.max-call-duration", env = "CEC_POLL_MAX_CALL_DURATION", global = true)]
    #[arg(default_value = "24h", value_name = "DURATION", value_parser = duration)]
    pub poll_max_call_duration: Duration,
    /// Directory for the exporter's durable state (created when missing). Without it, state is in memory only.
    #[arg(long = "state.path", env = "CEC_STATE_PATH", global = true, value_name = "DIR")]
    pub state_path: Option<PathBuf>,
    /// Move an existing (for instance unreadable) state store aside and start afresh. Use once.
    #[arg(long = "state.reset", env = "CEC_STATE_RESET", global = true)]
    pub state_reset: bool,
    /// After an outage, catch up at most this far back (from lookback plus interval to 90d); the older part is
    /// skipped and reported.
    #[arg(long = "poll.max-catchup", env = "CEC_POLL_MAX_CATCHUP", global = true)]
    #[arg(default_value = "30d", value_name = "DURATION")]
    #[arg(value_parser = duration_in(Duration::ZERO, MAX_BACKFILL, "must be at most 90d"))]
    pub poll_max_catchup: Duration,
    /// The longest one poll's reads may take (1s to 24h, at least --cec.timeout); past it the poll fails and
    /// commits nothing.
    #[arg(long = "poll.deadline", env = "CEC_POLL_DEADLINE", global = true)]
    #[arg(default_value = "5m", value_name = "DURATION")]
    #[arg(value_parser = duration_in(SECOND, DAY, "must be from 1s to 24h"))]
    pub poll_deadline: Duration,
    /// Open calls (seen in states 0-2, not yet ended) remembered at most (1 to 10000000); beyond it the
    /// oldest are given up like calls past --poll.max-call-duration. About 600 bytes of memory each.
    #[arg(long = "poll.max-open-calls", env = "CEC_POLL_MAX_OPEN_CALLS", global = true)]
    #[arg(default_value = "250000", value_name = "N", value_parser = whole_number_in(1, 10_000_000))]
    pub poll_max_open_calls: u32,
    /// Address to serve /metrics on; ":PORT" listens on every interface [default: :10049; demo: 127.0.0.1:10049]
    #[arg(long = "web.listen-address", env = "CEC_WEB_LISTEN_ADDRESS", global = true)]
    #[arg(value_name = "ADDRESS", value_parser = listen_address)]
    pub web_listen_address: Option<SocketAddr>,
    /// Path of the metrics endpoint.
    #[arg(long = "web.telemetry-path", env = "CEC_WEB_TELEMETRY_PATH", global = true)]
    #[arg(default_value = "/metrics", value_name = "PATH", value_parser = telemetry_path)]
    pub web_telemetry_path: String,
    /// Reason codes outside the known tables that get their own series, per task type (0 to 65535); later
    /// ones are counted under reason_code="other".
    #[arg(long = "metrics.max-unknown-reason-codes", env = "CEC_METRICS_MAX_UNKNOWN_REASON_CODES", global = true)]
    #[arg(default_value = "32", value_name = "N", value_parser = whole_number_in(0, 65535))]
    pub metrics_max_unknown_reason_codes: u32,
    /// Calling numbers (the records' `caller`) that get their own `caller` label on cec_calls_total, comma
    /// separated, at most 100 of up to 32 characters; every other call is caller="other". Off when empty.
    #[arg(long = "metrics.callers", env = "CEC_METRICS_CALLERS", global = true)]
    #[arg(default_value = "", value_name = "NUMBERS", value_parser = callers, hide_default_value = true)]
    pub metrics_callers: Callers,
    /// Web configuration file in the Prometheus exporter-toolkit format: TLS and basic auth (re-read
    /// every few seconds while running).
    #[arg(long = "web.config.file", env = "CEC_WEB_CONFIG_FILE", global = true, value_name = "FILE")]
    pub web_config_file: Option<std::path::PathBuf>,
    /// Open connections at most; at the cap, the oldest connection that has not completed a request
    /// (else the oldest) is closed to admit a new one.
    #[arg(long = "web.max-connections", env = "CEC_WEB_MAX_CONNECTIONS", global = true)]
    #[arg(default_value = "64", value_name = "N", value_parser = whole_number_in(1, 10_000))]
    pub web_max_connections: u32,
    /// YAML file of tenants to poll, each with its own cec: and poll: keys (see the README's "Many
    /// tenants"); re-read on SIGHUP. Without it, the cec and poll flags describe one tenant.
    #[arg(long = "config.file", env = "CEC_CONFIG_FILE", global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Check the configuration (--config.file and the secret files it names, or the flags) and exit: 0 when
    /// it is valid, 2 with a message naming the problem.
    #[arg(long = "config.check", global = true)]
    pub config_check: bool,
    /// Replicas the tenants of --config.file are split between (1 to 1000).
    #[arg(long = "shard.count", env = "CEC_SHARD_COUNT", global = true)]
    #[arg(default_value = "1", value_name = "N", value_parser = whole_number_in(1, 1000))]
    pub shard_count: u32,
    /// This replica's shard, 0 to --shard.count minus 1: it polls the tenants whose name hashes to it
    /// (FNV-1a 64 of the name, modulo --shard.count).
    #[arg(long = "shard.index", env = "CEC_SHARD_INDEX", global = true)]
    #[arg(default_value = "0", value_name = "I", value_parser = whole_number_in(0, 999))]
    pub shard_index: u32,
    /// Log level.
    #[arg(
        long = "log.level",
        env = "CEC_LOG_LEVEL",
        default_value = "info",
        global = true,
        value_name = "LEVEL",
        ignore_case = true
    )]
    pub log_level: LogLevel,
    /// Log format.
    #[arg(long = "log.format", env = "CEC_LOG_FORMAT", default_value = "logfmt", global = true, value_name = "FORMAT")]
    pub log_format: LogFormat,
}

/// The calling numbers of `--metrics.callers`, in the order given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Callers(pub Vec<String>);

/// Parses `--metrics.callers`: comma-separated calling numbers, each 1 to 32 visible characters
/// (`+`, digits, `-`, `*`, `#`, letters for SIP users), no duplicates, at most 100, none called "other".
pub fn callers(s: &str) -> Result<Callers, String> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part.chars().count() > 32 || !part.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\') {
            return Err(format!("{part:?} is not a calling number of 1 to 32 visible ASCII characters"));
        }
        if part == crate::metrics::aggregate::OTHER_CALLER {
            return Err("\"other\" is the label of every number not listed".into());
        }
        if out.iter().any(|o| o == part) {
            return Err(format!("{part:?} is listed twice"));
        }
        out.push(part.to_owned());
    }
    if out.len() > 100 {
        return Err(format!("at most 100 numbers (each is a series per task type and outcome); {} given", out.len()));
    }
    Ok(Callers(out))
}

/// Flags of the simulator.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, env = "CEC_SIM_LISTEN")]
    #[arg(default_value = "127.0.0.1:10050", value_name = "ADDRESS", value_parser = listen_address)]
    pub listen: SocketAddr,
    /// App key the simulator accepts.
    #[arg(long = "app-key", env = "CEC_SIM_APP_KEY", default_value = "demo-app-key", value_name = "KEY")]
    pub app_key: String,
    /// File holding the app secret the simulator accepts (default: "demo-app-secret").
    #[arg(long = "app-secret-file", env = "CEC_SIM_APP_SECRET_FILE", value_name = "FILE")]
    pub app_secret_file: Option<PathBuf>,
    /// Seed of the generated traffic.
    #[arg(long, env = "CEC_SIM_SEED", default_value = "1")]
    pub seed: u64,
    /// Generated calls per minute (0 for none).
    #[arg(long = "calls-per-minute", env = "CEC_SIM_CALLS_PER_MINUTE")]
    #[arg(default_value = "120", value_name = "RATE", value_parser = non_negative_number)]
    pub calls_per_minute: f64,
    /// Traffic generated before the simulator started.
    #[arg(long, env = "CEC_SIM_HISTORY", default_value = "1h", value_name = "DURATION", value_parser = duration)]
    pub history: Duration,
    /// Factor on every call duration (1 realistic; 0.01 for fast tests).
    #[arg(long = "duration-scale", env = "CEC_SIM_DURATION_SCALE")]
    #[arg(default_value = "1", value_name = "FACTOR", value_parser = positive_number)]
    pub duration_scale: f64,
    /// Largest delay before a record (or its ended state) shows up.
    #[arg(long = "max-record-latency", env = "CEC_SIM_MAX_RECORD_LATENCY")]
    #[arg(default_value = "5s", value_name = "DURATION", value_parser = duration)]
    pub max_record_latency: Duration,
}

/// Flags of the demo.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the simulator (port 0 picks a free one).
    #[arg(long = "sim.listen", default_value = "127.0.0.1:0", value_name = "ADDRESS", value_parser = listen_address)]
    pub sim_listen: SocketAddr,
    /// Generated calls per minute.
    #[arg(long = "sim.calls-per-minute", default_value = "120", value_name = "RATE", value_parser = positive_number)]
    pub calls_per_minute: f64,
}

/// The `--cec.task-types` list: each a taskType 0–4, none twice, and `0` never with one of `1`–`3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskTypes(Vec<TaskQuery>);

impl TaskTypes {
    /// The filters, in the order given.
    pub fn queries(&self) -> &[TaskQuery] {
        &self.0
    }
}

// The value parsers. Each returns the reason only: clap adds the flag and the value, as in
// `error: invalid value '0s' for '--poll.interval <DURATION>': must be at least 1s`.

/// A duration such as `30s`, `1h`, `1h30m`, `500ms`, `10d`.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("not a duration like 30s or 1h ({e})"))
}

/// A duration from `min` to `max` (both included); `rule` says so when it is not.
pub fn duration_in(
    min: Duration,
    max: Duration,
    rule: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s| match duration(s)? {
        d if (min..=max).contains(&d) => Ok(d),
        _ => Err(rule.to_owned()),
    }
}

/// A whole number from `min` to `max` (both included).
pub fn whole_number_in(min: u32, max: u32) -> impl Fn(&str) -> Result<u32, String> + Clone + Send + Sync + 'static {
    move |s| match s.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}

/// A byte count from `min` to `max`: a whole number of bytes, optionally with a `KiB` or `MiB` suffix
/// (`B` is accepted too).
pub fn byte_size_in(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |s| {
        let s = s.trim();
        let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let factor = match unit.trim() {
            "" | "B" => Some(1u64),
            "KiB" => Some(1 << 10),
            "MiB" => Some(1 << 20),
            _ => None,
        };
        match (digits.parse::<u64>().ok(), factor) {
            (Some(n), Some(f)) if n.checked_mul(f).is_some_and(|b| (min..=max).contains(&b)) => Ok(n * f),
            (Some(_), Some(_)) => Err(format!("must be from {min} bytes (1KiB) to {max} bytes (1GiB)")),
            _ => Err("not a size like 8MiB, 512KiB or 65536".into()),
        }
    }
}

/// [`http_url`] for clap, whose refusal never repeats the value: clap's own message quotes it, and a
/// URL may carry a password (`https://user:pw@host`) or a signed query string.
#[derive(Clone, Copy, Debug)]
pub struct HttpUrlParser;

impl clap::builder::TypedValueParser for HttpUrlParser {
    type Value = reqwest::Url;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<reqwest::Url, clap::Error> {
        let parsed = value.to_str().ok_or_else(|| "not UTF-8".to_owned()).and_then(http_url);
        parsed.map_err(|why| {
            let flag = arg.map_or_else(|| "URL".to_owned(), ToString::to_string);
            let msg = format!(
                "invalid value for '{flag}': {why} (the value is not repeated: it may hold a secret)\n\n\
                 For more information, try '--help'.\n"
            );
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, msg).with_cmd(cmd)
        })
    }
}

/// An `http://` or `https://` URL with a host and without credentials.
pub fn http_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("not an http:// or https:// URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials do not belong in the URL; use --cec.app-key and the secret file".into());
    }
    Ok(url)
}

/// A listen address; `:PORT` means every IPv4 interface. A host name is resolved (the one look-up
/// parsing makes), and its first address is used.
pub fn listen_address(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let full = if s.starts_with(':') { format!("0.0.0.0{s}") } else { s.to_owned() };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| "not an address like :10049 or 127.0.0.1:10049".to_owned())
}

/// A comma-separated list of taskType filters.
pub fn task_types(s: &str) -> Result<TaskTypes, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let q = part
            .parse::<u8>()
            .ok()
            .and_then(TaskQuery::new)
            .ok_or_else(|| format!("{part:?} is not a taskType 0-4"))?;
        if out.contains(&q) {
            return Err(format!("taskType {part} is listed twice"));
        }
        out.push(q);
    }
    // "0" already returns types 1-3: adding one of them would read the same calls twice per poll.
    if out.contains(&TaskQuery::ALL_BUT_ITA) && out.iter().any(|q| (1..=3).contains(&q.code())) {
        return Err("0 already includes task types 1-3; list either 0 or some of 1, 2, 3".into());
    }
    Ok(TaskTypes(out))
}

/// The metrics path: below `/`, and not under `/-/`, where the health endpoints live.
pub fn telemetry_path(s: &str) -> Result<String, String> {
    let p = s.trim();
    if !p.starts_with('/') || p.len() < 2 || p.starts_with("/-/") {
        return Err("must start with / and not be / or under /-/".into());
    }
    Ok(p.to_owned())
}

/// A finite number of at least 0.
pub fn non_negative_number(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err("must be a number of at least 0".into()),
    }
}

/// A finite number above 0.
pub fn positive_number(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err("must be a number above 0".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: [&str; 5] = ["cec-exporter", "--cec.url", "http://127.0.0.1:9", "--cec.app-key", "k"];

    fn parse(extra: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(BASE.iter().chain(extra))
    }

    /// clap's message for a refused value, without the colours and the "--help" hint.
    fn refused(extra: &[&str]) -> String {
        let e = parse(extra).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{e}");
        e.to_string().lines().next().unwrap().to_owned()
    }

    #[test]
    fn durations() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration(" 1h30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("10d"), Ok(Duration::from_secs(864_000)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert_eq!(duration("soon"), Err("not a duration like 30s or 1h (expected number at 0)".into()));
        assert_eq!(
            duration("30"),
            Err("not a duration like 30s or 1h (time unit needed, for example 30sec or 30ms)".into())
        );
        assert_eq!(duration(""), Err("not a duration like 30s or 1h (value was empty)".into()));
        let p = duration_in(Duration::from_secs(1), Duration::from_secs(60), "must be from 1s to 1m");
        assert_eq!(p("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(p("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(p("999ms"), Err("must be from 1s to 1m".into()));
        assert_eq!(p("61s"), Err("must be from 1s to 1m".into()));
        assert_eq!(p("x"), Err("not a duration like 30s or 1h (expected number at 0)".into()));
    }

    #[test]
    fn each_duration_flag_has_its_range() {
        let run = |extra: &[&str]| parse(extra).unwrap().run;
        assert_eq!(run(&["--cec.timeout", "100ms"]).cec_timeout, Duration::from_millis(100));
        assert_eq!(
            refused(&["--cec.timeout", "99ms"]),
            "error: invalid value '99ms' for '--cec.timeout <DURATION>': must be at least 100ms"
        );
        assert_eq!(run(&[]).poll_interval, None, "the default is the config's, so the demo can tell");
        assert_eq!(run(&["--poll.interval", "1s"]).poll_interval, Some(Duration::from_secs(1)));
        assert_eq!(
            refused(&["--poll.interval", "0s"]),
            "error: invalid value '0s' for '--poll.interval <DURATION>': must be at least 1s"
        );
        assert_eq!(
            refused(&["--poll.interval", "999ms"]),
            "error: invalid value '999ms' for '--poll.interval <DURATION>': must be at least 1s"
        );
        assert_eq!(run(&["--poll.backfill", "0s"]).poll_backfill, Duration::ZERO);
        assert_eq!(run(&["--poll.backfill", "90d"]).poll_backfill, MAX_BACKFILL);
        assert_eq!(
            refused(&["--poll.backfill", "90d1s"]),
            "error: invalid value '90d1s' for '--poll.backfill <DURATION>': must be at most 90d"
        );
        assert_eq!(run(&["--poll.lookback", "1s"]).poll_lookback, Duration::from_secs(1));
        assert_eq!(run(&["--poll.lookback", "24h"]).poll_lookback, Duration::from_secs(86_400));
        for bad in ["0s", "24h1s"] {
            assert_eq!(
                refused(&["--poll.lookback", bad]),
                format!("error: invalid value '{bad}' for '--poll.lookback <DURATION>': must be from 1s to 24h")
            );
        }
        assert_eq!(run(&["--poll.max-catchup", "90d"]).poll_max_catchup, MAX_BACKFILL);
        assert_eq!(
            refused(&["--poll.max-catchup", "91d"]),
            "error: invalid value '91d' for '--poll.max-catchup <DURATION>': must be at most 90d"
        );
        assert_eq!(run(&["--poll.deadline", "24h"]).poll_deadline, DAY);
        assert_eq!(
            refused(&["--poll.deadline", "0s"]),
            "error: invalid value '0s' for '--poll.deadline <DURATION>': must be from 1s to 24h"
        );
        assert_eq!(run(&["--metrics.max-unknown-reason-codes", "65535"]).metrics_max_unknown_reason_codes, 65_535);
        assert_eq!(
            refused(&["--metrics.max-unknown-reason-codes", "65536"]),
            "error: invalid value '65536' for '--metrics.max-unknown-reason-codes <N>': must be a whole number from 0 to 65535"
        );
        assert_eq!(
            refused(&["--poll.max-call-duration", "a day"]),
            "error: invalid value 'a day' for '--poll.max-call-duration <DURATION>': not a duration like 30s or 1h (expected number at 0)"
        );
        assert_eq!(parse(&[]).unwrap().run.poll_max_open_calls, 250_000);
        assert_eq!(run(&["--poll.max-open-calls", "1"]).poll_max_open_calls, 1);
        assert_eq!(run(&["--poll.max-open-calls", "10000000"]).poll_max_open_calls, 10_000_000);
        for bad in ["0", "10000001", "1e6"] {
            assert_eq!(
                refused(&["--poll.max-open-calls", bad]),
                format!("error: invalid value '{bad}' for '--poll.max-open-calls <N>': must be a whole number from 1 to 10000000")
            );
        }
    }

    #[test]
    fn defaults_parse_through_the_same_parsers() {
        let a = parse(&[]).unwrap().run;
        assert_eq!(a.cec_task_types.queries(), [TaskQuery::ALL_BUT_ITA, TaskQuery::ITA]);
        assert_eq!((a.cec_page_size, a.cec_token_expire), (100, 600));
        assert_eq!(a.cec_timeout, Duration::from_secs(10));
        assert_eq!((a.poll_backfill, a.poll_lookback), (Duration::from_secs(3600), Duration::from_secs(300)));
        assert_eq!((a.poll_max_call_duration, a.poll_max_catchup), (DAY, 30 * DAY));
        assert_eq!(a.web_listen_address, None);
        assert_eq!(a.web_telemetry_path, "/metrics");
        assert_eq!((a.web_config_file, a.web_max_connections), (None, 64));
        assert_eq!((a.log_level, a.log_format), (LogLevel::Info, LogFormat::Logfmt));
        let Some(Command::Simulate(s)) = Cli::try_parse_from(["cec-exporter", "simulate"]).unwrap().command else {
            panic!("simulate")
        };
        assert_eq!(s.listen, "127.0.0.1:10050".parse().unwrap());
        assert_eq!((s.calls_per_minute, s.duration_scale), (120.0, 1.0));
        assert_eq!((s.history, s.max_record_latency), (Duration::from_secs(3600), Duration::from_secs(5)));
        let Some(Command::Demo(d)) = Cli::try_parse_from(["cec-exporter", "demo"]).unwrap().command else {
            panic!("demo")
        };
        assert_eq!((d.sim_listen, d.calls_per_minute), ("127.0.0.1:0".parse().unwrap(), 120.0));
    }

    #[test]
    fn outbound_flags_and_byte_sizes() {
        let a = parse(&[]).unwrap().run;
        assert_eq!((a.cec_max_body_size, a.cec_max_pages_per_window), (8 << 20, 1000));
        assert_eq!((a.cec_ca_file, a.cec_insecure_skip_verify), (None, false));
        let a = parse(&["--cec.max-body-size", "512KiB", "--cec.max-pages-per-window=3", "--cec.insecure-skip-verify"])
            .unwrap()
            .run;
        assert_eq!((a.cec_max_body_size, a.cec_max_pages_per_window, a.cec_insecure_skip_verify), (512 << 10, 3, true));
        let p = byte_size_in(1 << 10, 1 << 30);
        assert_eq!((p("1024"), p("2 MiB"), p("1024B"), p("1024MiB")), (Ok(1024), Ok(2 << 20), Ok(1024), Ok(1 << 30)));
        assert_eq!(p("1023"), Err("must be from 1024 bytes (1KiB) to 1073741824 bytes (1GiB)".into()));
        assert_eq!(p("2048MiB"), p("1023"));
        assert_eq!(p("99999999999999999999MiB"), Err("not a size like 8MiB, 512KiB or 65536".into()));
        assert_eq!(p("8MB"), Err("not a size like 8MiB, 512KiB or 65536".into()));
        assert_eq!(p("-1"), p("8MB"));
        assert_eq!(
            refused(&["--cec.max-pages-per-window", "0"]),
            "error: invalid value '0' for '--cec.max-pages-per-window <N>': must be a whole number from 1 to 100000"
        );
    }

    #[test]
    fn whole_numbers() {
        let p = whole_number_in(1, 100);
        assert_eq!((p("1"), p(" 100 ")), (Ok(1), Ok(100)));
        for bad in ["0", "101", "-1", "1.5", "", "ten"] {
            assert_eq!(p(bad), Err("must be a whole number from 1 to 100".into()), "{bad:?}");
        }
        assert_eq!(parse(&["--cec.page-size", "7"]).unwrap().run.cec_page_size, 7);
        assert_eq!(
            refused(&["--cec.page-size", "101"]),
            "error: invalid value '101' for '--cec.page-size <N>': must be a whole number from 1 to 100"
        );
        assert_eq!(parse(&["--cec.token-expire", "3600"]).unwrap().run.cec_token_expire, 3600);
        assert_eq!(
            refused(&["--cec.token-expire", "3601"]),
            "error: invalid value '3601' for '--cec.token-expire <SECONDS>': must be a whole number from 1 to 3600"
        );
        assert_eq!(parse(&["--web.max-connections", "10000"]).unwrap().run.web_max_connections, 10_000);
        assert_eq!(
            refused(&["--web.max-connections", "0"]),
            "error: invalid value '0' for '--web.max-connections <N>': must be a whole number from 1 to 10000"
        );
    }

    #[test]
    fn task_type_lists() {
        let codes = |s: &str| task_types(s).map(|t| t.queries().iter().map(|q| q.code()).collect::<Vec<_>>());
        assert_eq!(codes("0,4"), Ok(vec![0, 4]));
        assert_eq!(codes(" 4 , 1,2,3"), Ok(vec![4, 1, 2, 3]));
        assert_eq!(codes("0"), Ok(vec![0]));
        assert_eq!(codes("0,5"), Err("\"5\" is not a taskType 0-4".into()));
        assert_eq!(codes("0,"), Err("\"\" is not a taskType 0-4".into()));
        assert_eq!(codes("4,4"), Err("taskType 4 is listed twice".into()));
        for with_zero in ["0,1", "2,0", "0,3,4"] {
            assert_eq!(
                codes(with_zero),
                Err("0 already includes task types 1-3; list either 0 or some of 1, 2, 3".into()),
                "{with_zero}"
            );
        }
        assert_eq!(
            refused(&["--cec.task-types", "0,2"]),
            "error: invalid value '0,2' for '--cec.task-types <TYPES>': 0 already includes task types 1-3; list either 0 or some of 1, 2, 3"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(http_url("https://gw.example:28070").unwrap().as_str(), "https://gw.example:28070/");
        assert_eq!(http_url(" http://127.0.0.1:9/base ").unwrap().as_str(), "http://127.0.0.1:9/base");
        assert_eq!(http_url("ftp://x"), Err("not an http:// or https:// URL".into()));
        assert_eq!(http_url("gw.example"), Err("not a URL (relative URL without a base)".into()));
        assert_eq!(
            http_url("https://user:pw@gw.example"),
            Err("credentials do not belong in the URL; use --cec.app-key and the secret file".into())
        );
        assert_eq!(
            refused(&["--cec.token-url", "ftp://x"]),
            "error: invalid value for '--cec.token-url <URL>': not an http:// or https:// URL \
             (the value is not repeated: it may hold a secret)"
        );
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_address(":10049"), Ok("0.0.0.0:10049".parse().unwrap()));
        assert_eq!(listen_address("127.0.0.1:0"), Ok("127.0.0.1:0".parse().unwrap()));
        assert_eq!(listen_address("[::]:10049"), Ok("[::]:10049".parse().unwrap()));
        for bad in ["nowhere", "10049", "127.0.0.1", ":99999"] {
            assert_eq!(listen_address(bad), Err("not an address like :10049 or 127.0.0.1:10049".into()), "{bad}");
        }
        assert_eq!(
            refused(&["--web.listen-address", "nowhere"]),
            "error: invalid value 'nowhere' for '--web.listen-address <ADDRESS>': not an address like :10049 or 127.0.0.1:10049"
        );
    }

    #[test]
    fn telemetry_paths() {
        assert_eq!(telemetry_path("/metrics"), Ok("/metrics".into()));
        assert_eq!(telemetry_path(" /cec-metrics "), Ok("/cec-metrics".into()));
        for bad in ["metrics", "/", "/-/metrics", ""] {
            assert_eq!(telemetry_path(bad), Err("must start with / and not be / or under /-/".into()), "{bad:?}");
        }
    }

    #[test]
    fn log_level_and_format() {
        assert_eq!(parse(&["--log.level", "WARN"]).unwrap().run.log_level, LogLevel::Warn);
        assert_eq!(parse(&["--log.format", "json"]).unwrap().run.log_format, LogFormat::Json);
        let e = parse(&["--log.format", "yaml"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        assert_eq!(
            e.to_string(),
            "error: invalid value 'yaml' for '--log.format <FORMAT>'\n  [possible values: logfmt, json]\n\n\
             For more information, try '--help'.\n"
        );
        let e = parse(&["--log.level", "loud"]).unwrap_err();
        assert!(e.to_string().contains("[possible values: error, warn, info, debug, trace]"), "{e}");
    }

    #[test]
    fn numbers() {
        assert_eq!((non_negative_number("0"), non_negative_number("2.5")), (Ok(0.0), Ok(2.5)));
        for bad in ["-1", "NaN", "inf", "x"] {
            assert_eq!(non_negative_number(bad), Err("must be a number of at least 0".into()), "{bad}");
        }
        assert_eq!(positive_number("0.01"), Ok(0.01));
        for bad in ["0", "-0.5", "NaN", "inf", ""] {
            assert_eq!(positive_number(bad), Err("must be a number above 0".into()), "{bad:?}");
        }
        let e = Cli::try_parse_from(["cec-exporter", "demo", "--sim.calls-per-minute", "0"]).unwrap_err();
        assert_eq!(
            e.to_string().lines().next().unwrap(),
            "error: invalid value '0' for '--sim.calls-per-minute <RATE>': must be a number above 0"
        );
        let e = Cli::try_parse_from(["cec-exporter", "simulate", "--duration-scale", "0"]).unwrap_err();
        assert_eq!(
            e.to_string().lines().next().unwrap(),
            "error: invalid value '0' for '--duration-scale <FACTOR>': must be a number above 0"
        );
        let e = Cli::try_parse_from(["cec-exporter", "simulate", "--history", "1 hour ago"]).unwrap_err();
        assert!(e.to_string().starts_with("error: invalid value '1 hour ago' for '--history <DURATION>': "), "{e}");
    }

    #[test]
    fn the_command_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn callers_are_checked_number_by_number() {
        assert_eq!(callers("4001, +86-4002,").unwrap().0, ["4001", "+86-4002"]);
        assert!(callers("").unwrap().0.is_empty());
        assert_eq!(callers("1,1").unwrap_err(), "\"1\" is listed twice");
        assert_eq!(callers("other").unwrap_err(), "\"other\" is the label of every number not listed");
        let long = "9".repeat(33);
        assert_eq!(
            callers(&long).unwrap_err(),
            format!("{long:?} is not a calling number of 1 to 32 visible ASCII characters")
        );
        assert!(callers("a b").is_err() && callers("4001\"").is_err() && callers("café").is_err());
        let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        assert_eq!(
            callers(&many.join(",")).unwrap_err(),
            "at most 100 numbers (each is a series per task type and outcome); 101 given"
        );
    }
}
