//! The node in a vehicle's ROS graph (issue 12), over real DDS with an rclpy
//! peer that uses only standard message types (tests/python/vehicle_peer.py):
//! a LiDAR mounted y-forward at 1.84 m, placed only by `/tf_static`, gives
//! the same boxes in `base_link` as the KITTI-mounted original; sim time
//! from `/clock`; logs on `/rosout` at the launch file's level; run-time
//! parameters refused with their reason.
#![cfg(feature = "ros")]
mod common;

use eloss_perception::cloud::Points;
use eloss_perception::dataset::sim::{Lidar, LidarConfig, SceneConfig};
use eloss_perception::geometry::{wrap_angle, Box3D};
use eloss_perception::perception::{ElossSettings, FramePipeline};
use serde_json::Value;
use std::process::Command;

/// Height of the simulated LiDAR above the ground (the model's trained mounting).
const TRAINED_HEIGHT: f64 = 1.73;

fn scan(seed: u64) -> Points {
    let scene = SceneConfig::default().generate(seed).unwrap();
    let snap = scene.snapshot(0.0);
    Lidar::new(LidarConfig::hdl64e()).unwrap().scan(&scene, &snap, seed).points
}

fn peer(args: &[&str]) -> Value {
    let py = common::python().expect("checked by the caller");
    let out = Command::new(py)
        .arg(common::repo().join("tests/python/vehicle_peer.py"))
        .args(args)
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .expect("run vehicle_peer.py");
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("peer prints JSON")
}

