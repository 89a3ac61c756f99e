//! The validated configuration: the typed flags of [`crate::cli`] checked against each other and turned
//! into what the client, the poller and the server run with. A single flag's value and range are clap's
//! job (its value parsers); here live the rules that relate flags, each a [`ConfigError`] naming them.
//! Building a [`Config`] changes nothing on disk: the files it reads are the app secret and the
//! `--cec.ca-file`, last, at the edge; the state directory is created where the store is opened.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cec::client::{ClientConfig, TlsConfig};
use crate::cec::window::MAX_WINDOW_MS;
use crate::cli::RunArgs;
use crate::ingest::ledger::Retention;
use crate::ingest::plan::PlanConfig;
use crate::ingest::poller::PollerConfig;
use crate::secret::Secret;

use crate::logging::LogFormat;

/// The documented path of `queryCallDetailRecord`.
pub const QUERY_PATH: &str = "/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord";
/// The documented path of `tokenByAkSk`.
pub const TOKEN_PATH: &str = "/apigovernance/api/oauth/tokenByAkSk";
/// Default listen address (`:10049`): every IPv4 interface, a port above 10000 no other exporter registered.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 10049));
/// Default `--poll.interval`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// A configuration that clap accepted flag by flag but that does not hold together. Each message starts
/// with the flag to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag} is required: {hint}")]
    Missing { flag: &'static str, hint: &'static str },
    #[error("--cec.app-secret-file: both the secret file and CEC_APP_SECRET are set; keep one")]
    SecretTwice,
    #[error("--cec.app-secret-file: cannot read {}: {error}", shown_path(path))]
    SecretUnreadable { path: PathBuf, error: std::io::Error },
    #[error("--cec.app-secret-file: the app secret is empty")]
    SecretEmpty,
    /// Shorter, and a call given up would be read again by the next window and tracked anew.
    #[error(
        "--poll.max-call-duration: must be longer than --poll.lookback plus --poll.interval ({})",
        humantime::format_duration(*lookback_plus_interval)
    )]
    MaxCallDurationTooShort { lookback_plus_interval: Duration },
    /// Shorter, and a catch-up would skip records that a normal poll still re-reads.
    #[error(
        "--poll.max-catchup: must be at least --poll.lookback plus --poll.interval ({})",
        humantime::format_duration(*lookback_plus_interval)
    )]
    MaxCatchupTooShort { lookback_plus_interval: Duration },
    #[error("--state.reset: needs --state.path: there is no store to reset")]
    ResetWithoutStatePath,
    /// Shorter, and a single request that is still within its own timeout would fail every poll.
    #[error("--poll.deadline: must be at least --cec.timeout ({})", humantime::format_duration(*timeout))]
    DeadlineShorterThanTimeout { timeout: Duration },
    /// The CA file cannot be read or holds no PEM certificate.
    #[error("--cec.ca-file: {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    /// Not a `source`: its text is already in the message, and `{:#}` would print it twice.
    #[error("--web.config.file: {0}")]
    WebConfig(crate::web_config::WebConfigError),
    #[error("--shard.index: must be less than --shard.count ({count})")]
    ShardIndex { count: u32 },
    #[error("--shard.count: shards split the tenants of --config.file; give one, or leave --shard.count at 1")]
    ShardWithoutFile,
}

/// A secret file's path for a message, unless it has no directory part and no dot: then it may well
/// be the secret itself, pasted where its file belongs, and is not repeated into a log.
fn shown_path(path: &Path) -> String {
    let s = path.to_string_lossy();
    if s.contains('/') || s.contains('.') {
        s.into_owned()
    } else {
        "the name given (not shown: with no directory it may be the secret itself)".to_owned()
    }
}

impl ConfigError {
    /// The flag the message is about.
    pub fn flag(&self) -> &'static str {
        match self {
            ConfigError::Missing { flag, .. } => flag,
            ConfigError::SecretTwice | ConfigError::SecretUnreadable { .. } | ConfigError::SecretEmpty => {
                "--cec.app-secret-file"
            }
            ConfigError::MaxCallDurationTooShort { .. } => "--poll.max-call-duration",
            ConfigError::MaxCatchupTooShort { .. } => "--poll.max-catchup",
            ConfigError::ResetWithoutStatePath => "--state.reset",
            ConfigError::DeadlineShorterThanTimeout { .. } => "--poll.deadline",
            ConfigError::CaFile { .. } => "--cec.ca-file",
            ConfigError::WebConfig(_) => "--web.config.file",
            ConfigError::ShardIndex { .. } => "--shard.index",
            ConfigError::ShardWithoutFile => "--shard.count",
        }
    }
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
    /// The server's limits (`--web.max-connections`).
    pub limits: crate::server::Limits,
    /// `--web.config.file` and what it held at start-up.
    pub web_config: Option<(PathBuf, crate::web_config::WebConfig)>,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
}

