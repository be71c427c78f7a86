//! The `~/relabel` service over DDS: the node loads a few-shot GDC bank built
//! with a small random DINOv2 (transformers) and labels colour patches of an
//! image sent by an rclpy client; bad requests get error responses and the
//! node keeps serving.
#![cfg(feature = "ros")]
mod common;

use common::NodeProcess;
use eloss_perception::gdc::backbone::EmbeddingRecipe;
use eloss_perception::gdc::bank::FitOptions;
use eloss_perception::gdc::bank_builder::build_bank;
use eloss_perception::gdc::encoder::Dinov2Encoder;
use serde_json::Value;
use std::process::Command;

#[test]
fn relabel_service_returns_probabilities_and_clear_errors() {
    let Some(py) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&py).arg(common::repo().join("tests/python/dinov2_reference.py")).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let backbone = dir.path().join("registers");
    let encoder = Dinov2Encoder::load(&backbone, EmbeddingRecipe::ClsMeanPatch, tch::Device::Cpu).unwrap();
    common::write_colour_classes(&dir.path().join("images"), 8);
    let bank = build_bank(&dir.path().join("images"), &encoder, FitOptions::default(), 8, |_, _| {}).unwrap();
    let bank_path = dir.path().join("bank.safetensors");
    bank.save(&bank_path).unwrap();

    // an image with the three colour patches side by side
    let mut scene = ::image::RgbImage::new(300, 100);
    for (c, (_, rgb)) in common::COLOUR_CLASSES.iter().enumerate() {
        let patch = common::noisy_image(*rgb, 100, 100, 50_000 + c as u64);
        ::image::imageops::replace(&mut scene, &patch, 100 * c as i64, 0);
    }
    let png = dir.path().join("scene.png");
    scene.save(&png).unwrap();
    // three patches, one box outside the image, one too small
    let boxes = "10,10,90,90;110,15,190,85;205,5,295,95;400,10,450,60;20,20,24,23";

    let ns = format!("/eloss_relabel_{}", std::process::id());
    let node = NodeProcess::start(
        &ns,
        &[format!("gdc.bank_path:={}", bank_path.display()), format!("gdc.backbone_path:={}", backbone.display())],
    );
    let out = Command::new(&py)
        .arg(common::repo().join("tests/python/node_peer.py"))
        .args(["relabel", &ns])
        .arg(&png)
        .arg(boxes)
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .unwrap();
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();

    let all = &r["all"];
    assert_eq!(all["success"], true, "{all}");
    let labels = all["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 5);
    for (i, (name, _)) in common::COLOUR_CLASSES.iter().enumerate() {
        let l = &labels[i];
        assert_eq!(l["valid"], true, "{l}");
        assert_eq!(l["label"], *name, "{l}");
        let p = l["probabilities"].as_object().unwrap();
        assert_eq!(p.len(), 3);
        let sum: f64 = p.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-5, "{l}");
    }
    assert_eq!(labels[3]["valid"], false);
    assert!(labels[3]["error"].as_str().unwrap().contains("not visible") || labels[3]["error"].as_str().unwrap().contains("outside"));
    assert!(labels[4]["error"].as_str().unwrap().contains("px"), "{}", labels[4]);

    // candidates restrict the distribution; brick is not among them
    let subset = &r["subset"]["labels"].as_array().unwrap()[0];
    assert_eq!(subset["probabilities"].as_object().unwrap().len(), 2);
    assert_eq!(r["unknown_class"]["success"], false);
    assert!(r["unknown_class"]["error"].as_str().unwrap().contains("unicorn"), "{}", r["unknown_class"]);
    assert_eq!(r["bad_encoding"]["success"], false);
    assert!(r["bad_encoding"]["error"].as_str().unwrap().contains("yuv422_yuy2"));
    assert_eq!(r["by_id"]["success"], false);
    assert!(node.stop().success());
}

#[test]
fn relabel_without_a_bank_says_gdc_is_off() {
    let Some(py) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("x.png");
    common::noisy_image([1, 2, 3], 50, 50, 1).save(&png).unwrap();
    let ns = format!("/eloss_relabel_off_{}", std::process::id());
    let node = NodeProcess::start(&ns, &[]);
    let out = Command::new(&py)
        .arg(common::repo().join("tests/python/node_peer.py"))
        .args(["relabel", &ns])
        .arg(&png)
        .arg("0,0,40,40")
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .unwrap();
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["all"]["success"], false);
    assert!(r["all"]["error"].as_str().unwrap().contains("GDC is off"), "{}", r["all"]);
    assert!(node.stop().success());
}
