//! The validated configuration: every flag parsed, checked and turned into a typed value before
//! anything starts. An error here stops start-up with a message naming the flag (and never the secret).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cec::client::ClientConfig;
use crate::cec::record::TaskQuery;
use crate::cli::RunArgs;
use crate::ingest::ledger::Retention;
use crate::ingest::plan::{PlanConfig, MAX_WINDOW_MS};

use crate::ingest::poller::PollerConfig;
use crate::secret::Secret;

/// The documented path of `queryCallDetailRecord`.
pub const QUERY_PATH: &str = "/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord";
/// The documented path of `tokenByAkSk`.
pub const TOKEN_PATH: &str = "/apigovernance/api/oauth/tokenByAkSk";
/// Default listen address: every IPv4 interface, a port above 10000 no other exporter registered.
pub const DEFAULT_LISTEN: &str = ":10049";
/// The longest backfill: CEC documents no history limit, and a first start should not page through
/// months of records.
const MAX_BACKFILL: Duration = Duration::from_secs(90 * 24 * 3600);

/// A configuration error: which flag, and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{flag} is required: {hint}")]
    Missing { flag: &'static str, hint: &'static str },
    #[error("{flag}: {problem}")]
    Invalid { flag: &'static str, problem: String },
}

fn invalid(flag: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { flag, problem: problem.into() }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Everything the exporter runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub client: ClientConfig,
    pub poller: PollerConfig,
    pub state_path: Option<PathBuf>,
    /// Move an existing store aside before opening (`--state.reset`).
    pub state_reset: bool,
    pub listen: SocketAddr,
    pub telemetry_path: String,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
}

/// Parses a duration such as `30s`, `1h`, `1h30m`, `500ms`.
pub fn parse_duration(flag: &'static str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s.trim())
        .map_err(|e| invalid(flag, format!("{s:?} is not a duration like 30s or 1h ({e})")))
}

fn parse_u32(flag: &'static str, s: &str, min: u32, max: u32) -> Result<u32, ConfigError> {
    match s.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(flag, format!("{s:?} is not a whole number from {min} to {max}"))),
    }
}

/// Parses the log flags alone, so logging can start before the rest is validated.
pub fn log_settings(args: &RunArgs) -> Result<(tracing::Level, LogFormat), ConfigError> {
    let level = match args.log_level.trim().to_ascii_lowercase().as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "info" => tracing::Level::INFO,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        other => {
            return Err(invalid("--log.level", format!("{other:?} is not one of error, warn, info, debug, trace")))
        }
    };
    let format = match args.log_format.trim() {
        "logfmt" => LogFormat::Logfmt,
        "json" => LogFormat::Json,
        other => return Err(invalid("--log.format", format!("{other:?} is not logfmt or json"))),
    };
    Ok((level, format))
}

/// Resolves a listen address; `:PORT` means every IPv4 interface.
pub fn parse_listen(flag: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    let s = s.trim();
    let full = if s.starts_with(':') { format!("0.0.0.0{s}") } else { s.to_owned() };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| invalid(flag, format!("{s:?} is not an address like :10049 or 127.0.0.1:10049")))
}

/// A base URL with `path` appended, or `s` as is when `keep_path` and it already has a path.
fn endpoint_url(flag: &'static str, s: &str, path: &str, keep_path: bool) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(s.trim()).map_err(|e| invalid(flag, format!("{s:?} is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(flag, format!("{s:?} is not an http:// or https:// URL")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(flag, "credentials do not belong in the URL; use --cec.app-key and the secret file"));
    }
    if keep_path && !url.path().trim_end_matches('/').is_empty() {
        return Ok(url);
    }
    let mut url = url;
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}{path}"));
    Ok(url)
}

