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

/// Every text a parser error may have, with each number written `N`: `WireError` carries only a
/// kind, a line and a column, so nothing else can appear.
const TEMPLATES: [&str; 7] = [
    "syntax error at line N column N",
    "unexpected value at line N column N",
    "truncated at line N column N",
    "read error at line N column N",
    "no AccessToken in the answer",
    "AccessToken longer than N bytes",
    "AccessToken has a character other than visible ASCII",
];

/// `text` with every run of digits replaced by `N`.
fn numbers_as_n(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('N') {
            out.push('N');
        }
    }
    out
}

/// Panics when `text` (an error message meant for logs and the landing page) is not one of the
/// parsers' fixed messages, or contains one of the input's long strings (issue 8, finding 6). Always
/// on. An input string that is itself a piece of a fixed message ("nexpected value at lin") is not
/// an echo, and the first check already proves nothing else of the input got in.
pub fn assert_no_echo(bytes: &[u8], text: &str) {
    let shape = numbers_as_n(text);
    assert!(TEMPLATES.contains(&shape.as_str()), "error text {text:?} is not one of the parsers' fixed messages");
    for s in long_strings(bytes) {
        if TEMPLATES.iter().any(|t| t.contains(&numbers_as_n(&s))) {
            continue;
        }
        assert!(!text.contains(&s), "error text {text:?} echoes the input string {s:?}");
    }
}
