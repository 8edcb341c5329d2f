//! Both codecs fed arbitrary text frames through the state machine, with the same
//! invariants as the `machine` target.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(data, true));
