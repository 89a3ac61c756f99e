//! The store's decoding of its own records. `store::load` reads a redb file, so it is not a pure
//! function over bytes; this target fuzzes what it does with each record's bytes instead: the serde
//! decoding of `Scalars`, `Aggregates` (then `conform_buckets`, as `load` does) and `OpenCall`.
//! The first input byte picks the record type, the rest is the record. Beyond "no panic": whatever
//! decodes must encode again into bytes that decode to the same value (issue 8, finding 2: a value
//! the store writes must be one it can read back).
#![no_main]

use cec_exporter::ingest::ledger::{OpenCall, Scalars};
use cec_exporter::metrics::aggregate::Aggregates;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes `bytes` as `T`; when that works, checks that its encoding decodes back to an equal value.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(bytes: &[u8], fix: impl Fn(&mut T)) {
    let Ok(mut v) = serde_json::from_slice::<T>(bytes) else { return };
    fix(&mut v);
    let encoded = serde_json::to_vec(&v).expect("a decoded record encodes");
    let again: T = match serde_json::from_slice(&encoded) {
        Ok(a) => a,
        Err(e) => panic!("the store could not read back what it wrote: {e}: {}", String::from_utf8_lossy(&encoded)),
    };
    assert_eq!(again, v, "a record changed on its way through the store");
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    match kind % 3 {
        0 => round_trip::<Scalars>(rest, |_| {}),
        1 => round_trip::<Aggregates>(rest, |a| {
            a.conform_buckets();
        }),
        _ => round_trip::<OpenCall>(rest, |_| {}),
    }
});
