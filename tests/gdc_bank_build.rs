//! Few-shot GDC end to end: image folders → a small random DINOv2 (from
//! transformers, tests/python/dinov2_reference.py) → Gaussian bank → held-out
//! images classified with probabilities, and the bank file tied to the backbone.
#![cfg(feature = "torch")]
mod common;

use eloss_perception::gdc::backbone::EmbeddingRecipe;
use eloss_perception::gdc::bank::{FitOptions, GaussianBank};
use eloss_perception::gdc::bank_builder::{build_bank, images_by_class, read_rgb};
use eloss_perception::gdc::encoder::{Dinov2Encoder, ImageEncoder};
use std::process::Command;

#[test]
fn bank_from_folders_classifies_held_out_images() {
    let Some(py) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(py).arg(common::repo().join("tests/python/dinov2_reference.py")).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let encoder = Dinov2Encoder::load(&dir.path().join("registers"), EmbeddingRecipe::ClsMeanPatch, tch::Device::Cpu).unwrap();
    assert!(encoder.backbone_id().starts_with("dinov2[registers; d=32 L=2 p=14 reg=4; "), "{}", encoder.backbone_id());

    let classes = common::COLOUR_CLASSES;
    let images = dir.path().join("images");
    common::write_colour_classes(&images, 8);
    let listed = images_by_class(&images).unwrap();
    assert_eq!(listed.iter().map(|(n, v)| (n.as_str(), v.len())).collect::<Vec<_>>(), [("brick", 8), ("grass", 8), ("sky", 8)]);

    let mut calls = 0;
    let bank = build_bank(&images, &encoder, FitOptions::default(), 5, |done, total| {
        calls += 1;
        assert!(done <= total && total == 24);
    })
    .unwrap();
    assert!(calls >= 3);
    assert_eq!(bank.class_names(), ["brick", "grass", "sky"]);
    assert_eq!(bank.dim(), 64);

    for (c, (_, rgb)) in classes.iter().enumerate() {
        let held_out = dir.path().join(format!("query{c}.png"));
        common::noisy_image(*rgb, 77, 51, 10_000 + c as u64).save(&held_out).unwrap();
        let e = encoder.embed_images(&[read_rgb(&held_out).unwrap()], 1).unwrap();
        let p = bank.posterior(&e[0], None, 1.0).unwrap();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{p:?}");
        let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(best, c, "held-out {} classified as {:?}", classes[c].0, p);
    }

    let file = dir.path().join("bank.safetensors");
    bank.save(&file).unwrap();
    assert!(GaussianBank::load_expecting(&file, encoder.backbone_id(), "cls+meanpatch").is_ok());
    assert!(GaussianBank::load_expecting(&file, "dinov2[other]", "cls+meanpatch").is_err());
    assert!(GaussianBank::load_expecting(&file, encoder.backbone_id(), "cls").is_err());
}

#[test]
fn folder_errors_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    assert!(images_by_class(dir.path()).is_err());
    std::fs::create_dir_all(dir.path().join("empty_class")).unwrap();
    let e = images_by_class(dir.path()).unwrap_err().to_string();
    assert!(e.contains("empty_class"), "{e}");
    std::fs::write(dir.path().join("empty_class/broken.png"), b"not a png").unwrap();
    assert!(read_rgb(&dir.path().join("empty_class/broken.png")).is_err());
}
