//! The one error type of the vendor-API boundary: every failed exchange with `tokenByAkSk` or
//! `queryCallDetailRecord` becomes one [`ApiError`] variant that carries its context (endpoint, status,
//! window) and says whether retrying makes sense. [`Endpoint`] and [`ErrorKind`] are the label values the
//! exporter counts these failures under; they live here because they describe the API, not the metrics.
//! No variant's message ever contains the app secret or a token, and none grows with what the gateway
//! sends: the only gateway text kept is a bounded, sanitized excerpt of `retMsg` ([`excerpt`]) and the
//! host a redirect pointed to.

use std::time::Duration;

use super::record::TaskQuery;
use super::window::Window;

/// One of the two interfaces; the `endpoint` label of API metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `tokenByAkSk`.
    Token,
    /// `queryCallDetailRecord`.
    QueryCallDetailRecord,
}

impl Endpoint {
    /// Every endpoint, in exposition order.
    pub const ALL: [Endpoint; 2] = [Endpoint::Token, Endpoint::QueryCallDetailRecord];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Token => "token_by_ak_sk",
            Endpoint::QueryCallDetailRecord => "query_call_detail_record",
        }
    }
}

/// Why an API exchange failed; the `error` label of `cec_exporter_api_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// No answer within the request timeout.
    Timeout,
    /// Connection refused or reset, DNS, TLS.
    Transport,
    /// HTTP 401/403: bad credentials, token rejected twice, source IP not allowed.
    Unauthorized,
    /// HTTP 429.
    RateLimited,
    /// HTTP 5xx.
    ServerError,
    /// Another unexpected HTTP status (400, 404, …).
    HttpStatus,
    /// The body is not the documented JSON.
    Decode,
    /// `retCode` other than "0" and "1".
    RetCode,
}

impl ErrorKind {
    /// Every kind, in exposition order.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Timeout,
        ErrorKind::Transport,
        ErrorKind::Unauthorized,
        ErrorKind::RateLimited,
        ErrorKind::ServerError,
        ErrorKind::HttpStatus,
        ErrorKind::Decode,
        ErrorKind::RetCode,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Transport => "transport",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::ServerError => "server_error",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::Decode => "decode",
            ErrorKind::RetCode => "ret_code",
        }
    }
}

/// A failed API exchange.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No answer within the request timeout.
    #[error("{endpoint}: no answer within {timeout:?}", endpoint = .endpoint.label())]
    Timeout { endpoint: Endpoint, timeout: Duration },
    /// No HTTP answer at all (connection, DNS, TLS); `message` is reqwest's chain, which names the URL and
    /// never a header or body.
    #[error("{endpoint}: {message}", endpoint = .endpoint.label())]
    Transport { endpoint: Endpoint, message: String },
    /// An HTTP status other than success (after the one re-authentication a 401 gets).
    #[error("{endpoint}: HTTP {status}{hint}", endpoint = .endpoint.label(), hint = status_hint(*.status))]
    Status { endpoint: Endpoint, status: u16, retry_after: Option<Duration> },
    /// The body is not the documented JSON; `message` gives the parser's error kind and position only,
    /// never the offending value (it may be a token).
    #[error("{endpoint}: answer is not the documented JSON: {message}", endpoint = .endpoint.label())]
    Decode { endpoint: Endpoint, message: String },
    /// A 3xx: redirects are never followed (a redirected request would carry the credentials to another
    /// host). `host` is the target's host only (bounded, sanitized), never its path or query.
    #[error("{endpoint}: HTTP {status} redirect to {host} not followed", endpoint = .endpoint.label())]
    Redirect { endpoint: Endpoint, status: u16, host: String },
    /// The answer was larger than its cap (by its `Content-Length`, or while it was read): for
    /// `queryCallDetailRecord` `--cec.max-body-size`, for `tokenByAkSk` a fixed, smaller cap (see
    /// `client::TOKEN_MAX_BODY_BYTES`).
    #[error("{endpoint}: answer exceeds {cap} ({limit} bytes)", endpoint = .endpoint.label(), cap = body_cap(*.endpoint))]
    BodyTooLarge { endpoint: Endpoint, limit: u64 },
    /// `queryCallDetailRecord` refused the request (`retCode` other than "0" and "1"); `code` and
    /// `message` are [`excerpt`]s of what the gateway sent.
    #[error("queryCallDetailRecord taskType {query} [{start}, {end}]: retCode {code}: {message}", start = .window.start_ms, end = .window.end_ms)]
    RetCode { query: TaskQuery, window: Window, code: String, message: String },
}

