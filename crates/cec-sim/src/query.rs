//! queryCallDetailRecord's request rules and response bodies, transport-free: parsing the body
//! (each value a JSON string or number), the documented retCodes ("2" time, "4" paging, "12"
//! caller, "1" no data), and rendering a page, optionally salted with malformed entries.

use serde_json::{json, Map, Value};

use super::model::{mix, CallSpec};
use super::store::{Page, Selection, TaskFilter};

/// The documented maximum window.
pub(crate) const MAX_WINDOW_MS: i64 = 7 * 24 * 3_600 * 1_000;
/// Default and largest page size.
pub(crate) const MAX_LIMIT: u64 = 100;

/// Why a query is not answered with records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// HTTP 400 "incorrect request".
    BadRequest(String),
    /// HTTP 200 with this retCode and message.
    RetCode(&'static str, String),
}

/// What the request log keeps of a body, as sent (numbers parsed where they parse).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LoggedFields {
    pub task_type: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub offset: Option<i64>,
    pub limit: Option<i64>,
}

/// A parsed request: the fields for the log, whether every present value was a JSON string, and
/// the selection or the reason to refuse it.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub fields: LoggedFields,
    pub all_strings: bool,
    pub selection: Result<Selection, Rejection>,
}

/// A body value: absent (missing or null), its text (from a string or a number), or another type.
enum Field {
    Absent,
    Text(String),
    Other,
}

fn field(obj: &Map<String, Value>, key: &str, all_strings: &mut bool) -> Field {
    match obj.get(key) {
        None | Some(Value::Null) => Field::Absent,
        Some(Value::String(s)) => Field::Text(s.clone()),
        Some(Value::Number(n)) => {
            *all_strings = false;
            Field::Text(n.to_string())
        }
        Some(_) => {
            *all_strings = false;
            Field::Other
        }
    }
}

/// Strict decimal integer: optional '-', digits only (no spaces, '+', fractions or exponents).
fn integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn as_integer(f: &Field) -> Option<i64> {
    match f {
        Field::Text(t) => integer(t),
        _ => None,
    }
}

/// Parses a queryCallDetailRecord body. An empty body counts as `{}` (the body is documented as
/// optional), which then fails on the missing startTime.
pub(crate) fn parse(body: &[u8]) -> Parsed {
    let mut all_strings = true;
    let mut fields = LoggedFields::default();
    let text = String::from_utf8_lossy(body);
    let value =
        if text.trim().is_empty() { Ok(Value::Object(Map::new())) } else { serde_json::from_str::<Value>(&text) };
    let obj = match value {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => {
            return Parsed {
                fields,
                all_strings,
                selection: Err(Rejection::BadRequest("the request body must be a JSON object".into())),
            }
        }
        Err(e) => {
            return Parsed {
                fields,
                all_strings,
                selection: Err(Rejection::BadRequest(format!("the request body is not valid JSON: {e}"))),
            }
        }
    };
    let start = field(&obj, "startTime", &mut all_strings);
    let end = field(&obj, "endTime", &mut all_strings);
    let offset = field(&obj, "offset", &mut all_strings);
    let limit = field(&obj, "limit", &mut all_strings);
    let task = field(&obj, "taskType", &mut all_strings);
    let caller = field(&obj, "caller", &mut all_strings);
    fields.start = as_integer(&start);
    fields.end = as_integer(&end);
    fields.offset = as_integer(&offset);
    fields.limit = as_integer(&limit);
    fields.task_type = match &task {
        Field::Text(t) => Some(t.clone()),
        Field::Other => Some(obj["taskType"].to_string()),
        Field::Absent => None,
    };
    let selection = validate(&start, &end, &offset, &limit, &task, &caller);
    Parsed { fields, all_strings, selection }
}

