//! `--config.file`: many CEC tenants in one YAML file, each polled on its own. This module owns the
//! file's format and turns it into one validated configuration per tenant; it runs nothing.
//!
//! ```yaml
//! global:                # optional: defaults for every tenant (the same cec: and poll: keys)
//!   poll:
//!     interval: 30s
//! tenants:
//!   - name: brand-a      # ^[a-z0-9][a-z0-9_-]{0,62}$, unique: the value of the `tenant` label
//!     cec:
//!       url: https://service.besclouds.com
//!       app_key: KEY
//!       app_secret_file: /etc/cec-exporter/brand-a.secret
//!       # optional: token_url, task_types: [0, 4], page_size, token_expire, timeout
//!     poll:              # optional: interval, backfill, lookback, max_call_duration, max_catchup
//!       interval: 30s
//!     callers: ["4008001000"]  # optional: numbers that split cec_calls_total by `caller`
//! ```
//!
//! A key means exactly what the flag of the same name means (`cec.app_key` is `--cec.app-key`): each
//! tenant's values are parsed by clap itself, as flags appended after the command line in the order
//! flags (and their environment variables) ← `global:` ← the tenant, the later winning key by key, so
//! a key has the flag's parser, range and message, and the cross-field rules of
//! [`Config::from_args`] hold per tenant. Unknown keys are refused, naming the key and its line; a
//! value or rule that fails names the tenant and the key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Parser as _;
use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::cli::Cli;
use crate::config::{Config, ConfigError};

/// The rule a tenant name follows (it is a label value and a directory name under `--state.path`).
pub const NAME_RULE: &str = "^[a-z0-9][a-z0-9_-]{0,62}$";

/// Why a tenant file was refused. Every message starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum TenantsError {
    #[error("--config.file {}: cannot read it: {error}", path.display())]
    Unreadable { path: PathBuf, error: std::io::Error },
    /// The YAML, its structure or an unknown key; serde_norway's message names the key and its line.
    #[error("--config.file {}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("--config.file {}: no tenants: list at least one under `tenants:`", path.display())]
    NoTenants { path: PathBuf },
    #[error("--config.file {}: tenant name {name:?} does not match {NAME_RULE}", path.display())]
    BadName { path: PathBuf, name: String },
    #[error("--config.file {}: tenant name {name:?} is given twice (tenants {first} and {second}); names must be unique", path.display())]
    DuplicateName { path: PathBuf, name: String, first: usize, second: usize },
    /// A key's value, as clap's parser of the flag of the same name refused it.
    #[error("--config.file {}: tenant {tenant:?}: {key}: {message}", path.display())]
    Value { path: PathBuf, tenant: String, key: String, message: String },
    /// A rule of [`Config::from_args`] (a required key missing, keys that do not hold together, a
    /// secret file that cannot be read).
    #[error("--config.file {}: tenant {tenant:?}: {key}: {error}", path.display())]
    Rule { path: PathBuf, tenant: String, key: &'static str, error: Box<ConfigError> },
}

/// One tenant, ready to run.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub name: String,
    /// The tenant's whole configuration; its server parts (`listen`, web config, logging) are the
    /// command line's, the same for every tenant.
    pub config: Config,
}