#[test]
fn a_y_forward_lidar_placed_by_tf_static_gives_the_kitti_boxes_in_base_link() {
    if common::python().is_none() {
        return;
    }
    let original = scan(20_261_202);
    // the reference: the same points seen by a KITTI-mounted LiDAR, in-process
    let mut pipe = FramePipeline::load("", tch::Device::Cpu, &ElossSettings::default()).unwrap();
    let expected: Vec<(Box3D, usize, f32)> = pipe.process(&original, 0.3).unwrap().detections.iter().map(|d| (d.bbox, d.class, d.score)).collect();
    assert!(expected.len() >= 2, "the scene has detections ({})", expected.len());
    // a nuScenes-style LIDAR_TOP: its y axis points forward (base_from_sensor = 90 degrees
    // clockwise about z), 1.84 m above the ground instead of 1.73 m, intensities 0..255
    let height = 1.84;
    let mut mounted = original.clone();
    for i in 0..mounted.len() {
        let (x, y, z) = (original.x[i] as f64, original.y[i] as f64, original.z[i] as f64 + TRAINED_HEIGHT - height);
        // p_sensor = R^T p_base with R = Rz(-90°): x_s = -y_b, y_s = x_b
        mounted.x[i] = (-y) as f32;
        mounted.y[i] = x as f32;
        mounted.z[i] = z as f32;
        // and a driver's 0..255 intensities (cloud.intensity_scale brings them back)
        mounted.intensity[i] = original.intensity[i] * 255.0;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("lidar_top.bin");
    eloss_perception::cloud::kitti_bin::write(&bin, &mounted).unwrap();
    let h = std::f64::consts::FRAC_1_SQRT_2;
    let tf = serde_json::json!({"parent": "base_link", "translation": [0.0, 0.0, height], "rotation": [0.0, 0.0, -h, h]}).to_string();

    let ns = format!("/eloss_vehicle_{}", std::process::id());
    let node = common::NodeProcess::start(&ns, &["detector.frame:=base_link".into(), "detector.autoware_objects:=true".into(), "cloud.intensity_scale:=0.00392156862745098".into()]);
    let r = peer(&["mounted", &ns, bin.to_str().unwrap(), "lidar_top", &tf, "4242"]);
    assert!(node.stop().success(), "clean exit on SIGINT");

    let dets = &r["detections"];
    assert_eq!(dets["frame_id"], "base_link", "published in detector.frame");
    let boxes = dets["boxes"].as_array().unwrap();
    assert_eq!(boxes.len(), expected.len(), "same number of boxes as the KITTI mounting: {boxes:?}");
    let names = pipe.class_names();
    for (i, (e, class, score)) in expected.iter().enumerate() {
        let b = boxes.iter().find(|b| b["id"] == i.to_string()).unwrap_or_else(|| panic!("detection id {i} missing"));
        let c: Vec<f64> = b["center"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let dist = ((c[0] - e.center[0]).powi(2) + (c[1] - e.center[1]).powi(2) + (c[2] - TRAINED_HEIGHT - e.center[2]).powi(2)).sqrt();
        assert!(dist <= 0.1, "box {i}: centre {c:?} vs {:?} + 1.73 m ({dist:.3} m)", e.center);
        let dyaw = wrap_angle(b["yaw"].as_f64().unwrap() - e.yaw).abs();
        assert!(dyaw <= 2f64.to_radians(), "box {i}: yaw off by {dyaw:.4} rad");
        assert_eq!(b["class_id"], names[*class].as_str(), "box {i}: standard class_id is the class name");
        assert!((b["score"].as_f64().unwrap() - *score as f64).abs() < 1e-3, "box {i}: score");
        assert_eq!((b["frame_id"].as_str(), b["hypotheses"].as_u64()), (Some("base_link"), Some(1)));
    }
    let frames = &r["frames_diagnostics"];
    assert_eq!(frames["lidar_mounting"], "tf", "the mounting came from /tf_static: {frames}");
    assert_eq!(frames["output_frame"], "base_link");
    // Autoware's view of the same frame
    let objects = r["objects"]["objects"].as_array().unwrap();
    assert_eq!(r["objects"]["frame_id"], "base_link");
    assert_eq!(objects.len(), expected.len());
    for o in objects {
        assert_eq!(o["shape_type"], 0, "BOUNDING_BOX");
        assert!([1, 6, 7].contains(&o["label"].as_u64().unwrap()), "CAR, BICYCLE or PEDESTRIAN: {o}");
    }
}

/// A recorded drive end to end: `eloss bag from-kitti` writes the real KITTI
/// frame as a 10 Hz drive with `/tf_static` (base_link → velodyne → camera);
/// `eloss replay --clock` plays it; the node runs on sim time with
/// detector.frame = base_link, placed only by the bag's `/tf_static`.
#[test]
fn a_bag_with_clock_and_tf_static_replays_on_sim_time() {
    let (Some(py), Some(kitti)) = (common::python(), common::kitti_dir()) else { return };
    use eloss_perception::bag::kitti_drive::{self, DriveSpec};
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("drive.mcap");
    let spec = DriveSpec { frames: 20, hz: 10.0, base_frame: "base_link".into(), lidar_frame: "velodyne".into(), camera_frame: "camera".into() };
    kitti_drive::write(&kitti.join("000008.bin"), None, None, &spec, &bag).unwrap();
    let ns = format!("/eloss_bag_{}", std::process::id());
    let node = common::NodeProcess::start_raw(
        &ns,
        &["use_sim_time:=true".into(), "detector.frame:=base_link".into()],
        &["-r", &format!("points:={}", kitti_drive::TOPIC_POINTS)],
    );
    let mut listener = Command::new(py)
        .arg(common::repo().join("tests/python/vehicle_peer.py"))
        .args(["listen", &ns, "10", "90"])
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(listener.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("ready") {
        line.clear();
    }
    let replay = Command::new(env!("CARGO_BIN_EXE_eloss"))
        .args(["replay", bag.to_str().unwrap(), "--clock", "--wait-subscribers", "30", "--topic", kitti_drive::TOPIC_POINTS, "--topic", "/tf_static"])
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .unwrap();
    assert!(replay.status.success(), "replay: {}", String::from_utf8_lossy(&replay.stderr));
    let out = listener.wait_with_output().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    assert!(out.status.success(), "listener failed: {rest}");
    assert!(node.stop().success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let first_ns: i64 = 1_700_000_000_000_000_000;
    let bag_stamps: Vec<i64> = (0..20).map(|i| first_ns + i * 100_000_000).collect();
    let dets = r["detections"].as_array().unwrap();
    assert!(dets.len() >= 10, "{} of 20 frames detected", dets.len());
    for d in dets {
        assert!(bag_stamps.contains(&d["stamp_ns"].as_i64().unwrap()), "a bag stamp: {d}");
        assert_eq!(d["frame_id"], "base_link");
        assert!(d["boxes"].as_u64().unwrap() >= 3, "the real frame's cars: {d}");
    }
    assert_eq!(r["frames_diagnostics"]["lidar_mounting"], "tf", "placed by the bag's /tf_static");
    // diagnostics after the first /clock carry bag time
    let t0 = first_ns as f64 * 1e-9;
    let sim: Vec<f64> = r["diagnostic_stamps"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).filter(|&t| t > 1.0e9).collect();
    assert!(!sim.is_empty(), "diagnostics on sim time");
    for t in sim {
        assert!(t >= t0 - 1e-6 && t <= t0 + 3.0, "diagnostics at {t}, the bag spans {t0}..{}", t0 + 2.0);
    }
}

#[test]
fn sim_time_stamps_detections_and_diagnostics_with_the_clock() {
    if common::python().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("cloud.bin");
    eloss_perception::cloud::kitti_bin::write(&bin, &scan(7)).unwrap();
    let ns = format!("/eloss_simtime_{}", std::process::id());
    let node = common::NodeProcess::start(&ns, &["use_sim_time:=true".into()]);
    let sim = 5_000.0;
    let r = peer(&["sim_time", &ns, bin.to_str().unwrap(), "5000"]);
    assert!(node.stop().success());
    let dets: Vec<f64> = r["detection_stamps"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(dets[0], sim, "detections carry the cloud's stamp");
    let elapsed = r["elapsed_s"].as_f64().unwrap();
    let diags: Vec<f64> = r["diagnostic_stamps"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    // the first reports may predate the node's first /clock message (time 0)
    let after: Vec<&f64> = diags.iter().filter(|&&t| t > 0.0).collect();
    assert!(after.len() >= 2, "diagnostics after /clock started: {diags:?}");
    for t in after {
        assert!(*t >= sim && *t <= sim + elapsed + 1.0, "diagnostics stamped {t}, sim time ran {sim}..{}", sim + elapsed);
    }
}

#[test]
fn logs_reach_rosout_at_the_requested_level() {
    if common::python().is_none() {
        return;
    }
    for (level, debug_expected) in [("debug", true), ("info", false)] {
        let ns = format!("/eloss_rosout_{level}_{}", std::process::id());
        let node = common::NodeProcess::start_with(&ns, &[], &["--log-level", level]);
        let r = peer(&["rosout", &ns]);
        assert!(node.stop().success());
        let records = r["records"].as_array().unwrap();
        assert!(
            records.iter().any(|x| x["level"] == 20 && x["msg"].as_str().unwrap().starts_with("started")),
            "{level}: the start-up line on /rosout under {}: {records:?}",
            r["logger"]
        );
        let debug = records.iter().any(|x| x["level"] == 10);
        assert_eq!(debug, debug_expected, "{level}: debug records on /rosout: {records:?}");
    }
}

#[test]
fn run_time_parameters_are_refused_with_their_reason() {
    if common::python().is_none() {
        return;
    }
    let ns = format!("/eloss_params_{}", std::process::id());
    let node = common::NodeProcess::start(&ns, &[]);
    let r = peer(&["params", &ns]);
    assert!(node.stop().success());
    let results = r["results"].as_array().unwrap();
    let by_name = |n: &str| results.iter().find(|x| x["name"] == n).unwrap();
    for (name, reason) in [
        ("detector.score_threshold", "must be in [0, 1]"),
        ("diagnostics.period_s", "must be"),
        ("detector.coverage", "front or full"),
        ("detector.model_path", "read-only"),
    ] {
        let x = by_name(name);
        assert_eq!(x["successful"], false, "{name}: {x}");
        assert!(x["reason"].as_str().unwrap().contains(reason), "{name}: {x}");
    }
    assert_eq!(by_name("cloud.intensity_scale")["successful"], true);
    let v = &r["values"];
    assert_eq!(v["detector.score_threshold"], 0.3, "a refused value leaves the old one");
    assert_eq!(v["detector.coverage"], "front");
    assert_eq!(v["detector.model_path"], "");
    assert_eq!(v["cloud.intensity_scale"], 0.00392157);
}