fn validate(
    start: &Field,
    end: &Field,
    offset: &Field,
    limit: &Field,
    task: &Field,
    caller: &Field,
) -> Result<Selection, Rejection> {
    let tasks = match task {
        Field::Absent => TaskFilter::AllButIta,
        Field::Text(t) => match t.as_str() {
            "0" => TaskFilter::AllButIta,
            "1" => TaskFilter::Only(1),
            "2" => TaskFilter::Only(2),
            "3" => TaskFilter::Only(3),
            "4" => TaskFilter::Only(4),
            other => return Err(Rejection::BadRequest(format!("taskType {other:?} is not one of 0, 1, 2, 3, 4"))),
        },
        Field::Other => return Err(Rejection::BadRequest("taskType must be a string or a number".into())),
    };
    let caller = match caller {
        Field::Absent => None,
        Field::Text(c) if c.is_empty() => None,
        Field::Text(c) if c.chars().count() > 32 => {
            return Err(Rejection::RetCode(
                "12",
                "The calling number is unavailable: caller is longer than 32 characters.".into(),
            ))
        }
        Field::Text(c) => Some(c.clone()),
        Field::Other => {
            return Err(Rejection::RetCode("12", "The calling number is unavailable: caller must be a string.".into()))
        }
    };
    let time_err =
        |why: &str| Rejection::RetCode("2", format!("The format of the start time and end time is incorrect: {why}."));
    let time = |f: &Field, name: &str| match f {
        Field::Absent => Err(time_err(&format!("{name} is missing"))),
        f => match as_integer(f) {
            Some(v) if v >= 0 => Ok(v),
            _ => Err(time_err(&format!("{name} is not a timestamp in milliseconds"))),
        },
    };
    let start_ms = time(start, "startTime")?;
    let end_ms = time(end, "endTime")?;
    if end_ms < start_ms {
        return Err(time_err("endTime is earlier than startTime"));
    }
    if end_ms - start_ms > MAX_WINDOW_MS {
        return Err(time_err("the interval between startTime and endTime exceeds seven days"));
    }
    let page_err =
        |why: &str| Rejection::RetCode("4", format!("The limit or offset pagination data format is incorrect: {why}."));
    let offset = match offset {
        Field::Absent => 0,
        f => match as_integer(f) {
            Some(v) if v >= 0 => v.unsigned_abs(),
            _ => return Err(page_err("offset must be a non-negative integer")),
        },
    };
    let limit = match limit {
        Field::Absent => MAX_LIMIT,
        f => match as_integer(f) {
            Some(v) if v > 0 => v.unsigned_abs().min(MAX_LIMIT),
            _ => return Err(page_err("limit must be a positive integer")),
        },
    };
    Ok(Selection { start_ms, end_ms, tasks, caller, offset, limit })
}

/// The retCode-"1" body. Half the time (by `coin`) it carries an empty result instead of none:
/// the page leaves `result` optional, so clients must take both.
pub(crate) fn no_data_body(coin: u64) -> Value {
    if coin & 1 == 0 {
        json!({"retCode": "1", "retMsg": "No data is found."})
    } else {
        json!({"result": {"total": 0, "callInfo": []}, "retCode": "1", "retMsg": "No data is found."})
    }
}

/// A non-"0" retCode body.
pub(crate) fn ret_code_body(code: &str, msg: &str) -> Value {
    json!({"retCode": code, "retMsg": msg})
}

/// The retCode-"0" body for a non-empty page. `coin` decides whether `total` is a number or a
/// numeric string; with `malformed`, three bad entries are spliced in at coin-chosen places.
pub(crate) fn success_body(page: &Page, now_ms: i64, seed: u64, coin: u64, malformed: bool) -> Value {
    let mut info: Vec<Value> = page.calls.iter().filter_map(|c| c.record_json(now_ms, seed)).collect();
    if malformed {
        splice_malformed(&mut info, page.calls.first(), now_ms, seed, coin);
    }
    let total = if coin & 2 == 0 { Value::from(page.total) } else { Value::String(page.total.to_string()) };
    json!({
        "result": {"total": total, "callInfo": info},
        "retCode": "0",
        "retMsg": "Query call detail record successfully",
    })
}

