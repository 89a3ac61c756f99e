//! The JSON on the wire: the request body of `queryCallDetailRecord`, the token exchange, and a lenient
//! single-pass parser for response pages.
//!
//! The vendor types times and durations as strings but its own sample returns numbers, and every record
//! field is optional, so each scalar accepts a number or a numeric string, and an empty string or `null`
//! means "absent". A record with a bad value is rejected on its own (with a reason) while the rest of its
//! page still parses: the page is read once, straight into typed records, without an intermediate
//! `serde_json::Value`.
//!
//! Leniency, so that one bad value never blocks every poll: an unusable optional field (wrong type,
//! out of range, a number beyond f64, a string that is not valid UTF-8 or holds a lone surrogate)
//! reads as absent and is named in the record's `invalid`; an unusable `callSerialNo` or `state` rejects
//! that record only; an unusable `total` reads as absent (paging then ends on a short page) and an
//! unusable `retMsg` as empty. A key that appears twice, at the top level or in a record, keeps its
//! first value. Only a body that is not JSON (truncated, a syntax error) or not the documented shape
//! (not an object, `result` or `callInfo` of the wrong type) fails the page. serde_json refuses the
//! out-of-range numbers and unreadable strings of a value it reads, so a page it refuses is read a
//! second time from a copy with exactly those values blanked ([`parse_page`]); a good page costs one
//! pass. That pass is a hand-written one (`fast`) for a page in CEC's usual shape (integers and
//! unescaped strings where values are read): it applies the same record rules and hands every page it
//! is not sure to read exactly as serde_json would to the serde path, from the start.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::record::{CallId, CallRecord, CallState, TaskQuery, TaskType};
use crate::secret::Secret;

/// The body of one `queryCallDetailRecord` request. Every value is sent as a JSON string, as the vendor
/// documents and real clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryRequest {
    /// Window start, epoch ms.
    pub start_ms: i64,
    /// Window end, epoch ms; at most 7 days after `start_ms`.
    pub end_ms: i64,
    /// Record offset (records to skip).
    pub offset: u64,
    /// Page size, 1–100.
    pub limit: u32,
    pub task: TaskQuery,
}

impl QueryRequest {
    /// The JSON body, every value a string.
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"startTime":"{}","endTime":"{}","offset":"{}","limit":"{}","taskType":"{}"}}"#,
            self.start_ms,
            self.end_ms,
            self.offset,
            self.limit,
            self.task.code()
        )
    }
}

/// The body of a `tokenByAkSk` request.
#[derive(serde::Serialize)]
pub struct TokenRequest<'a> {
    pub app_key: &'a str,
    pub app_secret: &'a str,
}

/// A `tokenByAkSk` answer: the token and its lifetime. `Expires` may be a string or a number;
/// `CreateTime` is ignored (the client times the token from when the answer arrived, its own clock).
#[derive(Debug)]
pub struct TokenResponse {
    /// The bearer token: a [`Secret`], so no `Debug` of an answer or error can print it.
    pub access_token: Secret,
    /// Lifetime in seconds, if the gateway said.
    pub expires_s: Option<u64>,
}

/// The longest `AccessToken` accepted, in bytes. The token is sent back in an `Authorization` header
/// with every query: real tokens are some hundred bytes (a JWT a few KiB), and a gateway's 7 MiB
/// "token" would otherwise be resent, 7 MiB a request.
pub const MAX_TOKEN_BYTES: usize = 8 << 10;

/// Parses a `tokenByAkSk` answer. A missing or empty `AccessToken` is an error, and so is one longer
/// than [`MAX_TOKEN_BYTES`] or with a character other than visible ASCII (`!` to `~`): it goes into a
/// header, where a CR/LF or NUL would end it or inject another one. RFC 6750's `b64token` characters
/// are a subset, so every standard bearer token passes. Surrounding whitespace is trimmed first. The
/// error never carries the body (which may hold the token), only the parser's error kind and position
/// or the rule the token broke.
pub fn parse_token(bytes: &[u8]) -> Result<TokenResponse, WireError> {
    #[derive(Deserialize)]
    struct Wire<'a> {
        #[serde(rename = "AccessToken", borrow, default)]
        access_token: Option<Cow<'a, str>>,
        #[serde(rename = "Expires", borrow, default)]
        expires: Scalar<'a>,
    }
    let w: Wire<'_> = serde_json::from_slice(bytes).map_err(|e| WireError::from(&e))?;
    let token = w.access_token.as_deref().map(str::trim).unwrap_or("");
    if token.is_empty() {
        return Err(WireError::NoAccessToken);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(WireError::TokenTooLong { limit: MAX_TOKEN_BYTES });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WireError::TokenNotVisibleAscii);
    }
    let access_token = Secret::new(token);
    Ok(TokenResponse { access_token, expires_s: w.expires.as_u64().ok().flatten() })
}

/// `retCode` of a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetCode {
    /// `"0"`: records follow.
    Success,
    /// `"1"`: no data found; an empty result, not a failure.
    NoData,
    /// Anything else: a request error (`"2"` time format, `"4"` paging format, `"12"` caller, …).
    Error(String),
}

/// One parsed page of `queryCallDetailRecord`.
#[derive(Debug)]
pub struct Page {
    pub ret_code: RetCode,
    pub ret_msg: String,
    /// `total`: matching records in the whole window, if given.
    pub total: Option<u64>,
    /// Each entry of `callInfo`, parsed or rejected on its own.
    pub records: Vec<Result<ParsedRecord, Rejection>>,
}

/// A record with an identity and a state; its task type is attributed later, with the query.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedRecord {
    pub id: CallId,
    pub state: CallState,
    pub record: CallRecord,
    /// Optional fields whose value was unusable and is treated as absent: the call still counts.
    pub invalid: FieldSet,
}

/// An optional record field the exporter reads; the `field` label of
/// `cec_exporter_record_fields_invalid_total` (the vendor's own camelCase name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    TaskType,
    ReasonCode,
    StartTime,
    EndTime,
    AlertingTime,
    TalkingTime,
    ReleaseTime,
    AgentAlertingTime,
    AgentTalkingTime,
    AgentReleaseTime,
    TalkDuration,
    AgentTalkDuration,
}

impl Field {
    pub const ALL: [Field; 12] = [
        Field::TaskType,
        Field::ReasonCode,
        Field::StartTime,
        Field::EndTime,
        Field::AlertingTime,
        Field::TalkingTime,
        Field::ReleaseTime,
        Field::AgentAlertingTime,
        Field::AgentTalkingTime,
        Field::AgentReleaseTime,
        Field::TalkDuration,
        Field::AgentTalkDuration,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::TaskType => "taskType",
            Field::ReasonCode => "reasonCode",
            Field::StartTime => "startTime",
            Field::EndTime => "endTime",
            Field::AlertingTime => "alertingTime",
            Field::TalkingTime => "talkingTime",
            Field::ReleaseTime => "releaseTime",
            Field::AgentAlertingTime => "agentAlertingTime",
            Field::AgentTalkingTime => "agentTalkingTime",
            Field::AgentReleaseTime => "agentReleaseTime",
            Field::TalkDuration => "talkDuration",
            Field::AgentTalkDuration => "agentTalkDuration",
        }
    }
}

/// A set of [`Field`]s, as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(u16);

impl FieldSet {
    pub fn insert(&mut self, f: Field) {
        self.0 |= 1 << f as u16;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Field> {
        Field::ALL.into_iter().filter(move |&f| self.0 & (1 << f as u16) != 0)
    }
}

/// The latest timestamp a record may carry, epoch ms: 9999-12-31T23:59:59.999Z. A later one is an
/// invalid field: no real call has it, and it could not be rendered as a date.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// The longest duration a record may carry, seconds (seven days, CEC's longest query window). A longer,
/// negative or non-finite `talkDuration`/`agentTalkDuration` is an invalid field and reads as absent, so
/// no absurd value (`1e308`) can reach a histogram sum. The exporter also drops, at admission, a
/// duration longer than `--poll.max-call-duration` (see `ingest::ledger`); this fixed bound keeps the
/// parser pure.
pub const MAX_DURATION_S: f64 = 7.0 * 86_400.0;

/// Why a record was skipped; each is a label value of `cec_exporter_records_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The `callInfo` entry is not a JSON object.
    NotAnObject,
    MissingSerialNo,
    /// `callSerialNo` is not a decimal number that fits 64 bits (or came as a float).
    InvalidSerialNo,
    MissingState,
    /// `state` is not 0–3.
    InvalidState,
    /// `startTime` lies outside the window read by more than `--poll.lookback` (checked at admission,
    /// where the window is known, not by [`parse_page`]).
    StartOutOfWindow,
}

impl RejectReason {
    pub const ALL: [RejectReason; 6] = [
        RejectReason::NotAnObject,
        RejectReason::MissingSerialNo,
        RejectReason::InvalidSerialNo,
        RejectReason::MissingState,
        RejectReason::InvalidState,
        RejectReason::StartOutOfWindow,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingSerialNo => "missing_serial_no",
            RejectReason::InvalidSerialNo => "invalid_serial_no",
            RejectReason::MissingState => "missing_state",
            RejectReason::InvalidState => "invalid_state",
            RejectReason::StartOutOfWindow => "start_out_of_window",
        }
    }
}

/// A skipped record (one that cannot be counted: no identity or no state): the reason, the offending
/// field, and the serial number when it was readable (for the log line; never a label).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub field: Option<&'static str>,
    pub serial: Option<CallId>,
}

/// Parses one response page. Fails only when the body is not the documented JSON shape at all
/// (truncated, not JSON, `callInfo` not an array); a bad record is a [`Rejection`] in `records`, a bad
/// optional field an entry of its record's `invalid` (see the module's header for every rule).
pub fn parse_page(bytes: &[u8]) -> Result<Page, WireError> {
    parse_page_at_most(bytes, usize::MAX)
}

