//! Shared by the fuzz targets: the invariant that no error text echoes what the gateway sent.

use serde_json::Value;

/// Strings this long or longer are treated as secrets or personal data when they appear in the
/// input: shorter ones collide with the parsers' own words ("string", "expected").
const MIN_SECRET_LEN: usize = 8;

/// Every JSON string (keys excluded) of at least [`MIN_SECRET_LEN`] characters in `bytes`, when
/// `bytes` is JSON at all.
pub fn long_strings(bytes: &[u8]) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.chars().count() >= MIN_SECRET_LEN => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        walk(&v, &mut out);
    }
    out
}

/// Panics when `text` (an error message meant for logs and the landing page) contains one of the
/// input's long strings (issue 8, finding 6). Always on: the parsers' errors carry only a kind and a
/// position, so there is no tree left where an echo is expected.
pub fn assert_no_echo(bytes: &[u8], text: &str) {
    for s in long_strings(bytes) {
        assert!(!text.contains(&s), "error text {text:?} echoes the input string {s:?}");
    }
}
