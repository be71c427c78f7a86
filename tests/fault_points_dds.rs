//! Faults injected into the running node over real DDS at its fail points
//! (tikv's `fail` crate, feature `failpoints`, set through `FAILPOINTS`;
//! docs/reliability.md): a panic where the detector loads, where one frame
//! is detected, where the GDC classifier loads and where the class generator
//! loads, a real allocation failure (out of memory) while the detector
//! loads, and a GDC loader held up for seconds. Each failure must be an ERROR
//! diagnostic (or, for the generator, an error response and a failed class)
//! with the cause while the node keeps serving; rclpy peers
//! (tests/python/node_peer.py, gdc_loading_peer.py) publish clouds, call the
//! services and read the diagnostics back. scripts/test.sh builds with the
//! feature; without it the node has no fail points and these tests are not
//! compiled.
#![cfg(all(feature = "ros", feature = "failpoints"))]
mod common;

use common::{counter, NodeProcess};
use serde_json::Value;
use std::process::Command;

#[test]
fn a_panic_while_the_detector_loads_is_an_error_and_clouds_are_still_counted() {
    let ns = format!("/eloss_fp_load_{}", std::process::id());
    let node = NodeProcess::start_with_failpoints(&ns, &[], "detector_load=panic(injected load failure)");
    let Some(d) = common::peer_status(&ns, 2) else { return };
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
    let Some(d) = common::peer_status(&ns, 2) else { return };
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
    let Some(d) = common::peer_status(&ns, 3) else { return };
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
    let Some(d) = common::peer_status(&ns, 5) else { return };
    assert_eq!(d["gdc"]["level"], 2, "{}", d["gdc"]);
    let message = d["gdc"]["message"].as_str().unwrap();
    assert!(message.contains("the GDC loader panicked: injected gdc failure"), "was 'loading' forever: {message}");
    assert!(counter(&d["detector"], "frames") >= 1, "detection goes on: {}", d["detector"]);
    assert!(node.stop().success(), "node exits cleanly on SIGINT");
}

/// GDC still loading (the loader held 15 s by the `gdc_load` fail point, a
/// real bank behind it): the diagnostics say it is loading; a `~/relabel`
/// request sent meanwhile is held, not refused, and answered with labels once
/// the bank is in (node_gdc.rs: requests wait for the loader); auto
/// relabelling publishes the frames of that time without labels, counted with
/// the reason "GDC is still loading"; after the load the node labels at once.
#[test]
fn while_gdc_loads_relabel_waits_and_auto_relabel_says_so() {
    let Some(py) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (bank, backbone) = common::dinov2_colour_bank(&py, dir.path());
    // a simulated HDL-64E scan with cars ahead (no ../shared data needed)
    let (cloud, _) = common::simulated_frame(dir.path());
    let png = dir.path().join("patches.png");
    let mut scene = ::image::RgbImage::new(200, 100);
    for (c, (_, rgb)) in common::COLOUR_CLASSES.iter().take(2).enumerate() {
        ::image::imageops::replace(&mut scene, &common::noisy_image(*rgb, 100, 100, 50_000 + c as u64), 100 * c as i64, 0);
    }
    scene.save(&png).unwrap();
    let ns = format!("/eloss_fp_gdc_loading_{}", std::process::id());
    let params = [
        format!("gdc.bank_path:={}", bank.display()),
        format!("gdc.backbone_path:={}", backbone.display()),
        "gdc.auto_relabel:=true".to_string(),
    ];
    let node = NodeProcess::start_with_failpoints(&ns, &params, "gdc_load=sleep(15000)");
    let out = Command::new(&py)
        .arg(common::repo().join("tests/python/gdc_loading_peer.py"))
        .args(["gdc_loading", &ns])
        .arg(&cloud)
        .arg(&png)
        .arg("10,10,90,90;110,10,190,90")
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .expect("run gdc_loading_peer.py");
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("peer prints JSON");

    for when in ["gdc_when_sent", "gdc_while_loading"] {
        let gdc = &r[when];
        assert_eq!((gdc["level"].as_u64(), gdc["message"].as_str()), (Some(0), Some("loading the class bank and backbone")), "{when}: {gdc}");
    }
    let detector = &r["detector_while_loading"];
    assert_eq!(detector["gdc_last_skip"], "GDC is still loading", "{detector}");
    assert!(counter(detector, "frames") >= 1, "detection goes on while GDC loads: {detector}");
    assert_eq!(r["held_done_while_loading"], false, "the request was answered before the load ended: {r}");
    let held = &r["held"];
    assert_eq!(held["success"], true, "{held}");
    assert!(held["call_s"].as_f64().unwrap() > 2.0, "held until the load ended: {held}");
    let labels = held["labels"].as_array().unwrap();
    let names: Vec<&str> = common::COLOUR_CLASSES.iter().take(2).map(|c| c.0).collect();
    assert_eq!(labels.iter().map(|l| l["label"].as_str().unwrap()).collect::<Vec<_>>(), names, "{held}");
    let after = &r["gdc_after"];
    assert_eq!((after["level"].as_u64(), after["classes"].as_str()), (Some(0), Some("3")), "{after}");
    let skip = r["detector_after"]["gdc_last_skip"].as_str().unwrap();
    assert!(skip.starts_with("no camera image within"), "past the classifier once loaded: {skip}");
    let again = &r["again"];
    assert_eq!(again["success"], true, "{again}");
    assert_eq!(again["labels"], held["labels"], "the same answer without the wait");
    assert!(again["call_s"].as_f64().unwrap() < held["call_s"].as_f64().unwrap(), "{again} vs {held}");
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