thread_local! {
    /// How many `callInfo` entries the page being parsed on this thread keeps: set by
    /// [`parse_page_at_most`] for the duration of one synchronous `serde_json` call, read by
    /// `Records`. (A seed through the derived page structs would need them all written by hand.)
    static MAX_ENTRIES: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Like [`parse_page`], keeping at most `max_entries` entries of `callInfo` (the page size asked
/// for): the rest are skipped as they are read, never held, so a gateway answering more than asked
/// (an 8 MiB body holds some 290 000 tiny records, 53 MB parsed) costs no more memory than a full
/// page. The entries beyond are the next offset's; a client that advances by what it kept skips none.
pub fn parse_page_at_most(bytes: &[u8], max_entries: usize) -> Result<Page, WireError> {
    // Nearly every page CEC sends takes the fast path; the serde path reads the rest (and repairs).
    if let Some(page) = fast::page(bytes, max_entries) {
        return Ok(page);
    }
    parse_page_serde(bytes, max_entries)
}

/// [`parse_page_at_most`] through serde_json alone: every page the fast path leaves, and the
/// reference the fast path is tested against.
fn parse_page_serde(bytes: &[u8], max_entries: usize) -> Result<Page, WireError> {
    /// Puts the previous limit back however the parse ends.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            MAX_ENTRIES.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(MAX_ENTRIES.with(|m| m.replace(max_entries)));
    parse_page_unbounded(bytes)
}

fn parse_page_unbounded(bytes: &[u8]) -> Result<Page, WireError> {
    // The fast path reads the page as it came. Only when it fails (rare: a hostile or broken
    // gateway) is the page repaired and read once more, so a well-formed page costs one pass.
    let first = match serde_json::from_slice::<PageWire<'_>>(bytes) {
        Ok(w) => return Ok(w.into_page()),
        Err(e) => e,
    };
    match repair(bytes) {
        Some(repaired) => {
            serde_json::from_slice::<PageWire<'_>>(&repaired).map(|w| w.into_page()).map_err(|e| WireError::from(&e))
        }
        None => Err(WireError::from(&first)),
    }
}

/// The top level of a page as read: `retCode`, `retMsg` and `result`, each the first time it
/// appears (a repeated key is skipped, as inside records).
struct PageWire<'a> {
    ret_code: Scalar<'a>,
    ret_msg: Scalar<'a>,
    total: Scalar<'a>,
    records: Vec<Result<ParsedRecord, Rejection>>,
}

impl PageWire<'_> {
    fn into_page(self) -> Page {
        let ret_code = match &self.ret_code {
            Scalar::Str(s) => ret_code(s.trim()),
            Scalar::U(n) => ret_code(&n.to_string()),
            Scalar::I(n) => ret_code(&n.to_string()),
            _ => RetCode::Error(String::new()),
        };
        // `retMsg` is only ever shown as an excerpt: anything but a string reads as empty.
        let ret_msg = match self.ret_msg {
            Scalar::Str(s) => s.into_owned(),
            _ => String::new(),
        };
        // An unusable `total` reads as absent: paging then ends on a short page.
        let total = self.total.as_u64().ok().flatten();
        Page { ret_code, ret_msg, total, records: self.records }
    }
}

/// The top-level keys a page is read by; everything else is skipped unread.
#[derive(Deserialize)]
#[serde(field_identifier)]
enum TopKey {
    #[serde(rename = "retCode")]
    RetCode,
    #[serde(rename = "retMsg")]
    RetMsg,
    #[serde(rename = "result")]
    Result,
    #[serde(rename = "total")]
    Total,
    #[serde(rename = "callInfo")]
    CallInfo,
    #[serde(other)]
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for PageWire<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = PageWire<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a page object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut ret_code, mut ret_msg, mut result) = (None, None, None);
                while let Some(key) = map.next_key::<TopKey>()? {
                    match key {
                        TopKey::RetCode if ret_code.is_none() => ret_code = Some(map.next_value()?),
                        TopKey::RetMsg if ret_msg.is_none() => ret_msg = Some(map.next_value()?),
                        TopKey::Result if result.is_none() => result = Some(map.next_value::<ResultWire<'a>>()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let result = result.unwrap_or_default();
                Ok(PageWire {
                    ret_code: ret_code.unwrap_or_default(),
                    ret_msg: ret_msg.unwrap_or_default(),
                    total: result.total.unwrap_or_default(),
                    records: result.records.map(|r| r.0).unwrap_or_default(),
                })
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// `result`: `total` and `callInfo`, first occurrences; `null` is an empty result. Anything else
/// there (a string, an array) is not the documented shape and fails the page.
#[derive(Default)]
struct ResultWire<'a> {
    total: Option<Scalar<'a>>,
    records: Option<Records>,
}

impl<'de: 'a, 'a> Deserialize<'de> for ResultWire<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = ResultWire<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a result object")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(ResultWire::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = ResultWire::default();
                let mut seen_records = false;
                while let Some(key) = map.next_key::<TopKey>()? {
                    match key {
                        TopKey::Total if out.total.is_none() => out.total = Some(map.next_value()?),
                        TopKey::CallInfo if !seen_records => {
                            seen_records = true;
                            out.records = map.next_value::<Option<Records>>()?;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A copy of `bytes` in which every value serde_json refuses although the JSON grammar allows it
/// (a number beyond ±1e300, which no field the exporter reads can hold, `1e400` or a 5000-digit
/// integer among them; a string with invalid UTF-8 or a lone surrogate escape) is replaced by an
/// empty array of the same length (`[    ]`), which every field reads as unusable: an optional field
/// as invalid, `total` as absent, `retMsg` as empty, `callSerialNo`/`state` as a rejected record. A
/// key with such a string has its text replaced by `?`s (no known key matches it, so it is skipped).
/// Lengths are kept, so an error in the repaired copy has the position it has in `bytes`. `None` when
/// there was nothing to repair. A scan of the tokens only: the structure is left to serde_json, and
/// anything not grammatical (a broken number, a control character in a string) is left as it was.
fn repair(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    // For each open container whether it is an object; and whether the next string is a key.
    let mut objects: Vec<bool> = Vec::new();
    let mut key_next = false;
    let mut i = 0;
    let blank = |out: &mut Option<Vec<u8>>, from: usize, to: usize| {
        let o = out.get_or_insert_with(|| bytes.to_vec());
        o[from] = b'[';
        o[from + 1..to - 1].fill(b' ');
        o[to - 1] = b']';
    };
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                objects.push(true);
                key_next = true;
                i += 1;
            }
            b'[' => {
                objects.push(false);
                key_next = false;
                i += 1;
            }
            b'}' | b']' => {
                objects.pop();
                i += 1;
            }
            b',' => {
                key_next = objects.last() == Some(&true);
                i += 1;
            }
            b':' => {
                key_next = false;
                i += 1;
            }
            b'"' => {
                let Some((end, usable)) = string_end(bytes, i) else { break };
                if !usable {
                    if key_next {
                        out.get_or_insert_with(|| bytes.to_vec())[i + 1..end - 1].fill(b'?');
                    } else {
                        blank(&mut out, i, end);
                    }
                }
                i = end;
            }
            b'-' | b'0'..=b'9' => {
                let end = i + bytes[i..]
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .unwrap_or(bytes.len() - i);
                if number_out_of_range(&bytes[i..end]) {
                    blank(&mut out, i, end);
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// Where the string starting at `bytes[start]` (a `"`) ends (one past its closing quote), and
/// whether serde_json can read it as text (valid UTF-8, no lone surrogate escape). `None` when it
/// is not a grammatical string (no end, a control character, a bad escape): left for serde_json
/// to report.
fn string_end(bytes: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start + 1;
    let mut utf8_from = i;
    let mut usable = true;
    // A high surrogate escape waiting for its low half.
    let mut high = false;
    loop {
        let b = *bytes.get(i)?;
        match b {
            b'"' => {
                usable &= !high && std::str::from_utf8(&bytes[utf8_from..i]).is_ok();
                return Some((i + 1, usable));
            }
            b'\\' => {
                usable &= std::str::from_utf8(&bytes[utf8_from..i]).is_ok();
                let e = *bytes.get(i + 1)?;
                if e == b'u' {
                    let hex = std::str::from_utf8(bytes.get(i + 2..i + 6)?).ok()?;
                    let unit = u16::from_str_radix(hex, 16).ok()?;
                    let low = (0xDC00..=0xDFFF).contains(&unit);
                    usable &= high == low;
                    high = (0xD800..=0xDBFF).contains(&unit);
                    i += 6;
                } else if matches!(e, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') {
                    usable &= !high;
                    high = false;
                    i += 2;
                } else {
                    return None;
                }
                utf8_from = i;
            }
            0..=0x1F => return None,
            _ => {
                if high {
                    usable = false;
                    high = false;
                }
                i += 1;
            }
        }
    }
}

/// Whether `token` is a grammatical JSON number whose value is beyond ±1e300 (serde_json refuses
/// those beyond the f64 range; no field the exporter reads holds one in range either).
fn number_out_of_range(token: &[u8]) -> bool {
    // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    fn digits(t: &[u8], i: &mut usize) -> usize {
        let from = *i;
        while t.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - from
    }
    let mut i = usize::from(token.first() == Some(&b'-'));
    let int = digits(token, &mut i);
    if int == 0 || (int > 1 && token[i - int] == b'0') {
        return false;
    }
    if token.get(i) == Some(&b'.') {
        i += 1;
        if digits(token, &mut i) == 0 {
            return false;
        }
    }
    if matches!(token.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(token.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(token, &mut i) == 0 {
            return false;
        }
    }
    if i != token.len() {
        return false;
    }
    // Grammatical, hence ASCII and never NaN; Rust's parser reads any length and gives infinity
    // past f64.
    let f: f64 = std::str::from_utf8(token).ok().and_then(|t| t.parse().ok()).unwrap_or(f64::INFINITY);
    f.abs() >= 1e300
}

/// What kind of JSON failure a [`WireError::Json`] is: serde_json's category, nothing of its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// Not JSON at this position.
    Syntax,
    /// Well-formed JSON, but a value of the wrong type or shape for the field.
    Data,
    /// The body ended early.
    Eof,
    /// Reading the bytes failed.
    Io,
}

impl JsonErrorKind {
    /// The words the error's text uses for this kind.
    pub fn describe(self) -> &'static str {
        match self {
            JsonErrorKind::Syntax => "syntax error",
            JsonErrorKind::Data => "unexpected value",
            JsonErrorKind::Eof => "truncated",
            JsonErrorKind::Io => "read error",
        }
    }
}

impl fmt::Display for JsonErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Why a page or token answer could not be read. It carries only the error's kind and position:
/// never serde_json's message, which quotes the offending value (`invalid type: string "…"`), and that
/// value may be a token or a phone number. No field path either: serde_json cannot give one without
/// keeping the value around.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body is not the documented JSON shape.
    #[error("{kind} at line {line} column {column}")]
    Json { kind: JsonErrorKind, line: usize, column: usize },
    /// A token answer without a usable `AccessToken`.
    #[error("no AccessToken in the answer")]
    NoAccessToken,
    /// An `AccessToken` longer than [`MAX_TOKEN_BYTES`].
    #[error("AccessToken longer than {limit} bytes")]
    TokenTooLong { limit: usize },
    /// An `AccessToken` with a character other than visible ASCII (a space, a control character such
    /// as CR, LF or NUL, or a non-ASCII one).
    #[error("AccessToken has a character other than visible ASCII")]
    TokenNotVisibleAscii,
}

impl From<&serde_json::Error> for WireError {
    fn from(e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let kind = match e.classify() {
            Category::Io => JsonErrorKind::Io,
            Category::Syntax => JsonErrorKind::Syntax,
            Category::Data => JsonErrorKind::Data,
            Category::Eof => JsonErrorKind::Eof,
        };
        WireError::Json { kind, line: e.line(), column: e.column() }
    }
}

/// A JSON error as its kind and position (the text of [`WireError::Json`]), never serde_json's message.
pub fn json_error(e: &serde_json::Error) -> String {
    WireError::from(e).to_string()
}

fn ret_code(s: &str) -> RetCode {
    match s {
        "0" => RetCode::Success,
        "1" => RetCode::NoData,
        other => RetCode::Error(other.to_owned()),
    }
}

/// A JSON scalar as it came: number, string, or something else. `Absent` is `null` or a missing field.
#[derive(Debug, Default)]
enum Scalar<'a> {
    #[default]
    Absent,
    U(u64),
    I(i64),
    F(f64),
    Str(Cow<'a, str>),
    /// A bool, object or array where a scalar belongs.
    Wrong,
}

/// A value that could not be used.
struct Bad;

/// The value of `s` when it is 1 to 19 ASCII digits and nothing else (always within `u64`): what CEC
/// sends for nearly every number it quotes, read in one pass. Anything else (`None`) takes the
/// general path, with its trimming, overflow check and float fallback.
fn short_digits(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &d in b {
        let d = d.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    Some(n)
}

impl Scalar<'_> {
    /// A calling number: a string (or a number, as its digits) of 1 to 32 characters once trimmed.
    fn as_caller(&self) -> Option<crate::cec::record::CallerKey> {
        use crate::cec::record::CallerKey;
        match self {
            Scalar::Str(s) => {
                let t = s.trim();
                (!t.is_empty() && t.chars().count() <= 32).then(|| CallerKey::of(t))
            }
            Scalar::U(n) => Some(CallerKey::of(itoa::Buffer::new().format(*n))),
            _ => None,
        }
    }

    /// A non-negative integer: a JSON integer, an integral float, or a decimal string. Empty string is
    /// absent.
    fn as_u64(&self) -> Result<Option<u64>, Bad> {
        match self {
            Scalar::Absent => Ok(None),
            Scalar::U(n) => Ok(Some(*n)),
            Scalar::I(_) | Scalar::Wrong => Err(Bad),
            Scalar::F(f) => {
                if f.fract() == 0.0 && *f >= 0.0 && *f < 9.007_199_254_740_992e15 {
                    Ok(Some(*f as u64))
                } else {
                    Err(Bad)
                }
            }
            Scalar::Str(s) => {
                if let Some(n) = short_digits(s) {
                    return Ok(Some(n));
                }
                let s = s.trim();
                if s.is_empty() {
                    Ok(None)
                } else if s.bytes().all(|b| b.is_ascii_digit()) {
                    s.parse().map(Some).map_err(|_| Bad)
                } else {
                    // "26.0" and the like: accepted when integral.
                    Scalar::F(s.parse().map_err(|_| Bad)?).as_u64()
                }
            }
        }
    }

    /// An epoch-ms timestamp: a non-negative integer no later than [`MAX_TIME_MS`] (the end of year
    /// 9999), the last instant a timestamp can be rendered as a date.
    fn as_time(&self) -> Result<Option<i64>, Bad> {
        match self.as_u64()? {
            Some(n) if n <= MAX_TIME_MS as u64 => Ok(Some(n as i64)),
            Some(_) => Err(Bad),
            None => Ok(None),
        }
    }

    /// A duration in seconds: a finite number from 0 to [`MAX_DURATION_S`].
    fn as_seconds(&self) -> Result<Option<f64>, Bad> {
        let f = match self {
            Scalar::Absent => return Ok(None),
            Scalar::U(n) => *n as f64,
            Scalar::I(_) | Scalar::Wrong => return Err(Bad),
            Scalar::F(f) => *f,
            Scalar::Str(s) => {
                let s = s.trim();
                if s.is_empty() {
                    return Ok(None);
                }
                s.parse::<f64>().map_err(|_| Bad)?
            }
        };
        if f.is_finite() && (0.0..=MAX_DURATION_S).contains(&f) {
            Ok(Some(f))
        } else {
            Err(Bad)
        }
    }

    /// `callSerialNo`: a decimal string (or integer) that fits `u64`, never through a float.
    fn as_serial(&self) -> Result<Option<CallId>, Bad> {
        match self {
            Scalar::Absent => Ok(None),
            Scalar::U(n) => Ok(Some(CallId(*n))),
            Scalar::Str(s) => {
                if let Some(n) = short_digits(s) {
                    return Ok(Some(CallId(n)));
                }
                let s = s.trim();
                if s.is_empty() {
                    Ok(None)
                } else if s.bytes().all(|b| b.is_ascii_digit()) {
                    s.parse().map(|n| Some(CallId(n))).map_err(|_| Bad)
                } else {
                    Err(Bad)
                }
            }
            Scalar::I(_) | Scalar::F(_) | Scalar::Wrong => Err(Bad),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(std::marker::PhantomData))
    }
}

struct ScalarVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
    type Value = Scalar<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a string")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Absent)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Absent)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Wrong)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(if v >= 0 { Scalar::U(v as u64) } else { Scalar::I(v) })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Wrong)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Wrong)
    }
}

/// `callInfo`: an array of entries, each parsed or rejected on its own; `null` is an empty list.
struct Records(Vec<Result<ParsedRecord, Rejection>>);

impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Records;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of call records")
            }
            fn visit_unit<E>(self) -> Result<Records, E> {
                Ok(Records(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Records, A::Error> {
                let max = MAX_ENTRIES.with(std::cell::Cell::get);
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024).min(max));
                while out.len() < max {
                    match seq.next_element_seed(RecordSeed)? {
                        Some(r) => out.push(r),
                        None => return Ok(Records(out)),
                    }
                }
                // Past the limit: read (the JSON must still be well-formed), keep nothing.
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Records(out))
            }
        }
        d.deserialize_any(V)
    }
}