/// A scalar key's value: YAML strings, numbers and booleans are all taken as the text a flag would be
/// given (`30s`, `100`).
#[derive(Debug, Clone)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A key whose value is text (a URL, a key, a path, a calling number): only a YAML string is taken, so
/// that `+8610…` keeps its `+` and `0x1F` is not read as 31; anything else asks to be quoted, without
/// repeating the value.
#[derive(Debug, Clone)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a quoted string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text, E> {
                Err(E::custom("a number where text belongs: quote it (\"…\"), as YAML reads 0x1F as 31 and drops a +"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                self.visit_u64(v.unsigned_abs())
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Text, E> {
                self.visit_u64(0)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Text, E> {
                self.visit_u64(0)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text, E> {
                self.visit_u64(0)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text, E> {
                Err(E::custom("true or false where text belongs: quote it"))
            }
        }
        d.deserialize_any(V)
    }
}

/// `task_types`: a list (`[0, 4]`) or the flag's comma-separated text (`"0,4"`).
#[derive(Debug, Clone)]
struct TaskTypesValue(String);

impl<'de> Deserialize<'de> for TaskTypesValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TaskTypesValue, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<Scalar>),
            One(Scalar),
        }
        Ok(TaskTypesValue(match Raw::deserialize(d)? {
            Raw::List(l) => l.into_iter().map(|s| s.0).collect::<Vec<_>>().join(","),
            Raw::One(s) => s.0,
        }))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CecKeys {
    url: Option<Text>,
    app_key: Option<Text>,
    app_secret_file: Option<Text>,
    token_url: Option<Text>,
    task_types: Option<TaskTypesValue>,
    page_size: Option<Scalar>,
    token_expire: Option<Scalar>,
    timeout: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PollKeys {
    interval: Option<Scalar>,
    backfill: Option<Scalar>,
    lookback: Option<Scalar>,
    max_call_duration: Option<Scalar>,
    max_catchup: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Blocks {
    #[serde(default)]
    cec: CecKeys,
    #[serde(default)]
    poll: PollKeys,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default)]
    cec: CecKeys,
    #[serde(default)]
    poll: PollKeys,
    /// Calling numbers that get their own `caller` label (`--metrics.callers`).
    callers: Option<Vec<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    global: Blocks,
    #[serde(default)]
    tenants: Vec<Entry>,
}

/// `(key, flag, value)` of every key given, in a fixed order.
fn given(c: &CecKeys, p: &PollKeys) -> Vec<(&'static str, &'static str, String)> {
    let keys: [(&'static str, &'static str, Option<String>); 13] = [
        ("cec.url", "--cec.url", c.url.clone().map(|s| s.0)),
        ("cec.app_key", "--cec.app-key", c.app_key.clone().map(|s| s.0)),
        ("cec.app_secret_file", "--cec.app-secret-file", c.app_secret_file.clone().map(|s| s.0)),
        ("cec.token_url", "--cec.token-url", c.token_url.clone().map(|s| s.0)),
        ("cec.task_types", "--cec.task-types", c.task_types.clone().map(|s| s.0)),
        ("cec.page_size", "--cec.page-size", c.page_size.clone().map(|s| s.0)),
        ("cec.token_expire", "--cec.token-expire", c.token_expire.clone().map(|s| s.0)),
        ("cec.timeout", "--cec.timeout", c.timeout.clone().map(|s| s.0)),
        ("poll.interval", "--poll.interval", p.interval.clone().map(|s| s.0)),
        ("poll.backfill", "--poll.backfill", p.backfill.clone().map(|s| s.0)),
        ("poll.lookback", "--poll.lookback", p.lookback.clone().map(|s| s.0)),
        ("poll.max_call_duration", "--poll.max-call-duration", p.max_call_duration.clone().map(|s| s.0)),
        ("poll.max_catchup", "--poll.max-catchup", p.max_catchup.clone().map(|s| s.0)),
    ];
    keys.into_iter().filter_map(|(k, f, v)| v.map(|v| (k, f, v))).collect()
}

/// The file key of a flag the configuration rules name, for a tenant's message.
fn key_of(flag: &str) -> &'static str {
    match flag {
        "--cec.url" => "cec.url",
        "--cec.app-key" => "cec.app_key",
        "--cec.app-secret-file" => "cec.app_secret_file",
        "--cec.ca-file" => "--cec.ca-file",
        "--poll.max-call-duration" => "poll.max_call_duration",
        "--poll.max-catchup" => "poll.max_catchup",
        "--poll.deadline" => "--poll.deadline",
        "--state.reset" => "--state.reset",
        "--web.config.file" => "--web.config.file",
        _ => "configuration",
    }
}

/// Whether `name` follows [`NAME_RULE`].
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty() && b.len() <= 63 && ok(b[0]) && b[1..].iter().all(|&c| ok(c) || c == b'_' || c == b'-')
}

/// The shard (of `count`) a tenant belongs to: FNV-1a (64-bit) of the name's UTF-8 bytes, modulo
/// `count`. Stable across versions, platforms and the order of the file: N replicas given the same
/// names and `--shard.count N` split them so that each tenant is polled by exactly one.
pub fn shard_of(name: &str, count: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(count.max(1))) as u32
}

