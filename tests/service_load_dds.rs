//! The node under service load, over DDS with an rclpy peer
//! (tests/python/load_peer.py): a tiny random DINOv2 colour bank and a tiny
//! random Stable Diffusion generator (tests/python/*_reference.py).
//! - Many concurrent `~/relabel` and `~/add_classes` (wait) requests: every
//!   relabel request is answered (the ones beyond the in-flight limit with
//!   "busy"), the workers stay alive, and SIGTERM under that load ends the
//!   process within 2 s.
//! - A large relabel request while `gdc.auto_relabel` labels every frame:
//!   labelled detections keep being published while it runs.
#![cfg(feature = "ros")]
mod common;

use common::NodeProcess;
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn peer(py: &Path) -> Command {
    let mut c = Command::new(py);
    c.arg(common::repo().join("tests/python/load_peer.py")).env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST");
    c
}

#[test]
fn sigterm_under_service_load_exits_within_2_s() {
    let Some(py) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bank = common::tiny_gdc(&py, dir.path());
    let image = dir.path().join("image.png");
    common::noisy_image([120, 160, 230], 640, 480, 7).save(&image).unwrap();
    let ns = format!("/eloss_service_load_{}", std::process::id());
    let node = NodeProcess::start(
        &ns,
        &[
            format!("gdc.bank_path:={}", bank.display()),
            format!("gdc.backbone_path:={}", dir.path().join("plain").display()),
            format!("gdc.generator.path:={}", dir.path().join("sd").display()),
            // many images per class: the waiting add_classes requests are still waiting at SIGTERM
            "gdc.generator.per_class:=500".into(),
            "gdc.generator.steps:=2".into(),
            "gdc.generator.size:=32".into(),
            format!("gdc.generator.cache_dir:={}", dir.path().join("cache").display()),
        ],
    );
    let requests = 24;
    let mut load = peer(&py)
        .args(["service_load", &ns])
        .arg(&image)
        .args(["10", &requests.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = load.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(240)).unwrap_or_default();
    if line.trim().is_empty() {
        let _ = load.kill();
        panic!("the load peer reported nothing (see its stderr)");
    }
    let r: Value = serde_json::from_str(&line).unwrap();
    eprintln!("{r}");
    // every relabel request was answered: beyond the in-flight limit at once with "busy"
    let busy = r["relabel_busy"].as_u64().unwrap();
    assert!(busy >= 1 && r["relabel_ok"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["relabel_ok"].as_u64().unwrap() + busy, requests, "no other failure: {r}");
    assert_eq!(r["labels_per_answer"], serde_json::json!([10]), "{r}");
    // add_classes beyond its limit: "busy" at once; the others still wait for their classes
    let add_busy = r["add_busy"].as_u64().unwrap();
    assert_eq!(add_busy, requests - eloss_perception::ros::node::MAX_ADD_CLASSES_IN_FLIGHT as u64, "{r}");
    assert_eq!(r["add_answered"].as_u64().unwrap(), add_busy, "{r}");
    assert_eq!(r["gdc"]["busy_requests"].as_str().unwrap().parse::<u64>().unwrap(), busy + add_busy, "{r}");
    assert_eq!(r["workers"]["level"], 0, "{r}");

    // SIGTERM with 16 add_classes waits open and generation running
    let (status, took) = node.stop_with("TERM");
    let _ = load.kill();
    let _ = load.wait();
    eprintln!("exit {status:?} {:.2} s after SIGTERM under service load", took.as_secs_f64());
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
}

#[test]
fn detections_keep_flowing_while_a_large_relabel_runs() {
    let Some(py) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bank = common::tiny_gdc(&py, dir.path());
    let (bin, png) = common::simulated_frame(dir.path());

    let ns = format!("/eloss_relabel_load_{}", std::process::id());
    let node = NodeProcess::start(
        &ns,
        &[
            format!("gdc.bank_path:={}", bank.display()),
            format!("gdc.backbone_path:={}", dir.path().join("plain").display()),
            "gdc.auto_relabel:=true".into(),
            format!("detector.model_path:={}", common::eager_detector(dir.path(), 3.0, 8).display()),
        ],
    );
    let out = peer(&py).args(["relabel_during_detection", &ns]).arg(&bin).arg(&png).arg("40").output().unwrap();
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{r}");
    assert_eq!(r["success"], true, "{r}");
    let (took, gap) = (r["relabel_s"].as_f64().unwrap(), r["max_gap_s"].as_f64().unwrap());
    assert!(took > 1.0, "the request must be large enough to matter: {took:.2} s");
    // without the fix nothing is published until the request is done (gap = took)
    assert!(r["labelled_during"].as_u64().unwrap() >= 3, "{r}");
    assert!(gap < 0.5 * took && gap < 3.0, "detections paused {gap:.2} s during a {took:.2} s relabel: {r}");
    assert!(node.stop().success());
}
