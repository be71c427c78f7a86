//! `~/add_classes` over DDS: the node starts with a three-class GDC bank
//! (colour patches, tiny random DINOv2) and a tiny random Stable Diffusion
//! generator (tests/python/generator_reference.py); an rclpy client adds
//! classes by name, without and with waiting, follows `~/gdc_bank`, and
//! relabels a generated image against old and new classes (the node's
//! probabilities must equal the library's on the saved bank). Bad names are
//! error responses; the extended bank is saved where configured. Then the
//! zero-shot start: no bank at all, only class names in the parameters.
#![cfg(feature = "ros")]
mod common;

use common::NodeProcess;
use eloss_perception::gdc::backbone::EmbeddingRecipe;
use eloss_perception::gdc::bank::{FitOptions, GaussianBank};
use eloss_perception::gdc::bank_builder::build_bank;
use eloss_perception::gdc::encoder::Dinov2Encoder;
use serde_json::Value;
use std::process::Command;

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
}

/// The node's answer must be the library's: the saved bank and the backbone
/// classify the same whole-image crop (random tiny models: which class wins
/// means nothing, equality does).
fn assert_same_as_library(node_probabilities: &Value, bank: &std::path::Path, backbone: &std::path::Path, image: &std::path::Path, candidates: &[String]) {
    use eloss_perception::gdc::classifier::GdcClassifier;
    use eloss_perception::gdc::crops::{crop_pixels, CropConfig};
    let classifier = GdcClassifier::new(Box::new(Dinov2Encoder::load(backbone, EmbeddingRecipe::Cls, tch::Device::Cpu).unwrap()), GaussianBank::load(bank).unwrap()).unwrap();
    let img = eloss_perception::gdc::bank_builder::read_rgb(image).unwrap();
    let crop = crop_pixels(&img, [0.0, 0.0, img.width as f64, img.height as f64], &CropConfig::default());
    let expected = classifier.classify_lazily(1, |_| crop.clone(), candidates).unwrap().remove(0).unwrap().distribution;
    let got = node_probabilities.as_object().unwrap();
    assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
    for (class, p) in &expected {
        let q = got[class].as_f64().unwrap();
        assert!((q - p).abs() < 1e-4, "{class}: node {q}, library {p}");
    }
    assert!((got.values().map(|v| v.as_f64().unwrap()).sum::<f64>() - 1.0).abs() < 1e-5);
}

/// The first generated image of `class` under a settings-keyed cache folder.
fn first_image(cache: &std::path::Path, class: &str) -> std::path::PathBuf {
    let keyed = std::fs::read_dir(cache).unwrap().map(|e| e.unwrap().path()).find(|p| p.join("classes").join(class).is_dir()).unwrap();
    keyed.join("classes").join(class).join("00000.png")
}

