//! `parse_page` over arbitrary bytes: never panics; a parsed page has exactly one entry (record or
//! rejection) per `callInfo` element, each parsed record's id is that element's `callSerialNo`;
//! an error's text never echoes the input's strings.
#![no_main]

#[path = "common.rs"]
mod common;

use cec_exporter::cec::wire::parse_page;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    match parse_page(data) {
        Err(e) => common::assert_no_echo(data, &e.to_string()),
        Ok(page) => {
            // `Value` is stricter than the typed parse (it refuses `1e309` even where the page
            // ignores it), so the structural checks apply only when both read the input.
            let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
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
