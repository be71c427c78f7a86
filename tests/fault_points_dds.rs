//! Faults injected into the running node over real DDS at its fail points
//! (tikv's `fail` crate, feature `failpoints`, set through `FAILPOINTS`;
//! docs/reliability.md): a panic where the detector loads, where one frame
//! is detected, where the GDC classifier loads and where the class generator
//! loads, and a real allocation failure (out of memory) while the detector
//! loads. Each must be an ERROR diagnostic (or, for the generator, an error
//! response and a failed class) with the cause while the node keeps serving;
//! an rclpy peer (tests/python/node_peer.py) publishes clouds, calls the
//! services and reads the diagnostics back. scripts/test.sh builds with the
//! feature; without it the node has no fail points and these tests are not
//! compiled.
#![cfg(all(feature = "ros", feature = "failpoints"))]
mod common;

use common::NodeProcess;
use serde_json::Value;
use std::process::Command;

fn counter(v: &Value, key: &str) -> u64 {
    v[key].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// Publishes the real KITTI cloud until the node counts `clouds` processed,
/// then returns the node's diagnostics by name.
fn diagnostics_after(ns: &str, clouds: u32) -> Option<Value> {
    let (py, kitti) = (common::python()?, common::kitti_dir()?);
    let out = Command::new(py)
        .arg(common::repo().join("tests/python/node_peer.py"))
        .args(["status", ns])
        .arg(kitti.join("000008.bin"))
        .arg(clouds.to_string())
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .expect("run node_peer.py");
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("peer prints JSON"))
}

#[test]
fn a_panic_while_the_detector_loads_is_an_error_and_clouds_are_still_counted() {
    let ns = format!("/eloss_fp_load_{}", std::process::id());
    let node = NodeProcess::start_with_failpoints(&ns, &[], "detector_load=panic(injected load failure)");
    let Some(d) = diagnostics_after(&ns, 2) else { return };
    assert_eq!(d["detector"]["level"], 2, "{}", d["detector"]);
    let message = d["detector"]["message"].as_str().unwrap();
    assert!(message.contains("loading panicked: injected load failure"), "{message}");
    assert!(counter(&d["point cloud input"], "frames_processed") >= 2, "{}", d["point cloud input"]);
    assert_eq!(d["workers"]["level"], 0, "no worker died: {}", d["workers"]);
    assert!(node.stop().success(), "node exits cleanly on SIGINT");
}

/// Out of memory at load: libtorch is really asked for 1 PiB (beyond any
/// address space, whatever the overcommit setting) on the load path.
#[test]
fn an_allocation_failure_while_the_detector_loads_is_an_error_and_clouds_are_still_counted() {
    let ns = format!("/eloss_fp_oom_{}", std::process::id());
    let node = NodeProcess::start_with_failpoints(&ns, &[], "detector_load_alloc=return(1125899906842624)");
    let Some(d) = diagnostics_after(&ns, 2) else { return };
    assert_eq!(d["detector"]["level"], 2, "{}", d["detector"]);
    let message = d["detector"]["message"].as_str().unwrap();
    assert!(message.contains("allocating 1125899906842624 bytes") && message.contains("memory"), "{message}");
    assert!(counter(&d["point cloud input"], "frames_processed") >= 2, "{}", d["point cloud input"]);
    assert_eq!(d["workers"]["level"], 0, "no worker died: {}", d["workers"]);
    assert!(node.stop().success(), "node exits cleanly on SIGINT");
}

#[test]
fn a_panic_on_one_frame_fails_that_frame_and_the_next_ones_are_detected() {
    let ns = format!("/eloss_fp_frame_{}", std::process::id());
    // the first frame's detection panics, the fail point is off afterwards
    let node = NodeProcess::start_with_failpoints(&ns, &[], "detector_frame=1*panic(injected frame failure)");
    let Some(d) = diagnostics_after(&ns, 3) else { return };
    let detector = &d["detector"];
    assert_eq!(counter(detector, "failures"), 1, "{detector}");
    assert!(counter(detector, "frames") >= 2, "frames after the failed one are detected: {detector}");
    assert_eq!(d["workers"]["level"], 0, "the cloud worker survived: {}", d["workers"]);
    assert!(node.stop().success(), "node exits cleanly on SIGINT");
}

#[test]
fn a_panic_while_the_gdc_classifier_loads_is_an_error_naming_it() {
    let ns = format!("/eloss_fp_gdc_{}", std::process::id());
    let params = ["gdc.bank_path:=/nonexistent/bank.safetensors".to_string()];
    let node = NodeProcess::start_with_failpoints(&ns, &params, "gdc_load=panic(injected gdc failure)");
    let Some(d) = diagnostics_after(&ns, 5) else { return };
    assert_eq!(d["gdc"]["level"], 2, "{}", d["gdc"]);
    let message = d["gdc"]["message"].as_str().unwrap();
    assert!(message.contains("the GDC loader panicked: injected gdc failure"), "was 'loading' forever: {message}");
    assert!(counter(&d["detector"], "frames") >= 1, "detection goes on: {}", d["detector"]);
    assert!(node.stop().success(), "node exits cleanly on SIGINT");
}

#[test]
fn a_panic_while_the_class_generator_loads_fails_the_request_and_the_next_one_succeeds() {
    let Some(py) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bank = common::tiny_gdc(&py, dir.path());
    let ns = format!("/eloss_fp_generator_{}", std::process::id());
    let params = [
        format!("gdc.bank_path:={}", bank.display()),
        format!("gdc.backbone_path:={}", dir.path().join("plain").display()),
        format!("gdc.generator.path:={}", dir.path().join("sd").display()),
        "gdc.generator.per_class:=3".into(),
        "gdc.generator.steps:=2".into(),
        "gdc.generator.size:=32".into(),
        format!("gdc.generator.cache_dir:={}", dir.path().join("cache").display()),
    ];
    // the first load panics, the fail point is off afterwards
    let node = NodeProcess::start_with_failpoints(&ns, &params, "generator_load=1*panic(injected generator failure)");
    let out = Command::new(&py)
        .arg(common::repo().join("tests/python/node_peer.py"))
        .args(["add_after_failed_load", &ns, "traffic_cone"])
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .expect("run node_peer.py");
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("peer prints JSON");
    let first = &r["first"];
    assert_eq!(first["success"], false, "{first}");
    assert!(first["error"].as_str().unwrap().contains("loading panicked: injected generator failure"), "{first}");
    let failed = &r["status_after_failure"]["failed"]["traffic_cone"];
    assert!(failed.as_str().unwrap().contains("injected generator failure"), "{}", r["status_after_failure"]);
    let d = &r["diagnostics_after_failure"];
    assert_eq!(d["workers"]["level"], 0, "the class generator worker survived: {}", d["workers"]);
    let second = &r["second"];
    assert_eq!((second["success"].as_bool(), second["ready"].as_bool()), (Some(true), Some(true)), "{second}");
    assert!(second["classes"].as_array().unwrap().iter().any(|c| c == "traffic_cone"), "{second}");
    assert!(node.stop().success(), "node exits cleanly on SIGINT");
}
