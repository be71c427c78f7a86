//! The detector in the node over real DDS: an rclpy peer publishes a
//! simulated 64-beam cloud the model never saw, and the boxes that come back
//! on `detections` (and the RViz markers) must match the scene's ground truth.
#![cfg(feature = "ros")]
mod common;

use eloss_perception::dataset::sim::anomalies::{Anomaly, Severity};
use eloss_perception::dataset::sim::{Lidar, LidarConfig, SceneConfig, SimClass};
use eloss_perception::detect::iou::iou_bev;
use eloss_perception::geometry::Box3D;
use serde_json::Value;
use std::process::Command;

fn json_box(b: &Value) -> Box3D {
    let v = |k: &str, i: usize| b[k][i].as_f64().unwrap();
    Box3D { center: [v("center", 0), v("center", 1), v("center", 2)], size: [v("size", 0), v("size", 1), v("size", 2)], yaw: b["yaw"].as_f64().unwrap() }
}

#[test]
fn node_publishes_boxes_matching_a_simulated_clouds_ground_truth() {
    let Some(py) = common::python() else { return };
    // training used `eloss simulate` seeds 1 and 2; this scene is new
    let seed = 20_261_127;
    let scene = SceneConfig::default().generate(seed).unwrap();
    let snap = scene.snapshot(0.0);
    let scan = Lidar::new(LidarConfig::hdl64e()).unwrap().scan(&scene, &snap, seed);
    let pts = &scan.points;
    // cars the detector can see: ahead in its range, with enough returns
    let visible: Vec<Box3D> = snap
        .labels_in(&scan.sensor)
        .into_iter()
        .filter(|(_, c, b)| *c == SimClass::Car && b.center[0] > 2.0 && b.center[0] < 60.0 && b.center[1].abs() < 30.0)
        .map(|(_, _, b)| b)
        .filter(|b| (0..pts.len()).filter(|&i| b.contains([pts.x[i] as f64, pts.y[i] as f64, pts.z[i] as f64])).count() >= 100)
        .collect();
    assert!(visible.len() >= 2, "the scene has visible cars ({})", visible.len());

    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("cloud.bin");
    eloss_perception::cloud::kitti_bin::write(&bin, pts).unwrap();
    // the same scan with 30 % of its returns replaced by spurious points (a failing sensor:
    // six times the simulator's strongest default noise, which docs/eloss_monitor.md
    // shows is only partly separable frame by frame)
    let mut noisy = pts.clone();
    Anomaly::Noise { max_fraction: 0.3 }.apply(&mut noisy, Severity::new(1.0).unwrap(), seed).unwrap();
    let noisy_bin = dir.path().join("noisy.bin");
    eloss_perception::cloud::kitti_bin::write(&noisy_bin, &noisy).unwrap();
    let ns = format!("/eloss_detect_{}", std::process::id());
    let node = common::NodeProcess::start(&ns, &[]);
    let out = Command::new(py)
        .arg(common::repo().join("tests/python/node_peer.py"))
        .args(["detect", &ns])
        .arg(&bin)
        .arg(&noisy_bin)
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .expect("run node_peer.py");
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("peer prints JSON");
    let dets = &r["detections"];
    assert_eq!(dets["frame_id"], "lidar_top", "boxes are in the cloud's frame");
    assert!(dets["model_id"].as_str().unwrap().starts_with("compact_eloss@"), "{}", dets["model_id"]);
    let boxes = dets["boxes"].as_array().unwrap();
    for b in boxes {
        let (qz, qw, yaw) = (b["qz"].as_f64().unwrap(), b["qw"].as_f64().unwrap(), b["yaw"].as_f64().unwrap());
        // the same angle modulo 2π (the quaternion's angle and the yaw field may differ by a turn)
        let turn = std::f64::consts::TAU;
        let diff = (2.0 * qz.atan2(qw) - yaw + turn / 2.0).rem_euclid(turn) - turn / 2.0;
        assert!(diff.abs() < 1e-5, "pose encodes yaw {yaw}, quaternion angle {}", 2.0 * qz.atan2(qw));
        assert!(b["score"].as_f64().unwrap() >= 0.3);
    }
    let cars: Vec<(Box3D, f64)> =
        boxes.iter().filter(|b| b["class_name"] == "Car").map(|b| (json_box(b), b["score"].as_f64().unwrap())).collect();
    let found = visible.iter().filter(|g| cars.iter().any(|(d, _)| iou_bev(d, g) >= 0.5)).count();
    eprintln!("{} visible cars, {} found at BEV IoU >= 0.5; {} car boxes published", visible.len(), found, cars.len());
    assert!(found * 10 >= visible.len() * 7, "found {found} of {} visible cars", visible.len());
    // confident car boxes sit on real objects
    let labels: Vec<Box3D> = snap.labels_in(&scan.sensor).into_iter().map(|(_, _, b)| b).collect();
    let confident: Vec<&Box3D> = cars.iter().filter(|(_, s)| *s >= 0.6).map(|(b, _)| b).collect();
    let on_objects = confident.iter().filter(|d| labels.iter().any(|g| iou_bev(d, g) > 0.3)).count();
    assert!(on_objects * 10 >= confident.len() * 8, "{on_objects} of {} confident car boxes are on objects", confident.len());

    let markers = r["markers"].as_array().unwrap();
    assert_eq!(markers.len(), 1 + 2 * boxes.len(), "DELETEALL + a box and a label per detection");
    assert_eq!(markers[0]["action"], 3);
    assert!(markers.iter().all(|m| m["frame_id"] == "lidar_top"));
    let diag = &r["diagnostics"];
    assert!(diag["total_mean_ms"].as_str().unwrap().parse::<f64>().unwrap() > 0.0, "{diag}");
    assert_eq!(diag["model_id"], dets["model_id"]);

    // Eloss of the same forward pass: calibrated, normal for the clean scan ...
    let normal = &r["eloss_normal"];
    assert_eq!(normal["model_id"], dets["model_id"]);
    assert_eq!(normal["calibrated"], true, "{normal}");
    assert_eq!(normal["layers"], 16);
    assert!(normal["eloss"].as_f64().unwrap().is_finite());
    assert_eq!(normal["anomaly"], false, "{normal}");
    assert_eq!(normal["anomalous_frame"], false, "{normal}");
    assert!(normal["compute_time_ms"].as_f64().unwrap() > 0.0, "{normal}");
    // ... and an alarm once the noisy scans keep coming (hysteresis: 3 of 5 frames)
    let bad = r["eloss_anomalous"].as_array().unwrap();
    assert!(bad.iter().all(|b| b["score"].as_f64().unwrap() > b["threshold"].as_f64().unwrap()), "{bad:?}");
    // every frame is anomalous on its own; the alarm waits for the hysteresis
    assert!(bad.iter().all(|b| b["anomalous_frame"] == true), "{bad:?}");
    assert_eq!(bad[0]["anomaly"], false, "one frame is not enough");
    assert_eq!(bad[bad.len() - 1]["anomaly"], true, "{bad:?}");
    // our detections carry the frame's anomaly context; with eloss.on_alarm = publish
    // (the default) the alarmed frames' boxes go out as they are
    for b in bad {
        let c = &b["context"];
        assert_eq!(c["anomaly"], b["anomaly"], "{b}");
        assert!((c["anomaly_score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 1e-9, "{b}");
        assert_eq!(c["on_alarm"], if b["anomaly"] == true { "publish" } else { "" }, "{b}");
        assert_eq!(c["score_factor"], 1.0);
        assert_eq!(c["boxes"], b["standard_boxes"], "{b}");
    }
    assert!(bad.iter().any(|b| b["anomaly"] == true && b["standard_boxes"].as_u64().unwrap() > 0), "the noisy scans still give boxes: {bad:?}");
    // set at run time to suppress: an unknown policy is refused, and while the
    // alarm stays up no boxes are published on either topic
    assert_eq!(r["set_on_alarm_drop"], false);
    assert_eq!(r["set_on_alarm_suppress"], true);
    for b in r["suppressed"].as_array().unwrap() {
        assert_eq!(b["anomaly"], true, "{b}");
        assert_eq!(b["context"]["on_alarm"], "suppress", "{b}");
        assert_eq!((b["context"]["boxes"].as_u64(), b["standard_boxes"].as_u64()), (Some(0), Some(0)), "{b}");
    }
    let diag = &r["eloss_diagnostics"];
    assert_eq!(diag["on_alarm"], "suppress", "{diag}");
    assert!(diag["message"].as_str().unwrap().contains("detections suppressed"), "{diag}");
    assert!(diag["boxes_withheld"].as_str().unwrap().parse::<u64>().unwrap() > 0, "{diag}");
    // eloss.enabled = false at run time: boxes still come (the normal cloud),
    // without a report or an anomaly score, and diagnostics say it is off
    assert_eq!(r["set_enabled_false"], true);
    let off = &r["monitor_off"];
    for (c, report) in off["context"].as_array().unwrap().iter().zip(off["reports"].as_array().unwrap()) {
        assert!(c["boxes"].as_u64().unwrap() > 0 && c["anomaly_score"].is_null() && c["anomaly"] == false, "{off}");
        assert!(report.is_null(), "no Eloss report while the monitor is off: {off}");
    }
    assert_eq!(off["diagnostics"]["level"], 0, "{off}");
    assert!(off["diagnostics"]["message"].as_str().unwrap().starts_with("off"), "{off}");
    let frames = &off["detector_frames"];
    assert!(frames[1].as_u64().unwrap() >= frames[0].as_u64().unwrap() + 2, "the detector diagnostics keep counting: {off}");
    assert!(node.stop().success());
}