/// Reads the app secret: from the file, or else from `CEC_APP_SECRET` (`env_secret`).
fn app_secret(file: Option<&Path>, env_secret: Option<String>) -> Result<Secret, ConfigError> {
    let flag = "--cec.app-secret-file";
    let raw = match (file, env_secret) {
        (Some(_), Some(_)) => {
            return Err(invalid(flag, "both the secret file and CEC_APP_SECRET are set; keep one"));
        }
        (Some(path), None) => {
            std::fs::read_to_string(path).map_err(|e| invalid(flag, format!("cannot read {}: {e}", path.display())))?
        }
        (None, Some(s)) => s,
        (None, None) => {
            return Err(ConfigError::Missing {
                flag,
                hint: "give a file holding the app secret, or set CEC_APP_SECRET",
            });
        }
    };
    let secret = raw.trim();
    if secret.is_empty() {
        return Err(invalid(flag, "the app secret is empty"));
    }
    Ok(Secret::new(secret))
}

fn task_queries(s: &str) -> Result<Vec<TaskQuery>, ConfigError> {
    let flag = "--cec.task-types";
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let q = part
            .parse::<u8>()
            .ok()
            .and_then(TaskQuery::new)
            .ok_or_else(|| invalid(flag, format!("{part:?} is not a taskType 0-4")))?;
        if out.contains(&q) {
            return Err(invalid(flag, format!("taskType {part} is listed twice")));
        }
        out.push(q);
    }
    // "0" already returns types 1-3: adding one of them would read the same calls twice per poll.
    if out.contains(&TaskQuery::ALL_BUT_ITA) && out.iter().any(|q| (1..=3).contains(&q.code())) {
        return Err(invalid(flag, "0 already includes task types 1-3; list either 0 or some of 1, 2, 3"));
    }
    Ok(out)
}