/// What caps an answer of `endpoint`, in the words of [`ApiError::BodyTooLarge`].
fn body_cap(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Token => "the cap of a token answer",
        Endpoint::QueryCallDetailRecord => "--cec.max-body-size",
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 => " (unauthorized: check the app key and secret)",
        403 => " (forbidden: wrong key or source IP not allowed)",
        404 => " (not found: check --cec.url / --cec.token-url)",
        429 => " (rate limited)",
        _ => "",
    }
}

impl ApiError {
    /// Whether the same request may succeed if tried again soon.
    pub fn retryable(&self) -> bool {
        match self {
            ApiError::Timeout { .. } | ApiError::Transport { .. } | ApiError::Decode { .. } => true,
            ApiError::Status { status, .. } => *status == 429 || *status >= 500,
            ApiError::RetCode { .. } | ApiError::Redirect { .. } | ApiError::BodyTooLarge { .. } => false,
        }
    }

    /// The `error` label this failure is counted under.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::Timeout { .. } => ErrorKind::Timeout,
            ApiError::Transport { .. } => ErrorKind::Transport,
            ApiError::Status { status: 401 | 403, .. } => ErrorKind::Unauthorized,
            ApiError::Status { status: 429, .. } => ErrorKind::RateLimited,
            ApiError::Status { status, .. } if *status >= 500 => ErrorKind::ServerError,
            ApiError::Status { .. } | ApiError::Redirect { .. } => ErrorKind::HttpStatus,
            ApiError::Decode { .. } | ApiError::BodyTooLarge { .. } => ErrorKind::Decode,
            ApiError::RetCode { .. } => ErrorKind::RetCode,
        }
    }

    /// The interface that failed.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            ApiError::Timeout { endpoint, .. }
            | ApiError::Transport { endpoint, .. }
            | ApiError::Status { endpoint, .. }
            | ApiError::Decode { endpoint, .. }
            | ApiError::Redirect { endpoint, .. }
            | ApiError::BodyTooLarge { endpoint, .. } => *endpoint,
            ApiError::RetCode { .. } => Endpoint::QueryCallDetailRecord,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The longest `retMsg` excerpt an error keeps, in characters.
pub const RET_MSG_EXCERPT: usize = 200;

/// At most `max` characters of gateway text, safe to log and show: control and invisible formatting
/// characters (bidirectional overrides, zero-width characters, line separators) become a space, every
/// number of 6 or more digits (a phone number, an account), also when written with spaces, dashes, dots
/// or brackets between its digits or in other scripts' digits, becomes `…`, and a cut is marked with `…`.
/// Reads no more of `s` than it keeps, so an 8 MB `retMsg` costs no more than a short one.
pub fn excerpt(s: &str, max: usize) -> String {
    let mut out = Excerpt { out: String::new(), kept: 0, max };
    // The number being read: its text so far (digits and the separators between them) and its digits.
    let mut number = String::new();
    let mut digits = 0usize;
    // Separators read after the number's last digit: part of the number if another digit follows.
    let mut trailing = String::new();
    for c in s.chars() {
        if out.full() {
            break;
        }
        if c.is_numeric() {
            number.push_str(&trailing);
            trailing.clear();
            number.push(c);
            digits += 1;
            // A number longer than the whole excerpt is masked anyway: stop keeping its text.
            if number.len() > 4 * max + 8 {
                number.truncate(0);
                digits = digits.max(6);
            }
            continue;
        }
        if digits > 0 && matches!(c, ' ' | '-' | '.' | '(' | ')' | '/') && trailing.chars().count() < 2 {
            trailing.push(c);
            continue;
        }
        out.number(&mut number, &mut digits);
        out.push_str(&std::mem::take(&mut trailing));
        out.push(if invisible(c) { ' ' } else { c });
    }
    out.number(&mut number, &mut digits);
    out.push_str(&trailing);
    out.finish()
}

