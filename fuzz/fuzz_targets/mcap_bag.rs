#![no_main]
//! Fuzz target: see `eloss_perception_fuzz::mcap_bag`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| eloss_perception_fuzz::mcap_bag(data));