/// What the process serves with, whatever the tenants: the web server, the state root, the shard.
#[derive(Clone, Debug)]
pub struct Serving {
    pub state_path: Option<PathBuf>,
    pub state_reset: bool,
    pub listen: SocketAddr,
    pub telemetry_path: String,
    pub limits: crate::server::Limits,
    pub web_config: Option<(PathBuf, crate::web_config::WebConfig)>,
    /// `(--shard.count, --shard.index)`.
    pub shard: (u32, u32),
}

impl Serving {
    /// The process's rules, without reading anything: [`Config::from_args`] checks them before it reads
    /// a file, so a file is never opened while a rule fails.
    pub fn check(args: &RunArgs) -> Result<(), ConfigError> {
        if args.state_reset && args.state_path.is_none() {
            return Err(ConfigError::ResetWithoutStatePath);
        }
        if args.shard_index >= args.shard_count {
            return Err(ConfigError::ShardIndex { count: args.shard_count });
        }
        if args.shard_count > 1 && args.config_file.is_none() {
            return Err(ConfigError::ShardWithoutFile);
        }
        Ok(())
    }

    /// The process's part of the flags, checked; reads the web config file, if one is given.
    pub fn from_args(args: &RunArgs) -> Result<Serving, ConfigError> {
        Serving::check(args)?;
        let web_config = match &args.web_config_file {
            Some(path) => {
                Some((path.clone(), crate::web_config::WebConfig::load(path).map_err(ConfigError::WebConfig)?))
            }
            None => None,
        };
        Ok(Serving {
            state_path: args.state_path.clone(),
            state_reset: args.state_reset,
            listen: args.web_listen_address.unwrap_or(DEFAULT_LISTEN),
            telemetry_path: args.web_telemetry_path.clone(),
            limits: crate::server::Limits {
                max_connections: args.web_max_connections as usize,
                ..crate::server::Limits::default()
            },
            web_config,
            shard: (args.shard_count, args.shard_index),
        })
    }
}

/// `url` with `path` appended, or `url` as is when `keep_path` and it already has a path.
fn endpoint_url(url: &reqwest::Url, path: &str, keep_path: bool) -> reqwest::Url {
    if keep_path && !url.path().trim_end_matches('/').is_empty() {
        return url.clone();
    }
    let mut url = url.clone();
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}{path}"));
    url
}

/// Where the app secret comes from: checked without reading anything, read by [`SecretSource::read`].
#[derive(Debug)]
enum SecretSource<'a> {
    File(&'a Path),
    /// `CEC_APP_SECRET`, wrapped at once so that no `Debug` prints it.
    Env(Secret),
}