/// Serial of the `"state": "banana"` entry: outside anything the generator reaches, so it can
/// never collide with a real call.
pub(crate) const BANANA_SERIAL: u64 = 9_100_000_000_000_000_000;

fn splice_malformed(info: &mut Vec<Value>, model: Option<&CallSpec>, now_ms: i64, seed: u64, coin: u64) {
    // A record that looks complete except for its serial: a client must not count it under a
    // made-up key.
    let mut no_serial = model.and_then(|c| c.record_json(now_ms, seed)).unwrap_or_else(|| json!({"state": 3}));
    if let Value::Object(m) = &mut no_serial {
        m.remove("callSerialNo");
    }
    let banana = json!({
        "callSerialNo": (BANANA_SERIAL + coin % 1_000_000).to_string(),
        "caller": "88880000",
        "called": "10000000000",
        "startTime": now_ms,
        "endTime": now_ms,
        "state": "banana",
        "taskType": 1,
        "talkDuration": 0,
        "reasonCode": 1,
    });
    for (i, bad) in [json!(42), no_serial, banana].into_iter().enumerate() {
        let at = (mix(seed, coin, 7 + i as u64) % (info.len() as u64 + 1)) as usize;
        info.insert(at, bad);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SERIAL_BASE;

    fn sel(body: &str) -> Result<Selection, Rejection> {
        parse(body.as_bytes()).selection
    }

    fn ret(body: &str) -> &'static str {
        match sel(body) {
            Err(Rejection::RetCode(c, _)) => c,
            other => panic!("expected a retCode for {body}: {other:?}"),
        }
    }

    #[test]
    fn strings_and_numbers_both_accepted() {
        let p =
            parse(br#"{"startTime":"1000","endTime":"2000","offset":"5","limit":"10","taskType":"4","caller":"123"}"#);
        assert!(p.all_strings);
        let s = p.selection.unwrap();
        assert_eq!(
            s,
            Selection {
                start_ms: 1_000,
                end_ms: 2_000,
                tasks: TaskFilter::Only(4),
                caller: Some("123".into()),
                offset: 5,
                limit: 10
            }
        );
        // The vendor's own sample: offset and limit as numbers.
        let p =
            parse(br#"{"startTime":"1562786332000","endTime":"1563391072000","taskType":"0","offset":0,"limit":10}"#);
        assert!(!p.all_strings);
        let s = p.selection.unwrap();
        assert_eq!((s.offset, s.limit, s.tasks), (0, 10, TaskFilter::AllButIta));
        assert_eq!(p.fields.limit, Some(10));
        assert_eq!(p.fields.task_type.as_deref(), Some("0"));
    }

    #[test]
    fn defaults_and_limit_clamp() {
        let s = sel(r#"{"startTime":"0","endTime":"0"}"#).unwrap();
        assert_eq!((s.offset, s.limit, s.tasks, s.caller), (0, 100, TaskFilter::AllButIta, None));
        assert_eq!(sel(r#"{"startTime":"0","endTime":"0","limit":"1000"}"#).unwrap().limit, 100);
        assert_eq!(sel(r#"{"startTime":"0","endTime":"0","limit":100}"#).unwrap().limit, 100);
        assert_eq!(sel(r#"{"startTime":"0","endTime":"0","caller":""}"#).unwrap().caller, None);
    }

    #[test]
    fn time_rules_ret_code_2() {
        assert_eq!(ret(r#"{"endTime":"1"}"#), "2");
        assert_eq!(ret(r#"{"startTime":"1"}"#), "2");
        assert_eq!(ret(""), "2");
        assert_eq!(ret(r#"{"startTime":"abc","endTime":"1"}"#), "2");
        assert_eq!(ret(r#"{"startTime":"1.5","endTime":"2"}"#), "2");
        assert_eq!(ret(r#"{"startTime":"-5","endTime":"2"}"#), "2");
        assert_eq!(ret(r#"{"startTime":true,"endTime":"2"}"#), "2");
        assert_eq!(ret(r#"{"startTime":"10","endTime":"9"}"#), "2");
        let week = MAX_WINDOW_MS;
        assert!(sel(&format!(r#"{{"startTime":"1000","endTime":"{}"}}"#, 1_000 + week)).is_ok());
        assert_eq!(ret(&format!(r#"{{"startTime":"1000","endTime":"{}"}}"#, 1_001 + week)), "2");
        match sel(r#"{"startTime":"10","endTime":"9"}"#) {
            Err(Rejection::RetCode(_, msg)) => assert!(msg.contains("earlier"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paging_rules_ret_code_4() {
        let base = r#""startTime":"0","endTime":"0""#;
        for bad in [
            r#""offset":"-1""#,
            r#""offset":"x""#,
            r#""offset":-3"#,
            r#""offset":1.5"#,
            r#""limit":"0""#,
            r#""limit":0"#,
            r#""limit":"-10""#,
            r#""limit":"ten""#,
        ] {
            assert_eq!(ret(&format!("{{{base},{bad}}}")), "4", "{bad}");
        }
    }

    #[test]
    fn task_type_and_caller_rules() {
        let base = r#""startTime":"0","endTime":"0""#;
        assert_eq!(sel(&format!(r#"{{{base},"taskType":3}}"#)).unwrap().tasks, TaskFilter::Only(3));
        for bad in [r#""5""#, r#""01""#, r#""""#, "-1", "[1]"] {
            assert!(matches!(sel(&format!(r#"{{{base},"taskType":{bad}}}"#)), Err(Rejection::BadRequest(_))), "{bad}");
        }
        assert_eq!(ret(&format!(r#"{{{base},"caller":"{}"}}"#, "1".repeat(33))), "12");
        assert!(matches!(sel("[1,2]"), Err(Rejection::BadRequest(_))));
        assert!(matches!(sel("{nope"), Err(Rejection::BadRequest(_))));
    }

    #[test]
    fn success_body_shape_and_malformed_entries() {
        let calls: Vec<CallSpec> = (0..3).map(|i| CallSpec::builder(SERIAL_BASE + i, 1, 1_000).build()).collect();
        let page = Page { total: 7, calls };
        let now = 1_000_000;
        let plain = success_body(&page, now, 1, 0, false);
        assert_eq!(plain["retCode"], "0");
        assert_eq!(plain["retMsg"], "Query call detail record successfully");
        assert_eq!(plain["result"]["total"], 7);
        assert_eq!(plain["result"]["callInfo"].as_array().unwrap().len(), 3);
        let stringy = success_body(&page, now, 1, 2, false);
        assert_eq!(stringy["result"]["total"], "7");

        let bad = success_body(&page, now, 1, 5, true);
        let info = bad["result"]["callInfo"].as_array().unwrap();
        assert_eq!(info.len(), 6);
        assert_eq!(info.iter().filter(|v| **v == json!(42)).count(), 1);
        assert_eq!(info.iter().filter(|v| v.is_object() && v.get("callSerialNo").is_none()).count(), 1);
        assert_eq!(info.iter().filter(|v| v["state"] == "banana").count(), 1);
        let good: Vec<_> =
            info.iter().filter_map(|v| v.get("callSerialNo")?.as_str()).filter(|s| s.starts_with("1037")).collect();
        assert_eq!(good.len(), 3);
    }

    #[test]
    fn no_data_body_both_forms() {
        assert_eq!(no_data_body(0), json!({"retCode":"1","retMsg":"No data is found."}));
        assert_eq!(no_data_body(1)["result"]["callInfo"], json!([]));
        assert_eq!(no_data_body(1)["retCode"], "1");
    }
}