/// Reads and validates `path`. `base` is the command line the exporter was started with (the program
/// name first), whose flags and environment variables every tenant starts from. Reads each tenant's
/// secret file (and nothing else): a file that passes is one the exporter can run.
pub fn load(path: &Path, base: &[OsString]) -> Result<Vec<Tenant>, TenantsError> {
    let text = std::fs::read_to_string(path).map_err(|error| TenantsError::Unreadable { path: path.into(), error })?;
    parse(path, &text, base)
}

/// [`load`] of a file's text.
pub fn parse(path: &Path, text: &str, base: &[OsString]) -> Result<Vec<Tenant>, TenantsError> {
    let file: File =
        serde_norway::from_str(text).map_err(|e| TenantsError::Format { path: path.into(), message: e.to_string() })?;
    if file.tenants.is_empty() {
        return Err(TenantsError::NoTenants { path: path.into() });
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, t) in file.tenants.iter().enumerate() {
        if !valid_name(&t.name) {
            return Err(TenantsError::BadName { path: path.into(), name: t.name.clone() });
        }
        if let Some(first) = seen.iter().position(|n| *n == t.name) {
            return Err(TenantsError::DuplicateName {
                path: path.into(),
                name: t.name.clone(),
                first: first + 1,
                second: i + 1,
            });
        }
        seen.push(&t.name);
    }
    let global = given(&file.global.cec, &file.global.poll);
    file.tenants
        .iter()
        .map(|t| {
            let mut own = given(&t.cec, &t.poll);
            if let Some(callers) = &t.callers {
                let list: Vec<&str> = callers.iter().map(|c| c.0.as_str()).collect();
                own.push(("callers", "--metrics.callers", list.join(",")));
            }
            tenant(path, &t.name, base, &global, &own)
        })
        .collect()
}

/// One tenant's configuration: the base command line, then `global`'s keys, then its own, as flags.
fn tenant(
    path: &Path,
    name: &str,
    base: &[OsString],
    global: &[(&'static str, &'static str, String)],
    own: &[(&'static str, &'static str, String)],
) -> Result<Tenant, TenantsError> {
    let value_error = |key: &str, message: String| TenantsError::Value {
        path: path.into(),
        tenant: name.to_owned(),
        key: key.to_owned(),
        message,
    };
    // Each key alone first, so that a refused value is blamed on its key, not on the whole line.
    for (key, flag, value) in global.iter().chain(own) {
        let mut argv = vec![OsString::from("cec-exporter")];
        argv.push(format!("{flag}={value}").into());
        if let Err(e) = Cli::try_parse_from(&argv) {
            return Err(value_error(key, clap_message(&e)));
        }
    }
    let mut argv: Vec<OsString> = base.to_vec();
    for (_, flag, value) in global.iter().chain(own) {
        argv.push(format!("{flag}={value}").into());
    }
    let cli = Cli::try_parse_from(&argv).map_err(|e| value_error("command line", clap_message(&e)))?;
    // A tenant's secret comes from its file only: CEC_APP_SECRET is the single-tenant way.
    // The web server is the process's, built once from the command line: a tenant does not read
    // --web.config.file again (a file being edited must not refuse a tenant's reload).
    let mut run = cli.run;
    run.web_config_file = None;
    let config = Config::from_args(&run, None).map_err(|error| TenantsError::Rule {
        path: path.into(),
        tenant: name.to_owned(),
        key: key_of(error.flag()),
        error: Box::new(error),
    })?;
    Ok(Tenant { name: name.to_owned(), config })
}

/// clap's message without its `error: ` prefix and its usage hint: the first line.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A directory with a secret file for each of `names`, and the base command line.
    fn setup(names: &[&str]) -> (tempfile::TempDir, Vec<OsString>) {
        let dir = tempfile::tempdir().unwrap();
        for n in names {
            std::fs::write(dir.path().join(format!("{n}.secret")), format!("secret-of-{n}\n")).unwrap();
        }
        (dir, vec!["cec-exporter".into(), "--poll.interval=45s".into(), "--cec.timeout=7s".into()])
    }

    fn check(text: &str) -> Result<Vec<Tenant>, String> {
        let (dir, base) = setup(&["a", "b"]);
        let text = text.replace("DIR", dir.path().to_str().unwrap());
        parse(Path::new("tenants.yml"), &text, &base).map_err(|e| e.to_string())
    }

    const TWO: &str = "\
global:
  cec:
    url: https://gw.example
    task_types: [4]
  poll:
    lookback: 2m
