#![no_main]
//! Fuzz target: see `eloss_perception_fuzz::cdr_messages`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| eloss_perception_fuzz::cdr_messages(data));
