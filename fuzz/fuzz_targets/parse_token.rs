//! `parse_token` over arbitrary bytes: never panics; a token is never empty or padded; an error's
//! text never contains the input's strings (a token endpoint's body may be, or hold, a token).
#![no_main]

#[path = "common.rs"]
mod common;

use cec_exporter::cec::wire::parse_token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_token(data) {
        Err(e) => common::assert_no_echo(data, &e.to_string()),
        Ok(t) => {
            let token = t.access_token.expose();
            assert!(!token.is_empty(), "an empty token was accepted");
            assert_eq!(token, token.trim(), "a token keeps surrounding whitespace");
            // Short tokens collide with the struct's own words in the Debug text.
            let debug = format!("{t:?}");
            assert!(token.len() < 8 || !debug.contains(token), "Debug of a token answer prints the token: {debug}");
        }
    }
});