tenants:
  - name: a
    cec:
      app_key: key-a
      app_secret_file: DIR/a.secret
    poll:
      interval: 10s
  - name: b
    cec:
      url: https://other.example/base
      app_key: key-b
      app_secret_file: DIR/b.secret
      task_types: \"0,4\"
      page_size: 50
    callers: [\"+8640001\", \"4008001000\"]
";

    #[test]
    fn a_tenant_takes_its_own_keys_then_global_ones_then_the_command_line() {
        let t = check(TWO).unwrap();
        assert_eq!(t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let (a, b) = (&t[0].config, &t[1].config);
        assert_eq!(
            a.client.query_url.as_str(),
            "https://gw.example/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord"
        );
        assert_eq!(
            b.client.query_url.as_str(),
            "https://other.example/base/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord"
        );
        assert_eq!((a.client.app_key.as_str(), b.client.app_key.as_str()), ("key-a", "key-b"));
        assert_eq!((a.client.app_secret.expose(), b.client.app_secret.expose()), ("secret-of-a", "secret-of-b"));
        // Own key, then the command line's --poll.interval (global has none).
        assert_eq!((a.poller.interval, b.poller.interval), (Duration::from_secs(10), Duration::from_secs(45)));
        assert_eq!((a.poller.plan.lookback_ms, b.poller.plan.lookback_ms), (120_000, 120_000), "global");
        assert_eq!(
            (a.client.timeout, b.client.timeout),
            (Duration::from_secs(7), Duration::from_secs(7)),
            "command line"
        );
        assert_eq!(a.poller.queries, [crate::cec::record::TaskQuery::ITA]);
        assert_eq!(b.poller.queries, [crate::cec::record::TaskQuery::ALL_BUT_ITA, crate::cec::record::TaskQuery::ITA]);
        assert_eq!((a.client.page_size, b.client.page_size), (100, 50));
        assert_eq!(
            (a.poller.callers.len(), b.poller.callers.clone()),
            (0, vec!["+8640001".to_owned(), "4008001000".to_owned()])
        );
    }

    #[test]
    fn each_bad_file_gets_its_own_message_naming_the_problem() {
        let cases: &[(&str, &str)] = &[
            (
                "tenants:\n  - name: a\n    cec:\n      urll: https://gw.example\n",
                "--config.file tenants.yml: tenants[0].cec: unknown field `urll`, expected one of `url`, `app_key`, `app_secret_file`, `token_url`, `task_types`, `page_size`, `token_expire`, `timeout` at line 4 column 7",
            ),
            (
                "global:\n  poll:\n    intervall: 1m\ntenants: []\n",
                "--config.file tenants.yml: global.poll: unknown field `intervall`, expected one of `interval`, `backfill`, `lookback`, `max_call_duration`, `max_catchup` at line 3 column 5",
            ),
            ("tenant:\n  - name: a\n", "--config.file tenants.yml: unknown field `tenant`, expected `global` or `tenants`"),
            ("tenants: []\n", "--config.file tenants.yml: no tenants: list at least one under `tenants:`"),
            (
                "tenants:\n  - name: a\n  - name: b\n  - name: a\n",
                "--config.file tenants.yml: tenant name \"a\" is given twice (tenants 1 and 3); names must be unique",
            ),
            ("tenants:\n  - name: Brand-A\n", "--config.file tenants.yml: tenant name \"Brand-A\" does not match ^[a-z0-9][a-z0-9_-]{0,62}$"),
            (
                "tenants:\n  - name: a\n    cec:\n      url: https://gw.example\n      app_secret_file: DIR/a.secret\n",
                "--config.file tenants.yml: tenant \"a\": cec.app_key: --cec.app-key is required: the app key issued by the tenant's operations admin",
            ),
            (
                "tenants:\n  - name: a\n    cec: {url: https://gw.example, app_key: k, app_secret_file: DIR/a.secret}\n    poll: {interval: 0s}\n",
                "--config.file tenants.yml: tenant \"a\": poll.interval: invalid value '0s' for '--poll.interval <DURATION>': must be at least 1s",
            ),
            (
                "tenants:\n  - name: a\n    cec: {url: https://gw.example, app_key: k, app_secret_file: DIR/a.secret, page_size: 101}\n",
                "--config.file tenants.yml: tenant \"a\": cec.page_size: invalid value '101' for '--cec.page-size <N>': must be a whole number from 1 to 100",
            ),
            (
                "tenants:\n  - name: a\n    cec: {url: https://gw.example, app_key: k, app_secret_file: DIR/a.secret}\n    callers: [\"1\", \"1\"]\n",
                "--config.file tenants.yml: tenant \"a\": callers: invalid value '1,1' for '--metrics.callers <NUMBERS>': \"1\" is listed twice",
            ),
            (
                "tenants:\n  - name: a\n    cec: {url: https://gw.example, app_key: k, app_secret_file: DIR/missing.secret}\n",
                "--config.file tenants.yml: tenant \"a\": cec.app_secret_file: --cec.app-secret-file: cannot read DIR/missing.secret: No such file or directory (os error 2)",
            ),
            (
                "tenants:\n  - name: a\n    cec: {url: https://gw.example, app_key: k, app_secret_file: DIR/a.secret}\n    poll: {max_call_duration: 1m}\n",
                "--config.file tenants.yml: tenant \"a\": poll.max_call_duration: --poll.max-call-duration: must be longer than --poll.lookback plus --poll.interval (5m 45s)",
            ),
        ];
        let cases: Vec<(&str, &str)> = cases
            .iter()
            .copied()
            .chain([
                (
                    "tenants:\n  - name: a\n    cec: {url: https://gw.example, app_key: 0x1F, app_secret_file: DIR/a.secret}\n",
                    "--config.file tenants.yml: tenants[0].cec.app_key: a number where text belongs: quote it (\"…\"), as YAML reads 0x1F as 31 and drops a + at line 3 column 45",
                ),
                (
                    "tenants:\n  - name: a\n    callers: [+8613800138000]\n",
                    "--config.file tenants.yml: tenants[0].callers[0]: a number where text belongs: quote it (\"…\"), as YAML reads 0x1F as 31 and drops a + at line 3 column 15",
                ),
                (
                    "tenants:\n  - name: a\n    cec: {url: https://gw.example, app_key: k, app_secret_file: Zx9s3cr3tVALUE}\n",
                    "--config.file tenants.yml: tenant \"a\": cec.app_secret_file: --cec.app-secret-file: cannot read the name given (not shown: with no directory it may be the secret itself): No such file or directory (os error 2)",
                ),
            ])
            .collect();
        for (text, want) in &cases {
            let (dir, base) = setup(&["a"]);
            let d = dir.path().to_str().unwrap();
            let got = parse(Path::new("tenants.yml"), &text.replace("DIR", d), &base).unwrap_err().to_string();
            assert_eq!(got.replace(d, "DIR"), **want, "for:\n{text}");
        }
    }

    #[test]
    fn names_follow_the_label_rule() {
        for ok in ["a", "brand-a", "0", "a_b-c9", &"x".repeat(63)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "_a", "A", "a.b", "a b", "ä", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_shard_hash_is_fnv1a_of_the_name_and_never_changes() {
        // Pinned: replicas of different versions must agree on who polls what.
        assert_eq!(shard_of("", 1 << 31), (0xcbf2_9ce4_8422_2325u64 % (1 << 31)) as u32);
        assert_eq!([shard_of("brand-a", 2), shard_of("brand-b", 2), shard_of("brand-c", 2)], [0, 1, 0]);
        assert_eq!(shard_of("brand-a", 1), 0);
        // Every name lands on exactly one of N shards, and the N shards together hold every name.
        let names: Vec<String> = (0..1000).map(|i| format!("tenant-{i}")).collect();
        for n in [1, 2, 3, 7] {
            let mut per: Vec<usize> = vec![0; n as usize];
            for name in &names {
                per[shard_of(name, n) as usize] += 1;
            }
            assert_eq!(per.iter().sum::<usize>(), 1000);
            assert!(per.iter().all(|&c| c > 1000 / n as usize / 2), "{n} shards: {per:?}");
        }
    }
}