struct RecordSeed;

impl<'de> DeserializeSeed<'de> for RecordSeed {
    type Value = Result<ParsedRecord, Rejection>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(RecordVisitor)
    }
}

/// The keys the exporter reads; phone numbers and `callData` fall into `Other` and are never kept.
#[derive(Clone, Copy)]
enum Key {
    Serial,
    State,
    TaskType,
    ReasonCode,
    Start,
    End,
    Alerting,
    Talking,
    Release,
    AgentAlerting,
    AgentTalking,
    AgentRelease,
    Talk,
    AgentTalk,
    Caller,
    Other,
}

impl Key {
    /// The key named by `b` (the key's text, escapes resolved); anything else is `Other`.
    fn from_bytes(b: &[u8]) -> Key {
        match b {
            b"callSerialNo" => Key::Serial,
            b"state" => Key::State,
            b"taskType" => Key::TaskType,
            b"reasonCode" => Key::ReasonCode,
            b"startTime" => Key::Start,
            b"endTime" => Key::End,
            b"alertingTime" => Key::Alerting,
            b"talkingTime" => Key::Talking,
            b"releaseTime" => Key::Release,
            b"agentAlertingTime" => Key::AgentAlerting,
            b"agentTalkingTime" => Key::AgentTalking,
            b"agentReleaseTime" => Key::AgentRelease,
            b"talkDuration" => Key::Talk,
            b"agentTalkDuration" => Key::AgentTalk,
            b"caller" => Key::Caller,
            _ => Key::Other,
        }
    }
}

