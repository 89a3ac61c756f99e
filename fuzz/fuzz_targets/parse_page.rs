//! `parse_page` over arbitrary bytes: never panics; a parsed page has exactly one entry (record or
//! rejection) per `callInfo` element, each parsed record's id is that element's `callSerialNo`
//! (where a key repeats, its first value: the parser's rule); an error's text never echoes the
//! input's strings; whatever `serde_json::Value` reads, the page parser reads too (it is only more
//! lenient).
#![no_main]

#[path = "common.rs"]
mod common;

use cec_exporter::cec::wire::parse_page;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    match parse_page(data) {
        Err(e) => {
            common::assert_no_echo(data, &e.to_string());
            // A page shaped as documented that `Value` reads must never fail.
            if let Ok(FirstWins(v)) = serde_json::from_slice::<FirstWins>(data) {
                let shaped = v.is_object()
                    && matches!(v.get("result"), None | Some(Value::Null | Value::Object(_)))
                    && matches!(v.pointer("/result/callInfo"), None | Some(Value::Null | Value::Array(_)));
                assert!(!shaped, "a well-formed page failed: {e}");
            }
        }
        Ok(page) => {
            // `Value` is stricter than the typed parse (it refuses `1e309` and invalid UTF-8, which
            // the page reads as unusable values), so the structural checks apply only when both
            // read the input.
            let Ok(FirstWins(v)) = serde_json::from_slice::<FirstWins>(data) else { return };
            let entries = v.pointer("/result/callInfo").and_then(Value::as_array);
            let Some(entries) = entries else {
                assert!(page.records.is_empty(), "records without a callInfo array: {:?}", page.records.len());
                return;
            };
            assert_eq!(page.records.len(), entries.len(), "one entry per callInfo element");
            for (parsed, raw) in page.records.iter().zip(entries) {
                let Ok(r) = parsed else { continue };
                let serial = match raw.get("callSerialNo") {
                    Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
                    Some(Value::Number(n)) => n.as_u64(),
                    _ => None,
                };
                if let Some(serial) = serial {
                    assert_eq!(r.id.0, serial, "the id is the element's callSerialNo");
                }
            }
        }
    }
});

/// A `Value` in which a key that repeats keeps its first value, as the page parser does
/// (`serde_json::Value` keeps the last).
struct FirstWins(Value);

impl<'de> serde::Deserialize<'de> for FirstWins {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FirstWins;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, v: bool) -> Result<FirstWins, E> {
                Ok(FirstWins(Value::Bool(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<FirstWins, E> {
                Ok(FirstWins(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<FirstWins, E> {
                Ok(FirstWins(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<FirstWins, E> {
                Ok(FirstWins(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
            }
            fn visit_str<E>(self, v: &str) -> Result<FirstWins, E> {
                Ok(FirstWins(Value::String(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<FirstWins, E> {
                Ok(FirstWins(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstWins, A::Error> {
                let mut out = Vec::new();
                while let Some(FirstWins(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(FirstWins(Value::Array(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstWins, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some((k, FirstWins(v))) = map.next_entry::<String, FirstWins>()? {
                    out.entry(k).or_insert(v);
                }
                Ok(FirstWins(Value::Object(out)))
            }
        }
        d.deserialize_any(V)
    }
}