impl<'a> SecretSource<'a> {
    /// The file or else `CEC_APP_SECRET` (`env_secret`), never both.
    fn new(file: Option<&'a Path>, env_secret: Option<String>) -> Result<SecretSource<'a>, ConfigError> {
        match (file, env_secret) {
            (Some(_), Some(_)) => Err(ConfigError::SecretTwice),
            (Some(path), None) => Ok(SecretSource::File(path)),
            (None, Some(s)) => Ok(SecretSource::Env(Secret::new(s))),
            (None, None) => Err(ConfigError::Missing {
                flag: "--cec.app-secret-file",
                hint: "give a file holding the app secret, or set CEC_APP_SECRET",
            }),
        }
    }

    /// The secret, surrounding whitespace removed (as `echo` writes a file). Reads the file: the one
    /// file access of building a configuration.
    fn read(self) -> Result<Secret, ConfigError> {
        let raw = match self {
            SecretSource::File(path) => {
                let secret = Secret::new(
                    std::fs::read_to_string(path)
                        .map_err(|error| ConfigError::SecretUnreadable { path: path.to_owned(), error })?,
                );
                if let Some(mode) = loose_mode(path) {
                    // A warning, not a refusal: secrets mounted by orchestrators are often 0644 in a
                    // private directory, and refusing would break those deployments.
                    tracing::warn!(
                        path = %path.display(),
                        mode = %format!("{mode:04o}"),
                        "--cec.app-secret-file is readable or writable by group or others; make it 0600 (chmod go-rwx)"
                    );
                }
                secret
            }
            SecretSource::Env(s) => s,
        };
        match raw.expose().trim() {
            "" => Err(ConfigError::SecretEmpty),
            secret => Ok(Secret::new(secret)),
        }
    }
}

/// The permission bits of `path` when its group or others may read or write it (Unix; `None`
/// elsewhere, or when the mode cannot be read).
fn loose_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
        (mode & 0o066 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

impl Config {
    /// Checks the flags against each other and builds the configuration; `env_secret` is the value of
    /// `CEC_APP_SECRET`, if set. Reads the secret file, if one is given, and nothing else.
    pub fn from_args(args: &RunArgs, env_secret: Option<String>) -> Result<Config, ConfigError> {
        let cec_url = args.cec_url.as_ref().ok_or(ConfigError::Missing {
            flag: "--cec.url",
            hint: "the base URL of the CEC API gateway, e.g. https://service.besclouds.com",
        })?;
        let query_url = endpoint_url(cec_url, QUERY_PATH, false);
        let token_url = match &args.cec_token_url {
            Some(t) => endpoint_url(t, TOKEN_PATH, true),
            None => endpoint_url(cec_url, TOKEN_PATH, false),
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
        let secret = SecretSource::new(args.cec_app_secret_file.as_deref(), env_secret)?;
        let interval = args.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL);
        let lookback = args.poll_lookback;
        let lookback_plus_interval = lookback + interval;
        if args.poll_max_call_duration <= lookback_plus_interval {
            return Err(ConfigError::MaxCallDurationTooShort { lookback_plus_interval });
        }
        if args.poll_max_catchup < lookback_plus_interval {
            return Err(ConfigError::MaxCatchupTooShort { lookback_plus_interval });
        }
        if args.poll_deadline < args.cec_timeout {
            return Err(ConfigError::DeadlineShorterThanTimeout { timeout: args.cec_timeout });
        }
        Serving::check(args)?;
        // Last, once everything else holds: the edge where a file is read.
        let app_secret = secret.read()?;
        let extra_roots = match &args.cec_ca_file {
            Some(path) => ca_certificates(path)?,
            None => Vec::new(),
        };
        // The process's part (state root, web server, shards; it reads the web config file): the same
        // rules with or without --config.file.
        let Serving { state_path, state_reset, listen, telemetry_path, limits, web_config, shard: _ } =
            Serving::from_args(args)?;
        let ms = |d: Duration| d.as_millis().min(i64::MAX as u128) as i64;
        let page_size = args.cec_page_size;
        Ok(Config {
            client: ClientConfig {
                query_url,
                token_url,
                app_key,
                app_secret,
                token_lifetime_s: args.cec_token_expire,
                page_size,
                timeout: args.cec_timeout,
                retries: 2,
                max_body_bytes: args.cec_max_body_size,
                max_pages_per_window: args.cec_max_pages_per_window,
                tls: TlsConfig { extra_roots, insecure_skip_verify: args.cec_insecure_skip_verify },
            },
            poller: PollerConfig {
                read_capacity: u64::from(args.cec_max_pages_per_window) * u64::from(page_size),
                callers: args.metrics_callers.0.clone(),
                interval,
                plan: PlanConfig {
                    backfill_ms: ms(args.poll_backfill),
                    lookback_ms: ms(lookback),
                    pad_ms: 1_000,
                    max_window_ms: MAX_WINDOW_MS,
                    page_size,
                },
                retention: Retention {
                    lookback_ms: ms(lookback),
                    max_call_ms: ms(args.poll_max_call_duration),
                    max_open_calls: args.poll_max_open_calls as usize,
                },
                queries: args.cec_task_types.queries().to_vec(),
                max_catchup_ms: ms(args.poll_max_catchup),
                deadline: args.poll_deadline,
                max_unknown_reason_codes: args.metrics_max_unknown_reason_codes as usize,
            },
            state_path,
            state_reset,
            listen,
            telemetry_path,
            limits,
            web_config,
            log_level: args.log_level.into(),
            log_format: args.log_format,
        })
    }
}

/// The certificates of a PEM file; a file without one is refused (it would add no trust, silently).
fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let fail = |reason: String| ConfigError::CaFile { path: path.to_owned(), reason };
    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    // reqwest (rustls-pemfile) skips what is not a certificate block: count what it found.
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(fail("no PEM certificate in it".into())),
        // reqwest's own message here is only "builder error": say what it means.
        Err(_) => Err(fail("not a readable PEM certificate bundle".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cec::record::TaskQuery;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["cec-exporter", "--cec.url", "http://127.0.0.1:9", "--cec.app-key", "k"];
        argv.extend_from_slice(extra);
        crate::cli::Cli::try_parse_from(argv).unwrap().run
    }

    fn err(extra: &[&str]) -> ConfigError {
        Config::from_args(&args(extra), Some("s".into())).unwrap_err()
    }

    #[test]
    fn defaults() {
        let c = Config::from_args(&args(&[]), Some(" s3cret\n".into())).unwrap();
        assert_eq!(
            c.client.query_url.as_str(),
            "http://127.0.0.1:9/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord"
        );
        assert_eq!(c.client.token_url.as_str(), "http://127.0.0.1:9/apigovernance/api/oauth/tokenByAkSk");
        assert_eq!(c.client.app_key, "k");
        assert_eq!(c.client.app_secret.expose(), "s3cret");
        assert_eq!((c.client.page_size, c.client.token_lifetime_s), (100, 600));
        assert_eq!(c.client.timeout, Duration::from_secs(10));
        assert_eq!(c.poller.queries, vec![TaskQuery::ALL_BUT_ITA, TaskQuery::ITA]);
        assert_eq!(c.poller.interval, Duration::from_secs(30));
        assert_eq!(
            (c.poller.plan.backfill_ms, c.poller.plan.lookback_ms, c.poller.plan.page_size),
            (3_600_000, 300_000, 100)
        );
        assert_eq!(
            c.poller.retention,
            Retention { lookback_ms: 300_000, max_call_ms: 86_400_000, max_open_calls: 250_000 }
        );
        assert_eq!(c.poller.max_catchup_ms, 30 * 86_400_000);
        assert_eq!((c.poller.deadline, c.poller.max_unknown_reason_codes), (Duration::from_secs(300), 32));
        assert_eq!((c.state_path, c.state_reset), (None, false));
        assert_eq!(c.listen, "0.0.0.0:10049".parse().unwrap());
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!((c.log_level, c.log_format), (tracing::Level::INFO, LogFormat::Logfmt));
    }

    #[test]
    fn typed_flags_reach_the_config() {
        let c = Config::from_args(
            &args(&[
                "--cec.page-size=7",
                "--cec.token-expire=60",
                "--cec.task-types=4",
                "--poll.interval=2s",
                "--poll.lookback=10s",
                "--poll.max-call-duration=13s",
                "--poll.max-catchup=12s",
                "--poll.max-open-calls=5",
                "--web.listen-address=127.0.0.1:9999",
                "--log.level=DEBUG",
                "--log.format=json",
            ]),
            Some("s".into()),
        )
        .unwrap();
        assert_eq!((c.client.page_size, c.poller.plan.page_size, c.client.token_lifetime_s), (7, 7, 60));
        assert_eq!(c.poller.queries, vec![TaskQuery::ITA]);
        assert_eq!(c.poller.interval, Duration::from_secs(2));
        assert_eq!(c.poller.retention, Retention { lookback_ms: 10_000, max_call_ms: 13_000, max_open_calls: 5 });
        assert_eq!(c.poller.max_catchup_ms, 12_000);
        assert_eq!(c.listen, "127.0.0.1:9999".parse().unwrap());
        assert_eq!((c.log_level, c.log_format), (tracing::Level::DEBUG, LogFormat::Json));
    }

    #[test]
    fn token_url_base_or_full() {
        let c = Config::from_args(&args(&["--cec.token-url", "https://gw.example:28070"]), Some("s".into())).unwrap();
        assert_eq!(c.client.token_url.as_str(), "https://gw.example:28070/apigovernance/api/oauth/tokenByAkSk");
        let c = Config::from_args(&args(&["--cec.token-url", "https://gw.example/custom/token"]), Some("s".into()))
            .unwrap();
        assert_eq!(c.client.token_url.as_str(), "https://gw.example/custom/token");
        let c = Config::from_args(&args(&["--cec.url", "https://gw.example/base/"]), Some("s".into())).unwrap();
        assert_eq!(
            c.client.query_url.as_str(),
            "https://gw.example/base/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord"
        );
    }

    #[test]
    fn secret_from_file_xor_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "  s3cret \n").unwrap();
        let a = args(&["--cec.app-secret-file", f.to_str().unwrap()]);
        let c = Config::from_args(&a, None).unwrap();
        assert_eq!(c.client.app_secret.expose(), "s3cret", "trimmed like echo writes it");
        assert_eq!(
            Config::from_args(&a, Some("x".into())).unwrap_err().to_string(),
            "--cec.app-secret-file: both the secret file and CEC_APP_SECRET are set; keep one"
        );
        std::fs::write(&f, "\n").unwrap();
        assert_eq!(
            Config::from_args(&a, None).unwrap_err().to_string(),
            "--cec.app-secret-file: the app secret is empty"
        );
        assert_eq!(
            Config::from_args(&args(&[]), Some(" \t".into())).unwrap_err().to_string(),
            "--cec.app-secret-file: the app secret is empty"
        );
        let missing = dir.path().join("nowhere");
        let e = Config::from_args(&args(&["--cec.app-secret-file", missing.to_str().unwrap()]), None).unwrap_err();
        assert!(matches!(&e, ConfigError::SecretUnreadable { path, .. } if *path == missing), "{e:?}");
        assert!(
            e.to_string().starts_with(&format!("--cec.app-secret-file: cannot read {}: ", missing.display())),
            "{e}"
        );
        assert_eq!(
            Config::from_args(&args(&[]), None).unwrap_err().to_string(),
            "--cec.app-secret-file is required: give a file holding the app secret, or set CEC_APP_SECRET"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_open_to_group_or_others_is_read_with_one_warning() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "s3cret\n").unwrap();
        let a = args(&["--cec.app-secret-file", f.to_str().unwrap()]);
        for (mode, warned) in [(0o600, false), (0o400, false), (0o640, true), (0o602, true), (0o666, true)] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(loose_mode(&f), warned.then_some(mode), "{mode:o}");
            let (c, lines) = crate::logging::capture(tracing::Level::INFO, || Config::from_args(&a, None));
            assert_eq!(c.unwrap().client.app_secret.expose(), "s3cret", "still read");
            let want = format!(
                "level=warn msg=\"--cec.app-secret-file is readable or writable by group or others; make it 0600 (chmod go-rwx)\" path={} mode={mode:04o}",
                f.display()
            );
            assert_eq!(lines, if warned { vec![want.as_str()] } else { vec![] }, "{mode:o}");
        }
    }

    #[test]
    fn the_secret_file_is_read_only_when_everything_else_holds() {
        // An unreadable file is not reported (so not opened) while another rule fails.
        let a = args(&["--cec.app-secret-file", "/nonexistent/secret", "--state.reset"]);
        assert_eq!(Config::from_args(&a, None).unwrap_err().flag(), "--state.reset");
    }

    #[test]
    fn shards_without_a_tenant_file_are_refused() {
        let a = args(&["--cec.app-secret-file", "/nonexistent/secret", "--shard.count", "2"]);
        let e = Config::from_args(&a, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--shard.count: shards split the tenants of --config.file; give one, or leave --shard.count at 1"
        );
    }

    #[test]
    fn required_flags() {
        let a = crate::cli::Cli::try_parse_from(["cec-exporter", "--cec.app-key", "k"]).unwrap().run;
        assert_eq!(
            Config::from_args(&a, Some("s".into())).unwrap_err().to_string(),
            "--cec.url is required: the base URL of the CEC API gateway, e.g. https://service.besclouds.com"
        );
        assert_eq!(
            err(&["--cec.app-key", " "]).to_string(),
            "--cec.app-key is required: the app key issued by the tenant's operations admin"
        );
    }

    #[test]
    fn max_call_duration_must_exceed_lookback_plus_interval() {
        assert_eq!(
            err(&["--poll.max-call-duration", "5m30s"]).to_string(),
            "--poll.max-call-duration: must be longer than --poll.lookback plus --poll.interval (5m 30s)"
        );
        let ok = Config::from_args(&args(&["--poll.max-call-duration", "5m31s"]), Some("s".into())).unwrap();
        assert_eq!(ok.poller.retention.max_call_ms, 331_000);
        // The rule follows the interval actually used, also when it was given.
        assert_eq!(
            err(&["--poll.interval", "10m", "--poll.max-call-duration", "15m"]).to_string(),
            "--poll.max-call-duration: must be longer than --poll.lookback plus --poll.interval (15m)"
        );
    }

    #[test]
    fn max_catchup_must_reach_lookback_plus_interval() {
        assert_eq!(
            err(&["--poll.max-catchup", "1m"]).to_string(),
            "--poll.max-catchup: must be at least --poll.lookback plus --poll.interval (5m 30s)"
        );
        let ok = Config::from_args(&args(&["--poll.max-catchup", "5m30s"]), Some("s".into())).unwrap();
        assert_eq!(ok.poller.max_catchup_ms, 330_000);
        assert_eq!(
            err(&["--poll.lookback", "1s", "--poll.interval", "1s", "--poll.max-catchup", "1s"]).flag(),
            "--poll.max-catchup"
        );
    }

    #[test]
    fn the_poll_deadline_must_reach_the_request_timeout() {
        let e = err(&["--poll.deadline", "5s"]);
        assert_eq!(e.to_string(), "--poll.deadline: must be at least --cec.timeout (10s)");
        assert_eq!(e.flag(), "--poll.deadline");
        let ok = Config::from_args(&args(&["--poll.deadline", "2s", "--cec.timeout", "2s"]), Some("s".into())).unwrap();
        assert_eq!(ok.poller.deadline, Duration::from_secs(2));
        let c = Config::from_args(&args(&["--metrics.max-unknown-reason-codes", "0"]), Some("s".into())).unwrap();
        assert_eq!(c.poller.max_unknown_reason_codes, 0);
    }

    #[test]
    fn state_reset_needs_a_state_path() {
        assert_eq!(
            err(&["--state.reset"]).to_string(),
            "--state.reset: needs --state.path: there is no store to reset"
        );
        let c = Config::from_args(&args(&["--state.reset", "--state.path", "/nonexistent/state"]), Some("s".into()))
            .unwrap();
        assert_eq!((c.state_path.as_deref(), c.state_reset), (Some(Path::new("/nonexistent/state")), true));
    }

    #[test]
    fn every_error_names_its_flag_first() {
        let errors = [
            err(&["--poll.max-call-duration", "1m"]),
            err(&["--poll.max-catchup", "1m"]),
            err(&["--state.reset"]),
            Config::from_args(&args(&[]), None).unwrap_err(),
            Config::from_args(&args(&[]), Some(String::new())).unwrap_err(),
        ];
        for e in errors {
            assert!(e.to_string().starts_with(e.flag()), "{e}");
        }
    }

    #[test]
    fn a_ca_file_adds_roots_and_a_bad_one_names_itself() {
        let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-ca.pem");
        let c = Config::from_args(&args(&["--cec.ca-file", pem]), Some("s".into())).unwrap();
        assert_eq!((c.client.tls.extra_roots.len(), c.client.tls.insecure_skip_verify), (1, false));
        assert_eq!(c.client.max_body_bytes, 8 << 20);
        assert_eq!(c.client.max_pages_per_window, 1000);
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = err(&["--cec.ca-file", junk.to_str().unwrap()]);
        assert_eq!(e.flag(), "--cec.ca-file");
        assert_eq!(e.to_string(), format!("--cec.ca-file: {}: no PEM certificate in it", junk.display()));
        let missing = dir.path().join("missing.pem");
        let e = err(&["--cec.ca-file", missing.to_str().unwrap()]).to_string();
        assert!(e.starts_with(&format!("--cec.ca-file: {}: cannot read it: ", missing.display())), "{e}");
    }

    #[test]
    fn building_a_config_touches_no_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state").join("nested");
        let c = Config::from_args(&args(&["--state.path", state.to_str().unwrap(), "--state.reset"]), Some("s".into()))
            .unwrap();
        assert_eq!(c.state_path.as_deref(), Some(state.as_path()));
        assert!(!dir.path().join("state").exists(), "--state.path is created when the store opens, not here");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_secret_never_shows_in_debug() {
        let c = Config::from_args(&args(&[]), Some("hunter2".into())).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