impl Config {
    /// Validates the exporter's flags; `env_secret` is the value of `CEC_APP_SECRET`, if set.
    pub fn from_args(args: &RunArgs, env_secret: Option<String>) -> Result<Config, ConfigError> {
        let (log_level, log_format) = log_settings(args)?;
        let cec_url = args.cec_url.as_deref().ok_or(ConfigError::Missing {
            flag: "--cec.url",
            hint: "the base URL of the CEC API gateway, e.g. https://service.besclouds.com",
        })?;
        let query_url = endpoint_url("--cec.url", cec_url, QUERY_PATH, false)?;
        let token_url = match args.cec_token_url.as_deref() {
            Some(t) => endpoint_url("--cec.token-url", t, TOKEN_PATH, true)?,
            None => endpoint_url("--cec.url", cec_url, TOKEN_PATH, false)?,
        };
        let app_key = args
            .cec_app_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ConfigError::Missing {
                flag: "--cec.app-key",
                hint: "the app key issued by the tenant's operations admin",
            })?
            .to_owned();
        let app_secret = app_secret(args.cec_app_secret_file.as_deref(), env_secret)?;
        let page_size = parse_u32("--cec.page-size", &args.cec_page_size, 1, 100)?;
        let token_lifetime_s = parse_u32("--cec.token-expire", &args.cec_token_expire, 1, 3600)?;
        let timeout = parse_duration("--cec.timeout", &args.cec_timeout)?;
        if timeout < Duration::from_millis(100) {
            return Err(invalid("--cec.timeout", "must be at least 100ms"));
        }
        let interval = parse_duration("--poll.interval", &args.poll_interval)?;
        if interval < Duration::from_secs(1) {
            return Err(invalid("--poll.interval", "must be at least 1s"));
        }
        let backfill = parse_duration("--poll.backfill", &args.poll_backfill)?;
        if backfill > MAX_BACKFILL {
            return Err(invalid("--poll.backfill", "must be at most 90d"));
        }
        let lookback = parse_duration("--poll.lookback", &args.poll_lookback)?;
        if lookback < Duration::from_secs(1) || lookback > Duration::from_secs(24 * 3600) {
            return Err(invalid("--poll.lookback", "must be from 1s to 24h"));
        }
        let max_call = parse_duration("--poll.max-call-duration", &args.poll_max_call_duration)?;
        // Shorter, and a call given up would be read again by the next window and tracked anew.
        if max_call <= lookback + interval {
            return Err(invalid(
                "--poll.max-call-duration",
                format!(
                    "must be longer than --poll.lookback plus --poll.interval ({})",
                    humantime::format_duration(lookback + interval)
                ),
            ));
        }
        let max_catchup = parse_duration("--poll.max-catchup", &args.poll_max_catchup)?;
        if max_catchup < lookback + interval || max_catchup > MAX_BACKFILL {
            return Err(invalid(
                "--poll.max-catchup",
                format!(
                    "must be from --poll.lookback plus --poll.interval ({}) to 90d",
                    humantime::format_duration(lookback + interval)
                ),
            ));
        }
        if args.state_reset && args.state_path.is_none() {
            return Err(invalid("--state.reset", "needs --state.path: there is no store to reset"));
        }
        let queries = task_queries(&args.cec_task_types)?;
        let listen =
            parse_listen("--web.listen-address", args.web_listen_address.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let telemetry_path = args.web_telemetry_path.trim().to_owned();
        if !telemetry_path.starts_with('/') || telemetry_path.len() < 2 || telemetry_path.starts_with("/-/") {
            return Err(invalid(
                "--web.telemetry-path",
                format!("{telemetry_path:?} must start with / and not be / or under /-/"),
            ));
        }
        if let Some(p) = &args.state_path {
            std::fs::create_dir_all(p)
                .map_err(|e| invalid("--state.path", format!("cannot create {}: {e}", p.display())))?;
        }
        let ms = |d: Duration| d.as_millis().min(i64::MAX as u128) as i64;
        Ok(Config {
            client: ClientConfig {
                query_url,
                token_url,
                app_key,
                app_secret,
                token_lifetime_s,
                page_size,
                timeout,
                retries: 2,
            },
            poller: PollerConfig {
                interval,
                plan: PlanConfig {
                    backfill_ms: ms(backfill),
                    lookback_ms: ms(lookback),
                    pad_ms: 1_000,
                    max_window_ms: MAX_WINDOW_MS,
                    page_size,
                },
                retention: Retention { lookback_ms: ms(lookback), max_call_ms: ms(max_call) },
                queries,
                max_catchup_ms: ms(max_catchup),
            },
            state_path: args.state_path.clone(),
            state_reset: args.state_reset,
            listen,
            telemetry_path,
            log_level,
            log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["cec-exporter", "--cec.url", "http://127.0.0.1:9", "--cec.app-key", "k"];
        argv.extend_from_slice(extra);
        crate::cli::Cli::try_parse_from(argv).unwrap().run
    }

    fn err(extra: &[&str]) -> String {
        Config::from_args(&args(extra), Some("s".into())).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let c = Config::from_args(&args(&[]), Some(" s3cret\n".into())).unwrap();
        assert_eq!(
            c.client.query_url.as_str(),
            "http://127.0.0.1:9/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord"
        );
        assert_eq!(c.client.token_url.as_str(), "http://127.0.0.1:9/apigovernance/api/oauth/tokenByAkSk");
        assert_eq!(c.client.app_secret.expose(), "s3cret");
        assert_eq!((c.client.page_size, c.client.token_lifetime_s), (100, 600));
        assert_eq!(c.poller.queries, vec![TaskQuery::ALL_BUT_ITA, TaskQuery::ITA]);
        assert_eq!(c.poller.interval, Duration::from_secs(30));
        assert_eq!(c.poller.plan.backfill_ms, 3_600_000);
        assert_eq!(c.listen, "0.0.0.0:10049".parse().unwrap());
        assert_eq!(c.telemetry_path, "/metrics");
    }

    #[test]
    fn token_url_base_or_full() {
        let c = Config::from_args(&args(&["--cec.token-url", "https://gw.example:28070"]), Some("s".into())).unwrap();
        assert_eq!(c.client.token_url.as_str(), "https://gw.example:28070/apigovernance/api/oauth/tokenByAkSk");
        let c = Config::from_args(&args(&["--cec.token-url", "https://gw.example/custom/token"]), Some("s".into()))
            .unwrap();
        assert_eq!(c.client.token_url.as_str(), "https://gw.example/custom/token");
    }

    #[test]
    fn secret_file_is_trimmed_like_echo_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "  s3cret \n").unwrap();
        let a = args(&["--cec.app-secret-file", f.to_str().unwrap()]);
        let c = Config::from_args(&a, None).unwrap();
        assert_eq!(c.client.app_secret.expose(), "s3cret");
        assert_eq!(
            Config::from_args(&a, Some("x".into())).unwrap_err().to_string(),
            "--cec.app-secret-file: both the secret file and CEC_APP_SECRET are set; keep one"
        );
        std::fs::write(&f, "\n").unwrap();
        assert_eq!(
            Config::from_args(&a, None).unwrap_err().to_string(),
            "--cec.app-secret-file: the app secret is empty"
        );
    }

