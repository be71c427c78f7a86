//! The node over real DDS: an rclpy process (tests/python/node_peer.py)
//! publishes good and malformed clouds, images and camera infos to the node
//! binary over loopback and reads back its diagnostics.
#![cfg(feature = "ros")]
mod common;

use common::{counter, NodeProcess};
use serde_json::Value;
use std::process::Command;

/// Checks one exchange of the peer: the message (sent `sends` times, as
/// best-effort delivery may lose some) moved exactly the expected counter
/// and no other, and returns the node's stats after it.
fn exchange<'a>(r: &'a Value, what: &str, good: bool) -> &'a Value {
    let e = &r[what];
    let (before, after) = (&e["before"], &e["after"]);
    let sends = e["sends"].as_u64().unwrap();
    let (moved, still) = if good { ("frames_processed", "frames_malformed") } else { ("frames_malformed", "frames_processed") };
    let delta = counter(after, moved) - counter(before, moved);
    assert!((1..=sends).contains(&delta), "{what}: {moved} grew by {delta} after {sends} sends");
    assert_eq!(counter(after, still), counter(before, still), "{what}: {still} must not change");
    after
}

#[test]
fn node_decodes_real_and_malformed_input_over_dds() {
    let (Some(py), Some(kitti)) = (common::python(), common::kitti_dir()) else { return };
    let ns = format!("/eloss_test_{}", std::process::id());
    let node = NodeProcess::start(&ns, &[]);
    let out = Command::new(py)
        .arg(common::repo().join("tests/python/node_peer.py"))
        .args(["drive", &ns])
        .arg(kitti.join("000008.bin"))
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .expect("run node_peer.py");
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("peer prints JSON");

    // the real KITTI cloud: every point is finite and inside the default range limits
    assert_eq!(counter(exchange(&r, "kitti_cloud", true), "last_elements"), 17_238);
    let truncated = exchange(&r, "truncated_cloud", false);
    assert!(truncated["last_error"].as_str().unwrap().contains("bytes but its layout needs"), "{truncated}");
    let no_xyz = exchange(&r, "cloud_without_xyz", false);
    assert!(no_xyz["last_error"].as_str().unwrap().contains('x'), "{no_xyz}");
    // run-time parameters: max range 10 m applies to the next frame; an
    // invalid value (-1 m) is accepted by ROS but refused by the node, which keeps 10 m
    let pts = eloss_perception::cloud::kitti_bin::read(kitti.join("000008.bin")).unwrap();
    let within_10m =
        (0..pts.len()).filter(|&i| (pts.x[i].powi(2) + pts.y[i].powi(2) + pts.z[i].powi(2)).sqrt() <= 10.0).count() as u64;
    assert!(within_10m > 100 && within_10m < 17_238, "{within_10m}");
    assert_eq!(r["set_max_range_10"], true);
    assert_eq!(counter(exchange(&r, "cloud_within_10m", true), "last_elements"), within_10m);
    assert_eq!(counter(exchange(&r, "cloud_after_bad_param", true), "last_elements"), within_10m);
    assert_eq!(r["set_max_range_200"], true);
    // camera.calib_file = /dev/zero: refused with the reason, and clouds are still processed
    let dev_zero = &r["set_calib_dev_zero"];
    assert_eq!(dev_zero["successful"], false, "{dev_zero}");
    assert!(dev_zero["reason"].as_str().unwrap().contains("is a character device, not a regular file"), "{dev_zero}");
    assert!(dev_zero["seconds"].as_f64().unwrap() < 5.0, "{dev_zero}");
    exchange(&r, "cloud_after_calib_dev_zero", true);
    // float64 xyz + uint8 intensity in padded 32-byte points, NaN rows dropped
    let padded = exchange(&r, "f64_padded_cloud", true);
    assert_eq!(counter(padded, "last_elements"), r["f64_padded_cloud"]["expected_points"].as_u64().unwrap());
    assert_eq!(counter(exchange(&r, "bgr8_image", true), "last_elements"), 64 * 48);
    let unknown = exchange(&r, "unknown_encoding", false);
    assert!(unknown["last_error"].as_str().unwrap().contains("yuv422_yuy2"), "{unknown}");
    assert_eq!(counter(exchange(&r, "mono16_image", true), "last_elements"), 32 * 16);
    exchange(&r, "camera_info", true);
    exchange(&r, "uncalibrated_camera_info", false);
    // GDC is off (no bank): decoded images are counted, not kept (issue 13 item 8)
    assert_eq!(r["gdc"]["history_image_bytes"], "0", "{}", r["gdc"]);
    // the node kept serving after every malformed message and exits cleanly
    assert!(node.stop().success(), "node exits cleanly on SIGINT");
}

/// Broken weights never stop the node: a corrupt detector checkpoint and a
/// corrupt GDC bank are ERROR diagnostics naming the file, and clouds are
/// still decoded and counted.
#[test]
fn corrupt_weights_are_errors_in_diagnostics_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (model, bank) = (dir.path().join("broken_model.safetensors"), dir.path().join("broken_bank.safetensors"));
    std::fs::write(&model, b"PK\x03\x04 a zip, not safetensors").unwrap();
    std::fs::write(&bank, [0u8; 3]).unwrap();
    let ns = format!("/eloss_broken_{}", std::process::id());
    let node = NodeProcess::start(&ns, &[format!("detector.model_path:={}", model.display()), format!("gdc.bank_path:={}", bank.display())]);
    let Some(d) = common::peer_status(&ns, 1) else { return };
    assert_eq!(d["detector"]["level"], 2, "{}", d["detector"]);
    assert!(d["detector"]["message"].as_str().unwrap().contains("broken_model.safetensors"), "{}", d["detector"]);
    assert_eq!(d["gdc"]["level"], 2, "{}", d["gdc"]);
    assert!(d["gdc"]["message"].as_str().unwrap().contains("broken_bank.safetensors"), "{}", d["gdc"]);
    assert!(counter(&d["point cloud input"], "frames_processed") >= 1, "{}", d["point cloud input"]);
    assert!(node.stop().success(), "node exits cleanly on SIGINT");
}

/// `detector.device:=cuda` on a machine without a GPU: the detector is not
/// loaded, the detector diagnostic says why (ERROR), and the node keeps
/// decoding clouds. (On a machine with CUDA the device is used instead.)
#[test]
fn cuda_requested_without_a_gpu_is_reported_and_the_node_keeps_decoding() {
    if tch::Cuda::is_available() {
        common::skip_note("a CUDA device is present: detector.device:=cuda is valid here");
        return;
    }
    let ns = format!("/eloss_cuda_{}", std::process::id());
    let node = NodeProcess::start(&ns, &["detector.device:=cuda".to_string()]);
    let Some(d) = common::peer_status(&ns, 1) else { return };
    assert_eq!(d["detector"]["level"], 2, "{}", d["detector"]);
    assert!(d["detector"]["message"].as_str().unwrap().contains("no CUDA device is available"), "{}", d["detector"]);
    assert!(counter(&d["point cloud input"], "frames_processed") >= 1, "{}", d["point cloud input"]);
    assert!(node.stop().success(), "node exits cleanly on SIGINT");
}
