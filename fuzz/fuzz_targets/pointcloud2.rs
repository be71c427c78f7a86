#![no_main]
//! Fuzz target: see `eloss_perception_fuzz::pointcloud2`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| eloss_perception_fuzz::pointcloud2(data));