impl<'de> Deserialize<'de> for Key {
    /// Read as bytes: a record has some 18 keys, and comparing their bytes with the known names needs
    /// no UTF-8 check first (with a derived identifier serde_json validates every key as `str`, a
    /// tenth of the parse). A key that is not valid UTF-8 matches no name, so it is `Other` and
    /// skipped, as the repair pass would have made it.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Key, E> {
                Ok(Key::from_bytes(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key::from_bytes(v.as_bytes()))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// One record as its keys and values arrive, in the order they come: the rules of [`parse_page`] for a
/// record (which keys are read, which occurrence of a repeated key counts, what makes a value
/// unusable or the record rejected) in one place, for the serde visitor and the fast path alike.
struct RecordBuilder {
    rec: CallRecord,
    serial: Result<Option<CallId>, Bad>,
    state: Result<Option<u64>, Bad>,
    invalid: FieldSet,
    /// Keys already read, as bits of [`Key`]: a key that repeats keeps its first value (as at the
    /// top level of a page), and the repeat is skipped unread, valid or not.
    seen: u32,
}

impl RecordBuilder {
    fn new() -> Self {
        RecordBuilder {
            rec: CallRecord::default(),
            serial: Ok(None),
            state: Ok(None),
            invalid: FieldSet::default(),
            seen: 0,
        }
    }

    /// Whether the value of `key` is to be read: a key the exporter reads, the first time it comes.
    /// Marks it read.
    fn wants(&mut self, key: Key) -> bool {
        if let Key::Other = key {
            return false;
        }
        let bit = 1u32 << key as u32;
        let first = self.seen & bit == 0;
        self.seen |= bit;
        first
    }

    /// Takes the value of `key` (one [`RecordBuilder::wants`] said to read).
    fn set(&mut self, key: Key, v: Scalar<'_>) {
        fn take<T>(r: Result<Option<T>, Bad>, slot: &mut Option<T>, invalid: &mut FieldSet, f: Field) {
            match r {
                Ok(v) => *slot = v,
                Err(Bad) => invalid.insert(f),
            }
        }
        let rec = &mut self.rec;
        let b = &mut self.invalid;
        match key {
            Key::Serial => self.serial = v.as_serial(),
            Key::State => self.state = v.as_u64(),
            Key::TaskType => match v.as_u64() {
                // 0 ("all types") on a record says nothing about the call: treated as absent.
                Ok(Some(0)) | Ok(None) => rec.task_type = None,
                Ok(Some(n)) => match TaskType::from_code(n) {
                    Some(t) => rec.task_type = Some(t),
                    None => b.insert(Field::TaskType),
                },
                Err(Bad) => b.insert(Field::TaskType),
            },
            Key::ReasonCode => match v.as_u64().map(|n| n.map(u16::try_from).transpose()) {
                Ok(Ok(n)) => rec.reason_code = n,
                _ => b.insert(Field::ReasonCode),
            },
            Key::Start => take(v.as_time(), &mut rec.start_ms, b, Field::StartTime),
            Key::End => take(v.as_time(), &mut rec.end_ms, b, Field::EndTime),
            Key::Alerting => take(v.as_time(), &mut rec.alerting_ms, b, Field::AlertingTime),
            Key::Talking => take(v.as_time(), &mut rec.talking_ms, b, Field::TalkingTime),
            Key::Release => take(v.as_time(), &mut rec.release_ms, b, Field::ReleaseTime),
            Key::AgentAlerting => take(v.as_time(), &mut rec.agent_alerting_ms, b, Field::AgentAlertingTime),
            Key::AgentTalking => take(v.as_time(), &mut rec.agent_talking_ms, b, Field::AgentTalkingTime),
            Key::AgentRelease => take(v.as_time(), &mut rec.agent_release_ms, b, Field::AgentReleaseTime),
            Key::Talk => take(v.as_seconds(), &mut rec.talk_s, b, Field::TalkDuration),
            Key::AgentTalk => take(v.as_seconds(), &mut rec.agent_talk_s, b, Field::AgentTalkDuration),
            // Only ever compared with a tenant's own list: an unusable one reads as absent (the call
            // counts under caller="other"), not worth a counter of its own.
            Key::Caller => rec.caller = v.as_caller(),
            Key::Other => {}
        }
    }

    /// The record, or why it is rejected.
    fn finish(self) -> Result<ParsedRecord, Rejection> {
        let reject = |reason, field, serial| Err(Rejection { reason, field, serial });
        let id = match self.serial {
            Ok(Some(id)) => id,
            Ok(None) => return reject(RejectReason::MissingSerialNo, Some("callSerialNo"), None),
            Err(Bad) => return reject(RejectReason::InvalidSerialNo, Some("callSerialNo"), None),
        };
        let state = match self.state {
            Ok(Some(n)) => match CallState::from_code(n) {
                Some(s) => s,
                None => return reject(RejectReason::InvalidState, Some("state"), Some(id)),
            },
            Ok(None) => return reject(RejectReason::MissingState, Some("state"), Some(id)),
            Err(Bad) => return reject(RejectReason::InvalidState, Some("state"), Some(id)),
        };
        Ok(ParsedRecord { id, state, record: self.rec, invalid: self.invalid })
    }
}

struct RecordVisitor;

impl RecordVisitor {
    fn not_an_object<E>() -> Result<Result<ParsedRecord, Rejection>, E> {
        Ok(Err(Rejection { reason: RejectReason::NotAnObject, field: None, serial: None }))
    }
}

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Result<ParsedRecord, Rejection>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a call record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut b = RecordBuilder::new();
        while let Some(key) = map.next_key::<Key>()? {
            if b.wants(key) {
                b.set(key, map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(b.finish())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Self::not_an_object()
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Self::not_an_object()
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Self::not_an_object()
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Self::not_an_object()
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Self::not_an_object()
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Self::not_an_object()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Self::not_an_object()
    }
}

/// The fast path of [`parse_page_at_most`]: one hand-written pass over a page in the shape CEC sends
/// (integers, and strings without escapes, for the values the exporter reads), with the same
/// [`RecordBuilder`] rules as the serde path. serde_json spends most of a page's parse on what this
/// path needs not do: checking the UTF-8 of every key and quoted value it hands over as `&str`, and
/// going through `deserialize_any` for each scalar.
///
/// It answers only where it is sure to read exactly what the serde path reads, and gives up (`None`)
/// at anything else, which the serde path then reads from the start, errors and repairs included:
/// any escape in a key or in a value it reads, a non-ASCII key, a negative, fractional or exponent
/// number or one of more than 19 digits where a value is read, an object or array where a scalar
/// belongs, a `callInfo` entry that is not an object, a `callInfo` or `result` of the wrong type,
/// nesting deeper than [`fast::MAX_DEPTH`], and any grammar error. Values it skips (keys the
/// exporter does not read, repeats, entries past the limit) are checked for grammar only, as
/// serde_json's `IgnoredAny` checks them.
mod fast {
    use std::borrow::Cow;

    use super::{Key, Page, PageWire, RecordBuilder, Scalar};

    /// Containers nested deeper than this in a skipped value send the page to the serde path (which
    /// has its own recursion limit, 128).
    pub(super) const MAX_DEPTH: u32 = 64;

    /// Bytes that end a fast scan of a key or a string read as a value: the closing quote, and what
    /// only the serde path reads (an escape, a control character, which is a grammar error, and
    /// non-ASCII text, whose UTF-8 serde_json checks). A string read as a value may hold non-ASCII
    /// text (checked with `from_utf8` once its end is found): its scan stops at ASCII bytes only.
    static STOP: [bool; 256] = {
        let mut t = [false; 256];
        let mut c = 0;
        while c < 256 {
            t[c] = c < 0x20 || c >= 0x80 || c == b'"' as usize || c == b'\\' as usize;
            c += 1;
        }
        t
    };

    /// The page, or `None` where the serde path must read it.
    pub(super) fn page(bytes: &[u8], max_entries: usize) -> Option<Page> {
        let mut p = Cursor { b: bytes, i: 0 };
        let (mut ret_code, mut ret_msg, mut result) = (None, None, None);
        p.object(|p, key| {
            match key {
                b"retCode" if ret_code.is_none() => ret_code = Some(p.scalar(false)?),
                b"retMsg" if ret_msg.is_none() => ret_msg = Some(p.scalar(false)?),
                b"result" if result.is_none() => result = Some(p.result(max_entries)?),
                _ => p.skip(0)?,
            }
            Some(())
        })?;
        p.ws();
        if p.i != bytes.len() {
            return None;
        }
        let (total, records) = result.unwrap_or_default();
        let wire = PageWire {
            ret_code: ret_code.unwrap_or_default(),
            ret_msg: ret_msg.unwrap_or_default(),
            total: total.unwrap_or_default(),
            records,
        };
        Some(wire.into_page())
    }

    type Entries = Vec<Result<super::ParsedRecord, super::Rejection>>;

    struct Cursor<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl<'a> Cursor<'a> {
        /// Skips JSON whitespace (the four bytes serde_json skips).
        fn ws(&mut self) {
            while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
                self.i += 1;
            }
        }

        /// The next byte after whitespace, not consumed.
        fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.b.get(self.i).copied()
        }

        /// Consumes `lit` exactly.
        fn lit(&mut self, lit: &[u8]) -> Option<()> {
            if self.b.get(self.i..self.i + lit.len())? == lit {
                self.i += lit.len();
                Some(())
            } else {
                None
            }
        }

        /// An object: `f` is called with each key (at its value, which it must consume).
        fn object(&mut self, mut f: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
            if self.peek()? != b'{' {
                return None;
            }
            self.i += 1;
            if self.peek()? == b'}' {
                self.i += 1;
                return Some(());
            }
            loop {
                let key = self.key()?;
                if self.peek()? != b':' {
                    return None;
                }
                self.i += 1;
                self.ws();
                f(self, key)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        return Some(());
                    }
                    _ => return None,
                }
            }
        }