/// An excerpt being built: stops keeping text at `max` characters and remembers it was cut.
struct Excerpt {
    out: String,
    kept: usize,
    max: usize,
}

impl Excerpt {
    /// More than `max` characters were offered: whatever follows is cut.
    fn full(&self) -> bool {
        self.kept > self.max
    }

    fn push(&mut self, c: char) {
        if self.kept < self.max {
            self.out.push(c);
        }
        self.kept += 1;
    }

    fn push_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.push(c));
    }

    /// Writes the number read so far: short ones (an error code, a count) as they are, long ones as `…`.
    fn number(&mut self, number: &mut String, digits: &mut usize) {
        if *digits >= 6 {
            self.push('…');
        } else {
            let n = std::mem::take(number);
            self.push_str(&n);
        }
        number.clear();
        *digits = 0;
    }

    fn finish(mut self) -> String {
        if self.kept > self.max {
            self.out.push('…');
        }
        self.out
    }
}

/// A character that would be invisible or move text around when shown: controls, Unicode's format
/// characters (bidirectional overrides, zero-width joiners and spaces, the BOM, tags), line and paragraph
/// separators, variation selectors and the invisible fillers.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
            | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
            | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_says_whether_to_retry_and_how_it_is_counted() {
        let q = Endpoint::QueryCallDetailRecord;
        let status = |s| ApiError::Status { endpoint: q, status: s, retry_after: None };
        let w = Window { start_ms: 1, end_ms: 2 };
        // (error, retryable, kind, endpoint, message)
        let cases = [
            (status(500), true, ErrorKind::ServerError, q, "query_call_detail_record: HTTP 500"),
            (status(502), true, ErrorKind::ServerError, q, "query_call_detail_record: HTTP 502"),
            (status(429), true, ErrorKind::RateLimited, q, "query_call_detail_record: HTTP 429 (rate limited)"),
            (status(400), false, ErrorKind::HttpStatus, q, "query_call_detail_record: HTTP 400"),
            (
                status(401),
                false,
                ErrorKind::Unauthorized,
                q,
                "query_call_detail_record: HTTP 401 (unauthorized: check the app key and secret)",
            ),
            (
                status(403),
                false,
                ErrorKind::Unauthorized,
                q,
                "query_call_detail_record: HTTP 403 (forbidden: wrong key or source IP not allowed)",
            ),
            (
                status(404),
                false,
                ErrorKind::HttpStatus,
                q,
                "query_call_detail_record: HTTP 404 (not found: check --cec.url / --cec.token-url)",
            ),
            (
                ApiError::Timeout { endpoint: Endpoint::Token, timeout: Duration::from_secs(10) },
                true,
                ErrorKind::Timeout,
                Endpoint::Token,
                "token_by_ak_sk: no answer within 10s",
            ),
            (
                ApiError::Transport { endpoint: Endpoint::Token, message: "connection refused".into() },
                true,
                ErrorKind::Transport,
                Endpoint::Token,
                "token_by_ak_sk: connection refused",
            ),
            (
                ApiError::Decode { endpoint: q, message: "EOF".into() },
                true,
                ErrorKind::Decode,
                q,
                "query_call_detail_record: answer is not the documented JSON: EOF",
            ),
            (
                ApiError::RetCode { query: TaskQuery::ITA, window: w, code: "2".into(), message: "bad time".into() },
                false,
                ErrorKind::RetCode,
                q,
                "queryCallDetailRecord taskType 4 [1, 2]: retCode 2: bad time",
            ),
        ];
        for (e, retryable, kind, endpoint, message) in cases {
            assert_eq!((e.retryable(), e.kind(), e.endpoint()), (retryable, kind, endpoint), "{e}");
            assert_eq!(e.to_string(), message);
        }
    }

    #[test]
    fn a_redirect_and_an_oversized_body_are_final_and_say_little() {
        let q = Endpoint::QueryCallDetailRecord;
        let r = ApiError::Redirect { endpoint: q, status: 308, host: "evil.example".into() };
        assert_eq!((r.retryable(), r.kind()), (false, ErrorKind::HttpStatus));
        assert_eq!(r.to_string(), "query_call_detail_record: HTTP 308 redirect to evil.example not followed");
        let b = ApiError::BodyTooLarge { endpoint: Endpoint::Token, limit: 1024 };
        assert_eq!((b.retryable(), b.kind(), b.endpoint()), (false, ErrorKind::Decode, Endpoint::Token));
        assert_eq!(b.to_string(), "token_by_ak_sk: answer exceeds the cap of a token answer (1024 bytes)");
        let b = ApiError::BodyTooLarge { endpoint: q, limit: 8 << 20 };
        assert_eq!(b.to_string(), "query_call_detail_record: answer exceeds --cec.max-body-size (8388608 bytes)");
    }

    #[test]
    fn an_excerpt_is_bounded_and_masks_controls_and_long_digit_runs() {
        assert_eq!(excerpt("bad time", 200), "bad time");
        assert_eq!(excerpt("line\nbreak\u{7}", 200), "line break ");
        assert_eq!(excerpt("call 13800138000 failed, code 12345", 200), "call … failed, code 12345");
        assert_eq!(excerpt("+8613800138000", 200), "+…");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("ab12", 3), "ab1…");
        let huge = "x".repeat(8 << 20);
        assert_eq!(excerpt(&huge, 200).chars().count(), 201);
        let digits = "1".repeat(8 << 20);
        assert_eq!(excerpt(&digits, 200), "…");
    }

    /// A hostile gateway's retMsg spoofed the log and the page with invisible characters, and a phone
    /// number written with separators or full-width digits went through unmasked.
    #[test]
    fn an_excerpt_blanks_invisible_characters_and_masks_numbers_however_written() {
        assert_eq!(excerpt("a\u{202E}b\u{200B}c\u{2028}d\u{FEFF}e\u{E0041}", 200), "a b c d e ");
        assert_eq!(excerpt("\u{1B}[31mred", 200), " [31mred");
        assert_eq!(excerpt("call 138-0013-8000 failed", 200), "call … failed");
        assert_eq!(excerpt("call (138) 0013 8000.", 200), "call (….");
        assert_eq!(excerpt("call 138 0013 8000 now", 200), "call … now");
        assert_eq!(excerpt("call １３８００１３８０００", 200), "call …");
        assert_eq!(excerpt("number ١٣٨٠٠١٣٨٠٠٠!", 200), "number …!");
        // Short numbers keep their separators; text around them is untouched, Chinese included.
        assert_eq!(excerpt("error 12-34 at 10.5 s", 200), "error 12-34 at 10.5 s");
        assert_eq!(excerpt("呼叫失败，错误码 1001。", 200), "呼叫失败，错误码 1001。");
        assert_eq!(excerpt("2026-11-29 10:00", 200), "…:00");
        // A cut inside a short number still marks the cut.
        assert_eq!(excerpt("abc 12", 5), "abc 1…");
        assert_eq!(excerpt("abc 12", 6), "abc 12");
    }

    #[test]
    fn only_a_status_carries_retry_after() {
        let e = ApiError::Status {
            endpoint: Endpoint::QueryCallDetailRecord,
            status: 429,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        let t = ApiError::Timeout { endpoint: Endpoint::Token, timeout: Duration::from_secs(1) };
        assert_eq!(t.retry_after(), None);
    }

    #[test]
    fn every_kind_and_endpoint_has_a_distinct_label() {
        let kinds: std::collections::BTreeSet<_> = ErrorKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(kinds.len(), ErrorKind::ALL.len());
        assert_eq!(Endpoint::ALL.map(Endpoint::label), ["token_by_ak_sk", "query_call_detail_record"]);
    }
}
