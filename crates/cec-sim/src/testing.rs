//! What this crate's unit tests share: a fixed instant for tests that need no wall clock, the
//! credentials and config of a test simulator, and a reader for the vendor's number-or-string values.

use std::time::Duration;

use serde_json::Value;

use crate::{SimConfig, Traffic};

/// A fixed instant (2023-11-14) for tests that build calls without the wall clock.
pub const T0: i64 = 1_700_000_000_000;
/// The app_key the test simulator accepts.
pub const KEY: &str = "app-key-1";
/// The app_secret the test simulator accepts.
pub const SECRET: &str = "app-secret-1";

/// A test simulator's config: [`KEY`]/[`SECRET`], seed 42.
pub fn sim_config(traffic: Traffic, max_record_latency: Duration) -> SimConfig {
    SimConfig { app_key: KEY.into(), app_secret: SECRET.into(), seed: 42, traffic, max_record_latency }
}

/// A record value the vendor sends as a number or as a numeric string, as an integer.
///
/// # Panics
/// On anything else: the test reads a field that must be numeric.
pub fn num(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("not numeric: {other}"),
    }
}