#[test]
fn classes_added_by_name_at_run_time() {
    let Some(py) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for script in ["generator_reference.py", "dinov2_reference.py"] {
        let out = Command::new(&py).arg(common::repo().join("tests/python").join(script)).arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (generator, backbone) = (dir.path().join("sd"), dir.path().join("plain"));
    let encoder = Dinov2Encoder::load(&backbone, EmbeddingRecipe::Cls, tch::Device::Cpu).unwrap();
    common::write_colour_classes(&dir.path().join("images"), 8);
    let bank = build_bank(&dir.path().join("images"), &encoder, FitOptions::default(), 8, |_, _| {}).unwrap();
    let (bank_path, saved, cache) = (dir.path().join("bank.safetensors"), dir.path().join("extended.safetensors"), dir.path().join("cache"));
    bank.save(&bank_path).unwrap();

    let ns = format!("/eloss_add_classes_{}", std::process::id());
    let node = NodeProcess::start(
        &ns,
        &[
            format!("gdc.bank_path:={}", bank_path.display()),
            format!("gdc.backbone_path:={}", backbone.display()),
            format!("gdc.generator.path:={}", generator.display()),
            "gdc.generator.per_class:=3".into(),
            "gdc.generator.steps:=2".into(),
            "gdc.generator.guidance:=2.5".into(),
            "gdc.generator.size:=32".into(),
            "gdc.generator.batch:=2".into(),
            format!("gdc.generator.cache_dir:={}", cache.display()),
            format!("gdc.generator.save_bank_path:={}", saved.display()),
        ],
    );
    let out = Command::new(&py)
        .arg(common::repo().join("tests/python/node_peer.py"))
        .args(["add_classes", &ns])
        .arg(&cache)
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .unwrap();
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());

    let first = &r["first_status"];
    assert_eq!(strings(&first["classes"]), ["brick", "grass", "sky"]);
    assert!(first["generator"].as_str().unwrap().ends_with("sd"));

    // one bad name refuses the whole request
    assert_eq!(r["bad_name"]["success"], false);
    assert!(r["bad_name"]["error"].as_str().unwrap().contains("a/b"), "{}", r["bad_name"]);
    assert!(strings(&r["bad_name"]["queued"]).is_empty());
    // a class the bank has is not generated again
    let known = &r["known"];
    assert_eq!((known["success"].as_bool(), known["ready"].as_bool()), (Some(true), Some(true)));
    assert_eq!(strings(&known["already_present"]), ["grass"]);
    assert_eq!(known["estimated_seconds"], 0.0);

    // without wait: queued, answered before the class exists (the reply and the bank agree)
    let queued = &r["queued"];
    assert_eq!(queued["success"], true, "{queued}");
    assert_eq!(strings(&queued["queued"]), ["traffic_cone"]);
    assert_eq!(queued["ready"].as_bool(), Some(strings(&queued["classes"]).contains(&"traffic_cone")));
    let progress: Vec<&Value> = r["statuses_while_queued"].as_array().unwrap().iter().collect();
    assert!(progress.iter().any(|s| strings(&s["pending"]) == ["traffic_cone"] && s["total"][0] == 3), "{progress:?}");

    // with wait: the reply comes when the class is in the bank
    let waited = &r["waited"];
    assert_eq!(waited["success"], true, "{waited}");
    assert_eq!((strings(&waited["queued"]), strings(&waited["already_present"])), (vec!["bus"], vec!["traffic_cone"]));
    assert_eq!(waited["ready"], true);
    assert_eq!(waited["estimated_seconds"], 0.0);
    assert_eq!(strings(&waited["classes"]), ["brick", "grass", "sky", "traffic_cone", "bus"]);

    // a generated image relabelled among old and new classes: the library's answer
    let relabel = &r["relabel"];
    assert_eq!(relabel["success"], true, "{relabel}");
    let candidates: Vec<String> = ["grass", "traffic_cone", "bus"].map(String::from).to_vec();
    assert_same_as_library(&relabel["probabilities"][0], &saved, &backbone, &first_image(&cache, "traffic_cone"), &candidates);

    let last = &r["last_status"];
    assert!(strings(&last["pending"]).is_empty() && last["failed"].as_object().unwrap().is_empty(), "{last}");
    assert!(last["seconds_per_image"].as_f64().unwrap() > 0.0, "{last}");
    assert!(node.stop().success());

    // the extended bank was saved with the generated classes and their prompts
    let extended = GaussianBank::load(&saved).unwrap();
    assert_eq!(extended.class_names(), ["brick", "grass", "sky", "traffic_cone", "bus"]);
    let cone = &extended.classes()[3];
    assert_eq!((cone.count(), cone.prompts()[0].as_str()), (3, "a photo of a traffic cone."));
    assert_eq!(extended.spec(), bank.spec());
}

/// No bank file: the node starts with an empty bank, generates the classes
/// named in `gdc.generator.classes`, serves them, and saves the bank.
#[test]
fn zero_shot_start_from_class_names_only() {
    let Some(py) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for script in ["generator_reference.py", "dinov2_reference.py"] {
        let out = Command::new(&py).arg(common::repo().join("tests/python").join(script)).arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let saved = dir.path().join("zero_shot.safetensors");
    let ns = format!("/eloss_zero_shot_{}", std::process::id());
    let node = NodeProcess::start(
        &ns,
        &[
            format!("gdc.backbone_path:={}", dir.path().join("plain").display()),
            format!("gdc.generator.path:={}", dir.path().join("sd").display()),
            "gdc.generator.classes:=car,traffic_cone".into(),
            "gdc.generator.per_class:=3".into(),
            "gdc.generator.steps:=2".into(),
            "gdc.generator.guidance:=2.5".into(),
            "gdc.generator.size:=32".into(),
            format!("gdc.generator.save_bank_path:={}", saved.display()),
        ],
    );
    let cache = dir.path().join("zero_shot.safetensors.images");
    let out = Command::new(&py)
        .arg(common::repo().join("tests/python/node_peer.py"))
        .args(["zero_shot", &ns])
        .arg(&cache)
        .arg("car,traffic_cone")
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .unwrap();
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = r["statuses"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(strings(&last["classes"]), ["car", "traffic_cone"], "{r}");
    assert!(node.stop().success());
    let relabel = &r["relabel"];
    assert_eq!(relabel["success"], true, "{relabel}");
    assert_same_as_library(&relabel["probabilities"][0], &saved, &dir.path().join("plain"), &first_image(&cache, "car"), &[]);
    let bank = GaussianBank::load(&saved).unwrap();
    assert_eq!(bank.class_names(), ["car", "traffic_cone"]);
    assert_eq!(bank.spec().recipe, "cls");
}
