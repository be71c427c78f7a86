#![no_main]
//! Fuzz target: see `eloss_perception_fuzz::kitti_calib`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| eloss_perception_fuzz::kitti_calib(data));
