//! `eloss replay` over real DDS: a bag written from the KITTI frame is
//! replayed at its recorded rate and an rclpy subscriber checks every cloud's
//! content, stamp and spacing.
#![cfg(feature = "ros")]
mod common;

use eloss_perception::bag::kitti_drive::{self, DriveSpec, TOPIC_POINTS};
use serde_json::Value;
use std::process::{Command, Stdio};

#[test]
fn replay_publishes_bag_with_recorded_timing() {
    let (Some(py), Some(kitti)) = (common::python(), common::kitti_dir()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("drive.mcap");
    let spec = DriveSpec { frames: 5, hz: 10.0, lidar_frame: "velodyne".into(), camera_frame: "camera".into() };
    assert_eq!(kitti_drive::write(&kitti.join("000008.bin"), None, None, &spec, &bag).unwrap(), 5);
    let points = eloss_perception::cloud::kitti_bin::read(kitti.join("000008.bin")).unwrap();
    let sum_x: f64 = points.x.iter().map(|&x| x as f64).sum();

    let listener = Command::new(py)
        .arg(common::repo().join("tests/python/node_peer.py"))
        .args(["listen", TOPIC_POINTS, "5", "60"])
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start listener");
    let replay = Command::new(env!("CARGO_BIN_EXE_eloss"))
        .args(["replay", "--rate", "1.0", "--wait-subscribers", "30"])
        .arg(&bag)
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .expect("run eloss replay");
    assert!(replay.status.success(), "replay failed: {}", String::from_utf8_lossy(&replay.stderr));
    let out = listener.wait_with_output().unwrap();
    assert!(out.status.success(), "listener failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let clouds = r["clouds"].as_array().unwrap();
    assert_eq!(clouds.len(), 5);
    let mut stamps = Vec::new();
    for c in clouds {
        assert_eq!(c["width"], 17_238);
        assert_eq!(c["frame_id"], "velodyne");
        assert!((c["sum_x"].as_f64().unwrap() - sum_x).abs() < 1e-6 * sum_x.abs(), "{c} vs {sum_x}");
        stamps.push(c["stamp_ns"].as_i64().unwrap());
    }
    // stamps 100 ms apart, in order; paced at rate 1, publishing 5 frames
    // recorded over 400 ms takes at least that long (delivery jitter is not ours)
    assert!(stamps.windows(2).all(|w| w[1] - w[0] == 100_000_000), "{stamps:?}");
    let stdout = String::from_utf8_lossy(&replay.stdout);
    let secs: f64 = stdout
        .trim()
        .strip_prefix("published 5 messages in ")
        .and_then(|s| s.strip_suffix(" s"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected replay output {stdout:?}"));
    assert!(secs >= 0.399, "5 frames recorded at 10 Hz replayed in {secs} s");
}
