//! The state machine fed arbitrary event sequences: no panic, only spec close codes, no
//! operation before the ack, never more live operations than the limit.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(data, false));