    #[test]
    fn errors_name_the_flag() {
        assert_eq!(err(&["--cec.page-size", "101"]), "--cec.page-size: \"101\" is not a whole number from 1 to 100");
        assert_eq!(
            err(&["--cec.token-expire", "3601"]),
            "--cec.token-expire: \"3601\" is not a whole number from 1 to 3600"
        );
        assert_eq!(err(&["--cec.task-types", "0,5"]), "--cec.task-types: \"5\" is not a taskType 0-4");
        assert_eq!(
            err(&["--cec.task-types", "0,1"]),
            "--cec.task-types: 0 already includes task types 1-3; list either 0 or some of 1, 2, 3"
        );
        assert!(
            err(&["--poll.interval", "soon"]).starts_with("--poll.interval: \"soon\" is not a duration like 30s or 1h")
        );
        assert_eq!(err(&["--poll.interval", "500ms"]), "--poll.interval: must be at least 1s");
        assert_eq!(err(&["--poll.backfill", "100y"]), "--poll.backfill: must be at most 90d");
        assert_eq!(
            err(&["--poll.max-catchup", "1m"]),
            "--poll.max-catchup: must be from --poll.lookback plus --poll.interval (5m 30s) to 90d"
        );
        assert_eq!(err(&["--state.reset"]), "--state.reset: needs --state.path: there is no store to reset");
        assert_eq!(err(&["--poll.lookback", "0s"]), "--poll.lookback: must be from 1s to 24h");
        assert_eq!(
            err(&["--poll.max-call-duration", "5m"]),
            "--poll.max-call-duration: must be longer than --poll.lookback plus --poll.interval (5m 30s)"
        );
        assert_eq!(err(&["--log.format", "xml"]), "--log.format: \"xml\" is not logfmt or json");
        assert_eq!(
            err(&["--web.telemetry-path", "metrics"]),
            "--web.telemetry-path: \"metrics\" must start with / and not be / or under /-/"
        );
        assert_eq!(
            err(&["--web.listen-address", "nowhere"]),
            "--web.listen-address: \"nowhere\" is not an address like :10049 or 127.0.0.1:10049"
        );
        assert_eq!(err(&["--cec.url", "ftp://x"]), "--cec.url: \"ftp://x\" is not an http:// or https:// URL");
        assert_eq!(
            Config::from_args(&args(&[]), None).unwrap_err().to_string(),
            "--cec.app-secret-file is required: give a file holding the app secret, or set CEC_APP_SECRET"
        );
    }

    #[test]
    fn a_secret_never_shows_in_debug() {
        let c = Config::from_args(&args(&[]), Some("hunter2".into())).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