        /// A key: printable ASCII without escapes (anything else takes the serde path, which reads
        /// top-level keys as checked UTF-8 and resolves escapes).
        fn key(&mut self) -> Option<&'a [u8]> {
            if self.peek()? != b'"' {
                return None;
            }
            let from = self.i + 1;
            let end = from + self.b[from..].iter().position(|&c| STOP[usize::from(c)])?;
            if self.b[end] != b'"' {
                return None;
            }
            self.i = end + 1;
            Some(&self.b[from..end])
        }

        /// `result`: `null`, or an object whose first `total` and first `callInfo` count.
        fn result(&mut self, max_entries: usize) -> Option<(Option<Scalar<'a>>, Entries)> {
            if self.peek()? == b'n' {
                self.lit(b"null")?;
                return Some((None, Vec::new()));
            }
            let (mut total, mut records, mut seen_records) = (None, Vec::new(), false);
            self.object(|p, key| {
                match key {
                    b"total" if total.is_none() => total = Some(p.scalar(false)?),
                    b"callInfo" if !seen_records => {
                        seen_records = true;
                        if p.peek()? == b'n' {
                            p.lit(b"null")?;
                        } else {
                            records = p.records(max_entries)?;
                        }
                    }
                    _ => p.skip(0)?,
                }
                Some(())
            })?;
            Some((total, records))
        }

        /// `callInfo`: an array of record objects, the first `max_entries` kept, the rest skipped.
        fn records(&mut self, max_entries: usize) -> Option<Entries> {
            if self.peek()? != b'[' {
                return None;
            }
            self.i += 1;
            let mut out = Vec::with_capacity(max_entries.min(128));
            if self.peek()? == b']' {
                self.i += 1;
                return Some(out);
            }
            loop {
                if out.len() < max_entries {
                    out.push(self.record()?);
                } else {
                    self.skip(0)?;
                }
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        return Some(out);
                    }
                    _ => return None,
                }
            }
        }

        /// One `callInfo` entry, which must be an object here.
        fn record(&mut self) -> Option<Result<super::ParsedRecord, super::Rejection>> {
            let mut b = RecordBuilder::new();
            self.object(|p, key| {
                let key = Key::from_bytes(key);
                if b.wants(key) {
                    // A calling number is text: "0123" must not become 123.
                    b.set(key, p.scalar(!matches!(key, Key::Caller))?);
                } else {
                    p.skip(0)?;
                }
                Some(())
            })?;
            Some(b.finish())
        }

        /// A scalar as the serde path's `Scalar` reads it. With `digits_as_number` (record fields
        /// but `caller`), a quoted string of 1 to 19 ASCII digits is read as the number it spells, which
        /// those fields read exactly as they read the string (`as_u64`, `as_serial`, `as_time` and
        /// `as_seconds` agree on both), without a UTF-8 check; `retCode` and `retMsg` need the text.
        fn scalar(&mut self, digits_as_number: bool) -> Option<Scalar<'a>> {
            match self.peek()? {
                b'"' => {
                    let from = self.i + 1;
                    // The leading digits and their value in one pass (wrapping: a run longer than 19
                    // digits is not read as a number).
                    let (end, n) = self.digits(from);
                    if digits_as_number && (1..=19).contains(&(end - from)) && self.b.get(end) == Some(&b'"') {
                        self.i = end + 1;
                        return Some(Scalar::U(n));
                    }
                    let close = end + self.b[end..].iter().position(|&c| c < 0x80 && STOP[usize::from(c)])?;
                    if self.b[close] != b'"' {
                        return None;
                    }
                    self.i = close + 1;
                    // serde_json checks the UTF-8 of a string it hands over as `&str`, and the serde
                    // path repairs what fails: that page is its to read.
                    Some(Scalar::Str(Cow::Borrowed(std::str::from_utf8(&self.b[from..close]).ok()?)))
                }
                b'0'..=b'9' => {
                    let from = self.i;
                    let (end, n) = self.digits(from);
                    // A leading zero before more digits is a grammar error; a fraction or an exponent
                    // is a float, and more than 19 digits may overflow: the serde path's to read.
                    if end - from > 19 || (end - from > 1 && self.b[from] == b'0') {
                        return None;
                    }
                    if let Some(b'.' | b'e' | b'E') = self.b.get(end) {
                        return None;
                    }
                    self.i = end;
                    Some(Scalar::U(n))
                }
                b'n' => self.lit(b"null").map(|()| Scalar::Absent),
                b't' => self.lit(b"true").map(|()| Scalar::Wrong),
                b'f' => self.lit(b"false").map(|()| Scalar::Wrong),
                // Negative numbers, containers (whose keys serde_json reads as checked UTF-8 there)
                // and anything not JSON: the serde path's.
                _ => None,
            }
        }

        /// Where the run of ASCII digits starting at `from` ends, and its value (wrapped past 19
        /// digits: the callers read no longer run as a number).
        fn digits(&self, from: usize) -> (usize, u64) {
            let (mut i, mut n) = (from, 0u64);
            while let Some(&c) = self.b.get(i) {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    break;
                }
                n = n.wrapping_mul(10).wrapping_add(u64::from(d));
                i += 1;
            }
            (i, n)
        }

        /// Skips one value, checking its grammar as serde_json's `IgnoredAny` does (string
        /// contents are not checked for UTF-8 there either).
        fn skip(&mut self, depth: u32) -> Option<()> {
            match self.peek()? {
                b'"' => {
                    let mut j = self.i + 1;
                    loop {
                        j += self.b.get(j..)?.iter().position(|&c| c < 0x80 && STOP[usize::from(c)])?;
                        match self.b[j] {
                            b'"' => break,
                            b'\\' => match *self.b.get(j + 1)? {
                                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                                b'u' => {
                                    if !self.b.get(j + 2..j + 6)?.iter().all(u8::is_ascii_hexdigit) {
                                        return None;
                                    }
                                    j += 6;
                                }
                                _ => return None,
                            },
                            // A control character: a grammar error.
                            _ => return None,
                        }
                    }
                    self.i = j + 1;
                    Some(())
                }
                b'-' | b'0'..=b'9' => self.number(),
                b'n' => self.lit(b"null"),
                b't' => self.lit(b"true"),
                b'f' => self.lit(b"false"),
                b'[' if depth < MAX_DEPTH => {
                    self.i += 1;
                    if self.peek()? == b']' {
                        self.i += 1;
                        return Some(());
                    }
                    loop {
                        self.skip(depth + 1)?;
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                return Some(());
                            }
                            _ => return None,
                        }
                    }
                }
                b'{' if depth < MAX_DEPTH => {
                    // Keys of a skipped object are skipped as strings (no UTF-8 check), as
                    // serde_json's `IgnoredAny` does.
                    self.i += 1;
                    if self.peek()? == b'}' {
                        self.i += 1;
                        return Some(());
                    }
                    loop {
                        if self.peek()? != b'"' {
                            return None;
                        }
                        self.skip(depth + 1)?;
                        if self.peek()? != b':' {
                            return None;
                        }
                        self.i += 1;
                        self.skip(depth + 1)?;
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                return Some(());
                            }
                            _ => return None,
                        }
                    }
                }
                _ => None,
            }
        }

        /// A number's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; its value is not
        /// read (serde_json's `IgnoredAny` does not read it either, so `1e400` passes).
        fn number(&mut self) -> Option<()> {
            let b = self.b;
            let digits = |i: &mut usize| {
                let from = *i;
                while b.get(*i).is_some_and(u8::is_ascii_digit) {
                    *i += 1;
                }
                *i - from
            };
            let mut i = self.i;
            if b[i] == b'-' {
                i += 1;
            }
            match b.get(i)? {
                b'0' => {
                    i += 1;
                    if b.get(i).is_some_and(u8::is_ascii_digit) {
                        return None;
                    }
                }
                b'1'..=b'9' => {
                    digits(&mut i);
                }
                _ => return None,
            }
            if b.get(i) == Some(&b'.') {
                i += 1;
                if digits(&mut i) == 0 {
                    return None;
                }
            }
            if let Some(b'e' | b'E') = b.get(i) {
                i += 1;
                if let Some(b'+' | b'-') = b.get(i) {
                    i += 1;
                }
                if digits(&mut i) == 0 {
                    return None;
                }
            }
            self.i = i;
            Some(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_digit_strings_read_in_one_pass_and_anything_else_takes_the_general_path() {
        assert_eq!(short_digits("0"), Some(0));
        assert_eq!(short_digits("007"), Some(7));
        assert_eq!(short_digits("9999999999999999999"), Some(9_999_999_999_999_999_999));
        for general in ["", " 12", "12 ", "+1", "-1", "1.0", "1e3", "18446744073709551615", "١٢"] {
            assert_eq!(short_digits(general), None, "{general:?}");
        }
        // The general path still reads what the fast one leaves.
        let str = |s: &'static str| Scalar::Str(Cow::Borrowed(s));
        assert_eq!(str(" 12 ").as_u64().ok(), Some(Some(12)));
        assert_eq!(str("18446744073709551615").as_u64().ok(), Some(Some(u64::MAX)));
        assert_eq!(str("26.0").as_u64().ok(), Some(Some(26)));
        assert_eq!(str("").as_u64().ok(), Some(None));
        assert!(str("18446744073709551616").as_serial().is_err());
        assert_eq!(str("1037058396471308289").as_serial().ok(), Some(Some(CallId(1_037_058_396_471_308_289))));
    }

    #[test]
    fn a_key_is_matched_by_its_bytes_escapes_resolved_and_an_invalid_utf8_key_is_skipped() {
        let page = parse_page(
            b"{\"retCode\":\"0\",\"result\":{\"total\":1,\"callInfo\":[{\"call\\u0053erialNo\":\"42\",\"state\":3,\"st\xffate\":9}]}}",
        )
        .unwrap();
        let rec = page.records[0].as_ref().unwrap();
        assert_eq!(rec.id, CallId(42));
        assert_eq!(rec.state, CallState::Ended);
        assert!(rec.invalid.is_empty(), "nothing unusable");
    }

    /// Reads `bytes` through both paths: where the fast path answers, the serde path must read the
    /// very same page. Whether the fast path answered.
    fn both_paths(bytes: &[u8], max: usize) -> bool {
        let Some(fast) = fast::page(bytes, max) else { return false };
        let serde = parse_page_serde(bytes, max);
        assert_eq!(
            format!("{:?}", Ok::<_, String>(&fast)),
            format!("{:?}", serde.as_ref().map_err(|e| e.to_string())),
            "fast path and serde path differ on {:?} (max {max})",
            String::from_utf8_lossy(bytes)
        );
        true
    }

    /// A page in CEC's usual shape and then some: numbers and numeric strings mixed, `null`s and empty
    /// strings, padded and fractional strings, repeated keys, unknown keys holding every kind of JSON
    /// (escapes and non-ASCII text included), rejected entries, a non-ASCII `retMsg`.
    const MIXED_PAGE: &str = r#" {"result": {"callInfo": [
        {"callSerialNo":"1037058396480550572","state":3,"startTime":"1795953123328","endTime":1795953124556,
         "talkDuration":1,"agentTalkDuration":"26.5","reasonCode":"16","taskType":2,"callData":"campaign=c2\n\u00e9",
         "called":"19844318250","caller":"0123","x":{"a":[1,-2.5e3,true,null,{"b\"":"\ud800"}]},"alertingTime":null,"talkingTime":"",
         "releaseTime":" 1795953124556 ","agentReleaseTime":"0001795953124556","state":9,"agentTalkingTime":"1e3"},
        {"callSerialNo":2,"state":"3","taskType":"0","reasonCode":70000,"talkDuration":"abc","agentAlertingTime":true,
         "endTime":"18446744073709551615","caller":"电话","startTime":9999999999999999999},
        {"state":3},{"callSerialNo":"3"},{"callSerialNo":"x","state":3},{"callSerialNo":"4","state":"7"},
        {"callSerialNo":"00","state":0,"taskType":9},{}
      ], "total": "8", "callInfo": 5, "total": 9}, "retCode":"0", "retMsg":"查询成功", "retCode":"1", "extra":[[],{}]} "#;

    #[test]
    fn the_fast_path_reads_exactly_what_the_serde_path_reads() {
        for page in [MIXED_PAGE, VENDOR_SAMPLE, r#"{"retCode":"1","retMsg":"no data","result":null}"#, "{}"] {
            for max in [usize::MAX, 3, 1, 0] {
                assert!(both_paths(page.as_bytes(), max), "the fast path reads {page}");
            }
        }
        let sim = &*page_of(1_037_058_396_471_308_289);
        assert!(both_paths(sim, 100));
        assert_eq!(fast::page(sim, 100).unwrap().records.len(), 100);
        // Every single-byte change of the mixed page (deleted, replaced or inserted, by bytes that make
        // or break JSON), read by both paths; the fast path must give up or agree.
        let (answered, tried) = one_byte_changes(MIXED_PAGE.as_bytes());
        // Most changes leave the page readable by the fast path (inside a skipped string, a digit for
        // a digit): the comparison is not vacuous.
        assert!(answered * 4 > tried, "the fast path answered {answered} of {tried}");
        // The fuzz target's seeds, and every one-byte change of them.
        for seed in [
            &include_bytes!("../../fuzz/seeds/parse_page/lenient")[..],
            include_bytes!("../../fuzz/seeds/parse_page/no_data"),
            include_bytes!("../../fuzz/seeds/parse_page/own_words"),
            include_bytes!("../../fuzz/seeds/parse_page/rejections"),
            include_bytes!("../../fuzz/seeds/parse_page/success"),
            include_bytes!("../../fuzz/seeds/parse_page/wrong_shape"),
        ] {
            both_paths(seed, usize::MAX);
            one_byte_changes(seed);
        }
    }

    /// Reads every one-byte change of `base` (deleted, replaced or inserted, by bytes that make or
    /// break JSON, and `base` cut there) through both paths. How many the fast path answered, of how
    /// many.
    fn one_byte_changes(base: &[u8]) -> (usize, usize) {
        let bytes: &[u8] = b" \\\"{}[],:019-.eEntfu\x00\x7f\xff\xc3a";
        let (mut answered, mut tried) = (0, 0);
        for at in 0..base.len() {
            let mut deleted = base.to_vec();
            deleted.remove(at);
            let mut variants = vec![deleted];
            for &b in bytes {
                let mut replaced = base.to_vec();
                replaced[at] = b;
                let mut inserted = base.to_vec();
                inserted.insert(at, b);
                variants.extend([replaced, inserted]);
            }
            variants.push(base[..at].to_vec());
            for v in variants {
                tried += 1;
                answered += usize::from(both_paths(&v, usize::MAX));
                both_paths(&v, 2);
            }
        }
        (answered, tried)
    }

    #[test]
    fn the_fast_path_leaves_escapes_negatives_floats_containers_and_bad_utf8_to_the_serde_path() {
        let wrap = |rec: &str| format!(r#"{{"retCode":"0","result":{{"total":1,"callInfo":[{rec}]}}}}"#);
        for rec in [
            r#"{"callSerialNo":"\u0031","state":3}"#,
            r#"{"call\u0053erialNo":"1","state":3}"#,
            r#"{"callSerialNo":"1","state":3,"talkDuration":-1}"#,
            r#"{"callSerialNo":"1","state":3,"talkDuration":2.5}"#,
            r#"{"callSerialNo":"1","state":3,"talkDuration":2e1}"#,
            r#"{"callSerialNo":"1","state":3,"talkDuration":{"a":1}}"#,
            r#"{"callSerialNo":"1","state":3,"startTime":12345678901234567890}"#,
            "[1]",
            "7",
        ] {
            let page = wrap(rec);
            assert!(fast::page(page.as_bytes(), usize::MAX).is_none(), "{page}");
            assert_eq!(parse_page(page.as_bytes()).unwrap().records.len(), 1, "{page}");
        }
        // Not JSON: the serde path says where.
        let page = wrap(r#"{"callSerialNo":"1","state":3,"startTime":01}"#);
        assert!(fast::page(page.as_bytes(), usize::MAX).is_none());
        assert_eq!(parse_page(page.as_bytes()).unwrap_err().to_string(), "syntax error at line 1 column 91");
        let bad_utf8 = b"{\"retCode\":\"0\",\"result\":{\"callInfo\":[{\"callSerialNo\":\"1\",\"state\":3,\"endTime\":\"\xff\"}]}}";
        assert!(fast::page(bad_utf8, usize::MAX).is_none());
        let rec = parse_page(bad_utf8).unwrap().records.remove(0).unwrap();
        assert_eq!(rec.invalid.iter().collect::<Vec<_>>(), [Field::EndTime]);
    }

    /// A page as the simulator serves it (`cec-sim`): 100 records, values alternately numbers and
    /// numeric strings.
    fn page_of(first_serial: u64) -> Vec<u8> {
        let recs: Vec<String> = (0..100u64)
            .map(|i| {
                let q = |v: u64| if (i + v).is_multiple_of(2) { v.to_string() } else { format!("\"{v}\"") };
                let start = 1_795_953_123_328 + i * 1_000;
                format!(
                    r#"{{"agentAlertingTime":{},"agentPresent":"640066","agentReleaseTime":{},"agentTalkDuration":{},"callData":"campaign=c2","callSerialNo":"{}","called":"19844318250","caller":"88889012","endTime":{},"reasonCode":{},"startTime":{},"state":{},"talkDuration":{},"talkingTime":{}}}"#,
                    q(start + 21),
                    q(start + 1228),
                    q(1),
                    first_serial + i,
                    q(start + 1228),
                    q(16),
                    q(start),
                    q(3),
                    q(1),
                    q(start + 228),
                )
            })
            .collect();
        format!(r#"{{"result":{{"callInfo":[{}],"total":4662}},"retCode":"0","retMsg":"Query call detail record successfully"}}"#, recs.join(","))
            .into_bytes()
    }

    /// The vendor's own sample answer, verbatim.
    const VENDOR_SAMPLE: &str = r#"{
	"result": {
		"total": 11,
		"callInfo": [{
			"releaseTime": 1621577022000,
			"called": "88889060",
			"callerPresent": "640003",
			"agentAlertingTime": 1621576992000,
			"agentPresent": "640060",
			"talkingTime": 1621576995000,
			"alertingTime": 1621576994000,
			"caller": "88889050",
			"agentTalkingTime": 1621576994000,
			"agentReleaseTime": 1621577022000,
			"agentTalkDuration": 27,
			"callSerialNo": "1037058396471308289",
			"startTime": 1621576992000,
			"endTime": 1621577022000,
			"talkDuration": 26,
			"state": 3,
			"reasonCode": 1
		}]
	},
	"retCode": "0",
	"retMsg": "Query call detail record successfully"
}"#;

    fn one(json: &str) -> Result<ParsedRecord, Rejection> {
        let body = format!(r#"{{"retCode":"0","retMsg":"ok","result":{{"total":1,"callInfo":[{json}]}}}}"#);
        let mut page = parse_page(body.as_bytes()).expect("page parses");
        assert_eq!(page.records.len(), 1);
        page.records.pop().unwrap()
    }

    #[test]
    fn vendor_sample_parses_exactly() {
        let page = parse_page(VENDOR_SAMPLE.as_bytes()).unwrap();
        assert_eq!(page.ret_code, RetCode::Success);
        assert_eq!(page.ret_msg, "Query call detail record successfully");
        assert_eq!(page.total, Some(11));
        let r = page.records[0].clone().unwrap();
        assert_eq!(r.id, CallId(1_037_058_396_471_308_289));
        assert_eq!(r.state, CallState::Ended);
        assert_eq!(
            r.record,
            CallRecord {
                task_type: None,
                reason_code: Some(1),
                start_ms: Some(1_621_576_992_000),
                end_ms: Some(1_621_577_022_000),
                alerting_ms: Some(1_621_576_994_000),
                talking_ms: Some(1_621_576_995_000),
                release_ms: Some(1_621_577_022_000),
                agent_alerting_ms: Some(1_621_576_992_000),
                agent_talking_ms: Some(1_621_576_994_000),
                agent_release_ms: Some(1_621_577_022_000),
                talk_s: Some(26.0),
                agent_talk_s: Some(27.0),
                caller: Some(crate::cec::record::CallerKey::of("88889050")),
            }
        );
    }

    #[test]
    fn a_caller_is_kept_as_its_key_and_an_unusable_one_reads_as_absent() {
        use crate::cec::record::CallerKey;
        let caller = |v: &str| {
            one(&format!(r#"{{"callSerialNo":"9007199254740993","state":3,"caller":{v}}}"#)).unwrap().record.caller
        };
        assert_eq!(caller(r#""88889050""#), Some(CallerKey::of("88889050")));
        assert_eq!(caller(r#"" +8610 ""#), Some(CallerKey::of("+8610")), "surrounding spaces are not part of it");
        assert_eq!(caller("88889050"), Some(CallerKey::of("88889050")), "a number is its digits");
        assert_eq!(caller(r#""0123""#), Some(CallerKey::of("0123")), "quoted digits stay text: the zero counts");
        assert_ne!(CallerKey::of("0123"), CallerKey::of("123"));
        assert_ne!(CallerKey::of("88889050"), CallerKey::of("88889051"));
        for bad in [r#""""#, r#""   ""#, "null", "true", "[1]", "-5", &format!("\"{}\"", "9".repeat(33))] {
            assert_eq!(caller(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_as_strings_equal_numbers() {
        let a = one(r#"{"callSerialNo":"9007199254740993","state":"3","taskType":"2","reasonCode":"5","startTime":"1700000000000","talkDuration":"0","agentTalkDuration":"12"}"#).unwrap();
        let b = one(r#"{"callSerialNo":"9007199254740993","state":3,"taskType":2,"reasonCode":5,"startTime":1700000000000,"talkDuration":0,"agentTalkDuration":12}"#).unwrap();
        assert_eq!(a, b);
        // 2^53 + 1 survives exactly: it never went through a float.
        assert_eq!(a.id, CallId(9_007_199_254_740_993));
        assert_eq!(a.record.task_type, Some(TaskType::AnonymousOutbound));
    }

    #[test]
    fn serial_as_json_integer_beyond_2_53_is_exact() {
        let r = one(r#"{"callSerialNo":1037058396471308289,"state":1}"#).unwrap();
        assert_eq!(r.id, CallId(1_037_058_396_471_308_289));
    }

    #[test]
    fn every_field_but_identity_and_state_is_optional() {
        let r = one(r#"{"callSerialNo":"1","state":0}"#).unwrap();
        assert_eq!(r.record, CallRecord::default());
        let r = one(r#"{"callSerialNo":"1","state":"2","endTime":"","reasonCode":null}"#).unwrap();
        assert_eq!(r.record, CallRecord::default());
    }

    #[test]
    fn rejections_name_their_reason_and_keep_a_readable_serial() {
        use RejectReason::*;
        let serial = Some("callSerialNo");
        // (entry, reason, offending field, serial kept for the log)
        let cases = [
            (r#"42"#, NotAnObject, None, None),
            (r#""text""#, NotAnObject, None, None),
            (r#"[1,2]"#, NotAnObject, None, None),
            (r#"{"state":3}"#, MissingSerialNo, serial, None),
            (r#"{"callSerialNo":"12a","state":3}"#, InvalidSerialNo, serial, None),
            (r#"{"callSerialNo":1.5e18,"state":3}"#, InvalidSerialNo, serial, None),
            (r#"{"callSerialNo":"99999999999999999999","state":3}"#, InvalidSerialNo, serial, None),
            (r#"{"callSerialNo":"7"}"#, MissingState, Some("state"), Some(CallId(7))),
            (r#"{"callSerialNo":"7","state":"banana"}"#, InvalidState, Some("state"), Some(CallId(7))),
            (r#"{"callSerialNo":"7","state":4}"#, InvalidState, Some("state"), Some(CallId(7))),
        ];
        for (json, reason, field, serial) in cases {
            let rej = one(json).expect_err(json);
            assert_eq!(rej, Rejection { reason, field, serial }, "{json}");
        }
    }

    #[test]
    fn a_bad_optional_field_is_dropped_and_named_but_the_call_still_counts() {
        let cases = [
            (r#"{"callSerialNo":"7","state":3,"talkDuration":"26s","reasonCode":5}"#, vec![Field::TalkDuration]),
            (r#"{"callSerialNo":"7","state":3,"startTime":-5,"reasonCode":5}"#, vec![Field::StartTime]),
            (r#"{"callSerialNo":"7","state":3,"reasonCode":70000}"#, vec![Field::ReasonCode]),
            (r#"{"callSerialNo":"7","state":3,"taskType":9,"reasonCode":5}"#, vec![Field::TaskType]),
            (
                r#"{"callSerialNo":"7","state":3,"endTime":{"a":1},"agentTalkDuration":true,"reasonCode":5}"#,
                vec![Field::EndTime, Field::AgentTalkDuration],
            ),
        ];
        for (json, fields) in cases {
            let r = one(json).expect(json);
            assert_eq!((r.id, r.state), (CallId(7), CallState::Ended));
            assert_eq!(r.invalid.iter().collect::<Vec<_>>(), fields, "{json}");
            let kept = CallRecord { reason_code: (fields != [Field::ReasonCode]).then_some(5), ..Default::default() };
            assert_eq!(r.record, kept, "the bad value reads as absent: {json}");
        }
        assert!(one(r#"{"callSerialNo":"7","state":3}"#).unwrap().invalid.is_empty());
    }

    #[test]
    fn durations_and_times_out_of_range_are_invalid_fields() {
        let talk = [Field::TalkDuration];
        let agent = [Field::AgentTalkDuration];
        let cases: [(&str, &[Field]); 8] = [
            (r#"{"callSerialNo":"7","state":3,"talkDuration":1e308}"#, &talk),
            (r#"{"callSerialNo":"7","state":3,"talkDuration":"1e309"}"#, &talk),
            (r#"{"callSerialNo":"7","state":3,"talkDuration":"NaN"}"#, &talk),
            (r#"{"callSerialNo":"7","state":3,"talkDuration":-1.5}"#, &talk),
            (r#"{"callSerialNo":"7","state":3,"agentTalkDuration":604800.5}"#, &agent),
            (r#"{"callSerialNo":"7","state":3,"agentTalkDuration":"-inf"}"#, &agent),
            // One millisecond after the end of year 9999.
            (r#"{"callSerialNo":"7","state":3,"startTime":253402300800000}"#, &[Field::StartTime]),
            (r#"{"callSerialNo":"7","state":3,"endTime":"18446744073709551615"}"#, &[Field::EndTime]),
        ];
        for (json, fields) in cases {
            let r = one(json).expect(json);
            assert_eq!(r.invalid.iter().collect::<Vec<_>>(), fields, "{json}");
            assert_eq!(r.record, CallRecord::default(), "the bad value reads as absent: {json}");
        }
        // The bounds themselves are accepted.
        let r = one(r#"{"callSerialNo":"7","state":3,"talkDuration":604800,"startTime":253402300799999}"#).unwrap();
        assert!(r.invalid.is_empty());
        assert_eq!((r.record.talk_s, r.record.start_ms), (Some(MAX_DURATION_S), Some(MAX_TIME_MS)));
    }

    #[test]
    fn a_bad_record_never_spoils_its_page() {
        let body = r#"{"retCode":"0","retMsg":"","result":{"total":"4","callInfo":[
            {"callSerialNo":"1","state":3},
            42,
            {"callSerialNo":"2","state":"banana","nested":{"deep":[1,{"x":2}]}},
            {"callSerialNo":"3","state":2,"callData":"free text, never kept"}]}}"#;
        let page = parse_page(body.as_bytes()).unwrap();
        assert_eq!(page.total, Some(4));
        let ok: Vec<u64> = page.records.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.id.0).collect();
        assert_eq!(ok, vec![1, 3]);
        assert_eq!(page.records.iter().filter(|r| r.is_err()).count(), 2);
    }

    #[test]
    fn ret_codes() {
        let p = parse_page(br#"{"retCode":"1","retMsg":"No data is found."}"#).unwrap();
        assert_eq!((p.ret_code, p.total, p.records.len()), (RetCode::NoData, None, 0));
        let p = parse_page(br#"{"retCode":2,"retMsg":"bad time"}"#).unwrap();
        assert_eq!(p.ret_code, RetCode::Error("2".into()));
        let p = parse_page(br#"{"retCode":"0","result":{"total":0,"callInfo":null}}"#).unwrap();
        assert_eq!((p.ret_code, p.total, p.records.len()), (RetCode::Success, Some(0), 0));
    }

    #[test]
    fn a_broken_body_is_an_error() {
        assert!(parse_page(br#"{"retCode":"0","result":{"callInfo":[{"callSe"#).is_err());
        assert!(parse_page(b"<html>502</html>").is_err());
    }

    #[test]
    fn request_values_are_strings() {
        let q = QueryRequest {
            start_ms: 1_562_786_332_000,
            end_ms: 1_563_391_072_000,
            offset: 200,
            limit: 100,
            task: TaskQuery::ITA,
        };
        let v: serde_json::Value = serde_json::from_str(&q.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"startTime":"1562786332000","endTime":"1563391072000","offset":"200","limit":"100","taskType":"4"})
        );
    }

    #[test]
    fn a_parsed_token_never_shows_in_debug_output() {
        let t = parse_token(br#"{"AccessToken":"s3cr3t-bearer","Expires":"600"}"#);
        let shown = format!("{t:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(t.unwrap().access_token.expose(), "s3cr3t-bearer");
    }

    #[test]
    fn token_answer_strings_or_numbers() {
        // (answer, token, lifetime)
        let cases = [
            (r#"{"AccessToken":"zz","ApplyType":"Bearer","CreateTime":"1545650171","Expires":"600"}"#, "zz", Some(600)),
            (r#"{"AccessToken":" zz ","CreateTime":1545650171,"Expires":600}"#, "zz", Some(600)),
            (r#"{"AccessToken":"zz","Expires":""}"#, "zz", None),
            (r#"{"AccessToken":"zz","Expires":"soon"}"#, "zz", None),
        ];
        for (json, token, expires) in cases {
            let t = parse_token(json.as_bytes()).expect(json);
            assert_eq!((t.access_token.expose(), t.expires_s), (token, expires), "{json}");
        }
        for json in [r#"{"AccessToken":""}"#, r#"{"Expires":600}"#] {
            assert_eq!(parse_token(json.as_bytes()).unwrap_err(), WireError::NoAccessToken, "{json}");
            assert_eq!(parse_token(json.as_bytes()).unwrap_err().to_string(), "no AccessToken in the answer");
        }
    }

    #[test]
    fn parser_errors_give_kind_and_position_never_the_value() {
        use JsonErrorKind::*;
        let json = |kind, line, column| WireError::Json { kind, line, column };
        // A bare JSON string, a token where an object belongs: serde_json's own message quotes it.
        let e = parse_token(br#""SECRET-TOKEN-123""#).unwrap_err();
        assert_eq!(e, json(Data, 1, 18));
        assert_eq!(e.to_string(), "unexpected value at line 1 column 18");
        let e = parse_token(br#"{"AccessToken":["s3cr3t"]}"#).unwrap_err();
        assert_eq!(e, json(Data, 1, 15));
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let e = parse_token(br#"{"AccessToken":"s3cr3t"#).unwrap_err();
        assert_eq!((e, e.to_string()), (json(Eof, 1, 22), "truncated at line 1 column 22".to_owned()));
        // A phone number where the records belong, and one in a wrong-typed `result`.
        let e = parse_page(br#"{"retCode":"0","result":{"callInfo":"13800138000"}}"#).unwrap_err();
        assert_eq!((e, e.to_string()), (json(Data, 1, 49), "unexpected value at line 1 column 49".to_owned()));
        let e = parse_page(br#"{"retCode":"0","result":"+8613800138000"}"#).unwrap_err();
        assert_eq!(e, json(Data, 1, 40));
        assert!(!e.to_string().contains("13800138000"), "{e}");
        let e = parse_page(b"{\n  13800138000").unwrap_err();
        assert_eq!((e, e.to_string()), (json(Syntax, 2, 3), "syntax error at line 2 column 3".to_owned()));
        let e = parse_page(b"").unwrap_err();
        assert_eq!(e, json(Eof, 1, 0));
    }

    /// Issue 8 review: one number beyond f64 (`1e400`, a 5000-digit `total`) failed its whole page
    /// ("number out of range"), every poll, forever. It spoils only the value it is.
    #[test]
    fn a_number_beyond_f64_spoils_only_its_own_value() {
        let good: Vec<String> =
            (1..=3).map(|i| format!(r#"{{"callSerialNo":"{i}","state":3,"reasonCode":5}}"#)).collect();
        let body = format!(
            r#"{{"retCode":"0","retMsg":"ok","result":{{"total":1{zeros},"callInfo":[{good},
            {{"callSerialNo":"4","state":3,"talkDuration":1e400,"startTime":-1e999,"reasonCode":5}},
            {{"callSerialNo":1{zeros},"state":3}},
            {{"callSerialNo":"6","state":1e400}},
            {{"callSerialNo":"7","state":3,"callData":1e400}}]}}}}"#,
            zeros = "0".repeat(5000),
            good = good.join(","),
        );
        let page = parse_page(body.as_bytes()).unwrap();
        assert_eq!(
            (page.ret_code, page.total, page.records.len()),
            (RetCode::Success, None, 7),
            "total reads as absent"
        );
        for (i, r) in page.records[..3].iter().enumerate() {
            let r = r.as_ref().unwrap();
            assert_eq!((r.id, r.invalid), (CallId(i as u64 + 1), FieldSet::default()));
        }
        let r = page.records[3].as_ref().unwrap();
        assert_eq!(r.id, CallId(4));
        assert_eq!(r.invalid.iter().collect::<Vec<_>>(), [Field::StartTime, Field::TalkDuration]);
        assert_eq!(r.record, CallRecord { reason_code: Some(5), ..Default::default() });
        let serial = Some("callSerialNo");
        assert_eq!(
            page.records[4],
            Err(Rejection { reason: RejectReason::InvalidSerialNo, field: serial, serial: None })
        );
        assert_eq!(
            page.records[5],
            Err(Rejection { reason: RejectReason::InvalidState, field: Some("state"), serial: Some(CallId(6)) })
        );
        assert!(page.records[6].as_ref().unwrap().invalid.is_empty(), "an ignored field is never read");
        // The largest numbers in range still read as they are (and are then judged by the field).
        let r = one(r#"{"callSerialNo":"8","state":3,"talkDuration":1e299,"reasonCode":1.0e0}"#).unwrap();
        assert_eq!(r.invalid.iter().collect::<Vec<_>>(), [Field::TalkDuration]);
        assert_eq!(r.record.reason_code, Some(1));
    }

    /// Issue 8 review: a `retMsg` that is an array, or a string with invalid UTF-8, failed the page.
    #[test]
    fn an_unusable_ret_msg_reads_as_empty() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let bodies: [Vec<u8>; 4] = [
            format!(r#"{{"retCode":"0","retMsg":{deep},"result":{{"total":1,"callInfo":[{{"callSerialNo":"1","state":3}}]}}}}"#)
                .into_bytes(),
            br#"{"retCode":"0","retMsg":12,"result":{"total":1,"callInfo":[{"callSerialNo":"1","state":3}]}}"#.to_vec(),
            b"{\"retCode\":\"0\",\"retMsg\":\"\xff\xfeMARK\",\"result\":{\"total\":1,\"callInfo\":[{\"callSerialNo\":\"1\",\"state\":3,\"caller\":\"\xc0\x80\"}]}}".to_vec(),
            br#"{"retCode":"0","retMsg":"lone \ud800 surrogate","result":{"total":1,"callInfo":[{"callSerialNo":"1","state":3}]}}"#.to_vec(),
        ];
        for body in bodies {
            let page = parse_page(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body[..80])));
            assert_eq!((page.ret_code, page.ret_msg.as_str(), page.total), (RetCode::Success, "", Some(1)));
            assert_eq!(page.records.len(), 1);
            assert_eq!(page.records[0].as_ref().unwrap().id, CallId(1));
        }
    }

    /// Invalid UTF-8 or a lone surrogate in a string the exporter reads makes that value unusable; in a
    /// key, the key matches nothing and is skipped; in a field never read, it does not matter.
    #[test]
    fn a_string_serde_json_cannot_read_is_an_unusable_value() {
        let page = |entries: &[&[u8]]| {
            let mut body = br#"{"retCode":"0","result":{"total":9,"callInfo":["#.to_vec();
            body.extend(entries.join(&b","[..]));
            body.extend(b"]}}");
            parse_page(&body).unwrap()
        };
        let p = page(&[
            b"{\"callSerialNo\":\"1\",\"state\":3,\"talkDuration\":\"2\xff\",\"reasonCode\":\"\xc3\x28\"}",
            br#"{"callSerialNo":"2","state":3,"endTime":"\udc00","agentTalkDuration":"\ud83d\ude00"}"#,
            b"{\"callSerialNo\":\"\xff3\",\"state\":3}",
            br#"{"callSerialNo":"4","state":"\ud800"}"#,
            b"{\"callSerialNo\":\"5\",\"sta\xffte\":9,\"state\":3,\"talk\\ud800\":1}",
        ]);
        let r = p.records[0].as_ref().unwrap();
        assert_eq!(r.invalid.iter().collect::<Vec<_>>(), [Field::ReasonCode, Field::TalkDuration]);
        let r = p.records[1].as_ref().unwrap();
        assert_eq!(r.invalid.iter().collect::<Vec<_>>(), [Field::EndTime, Field::AgentTalkDuration]);
        assert_eq!(r.record, CallRecord::default());
        let serial = Some("callSerialNo");
        assert_eq!(p.records[2], Err(Rejection { reason: RejectReason::InvalidSerialNo, field: serial, serial: None }));
        assert_eq!(
            p.records[3],
            Err(Rejection { reason: RejectReason::InvalidState, field: Some("state"), serial: Some(CallId(4)) })
        );
        let r = p.records[4].as_ref().unwrap();
        assert_eq!((r.id, r.state, r.invalid), (CallId(5), CallState::Ended, FieldSet::default()));
    }

    /// Issue 8 review: duplicate top-level keys failed the page, while inside a record a repeated key
    /// kept the earlier value only when the later one was unusable. Now everywhere the first wins.
    #[test]
    fn a_repeated_key_keeps_its_first_value_everywhere() {
        let body = r#"{"retCode":"0","retCode":"2","retMsg":"first","retMsg":"second",
            "result":{"total":1,"total":"x","callInfo":[
                {"callSerialNo":"5","callSerialNo":"6","state":0,"state":3,"reasonCode":16,"reasonCode":99999},
                {"callSerialNo":"7","state":3,"talkDuration":"x","talkDuration":5}],
                "callInfo":[]},
            "result":{"total":0}}"#;
        let page = parse_page(body.as_bytes()).unwrap();
        assert_eq!((page.ret_code, page.ret_msg.as_str(), page.total), (RetCode::Success, "first", Some(1)));
        let r = page.records[0].as_ref().unwrap();
        assert_eq!(
            (r.id, r.state, r.record.reason_code, r.invalid),
            (CallId(5), CallState::ToBeCalled, Some(16), FieldSet::default())
        );
        let r = page.records[1].as_ref().unwrap();
        assert_eq!((r.record.talk_s, r.invalid.iter().collect::<Vec<_>>()), (None, vec![Field::TalkDuration]));
        assert_eq!(page.records.len(), 2);
    }

    /// The repair keeps lengths: an error found after it has the position it has in what CEC sent, and
    /// what is not grammatical JSON (a broken number, `NaN`, a truncation) still fails the page.
    #[test]
    fn what_is_not_json_still_fails_the_page_at_its_own_position() {
        use JsonErrorKind::*;
        let json = |kind, line, column| WireError::Json { kind, line, column };
        let truncated = br#"{"retCode":"0","result":{"total":1e400,"callInfo":[{"callSe"#;
        assert_eq!(parse_page(truncated).unwrap_err(), json(Eof, 1, truncated.len()));
        let e = parse_page(br#"{"retCode":"0","result":{"total":1e400,"callInfo":[{"state":3}x]}}"#).unwrap_err();
        assert_eq!(e, json(Syntax, 1, 63), "the x after the record");
        for body in [
            &br#"{"retCode":"0","result":{"total":NaN,"callInfo":[]}}"#[..],
            br#"{"retCode":"0","result":{"total":1e,"callInfo":[]}}"#,
            br#"{"retCode":"0","result":{"total":01,"callInfo":[]}}"#,
            b"{\"retCode\":\"0\",\"retMsg\":\"a\x01b\",\"result\":{\"total\":1e400}}",
            br#"{"retCode":"0","retMsg":"\x","result":{"total":1e400}}"#,
        ] {
            let e = parse_page(body).unwrap_err();
            assert!(matches!(e, WireError::Json { kind: Syntax, .. }), "{e}: {}", String::from_utf8_lossy(body));
        }
    }

    /// Issue 8 review: a 7 MiB token was resent as a 7 MiB header with every query, and one with CR/LF
    /// or NUL became "Bearer invalid-token". Both are refused, naming the rule, never the token.
    #[test]
    fn a_token_must_be_bounded_visible_ascii() {
        let answer = |t: &str| format!(r#"{{"AccessToken":"{t}","Expires":"600"}}"#);
        let longest = "A".repeat(MAX_TOKEN_BYTES);
        assert_eq!(parse_token(answer(&longest).as_bytes()).unwrap().access_token.expose(), longest);
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl-_~+/==";
        assert_eq!(parse_token(answer(jwt).as_bytes()).unwrap().access_token.expose(), jwt);
        let e = parse_token(answer(&format!("{longest}A")).as_bytes()).unwrap_err();
        assert_eq!(
            (e, e.to_string()),
            (WireError::TokenTooLong { limit: 8192 }, "AccessToken longer than 8192 bytes".to_owned())
        );
        for t in ["TOKsecret\\r\\nX-Injected: 1", "TOKsecret\\u0000", "TOKsecret\u{e9}", "TOK secret", "TOKsecret\\t1"]
        {
            let e = parse_token(answer(t).as_bytes()).unwrap_err();
            assert_eq!(e, WireError::TokenNotVisibleAscii, "{t}");
            assert_eq!(e.to_string(), "AccessToken has a character other than visible ASCII");
        }
    }

    #[test]
    fn at_most_the_page_size_of_entries_is_kept_and_the_rest_still_read() {
        let entries: Vec<String> = (1..=5).map(|i| format!(r#"{{"callSerialNo":"{i}","state":3}}"#)).collect();
        let body = format!(r#"{{"retCode":"0","result":{{"total":5,"callInfo":[{}]}}}}"#, entries.join(","));
        let page = parse_page_at_most(body.as_bytes(), 2).unwrap();
        let ids: Vec<u64> = page.records.iter().map(|r| r.as_ref().unwrap().id.0).collect();
        assert_eq!((ids, page.total), (vec![1, 2], Some(5)));
        assert_eq!(parse_page(body.as_bytes()).unwrap().records.len(), 5, "the limit was put back");
        // The skipped part must still be JSON.
        let broken = body.replace(r#""5","state":3}"#, r#""5","state":3"#);
        assert_eq!(
            parse_page_at_most(broken.as_bytes(), 2).unwrap_err().to_string(),
            "syntax error at line 1 column 201"
        );
        assert_eq!(parse_page(b"{}").unwrap().records.len(), 0);
    }
}
